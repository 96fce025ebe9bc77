// lattice/transport/protocol.hpp: the gossip protocol as a pure state
// machine (sans-IO). It owns the replicated state and the member table, is
// told the time and handed received bytes, and hands back the messages to
// send. The Asio driver and the deterministic simulator (tests/support/)
// run this same code.
//
//   protocol<registry_document> core(options, now);
//   core.local_change(delta, now);                 // after a local write
//   core.on_message(type, payload, now);           // bytes from a frame
//   core.on_tick(now);                             // every few ms
//   for (auto& m : core.take_outgoing()) send(m.to, m.type, m.payload);
//
// Dissemination, `delta` mode (the default; `state` mode instead sends the
// whole state with every heartbeat and runs no rumours or anti-entropy):
//  - a local change is pushed at once to `origin_fanout` random reachable
//    peers; a peer that learns something new from it forwards it once, to
//    `fanout` peers other than the sender (rumour mongering, Demers 1987);
//  - every heartbeat interval the replica bumps its heartbeat and gossips
//    its member table to `fanout` peers (to the seeds while it knows none);
//  - every anti-entropy interval it starts a push-pull exchange with one
//    random peer (anti_entropy.hpp), which repairs whatever rumours missed.
// `op` mode (CmRDT style: numbered ops delivered exactly once in origin
// order, gaps repaired from peers' op logs) is detail/op_dissemination.hpp.
//
// Liveness (options.liveness.source). With `heartbeats` the member table
// gossiped every heartbeat is how members are judged alive, as above. With
// `probes` a SWIM detector (swim.hpp) judges and member records travel
// only when they change (detail/probe_liveness.hpp).
//
// This file is the core itself: the public API, dispatch of received
// messages, the timers, delta and state dissemination, and liveness by
// heartbeats. The parts it holds share one detail::protocol_context (the
// options, member table, state, stats and outgoing messages).
//
// Bad input: a payload that does not decode is dropped and counted in
// stats().rejected; it never reaches the state. (Frames that fail their
// CRC or MAC never get here: the driver closes that connection.)
//
// Thread safety: not thread-safe; one thread owns a protocol.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include <boost/container/flat_map.hpp>

#include "lattice/transport/anti_entropy.hpp"
#include "lattice/transport/detail/op_dissemination.hpp"
#include "lattice/transport/detail/probe_liveness.hpp"
#include "lattice/transport/detail/protocol_context.hpp"
#include "lattice/transport/membership.hpp"
#include "lattice/transport/messages.hpp"
#include "lattice/transport/protocol_options.hpp"
#include "lattice/transport/swim.hpp"

namespace lattice::transport {

template <reconcilable S>
class protocol final : public protocol_core {
 public:
  protocol(protocol_options options, steady_time now)
      : c_(std::move(options), now), ops_(c_), next_heartbeat_(now) {
    if (c_.options.liveness.source == liveness_source::probes) probes_.emplace(c_, now);
  }
  // Its parts hold references to its context.
  protocol(const protocol&) = delete;
  protocol& operator=(const protocol&) = delete;

  const S& state() const noexcept { return c_.state; }
  /// Local maintenance that peers must not hear of, such as compacting
  /// tombstones: `f` may change the state in place; nothing is spread and
  /// no listener is called.
  template <class F>
  void maintain(F&& f) {
    f(c_.state);
  }

  /// Called on the owning thread after every merge that changed the state
  /// (local or remote), with what was merged (a delta, an op's delta, a
  /// range slice or, in state mode, a whole state) and what the merge
  /// removed here: every key that changed is in one of the two. How upper
  /// layers find what to republish, persist and whom to notify.
  ///
  /// Only a state whose merge has the form merge(const S&, S* removed)
  /// reports removals (registry_document does: a full state's horizon
  /// erases keys it lacks); for others `removed` is always empty.
  void set_change_listener(std::function<void(const S& merged, const S& removed)> listener) {
    c_.listener = std::move(listener);
  }

  const membership& members() const noexcept { return c_.members; }
  /// Takes `table` as the cluster's, as a joiner takes its seed's answer,
  /// except that no member in it is told our record: the caller vouches
  /// that every one of them holds it already. For simulators that start a
  /// cluster formed, so that a benchmark of its steady state at 10,000
  /// replicas does not first run the 10^8 announcements of 10,000 joins
  /// (lattice_churn_sim --formed). A real replica joins through its seeds.
  void adopt_formed_table(const member_table& table, steady_time now) {
    c_.steady_now = now;
    std::vector<replica_id> grown;
    c_.members.merge(table, now, &grown);
    if (probes_) probes_->learned(grown, now);
  }
  /// Probes: the failure detector (its stats, local health); null with
  /// heartbeats.
  const swim::detector* detector() const noexcept { return probes_ ? &probes_->detector() : nullptr; }
  const protocol_stats& stats() const noexcept { return c_.stats; }
  /// Per peer that sent us a message: its wall clock minus ours, in µs, as
  /// of its latest message (its send time against our receive time, so the
  /// transit delay counts against it: well under a millisecond on a LAN).
  const boost::container::flat_map<replica_id, std::int64_t>& clock_offsets() const noexcept {
    return c_.clock_offsets;
  }
  /// What each peer last told us of its state's root digest
  /// (transport::peer_digest).
  using peer_digest = transport::peer_digest;
  const boost::container::flat_map<replica_id, peer_digest>& peer_digests() const noexcept { return c_.peer_digests; }
  replica_id self() const noexcept { return c_.options.self; }
  /// The sender of the message whose merge is being reported, for the
  /// change listener's logs (0 outside a gossip or range push).
  replica_id merging_from() const noexcept { return c_.merging_from; }

  /// Merges a local mutation's delta and spreads it.
  void local_change(const S& delta, steady_time now) {
    c_.steady_now = now;
    c_.merge_in(delta);
    if (c_.options.mode == dissemination::delta) spread(delta, /*except=*/c_.options.self, now);
    if (c_.options.mode == dissemination::op) ops_.local_change(delta, now);
  }

  /// Handles one received message.
  void on_message(message_type type, std::span<const std::byte> payload, steady_time now) override {
    c_.steady_now = now;
    ++c_.stats.messages_received;
    if (const auto t = static_cast<std::size_t>(type); t < c_.stats.received_by_type.size())
      ++c_.stats.received_by_type[t];
    switch (type) {
      case message_type::gossip:
        if (auto m = c_.template decode_or_count<envelope<gossip_body<S>>>(payload)) on_gossip(*m, now);
        return;
      case message_type::sync_request:
        if (auto m = c_.template decode_or_count<envelope<sync_request>>(payload)) {
          c_.note_digest(m->from, m->body.root, now);
          if (auto digests = answer_sync_request(c_.state, m->body))
            c_.send(m->from_address, message_type::range_digests, *digests);
        }
        return;
      case message_type::range_digests:
        if (auto m = c_.template decode_or_count<envelope<range_digests>>(payload)) {
          if (auto push = answer_range_digests(c_.state, m->body, c_.options.max_push_bytes))
            c_.send(m->from_address, message_type::range_push, *push);
        }
        return;
      case message_type::range_push:
        if (auto m = c_.template decode_or_count<envelope<range_push<S>>>(payload)) {
          c_.merging_from = m->from;
          const auto before = c_.state.digest();
          S removed;
          auto reply = absorb_range_push(c_.state, m->body, c_.options.max_push_bytes, &removed);
          if (c_.state.digest() != before) c_.changed(m->body.entries, removed);
          if (reply) c_.send(m->from_address, message_type::range_push, *reply);
        }
        return;
      case message_type::op:
        if (auto m = c_.template decode_or_count<envelope<numbered_op<S>>>(payload)) {
          c_.merging_from = m->from;
          ops_.on_op(std::move(*m), now);
        }
        return;
      case message_type::op_summary:
        if (auto m = c_.template decode_or_count<envelope<op_summary>>(payload)) {
          c_.note_digest(m->from, m->body.root, now);
          ops_.on_op_summary(*m);
        }
        return;
      case message_type::op_repair:
        if (auto m = c_.template decode_or_count<envelope<op_repair<S>>>(payload)) {
          c_.merging_from = m->from;
          ops_.on_op_repair(std::move(*m));
        }
        return;
      case message_type::probe:
        if (!probes_) break;  // a cluster must agree on its liveness source
        if (auto m = c_.template decode_or_count<envelope<swim::message>>(payload)) probes_->on_probe(std::move(*m), now);
        return;
      case message_type::record_refresh:
        if (!probes_) break;
        if (auto m = c_.template decode_or_count<envelope<record_refresh>>(payload); m && m->from != c_.options.self)
          if (auto whole = probes_->on_refresh(*m)) on_gossip(*whole, now);
        return;
      case message_type::record_request:
        if (!probes_) break;
        if (auto m = c_.template decode_or_count<envelope<record_request>>(payload); m && m->from != c_.options.self)
          probes_->on_record_request(*m);
        return;
    }
    ++c_.stats.rejected;  // unknown type
  }

  /// Runs the timers that are due at `now`.
  void on_tick(steady_time now) override {
    if (c_.options.mode == dissemination::op) ops_.tick();
    if (probes_) probes_->tick(now);
    else if (now >= next_heartbeat_) heartbeat(now);
    if (c_.options.mode != dissemination::state && c_.anti_entropy.due(now)) {
      const auto peers = c_.pick_peers(1, c_.options.self, now);
      const bool digest_round = c_.options.mode == dissemination::delta || ops_.next_round_is_digest();
      if (!peers.empty()) {
        if (digest_round)
          c_.send(c_.address_of(peers.front()), message_type::sync_request, make_sync_request(c_.state));
        else
          ops_.send_summary(c_.address_of(peers.front()));
      }
      c_.anti_entropy.round_started(now, c_.options);
    }
  }

  /// Announces a graceful leave to every reachable peer; call before stopping.
  void leave(steady_time now) override {
    c_.members.leave();
    // With probes, only our own record: a whole table to every peer would
    // be O(N^2) bytes at 10,000 members.
    gossip_body<S> body{probes_ ? c_.own_record() : c_.members.table(), {}};
    if (probes_) probes_->leave();
    for (replica_id peer : c_.members.reachable_peers(now)) c_.send(c_.address_of(peer), message_type::gossip, body);
  }

  /// The messages produced since the last call.
  std::vector<outgoing_message> take_outgoing() override { return std::exchange(c_.outgoing, {}); }

 private:
  void on_gossip(const envelope<gossip_body<S>>& m, steady_time now) {
    // Heartbeats: a sender we did not know (a replica joining through us),
    // or one back with a new incarnation (restarted), gets our whole table
    // at once: without it a joiner knows only its seeds until our heartbeat
    // happens to pick it, and spreads its first changes no further than
    // them. Not with probes: there a joiner asks its seeds for the table
    // (record_request) and then tells every member its record itself, and
    // a welcome from each of them would be N tables per joiner, N^2 tables
    // of N records on a mass start (4.1 MB sent per replica forming 300 in
    // lattice_load_sim; 1,000 ran out of memory).
    const auto* known = c_.members.table().find(m.from);
    const auto* told = m.body.members.find(m.from);
    const bool newcomer = !probes_ && m.from != c_.options.self && told != nullptr &&
                          (known == nullptr || known->incarnation < told->incarnation);
    const member_record mine = c_.members.self_record();
    std::vector<replica_id> strangers;
    if (probes_) strangers = probes_->strangers_in(m.body.members, m.from);
    std::vector<replica_id> grown;
    c_.members.merge(m.body.members, now, &grown);
    if (told != nullptr) c_.members.record_from(m.from);
    if (newcomer) c_.send(m.from_address, message_type::gossip, gossip_body<S>{c_.members.table(), {}});
    if (probes_) probes_->learned(grown, strangers, now);
    c_.merging_from = m.from;
    if (m.body.delta && c_.merge_in(*m.body.delta, /*whole=*/c_.options.mode == dissemination::state)) {
      // News: forward it once (delta mode; in state mode every round
      // already carries everything), with the member records that came
      // with it.
      if (c_.options.mode == dissemination::delta) spread(*m.body.delta, m.from, now, &m.body.members);
    }
    if (probes_) probes_->after_gossip(m, mine, now);
  }

  // Liveness by heartbeats: every heartbeat interval our heartbeat moves
  // and our member table goes to `fanout` peers (to the seeds while we
  // reach nobody); in state mode the whole state goes with it.
  void heartbeat(steady_time now) {
    c_.members.beat(c_.options.stamp_floor ? c_.options.stamp_floor() : c_.options.wall_clock());
    const auto peers = c_.pick_peers(c_.options.fanout, c_.options.self, now);
    if (peers.empty()) {
      for (const auto& seed : c_.options.seeds)
        c_.send(seed, message_type::gossip, gossip_body<S>{c_.members.table(), {}});
    }
    gossip_body<S> body{c_.members.table(), {}};
    if (c_.options.mode == dissemination::state) body.delta = c_.state;
    for (replica_id peer : peers) c_.send(c_.address_of(peer), message_type::gossip, body);
    probe_one_dead(now);
    next_heartbeat_ = now + c_.options.heartbeat_interval;
  }

  // Members judged dead are never picked as gossip peers, so without this
  // two sides of a healed partition would each wait forever for the other
  // to speak first. Each round one random dead (not left) member hears our
  // table; if it is alive, its reply revives it here, and its own probes
  // do the same on its side.
  void probe_one_dead(steady_time now) {
    std::vector<replica_id> dead;
    for (const auto& [id, record] : c_.members.table().records())
      if (id != c_.options.self && c_.members.state_of(id, now) == member_state::dead) dead.push_back(id);
    if (dead.empty()) return;
    std::uniform_int_distribution<std::size_t> pick(0, dead.size() - 1);
    c_.send(c_.address_of(dead[pick(c_.rng)]), message_type::gossip, gossip_body<S>{c_.members.table(), {}});
  }

  // A rumour carries the delta and two member records at most (below), not
  // the whole table: that travels with heartbeats, so a busy cluster's
  // rumours stay small instead of growing with the number of members.
  // Sends `delta` to `fanout` random reachable peers, with our own member
  // record and, forwarding (`carried`: the records it arrived with from
  // `except`), its origin's: so a replica that receives a new member's
  // first registration also learns that member, and does not hide the
  // instance as the registration of an unknown (dead) owner. The relays'
  // records are dropped: each hop adds its own and drops its sender's
  // (unless the sender is the origin, the only record then), so a rumour
  // carries two records at most. Carrying every hop's grew a relayed
  // write by about 70 bytes a hop, past what its writer's budget paid for
  // (ADR 0015; 597 bytes a gossip message at 1,000 replicas in
  // lattice_load_sim, against about 430 written).
  void spread(const S& delta, replica_id except, steady_time now, const member_table* carried = nullptr) {
    gossip_body<S> body{member_table{}, delta};
    if (carried != nullptr)
      for (const auto& [id, record] : carried->records())
        if (id != except || carried->size() == 1) body.members.offer(id, record);
    body.members.offer(c_.options.self, c_.members.self_record());
    const auto peers =
        c_.pick_peers(except == c_.options.self ? c_.options.origin_fanout : c_.options.fanout, except, now);
    if (peers.empty() && except == c_.options.self) {
      // A joiner that has not heard back from anyone yet: its seeds.
      for (const auto& seed : c_.options.seeds) c_.send(seed, message_type::gossip, body);
      return;
    }
    for (replica_id peer : peers) c_.send(c_.address_of(peer), message_type::gossip, body);
  }

  detail::protocol_context<S> c_;
  detail::op_dissemination<S> ops_;
  std::optional<detail::probe_liveness<S>> probes_;  // with liveness by probes
  steady_time next_heartbeat_;                        // liveness by heartbeats
};

}  // namespace lattice::transport
