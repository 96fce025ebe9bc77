// lattice/transport/protocol_options.hpp: what configures a protocol core
// (dissemination mode, intervals, fanout, limits), what it counts, and the
// interface a driver holds (protocol_core). Split from protocol.hpp so a
// driver, a daemon's option parser or a metrics exporter need not see the
// protocol's template (issue #14: protocol.hpp split along its jobs).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "lattice/crdt/hlc.hpp"
#include "lattice/transport/anti_entropy.hpp"
#include "lattice/transport/membership.hpp"
#include "lattice/transport/messages.hpp"
#include "lattice/transport/op_log.hpp"
#include "lattice/transport/swim.hpp"

namespace lattice::transport {

/// How changes travel; chosen per cluster (every replica must agree).
enum class dissemination {
  /// Push each change at once to `origin_fanout` peers, who forward news
  /// once to `fanout`;
  /// periodic push-pull anti-entropy repairs the rest. Cheap and fast.
  delta,
  /// Every heartbeat round, send the whole state to `fanout` peers (pure
  /// CvRDT). Simple and robust, but bytes grow with the state: for small
  /// states or debugging.
  state,
  /// Numbered ops, delivered exactly once in origin order, gaps repaired
  /// from peers' op logs (op_log.hpp). For states whose deltas are
  /// expensive to compare but cheap to replay.
  op,
};

inline const char* to_string(dissemination mode) noexcept {
  switch (mode) {
    case dissemination::delta: return "delta";
    case dissemination::state: return "state";
    case dissemination::op: return "op";
  }
  return "?";
}

struct protocol_options {
  /// This replica's id; unique in the cluster.
  replica_id self = 0;
  /// Where peers reach this replica ("host:port").
  std::string address;
  /// Greater than in any previous run of this replica (default: start time
  /// in µs since the epoch, see membership.hpp).
  std::uint64_t incarnation = 0;
  /// Addresses to contact while no peer is known. May include our own.
  std::vector<std::string> seeds;
  dissemination mode = dissemination::delta;
  /// Peers each forwarded rumour and each member-table gossip goes to.
  std::size_t fanout = 3;
  /// Peers a local change is pushed to at once by the replica that made
  /// it (every peer in a cluster of origin_fanout + 1 or fewer); each
  /// replica that learns it from a rumour forwards it to `fanout`. Only
  /// the origin pays for the wider push, so it costs nothing measurable
  /// in a large cluster (at 1,000 replicas under churn, 0.2 % more bytes)
  /// and saves a small one the repair of a rumour that missed a replica:
  /// at 10 replicas with 3, the slowest replica of a change was over
  /// 300 ms in 10 of 20 seeds (anti-entropy finding it), with 9 in none
  /// (bench/churn_sim, README).
  std::size_t origin_fanout = 9;
  std::chrono::milliseconds heartbeat_interval{100};
  std::chrono::milliseconds anti_entropy_interval{200};
  /// While our state stays unchanged, after anti_entropy_rounds_after_change
  /// rounds at anti_entropy_interval each round waits twice as long as the
  /// last, up to this; any change of the state (ours or merged) brings the
  /// wait back to anti_entropy_interval (ADR 0019). A quiet replica then
  /// sends a digest every 2 s rather than 5 a second (about 44 bytes/s
  /// framed instead of 440), while the replicas that just took a change
  /// run at full speed and so repair those every rumour of it missed. Not
  /// above anti_entropy_interval: no back-off.
  std::chrono::milliseconds anti_entropy_max_interval{2000};
  unsigned anti_entropy_rounds_after_change = 5;
  /// How members are judged alive (liveness.source): heartbeat tables or
  /// SWIM probes. Every replica of a cluster must agree.
  liveness_options liveness;
  /// Probes: the detector's settings (swim.hpp), the same at every size.
  swim::options probes;
  /// Probes: our member record (stamp floor, uptime) is told to every
  /// reachable member once per refresh cycle, paced over the cycle and as
  /// datagrams (a lost one is made good by the next cycle), and at once
  /// whenever it changes otherwise (a join, a refutation, a leave). A cycle
  /// lasts record_refresh_interval, or longer where telling every member
  /// would cost more than record_refresh_budget bytes per second (message
  /// and frame, MAC included), up to record_refresh_ceiling: so the cost
  /// stays flat as the cluster grows until the ceiling is reached. Peers'
  /// floors therefore lag by up to about two cycles, which only delays
  /// compaction. Our own record's uptime and floor move at least every
  /// record_refresh_interval whatever the cycle's length, so a record
  /// asked of us is never older than that (the registry's grace rule
  /// allows for exactly that much). The registry uses
  /// min(60 s, gc_grace / 8), and gc_grace / 2 for the ceiling.
  std::chrono::milliseconds record_refresh_interval{60'000};
  std::chrono::milliseconds record_refresh_ceiling{60'000};
  std::size_t record_refresh_budget = 384;
  /// `op` mode: bounds of the op log and gap buffer.
  op_log_limits op_limits;
  /// `op` mode: most ops in one repair message.
  std::size_t op_repair_batch = 256;
  /// `op` mode: every this many anti-entropy rounds, a digest range sync
  /// replaces the vector exchange.
  unsigned op_digest_check_every = 10;
  /// Most encoded entry bytes in one anti-entropy push (see
  /// anti_entropy.hpp); keep it well below the peers' frame limit.
  std::size_t max_push_bytes = default_max_push_bytes;
  /// Seeds the peer-selection RNG, so simulated runs replay exactly.
  std::uint64_t random_seed = 1;
  /// µs since the epoch: op ages (op_log.hpp), the send time in every
  /// envelope, peers' clock offsets. The simulator passes virtual time.
  std::function<std::uint64_t()> wall_clock = crdt::system_wall_clock_us;
  /// This replica's stamp floor (µs since the epoch): no stamp it issues
  /// from now on has an earlier physical time. Reported in our member
  /// record at every heartbeat (member_record::clock_us). The registry
  /// passes its HLC; empty: wall_clock.
  std::function<std::uint64_t()> stamp_floor;
  /// While it returns true, a whole state arriving by gossip (`state`
  /// mode) is merged as a range push over all ranges
  /// (range_mergeable::merge_ranges): its absences are read, but our
  /// horizon does not take its horizon, and our tombstones below it become
  /// shadows instead of being collected. The registry holds it while the
  /// grace rule may yet make it forget: the forgetting drops the horizon,
  /// and with it the only record of tombstones of ours a peer's horizon had
  /// collected before the peer saw them. Empty: never.
  std::function<bool()> hold_horizon;
};

struct protocol_stats {
  std::uint64_t messages_sent = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t messages_received = 0;
  std::uint64_t rejected = 0;      // payloads that failed to decode
  std::uint64_t state_changes = 0; // merges that changed the state
  std::uint64_t ops_duplicate = 0; // `op` mode: ops already delivered
  std::uint64_t ops_overflow = 0;  // `op` mode: dropped, gap buffer full
  std::uint64_t ops_expired = 0;   // `op` mode: dropped, older than max_age
  /// Probes: detector messages to a member whose address we do not know.
  std::uint64_t probes_unaddressed = 0;
  /// Per message_type value (index 0 unused).
  std::array<std::uint64_t, 16> sent_by_type{};
  std::array<std::uint64_t, 16> bytes_sent_by_type{};
  std::array<std::uint64_t, 16> received_by_type{};
};

struct outgoing_message {
  std::string to;
  message_type type;
  std::vector<std::byte> payload;
  /// May travel as a datagram: losing it, or its arriving before messages
  /// sent earlier on the connection, is harmless (the detector's pings,
  /// acks and news; not its push-pull, whose table must arrive first). The
  /// driver decides whether it does (driver_options::datagrams).
  bool datagram = false;
};

/// What a driver needs from a protocol core, whatever state it replicates:
/// the Asio driver holds a protocol_core&, so it is compiled once.
class protocol_core {
 public:
  virtual ~protocol_core() = default;
  virtual void on_message(message_type type, std::span<const std::byte> payload,
                          steady_time now) = 0;
  virtual void on_tick(steady_time now) = 0;
  virtual void leave(steady_time now) = 0;
  virtual std::vector<outgoing_message> take_outgoing() = 0;
};

}  // namespace lattice::transport
