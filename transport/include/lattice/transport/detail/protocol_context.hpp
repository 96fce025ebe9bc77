// lattice/transport/detail/protocol_context.hpp: what every part of a
// protocol core shares: the options, the member table, the replicated
// state and what it counts, the messages produced, and the services the
// parts all use (send, pick peers, merge into the state). The parts are
// protocol.hpp (the core itself: dispatch, timers, delta and state
// dissemination, liveness by heartbeats), op_dissemination.hpp (op mode)
// and probe_liveness.hpp (liveness by probes); each holds a reference to
// the one context its protocol owns.
//
// Internal: users hold a protocol (protocol.hpp), never a context.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <boost/container/flat_map.hpp>

#include "lattice/crdt/codec.hpp"
#include "lattice/transport/anti_entropy.hpp"
#include "lattice/transport/membership.hpp"
#include "lattice/transport/messages.hpp"
#include "lattice/transport/peer_selection.hpp"
#include "lattice/transport/protocol_options.hpp"

namespace lattice::transport {

/// What a peer last told us of its state's root digest (in a digest sync
/// request or an op summary), and whether it equalled ours when it came.
/// Shows convergence: every peer whose latest digest agreed held the same
/// state as this replica at that moment.
struct peer_digest {
  std::uint64_t root = 0;
  steady_time seen{};
  bool agreed = false;
};

namespace detail {

/// When the next anti-entropy round is due. Rounds run every
/// anti_entropy_interval for a few rounds after a change (a peer that every
/// rumour missed is found within about a second), then the wait doubles up
/// to anti_entropy_max_interval while nothing changes.
class anti_entropy_pace {
 public:
  anti_entropy_pace(const protocol_options& options, steady_time now)
      : next_(now + options.anti_entropy_interval), wait_(options.anti_entropy_interval) {}

  bool due(steady_time now) const noexcept { return now >= next_; }

  /// A round started at `now`: the next one waits, longer once the state
  /// has been unchanged for anti_entropy_rounds_after_change rounds.
  void round_started(steady_time now, const protocol_options& options) {
    next_ = now + wait_;
    if (++rounds_since_change_ >= options.anti_entropy_rounds_after_change)
      wait_ = std::max<steady_time::duration>(
          options.anti_entropy_interval,
          std::min<steady_time::duration>(wait_ * 2, options.anti_entropy_max_interval));
  }

  /// The state changed at `now`: back at full speed, since we hold
  /// something new that some peers may have missed. At a random point of
  /// the next interval, as when rounds never slowed: a round a fixed time
  /// after the change that woke it runs while that change is still
  /// spreading, and repairs what its rumour was about to bring (at 300
  /// replicas under churn, 3 % more bytes, at once or one interval later).
  void state_changed(steady_time now, const protocol_options& options, std::mt19937_64& rng) {
    rounds_since_change_ = 0;
    if (wait_ == options.anti_entropy_interval) return;
    wait_ = options.anti_entropy_interval;
    const auto phase = std::uniform_int_distribution<steady_time::rep>(0, wait_.count())(rng);
    next_ = std::min(next_, now + steady_time::duration(phase));
  }

 private:
  steady_time next_;
  steady_time::duration wait_;  // before the next round
  unsigned rounds_since_change_ = 0;
};

/// The shared state of one protocol core and the services its parts use.
/// Not thread-safe: the thread that owns the protocol owns this.
template <reconcilable S>
struct protocol_context {
  protocol_context(protocol_options opts, steady_time now)
      : options(std::move(opts)),
        members(options.self, member_record{options.address, options.incarnation, 0, false}, options.liveness,
                now),
        rng(options.random_seed),
        anti_entropy(options, now) {
    // A seed listed twice (and ourselves) would be asked twice, every
    // heartbeat while we reach nobody: the simulator once listed its one
    // seed N times and so asked it for N tables at each of N joins.
    std::erase(options.seeds, options.address);
    std::sort(options.seeds.begin(), options.seeds.end());
    options.seeds.erase(std::unique(options.seeds.begin(), options.seeds.end()), options.seeds.end());
  }
  // The parts hold references to it.
  protocol_context(const protocol_context&) = delete;
  protocol_context& operator=(const protocol_context&) = delete;

  /// Encodes `body` in an envelope from us and queues it for `to`.
  template <class Body>
  void send(const std::string& to, message_type type, const Body& body, bool datagram = false) {
    auto payload = crdt::encode(envelope<Body>{options.self, options.address, body, options.wall_clock()});
    ++stats.messages_sent;
    stats.bytes_sent += payload.size();
    if (const auto t = static_cast<std::size_t>(type); t < stats.sent_by_type.size()) {
      ++stats.sent_by_type[t];
      stats.bytes_sent_by_type[t] += payload.size();
    }
    outgoing.push_back(outgoing_message{to, type, std::move(payload), datagram});
  }

  /// Up to `count` distinct reachable peers other than `except` and
  /// `also_except`, at random (peer_selection.hpp).
  std::vector<replica_id> pick_peers(std::size_t count, replica_id except, steady_time now,
                                     std::optional<replica_id> also_except = std::nullopt) {
    return transport::pick_peers(members.reachable_peers(now), count, except, rng, also_except);
  }

  /// The address of a member we hold a record of.
  const std::string& address_of(replica_id peer) const { return members.table().find(peer)->address; }

  /// Our own record alone, as a table: what a leave, a refutation or a
  /// join's announcement carries.
  member_table own_record() const {
    member_table t;
    t.offer(options.self, members.self_record());
    return t;
  }

  /// Decodes an envelope, counting a failure in stats.rejected, and notes
  /// the sender's clock and that we heard from it.
  template <class M>
  std::optional<M> decode_or_count(std::span<const std::byte> payload) {
    auto decoded = crdt::decode<M>(payload);
    if (!decoded) {
      ++stats.rejected;
      return std::nullopt;
    }
    const M& m = decoded.value();
    if (m.from != options.self && m.sent_us != 0)
      clock_offsets[m.from] = static_cast<std::int64_t>(m.sent_us - options.wall_clock());
    members.heard(m.from, steady_now);
    return std::move(decoded).value();
  }

  void note_digest(replica_id from, std::uint64_t root, steady_time now) {
    if (from == options.self) return;
    peer_digests[from] = peer_digest{root, now, root == state.digest()};
  }

  /// Merges `in` into the state; on a change, tells the listener what was
  /// merged and what the merge removed. Returns whether anything changed.
  /// `whole`: `in` is a peer's whole state (see
  /// protocol_options::hold_horizon).
  bool merge_in(const S& in, bool whole = false) {
    if constexpr (range_mergeable<S>) {
      if (whole && options.hold_horizon && options.hold_horizon()) {
        static constexpr std::uint32_t everything[] = {0};
        S removed;
        if (!state.merge_ranges(in, 0, everything, &removed)) return false;
        changed(in, removed);
        return true;
      }
    }
    if constexpr (requires(S& s, const S& o, S* r) { s.merge(o, r); }) {
      S removed;
      if (!state.merge(in, &removed)) return false;
      changed(in, removed);
    } else {
      if (!state.merge(in)) return false;
      changed(in, S{});
    }
    return true;
  }

  /// After every merge that changed the state.
  void changed(const S& merged, const S& removed) {
    ++stats.state_changes;
    anti_entropy.state_changed(steady_now, options, rng);
    if (listener) listener(merged, removed);
  }

  protocol_options options;
  membership members;
  S state;
  protocol_stats stats;
  std::mt19937_64 rng;
  anti_entropy_pace anti_entropy;
  steady_time steady_now{};     // of the message or local change being handled
  replica_id merging_from = 0;  // see protocol::merging_from
  std::function<void(const S&, const S&)> listener;
  boost::container::flat_map<replica_id, std::int64_t> clock_offsets;
  boost::container::flat_map<replica_id, peer_digest> peer_digests;
  std::vector<outgoing_message> outgoing;
};

}  // namespace detail
}  // namespace lattice::transport
