// lattice/transport/op_log.hpp: exactly-once, per-origin-ordered delivery
// of operations, for the `op` dissemination mode (CmRDT style).
//
// Every local change is an op numbered by its origin: (origin, incarnation,
// seq), seq = 1, 2, 3... within one incarnation. A receiver delivers an
// origin's ops in seq order, exactly once:
//
//   seq == next expected        deliver it, then any buffered successors;
//   seq <  next expected        duplicate, dropped;
//   seq >  next expected        a gap: buffered until the gap is repaired.
//
// Gaps are repaired by anti-entropy: a replica sends a peer its vector
// (origin -> incarnation and last delivered seq); the peer answers with the
// ops it holds past that point, from its log of recent ops of every origin.
//
// Bounded memory. The log keeps the last `log_per_origin` ops of each
// origin; the gap buffer holds at most `pending_limit` ops in all (beyond
// that an op is dropped: the repair path brings it back). When a peer is so
// far behind that the log no longer holds what it misses, the answer says
// so and the two fall back to digest-driven range sync (anti_entropy.hpp),
// after which the laggard skips ahead (skip_to).
//
// A restarted origin comes back with a greater incarnation and counts from
// 1 again: an op of a greater incarnation resets that origin's stream; ops
// of an older one are stale and dropped. Within one incarnation a sequence
// number is never reused (nothing resets a stream but a new incarnation).
//
// Bounded age. An op carries its origin's wall clock at birth. Ops older
// than `max_age` are neither kept, nor replayed, nor delivered: a peer that
// lacks one range-syncs instead. Replaying old ops is unsafe, not merely
// slow: the state may have collected the tombstone of a later delete (the
// registry does after gc_grace), and a fresh replica replaying the write
// alone would bring the key back. So max_age must stay below the state's
// tombstone grace period; the registry uses half of it. A state sync reads
// the peers' current state, horizons included, and cannot resurrect.
//
// Thread safety: not thread-safe; owned by the replica thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include <cereal/types/vector.hpp>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/replica_id.hpp"

namespace lattice::transport {

using crdt::replica_id;

/// Where one origin's stream stands: its incarnation and the last seq
/// delivered in it (0: none yet).
struct stream_position {
  std::uint64_t incarnation = 0;
  std::uint64_t seq = 0;
  friend auto operator<=>(const stream_position&, const stream_position&) = default;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(incarnation, seq);
  }
};

/// Origin -> position: what a replica has delivered.
using stream_vector = std::map<replica_id, stream_position>;

/// One numbered op: the delta of one local change.
template <class S>
struct numbered_op {
  replica_id origin = 0;
  std::uint64_t incarnation = 0;
  std::uint64_t seq = 0;  // >= 1
  std::uint64_t born_us = 0;  // the origin's wall clock when it made the op
  S delta;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(origin, incarnation, seq, born_us, delta);
    if constexpr (Archive::is_loading::value) {
      if (seq == 0) crdt::throw_malformed();
    }
  }
};

struct op_log_limits {
  /// Recent ops kept per origin to repair others' gaps.
  std::size_t log_per_origin = 1024;
  /// Out-of-order ops buffered, over all origins.
  std::size_t pending_limit = 4096;
  /// Ops older than this are forgotten and refused (see the file comment).
  std::chrono::microseconds max_age = std::chrono::minutes(30);
};

enum class op_verdict {
  delivered,  // in order: it and possibly buffered successors are ready
  buffered,   // ahead of a gap: held until the gap is filled
  duplicate,  // delivered before (or stale incarnation): dropped
  overflow,   // ahead of a gap, but the buffer is full: dropped
  expired,    // older than max_age: dropped (the stream repairs by range sync)
};

template <class S>
class op_log {
 public:
  explicit op_log(op_log_limits limits = {}) : limits_(limits) {}

  /// Sets the wall clock (µs since the epoch) that op ages are measured
  /// against. Until called, the time is 0 and nothing expires. Cheap: call
  /// it before each batch of work.
  void set_now(std::uint64_t wall_us) noexcept { now_us_ = wall_us; }
  /// Drops the logged ops that are too old as of set_now() (missing_from
  /// never hands them out either way; this frees their memory). Walks
  /// every stream: call it periodically, not per message.
  void forget_expired() {
    for (auto& [origin, s] : streams_)
      while (!s.log.empty() && expired(s.log.front())) s.log.pop_front();
  }

  /// Numbers a local change of `self`, born now, and records it as delivered.
  const numbered_op<S>& record_local(replica_id self, std::uint64_t incarnation, S delta) {
    auto& s = streams_[self];
    if (s.position.incarnation != incarnation) {
      pending_total_ -= s.pending.size();
      s = stream{{incarnation, 0}, {}, {}};
    }
    ++s.position.seq;
    return remember(s, numbered_op<S>{self, incarnation, s.position.seq, now_us_, std::move(delta)});
  }

  /// Offers a received op. On `delivered`, `ready` receives the ops to apply,
  /// in order (the op itself first).
  op_verdict accept(numbered_op<S> op, std::vector<numbered_op<S>>& ready) {
    if (expired(op)) return op_verdict::expired;
    auto& s = streams_[op.origin];
    if (op.incarnation < s.position.incarnation) return op_verdict::duplicate;
    if (op.incarnation > s.position.incarnation) {
      pending_total_ -= s.pending.size();
      s = stream{{op.incarnation, 0}, {}, {}};
    }
    if (op.seq <= s.position.seq) return op_verdict::duplicate;
    if (op.seq > s.position.seq + 1) {
      if (s.pending.contains(op.seq)) return op_verdict::duplicate;
      if (pending_total_ >= limits_.pending_limit) return op_verdict::overflow;
      s.pending.emplace(op.seq, std::move(op));
      ++pending_total_;
      return op_verdict::buffered;
    }
    s.position.seq = op.seq;
    ready.push_back(remember(s, std::move(op)));
    drain(s, ready);
    return op_verdict::delivered;
  }

  /// What this replica has delivered, per origin.
  stream_vector vector() const {
    stream_vector v;
    for (const auto& [origin, s] : streams_) v.emplace(origin, s.position);
    return v;
  }

  /// Whether `peer` lacks ops we delivered, and whether our log still holds
  /// all of them (false: the peer needs a range sync instead).
  struct catch_up {
    std::vector<numbered_op<S>> ops;
    bool needs_range_sync = false;
  };
  /// Up to `max_ops` ops `peer` lacks, oldest first per origin. A stream
  /// whose missing ops are no longer all held, or not all younger than
  /// max_age, contributes none and asks for a range sync.
  catch_up missing_from(const stream_vector& peer, std::size_t max_ops) const {
    catch_up out;
    for (const auto& [origin, s] : streams_) {
      if (s.position.seq == 0) continue;
      const auto it = peer.find(origin);
      const stream_position theirs = it == peer.end() ? stream_position{} : it->second;
      if (theirs.incarnation > s.position.incarnation) continue;
      const std::uint64_t from = theirs.incarnation == s.position.incarnation ? theirs.seq + 1 : 1;
      if (from > s.position.seq) continue;
      if (s.log.empty() || s.log.front().seq > from ||
          std::any_of(s.log.begin(), s.log.end(), [&](const auto& op) { return op.seq >= from && expired(op); })) {
        out.needs_range_sync = true;
        continue;
      }
      for (const auto& op : s.log) {
        if (op.seq < from) continue;
        if (out.ops.size() >= max_ops) return out;
        out.ops.push_back(op);
      }
    }
    return out;
  }

  /// Whether `peer` has delivered something we have not.
  bool behind(const stream_vector& peer) const {
    for (const auto& [origin, theirs] : peer) {
      const auto it = streams_.find(origin);
      if (it == streams_.end() ? theirs.seq > 0 : theirs > it->second.position) return true;
    }
    return false;
  }

  /// After a range sync with `peer`, whose state covers its vector: treat
  /// every stream as delivered up to the peer's position, and release
  /// buffered ops that become deliverable into `ready`.
  void skip_to(const stream_vector& peer, std::vector<numbered_op<S>>& ready) {
    for (const auto& [origin, theirs] : peer) {
      auto& s = streams_[origin];
      if (theirs.incarnation < s.position.incarnation) continue;
      if (theirs.incarnation > s.position.incarnation) {
        pending_total_ -= s.pending.size();
        s = stream{theirs, {}, {}};
      } else if (theirs.seq > s.position.seq) {
        s.position.seq = theirs.seq;
        while (!s.pending.empty() && s.pending.begin()->first <= s.position.seq) {
          s.pending.erase(s.pending.begin());
          --pending_total_;
        }
      }
      drain(s, ready);
    }
  }

  std::size_t pending() const noexcept { return pending_total_; }

 private:
  struct stream {
    stream_position position;
    std::deque<numbered_op<S>> log;            // last log_per_origin delivered
    std::map<std::uint64_t, numbered_op<S>> pending;  // seq -> op past a gap
  };

  bool expired(const numbered_op<S>& op) const noexcept {
    const auto max_age = static_cast<std::uint64_t>(limits_.max_age.count());
    return now_us_ > max_age && op.born_us < now_us_ - max_age;
  }

  const numbered_op<S>& remember(stream& s, numbered_op<S> op) {
    s.log.push_back(std::move(op));
    if (s.log.size() > limits_.log_per_origin) s.log.pop_front();
    return s.log.back();
  }

  void drain(stream& s, std::vector<numbered_op<S>>& ready) {
    while (!s.pending.empty() && s.pending.begin()->first == s.position.seq + 1) {
      auto node = s.pending.extract(s.pending.begin());
      --pending_total_;
      s.position.seq = node.key();
      ready.push_back(remember(s, std::move(node.mapped())));
    }
  }

  op_log_limits limits_;
  std::map<replica_id, stream> streams_;
  std::size_t pending_total_ = 0;
  std::uint64_t now_us_ = 0;
};

}  // namespace lattice::transport
