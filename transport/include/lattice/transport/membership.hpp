// lattice/transport/membership.hpp: who is in the cluster, and who is
// alive. Sans-IO: the caller passes the local monotonic time.
//
// Two halves, deliberately separate:
//
//  - The member table is gossiped. Each replica owns its own record
//    (address, incarnation, heartbeat, left) and is the only one that
//    writes it. Records of one member are ordered by (incarnation, left,
//    heartbeat, address), and the table merges by keeping the greater
//    record per member: a join-semilattice, so tables gossiped in any order,
//    duplicated or lost, converge.
//
//  - Liveness is local, judged one of two ways (liveness_options::source):
//    * heartbeats: each replica notes, on its own monotonic clock, when it
//      last saw a peer's record grow (records carry a heartbeat counter and
//      are gossiped whole every heartbeat), and judges: alive until
//      suspect_after without progress, then suspect, then dead after
//      dead_after. Simple, but every message carries the whole table.
//    * probes: a SWIM detector (swim.hpp) run by the protocol core judges,
//      and tells this table its verdicts through judge(); records travel
//      only when they change. Progress is then a record that grew or a
//      message heard from the member itself (heard()).
//    Clocks of different machines are never compared. A member whose
//    record says `left` is gone at once, without waiting for a timeout.
//
// Incarnations. A replica starts with a new incarnation greater than any it
// had before (by default its start time in µs since the epoch, so restarts
// need no persistence), with heartbeat 0; its new record beats all records
// of its previous life. If gossip ever shows a record for itself that is
// greater than its own (an old "left" of the same incarnation, a record
// from a clone with its id), it moves to a greater incarnation: refutation,
// as in SWIM (Das, Gupta, Motivala 2002).
//
//   membership m(self_record, liveness_options{});
//   m.beat();                                  // every heartbeat interval
//   gossip(m.table());                         // to a few peers
//   m.merge(received_table, steady_now);       // on receipt
//   if (m.state_of(peer, steady_now) == member_state::dead) ...
//
// Thread safety: not thread-safe, const members included (reachable_peers
// keeps its answer); owned by the replica thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <boost/container/flat_map.hpp>
#include <boost/container/flat_set.hpp>
#include <cereal/types/string.hpp>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/replica_id.hpp"

namespace lattice::transport {

using crdt::replica_id;
using steady_time = std::chrono::steady_clock::time_point;

/// One member's gossiped record.
struct member_record {
  std::string address;  // "host:port" of its gossip listener
  std::uint64_t incarnation = 0;
  std::uint64_t heartbeat = 0;
  bool left = false;  // announced a graceful leave in this incarnation
  /// The member's stamp floor at its last heartbeat (µs since the epoch):
  /// it issues no stamp with an earlier physical time from then on. The
  /// least of these over the live members is the point every one of them
  /// has passed, below which compaction may collect (registry_core). 0: not
  /// reported yet.
  std::uint64_t clock_us = 0;

  /// The merge order: a later incarnation beats everything of an earlier
  /// one; within one, a leave is final; then the higher heartbeat; the
  /// address and clock only break ties between records that should not
  /// exist.
  friend auto operator<=>(const member_record& a, const member_record& b) {
    return std::tie(a.incarnation, a.left, a.heartbeat, a.address, a.clock_us) <=>
           std::tie(b.incarnation, b.left, b.heartbeat, b.address, b.clock_us);
  }
  friend bool operator==(const member_record&, const member_record&) = default;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(address, incarnation, heartbeat, left, clock_us);
  }
};

/// A stable hash of what identifies a record's life: address, incarnation
/// and leave, not the heartbeat or clock (which move every refresh and
/// reach peers by refreshes). Push-pull digests cover it (swim.hpp).
std::uint64_t identity_hash(const member_record& record);

/// The gossiped table: member id -> record, merged by max per member.
class member_table {
 public:
  /// Keeps the greater record per member; returns the ids whose record
  /// grew, ascending.
  /// `new_life`, if given, is set when a record was new here or began a
  /// new life (incarnation, leave or address), not just a later heartbeat
  /// or stamp floor.
  std::vector<replica_id> merge(const member_table& other, bool* new_life = nullptr);
  /// Sets `id`'s record if it is greater; returns whether it was.
  bool offer(replica_id id, const member_record& record);
  const member_record* find(replica_id id) const;
  /// Sorted by id, contiguous: merges and peer picks walk it on every
  /// message, and at 1,000 members a tree's pointer chasing dominated.
  using map_type = boost::container::flat_map<replica_id, member_record>;
  const map_type& records() const noexcept { return records_; }
  std::size_t size() const noexcept { return records_.size(); }

  friend bool operator==(const member_table&, const member_table&) = default;

  template <class Archive>
  void save(Archive& archive) const {
    crdt::save_ordered_map(archive, records_);
  }
  template <class Archive>
  void load(Archive& archive) {
    crdt::load_ordered_map(archive, records_);
  }

 private:
  map_type records_;
};

// Ordered: SWIM updates (swim.hpp) merge by (incarnation, state).
enum class member_state : std::uint8_t { alive, suspect, dead, left };
const char* to_string(member_state state) noexcept;

/// Where liveness verdicts come from (see the file comment).
enum class liveness_source : std::uint8_t {
  /// Whole member tables gossiped every heartbeat; silence means death.
  /// Quiet traffic per replica grows with the cluster (about 40 bytes per
  /// member per message).
  heartbeats,
  /// SWIM probes with Lifeguard (swim.hpp): a few small messages per
  /// replica per period whatever the cluster's size.
  probes,
};
const char* to_string(liveness_source source) noexcept;

struct liveness_options {
  /// Without progress for this long, a member is suspect (still listed,
  /// flagged). Default: 3.5 heartbeats of 100 ms.
  std::chrono::milliseconds suspect_after{350};
  /// Without progress for this long, a member is dead: its ephemeral
  /// registrations vanish from lookups. REQUIRES: >= suspect_after.
  std::chrono::milliseconds dead_after{700};
  /// Heartbeats use the two timeouts above; probes ignore them.
  liveness_source source = liveness_source::heartbeats;
};

/// This replica's view of the cluster.
class membership {
 public:
  /// REQUIRES: self.incarnation is greater than in any previous life.
  membership(replica_id self, member_record record, liveness_options options, steady_time now);

  /// Bumps our heartbeat by `beats` (call every heartbeat interval with 1,
  /// or less often with the heartbeat intervals that passed, so the count
  /// stays our uptime in heartbeat intervals) and reports our stamp floor
  /// `clock_us` (never moved back: an earlier report stands).
  void beat(std::uint64_t clock_us = 0, std::uint64_t beats = 1);
  /// Announces a graceful leave; peers drop us as soon as they merge it.
  void leave();

  /// Probes: the detector's verdict on `id` (not ourselves), which
  /// state_of() returns from now on. Ignored with heartbeats. Returns true
  /// when it brings back a member judged dead: until the member's own
  /// message brings its current record (record_from), state_of() still
  /// says dead, because the record we hold is from before it died and
  /// readers such as the registry's grace rule need the current one (its
  /// uptime). The caller should ask the member for it.
  bool judge(replica_id id, member_state state);
  /// Probes: a message from `id` itself carried its own record.
  void record_from(replica_id id);
  /// Probes: members back from the dead whose current record has not come.
  const boost::container::flat_set<replica_id>& awaiting_records() const noexcept { return awaiting_record_; }
  /// Probes: a message came from `id` itself at `now`: progress. Ignored
  /// with heartbeats (only a record's growth counts there).
  void heard(replica_id id, steady_time now);

  /// Merges a gossiped table received at local time `now`. Records that grew
  /// count as progress for their member. A record for ourselves that beats
  /// ours makes us refute it with a greater incarnation. Returns whether our
  /// table changed.
  /// `grown`, if given, receives the ids whose record grew, ascending.
  bool merge(const member_table& remote, steady_time now, std::vector<replica_id>* grown = nullptr);

  /// How we judge `id` at `now`; dead for unknown ids. Ourselves: alive
  /// (or left after leave()). Probes: the last judge() verdict (alive for
  /// a member not judged yet).
  member_state state_of(replica_id id, steady_time now) const;
  /// When `id`'s record last grew here (local monotonic time); nullopt if
  /// it never did. Ourselves: our start.
  std::optional<steady_time> last_progress(replica_id id) const;
  /// The latest last_progress() of any peer (not ourselves): when we last
  /// heard from anyone. O(1), where a pass over the table is O(N).
  std::optional<steady_time> last_peer_progress() const noexcept { return last_peer_progress_; }
  /// Peers (not ourselves) judged alive or suspect at `now`, ascending.
  /// O(N) with heartbeats; with probes kept between calls (only what moves
  /// generation() changes it): the protocol core asks for every message it
  /// sends, and at 10,000 members the pass over the table per call was
  /// three quarters of a simulation's time. The reference is valid until
  /// the next call of a non-const member.
  const std::vector<replica_id>& reachable_peers(steady_time now) const;
  /// Moves whenever a state_of() or reachable_peers() answer may have
  /// changed other than by the passage of time: a verdict, a new member or
  /// a new life of one (incarnation, leave, address), a member back. With
  /// probes nothing else changes them, so a caller that derives something
  /// from every member's state (O(N)) can redo it only when this moved;
  /// with heartbeats time alone does, and every record that grows moves
  /// it. (With probes a record refresh, heartbeat and floor only, does not:
  /// each refresh received made registry_core pass over every member, where
  /// two of three stack samples of a 5,000-replica simulation stood; at
  /// 1,000, a quiet run of 120 s took 35.6 s of wall time instead of 39.7.)
  std::uint64_t generation() const noexcept { return generation_; }

  const member_table& table() const noexcept { return table_; }
  const member_record& self_record() const { return *table_.find(self_); }
  replica_id self() const noexcept { return self_; }

 private:
  replica_id self_;
  liveness_options options_;
  member_table table_;
  // What this replica alone knows of a member, never gossiped: one map,
  // not one per field, because at 10,000 members in each of 10,000
  // simulated replicas every byte per member is 100 MB.
  struct local_view {
    steady_time last_progress{};  // local clock; meaningful if progressed
    bool progressed = false;
    member_state verdict = member_state::alive;  // probes: the detector's (alive until judged)
  };
  boost::container::flat_map<replica_id, local_view> local_;
  boost::container::flat_set<replica_id> awaiting_record_;  // probes: back from dead
  std::optional<steady_time> last_peer_progress_;
  std::uint64_t generation_ = 0;
  // reachable_peers()'s answer, and the generation it is of (probes).
  mutable std::vector<replica_id> reachable_;
  mutable std::optional<std::uint64_t> reachable_generation_;

  local_view& view_of(replica_id id);
  void progressed(replica_id id, steady_time now);
  void progressed_all(const std::vector<replica_id>& ids, steady_time now);
};

}  // namespace lattice::transport
