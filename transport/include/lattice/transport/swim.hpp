// lattice/transport/swim.hpp: failure detection by probing, SWIM (Das,
// Gupta, Motivala 2002) with Lifeguard's refinements (Dadgar, Phillips,
// Currey 2017). Sans-IO: the caller delivers messages and the local
// monotonic time, and sends what the detector returns.
//
// Why: heartbeat gossip sends the whole member table in every message, so
// quiet traffic per replica grows with N (85 KB/s per daemon at 50, ADR
// 0014). Here each replica sends O(1) messages per period whatever N is:
//
//   - Every period T it probes one member, round-robin over a shuffled
//     list: ping; no ack within the probe timeout, ask k others to ping it
//     (ping_req); no ack by the end of the period, the member is *suspect*.
//   - A suspicion lasts a timeout that shrinks from max to min as other
//     members independently suspect the same incarnation (Lifeguard's
//     dynamic suspicion). Then we ping the suspect a few times more, with
//     the suspicion attached, the last time through k others too; no ack a
//     probe timeout after the last call, it is *dead*, and any ack starts
//     the suspicion over. (Not in SWIM or memberlist: gossip tells a
//     refutation to all but about e^-(retransmits) of the members, and at
//     5 % loss the simulator found those misses turning into false deaths;
//     a live suspect answers a call, and with its new incarnation. Cost:
//     two probe timeouts more to judge a real death, with three calls,
//     which lets the suspicion timeout itself be short.) The members
//     whose own probe went unanswered (the accusers) judge; a member that
//     was only told of the suspicion (a bystander) waits bystander_wait
//     times longer, so the accusers' verdict, or the suspect's refutation,
//     normally reaches it first; a failed probe of its own makes it an
//     accuser. (Every holder judging alone made thousands of judges of
//     each suspicion at 10,000 members, and the few a refutation missed
//     made every false death under stalls, ADR 0025.)
//   - A member that learns it is suspected refutes with a higher
//     incarnation. The suspecter tells the suspect at once, and every
//     probe of a member we suspect carries the suspicion (the buddy rule);
//     the refutation goes straight back to the accuser as well as out by
//     gossip, so a live member is cleared well inside the timeout.
//   - Local health (LHM, 0..max_local_health): raised when our own probe
//     fails and not one indirect prober nacked (the fault is likely ours;
//     one nack shows our network works, and the silent helpers are likely
//     down with the target), and when we must refute; lowered by a probe that succeeds. Probe
//     interval and timeout are multiplied by LHM + 1, so a replica that
//     misses its own deadlines (a stalled process, a saturated core) slows
//     its judgements instead of declaring others dead.
//   - Push-pull every push_pull_interval (scaled with N) with one random
//     member, for what gossip missed and to find members on the other
//     side of a healed partition. Tables are compared by digest (ADR
//     0018): a root hash first, which ends the exchange when the tables
//     agree (the quiet case); otherwise one hash per bucket of members,
//     and only the buckets that differ are sent, both ways.
//   - Membership updates ride piggy-backed on every message to a member
//     we hold alive, least-sent first, and on gossip rounds to a few
//     random members while any are pending; each is sent about
//     retransmit_mult * ceil(log10(N + 1)) times, and at most
//     max_queued_updates wait (past that the most told go first).
//
// States of one member are ordered by (incarnation, alive < suspect < dead
// < left), and an update is taken when it is greater than what is held: a
// join, so updates arriving in any order, duplicated or lost, converge.
//
//   swim::detector d(self, {}, seed, now);
//   d.add_member(peer, incarnation, now);
//   for (auto& out : d.tick(now)) send(out.to, out.message);     // often
//   for (auto& out : d.on_message(from, m, now)) send(out.to, out.message);
//   if (d.state_of(peer) == swim::member_state::dead) ...
//
// The protocol core runs it when options.liveness.source is probes
// (protocol.hpp, ADR 0014 "Wired in"); tests/transport/swim_test.cpp and
// bench/swim_sim measure it alone.
//
// Thread safety: none; owned by the replica thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <utility>
#include <vector>

#include <boost/container/flat_map.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/vector.hpp>

#include "lattice/crdt/replica_id.hpp"
#include "lattice/transport/detail/checkpoint_fields.hpp"
#include "lattice/transport/detail/told_queue.hpp"
#include "lattice/transport/membership.hpp"

namespace lattice::transport::swim {

using transport::replica_id;
using transport::steady_time;
using duration = std::chrono::steady_clock::duration;

struct options {
  /// T: one probe per period (times LHM + 1).
  std::chrono::milliseconds probe_interval{200};
  /// Wait this long for a direct ack before asking others (times LHM + 1).
  std::chrono::milliseconds probe_timeout{80};
  /// k: members asked to probe indirectly, and the confirmations that
  /// bring a suspicion down to its minimum.
  unsigned indirect_probes = 3;
  /// Suspicion minimum = alpha * log10(max(N, 10)) * T; maximum = beta * min.
  /// Shorter than memberlist's (alpha 4 with T = 1 s): the last calls
  /// below and bystander_wait, not the timeout, protect a live suspect
  /// whose refutation gossip missed us. Chosen with bench/swim_sim
  /// (README): kills seen everywhere in 0.80 s median at N = 10, 1.25 s at
  /// 1,000 and 1.57 s at 10,000, and no false death in 60 simulated hours
  /// at N = 40, 5 % loss with 200 ms stalls.
  double suspicion_alpha = 0.5;
  double suspicion_beta = 2.0;
  /// A member that holds a suspicion only because it was told (a
  /// bystander: no probe of its own went unanswered) waits this many times
  /// the suspicion timeout before its own last calls. The accusers judge;
  /// their verdict normally reaches the bystanders first, and a
  /// refutation has that much longer to. (At 1, as in SWIM and memberlist
  /// and here before, every one of N members that heard of a stalled
  /// member's suspicion judged it alone, and the few that the refutation
  /// missed under 100 suspicions a second made every false death the
  /// simulator found: lattice_swim_sim --nodes 2000 --loss 5
  /// --stall-percent 5, ADR 0025.)
  double bystander_wait = 2.0;
  unsigned max_local_health = 8;
  /// Each update is sent retransmit_mult * ceil(log10(N + 1)) times by
  /// every member that learns it; a member misses it with probability
  /// about e^-(that many). memberlist uses 4; 5 made the simulator's
  /// hour at 5 % loss free of false deaths (bench/swim_sim).
  unsigned retransmit_mult = 5;
  /// At most this many updates ride one message (25 bytes each; 16 keep
  /// a message near 450 bytes, well inside a datagram). Only a long queue
  /// fills them: when 100 members a second are suspected and refute (1 %
  /// of 10,000 stalling), 8 left refutations short of some replicas
  /// (lattice_swim_sim --nodes 2000 --loss 5 --stall-percent 5, seeds
  /// 7-11: 5 false deaths with 8, none with 16; ADR 0025).
  std::size_t max_piggyback = 16;
  /// At most this many updates wait to be told (0: no bound); past it the
  /// oldest of the most told is dropped, the word most likely heard
  /// everywhere already (Serf prunes its queues the same way). A quiet
  /// or churning cluster queues a few dozen; under 100 suspicions a
  /// second the queue otherwise grows to one update per member, told
  /// least first, so every message carries words heard everywhere long
  /// ago (at 2,000 members with 5 % stalling, 1,963 queued per member
  /// after two minutes; a 10,000-member simulation held 15 GB). ADR 0025.
  std::size_t max_queued_updates = 256;
  /// While updates wait to be told, every gossip_interval they also go to
  /// gossip_fanout random members as `news` (memberlist's gossip): they
  /// spread in about log_fanout(N) intervals instead of waiting for probe
  /// traffic. A quiet cluster sends none of these.
  std::chrono::milliseconds gossip_interval{50};
  unsigned gossip_fanout = 3;
  /// When a suspicion times out, the suspect is asked this many times
  /// more (spread over a probe interval, then a probe timeout for the
  /// answer) before it is judged dead.
  unsigned last_calls = 3;
  /// Push-pull: about every interval (times ceil(log2(N / 32)) + 1 above
  /// 32 members, as memberlist scales it; each wait drawn from half to
  /// one and a half of that, so replicas started together spread out)
  /// compare tables with one random member, a dead one one time in four:
  /// the safety net for updates gossip missed, and how the two sides of a
  /// healed partition find each other again (nobody probes a dead member).
  /// Tables that agree cost one small message; otherwise the buckets that
  /// differ are sent both ways (about 25 bytes per member in them, plus
  /// 4 bytes per bucket of about 16 members).
  std::chrono::milliseconds push_pull_interval{60'000};
  /// Every interval, ping one member held dead (not left), its death
  /// attached: a live one refutes in its ack, so the two sides of a healed
  /// partition find each other within seconds rather than at the next
  /// push-pull with a dead member (minutes). About 100 bytes a second
  /// while anyone is dead, whatever N is. Zero: never.
  std::chrono::milliseconds dead_call_interval{1'000};
};

// The states are membership's (alive < suspect < dead < left, one byte on
// the wire), whose verdicts this detector drives (membership::judge).
using transport::member_state;
using transport::to_string;

/// What one replica says of one member. Greater (incarnation, state) wins.
struct update {
  replica_id member = 0;
  std::uint64_t incarnation = 0;
  member_state state = member_state::alive;
  /// Suspect: who suspects it. Distinct accusers of one incarnation are
  /// the independent confirmations that shorten the suspicion; relays of
  /// one accusation are not.
  replica_id by = 0;

  friend bool operator==(const update&, const update&) = default;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(member, incarnation, state, by);
  }
};

enum class message_kind : std::uint8_t {
  ping = 0,      // are you there? (seq)
  ack = 1,       // yes (seq of the ping it answers)
  ping_req = 2,  // please ping `target` for me (seq)
  nack = 3,      // I asked `target` for you and got no answer (seq)
  news = 4,      // updates only, no answer: a suspicion told to its suspect,
                 // a refutation told to its accuser
  // Push-pull as replicas before ADR 0018 ran it: whole tables. Still
  // answered (a rolling upgrade mixes versions); no longer sent.
  sync = 5,        // my whole table (answered with sync_reply)
  sync_reply = 6,  // my whole table in return
  // Push-pull by digest (ADR 0018). A -> B table_root; B answers only if
  // the roots differ, with table_buckets; A sends its entries in the
  // buckets that differ (table_diff) and B answers with its own
  // (table_diff_reply). Both then hold the join of the two tables.
  table_root = 7,        // root: the hash of my whole table
  table_buckets = 8,     // buckets, hashes: one hash per bucket of mine
  table_diff = 9,        // buckets, differ, updates: my entries there
  table_diff_reply = 10, // buckets, differ, updates: mine in return
  // Lifeguard's (memberlist's) fallback: a ping over a stream (TCP), sent
  // with the indirect probes when a datagram ping's ack is late, in case
  // datagrams are what fails (a firewall that drops UDP, a congested
  // link). Answered with an ack over a stream. Older replicas ignore it.
  stream_ping = 11,
};

/// The highest kind a decoder accepts; any other is malformed.
inline constexpr message_kind last_message_kind = message_kind::stream_ping;

/// Whether messages of this kind are push-pull (tables or their digests).
constexpr bool is_push_pull(message_kind kind) noexcept {
  return kind >= message_kind::sync && kind <= message_kind::table_diff_reply;
}

/// Most buckets a table is cut into on the wire; decoders reject more.
inline constexpr std::uint32_t max_table_buckets = 1u << 16;

/// Which bucket of `buckets` a member's entries fall in (both sides of a
/// push-pull must agree, so this is part of the wire format: splitmix64's
/// finaliser of the id, modulo the count). REQUIRES: buckets > 0.
std::uint32_t bucket_of(replica_id member, std::uint32_t buckets) noexcept;

/// How many buckets a table of `entries` members is cut into: about 16
/// members a bucket, a power of two, at most max_table_buckets.
std::uint32_t buckets_for(std::size_t entries) noexcept;

/// The table part of a push-pull message (kinds table_root to
/// table_diff_reply only: the other kinds do not carry it on the wire).
struct table_digest {
  std::uint64_t root = 0;             // table_root: hash of the whole table
  std::uint32_t buckets = 0;          // the count the hashes and indices refer to
  std::vector<std::uint32_t> hashes;  // table_buckets: one per bucket (low 32 bits)
  std::vector<std::uint32_t> differ;  // table_diff(_reply): ascending bucket indices

  friend bool operator==(const table_digest&, const table_digest&) = default;
};

/// Whether messages of this kind carry a table_digest on the wire.
constexpr bool carries_table(message_kind kind) noexcept {
  return kind >= message_kind::table_root && kind <= message_kind::table_diff_reply;
}

struct message {
  message() = default;
  message(message_kind k, std::uint32_t s, replica_id t, std::vector<update> u = {}, table_digest d = {})
      : kind(k), seq(s), target(t), updates(std::move(u)), table(std::move(d)) {}

  message_kind kind = message_kind::ping;
  std::uint32_t seq = 0;
  replica_id target = 0;  // ping_req: whom to probe; nack: whom we probed
  std::vector<update> updates;
  table_digest table;  // push-pull by digest only

  template <class Archive>
  void serialize(Archive& archive) {
    archive(kind);
    if constexpr (Archive::is_loading::value) check_kind();
    archive(seq, target, updates);
    // Only the push-pull kinds pay for the table fields: a ping stays as
    // it was before they existed.
    if (!carries_table(kind)) return;
    archive(table.root, table.buckets, table.hashes, table.differ);
    if constexpr (Archive::is_loading::value) check_table();
  }

 private:
  // A decoded kind we do not know, or a table part that could not have
  // been sent, is malformed.
  void check_kind() const;
  void check_table() const;
};

struct outgoing {
  replica_id to = 0;
  message body;
  /// Send it over a connection (TCP), not as a datagram: a stream_ping
  /// and its ack.
  bool stream = false;
};

/// Counters for tests and metrics.
struct detector_stats {
  std::uint64_t probes = 0;
  std::uint64_t indirect_probes = 0;
  std::uint64_t probes_failed = 0;
  std::uint64_t suspicions = 0;
  std::uint64_t deaths = 0;
  std::uint64_t refutations = 0;
  std::uint64_t messages_sent = 0;
  std::uint64_t updates_sent = 0;
  /// Push-pulls we started, and those whose roots agreed (one message).
  std::uint64_t push_pulls = 0;
  std::uint64_t push_pulls_in_sync = 0;
  /// Probes that sent the stream fallback ping, and those acked only
  /// through it: a member that answers over TCP but not by datagram. Many
  /// of these mean datagrams are blocked or lost on the way (check the
  /// firewall for UDP on the gossip port, or turn datagrams off).
  std::uint64_t stream_probes = 0;
  std::uint64_t stream_acks = 0;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(probes, indirect_probes, probes_failed, suspicions, deaths, refutations, messages_sent, updates_sent,
            push_pulls, push_pulls_in_sync, stream_probes, stream_acks);
  }
};

class detector {
 public:
  detector(replica_id self, options opts, std::uint64_t seed, steady_time now,
           std::uint64_t incarnation = 1);

  /// A member learned out of band (a join's member table, a full sync):
  /// in `state` (alive, or left for a record that says so) at
  /// `incarnation` unless something greater is held. Not gossiped on:
  /// whoever told us told the others too.
  void add_member(replica_id id, std::uint64_t incarnation, steady_time now,
                  member_state state = member_state::alive);
  /// What else a push-pull compares for each member (the owner's record of
  /// it: address, incarnation, leave), as a stable hash; 0 for none. The
  /// digests cover it, so tables whose records differ are exchanged even
  /// where the detector's entries agree, and the owner sends its records
  /// of the buckets that differ along with the entries (protocol.hpp).
  void set_entry_hash(std::function<std::uint64_t(replica_id member)> hash) { entry_hash_ = std::move(hash); }
  /// Called with every change of another member's state (not ours).
  void on_change(std::function<void(replica_id member, member_state state)> listener) {
    listener_ = std::move(listener);
  }
  /// Announce that we leave: our `left` update is spread from now on.
  void leave();

  /// Runs what is due at `now`: the next probe, indirect probes, suspicions
  /// that end, expired forwarded probes. Call it at least every few ms
  /// (next_deadline() says when it is next needed).
  std::vector<outgoing> tick(steady_time now);
  std::vector<outgoing> on_message(replica_id from, const message& m, steady_time now);
  /// Starts a push-pull with `peer` now (tick() starts one with a random
  /// member every push_pull_interval): our table's root digest.
  std::vector<outgoing> push_pull_with(replica_id peer);
  steady_time next_deadline() const;

  member_state state_of(replica_id id) const;
  std::uint64_t incarnation_of(replica_id id) const;
  std::uint64_t incarnation() const noexcept { return incarnation_; }
  unsigned local_health() const noexcept { return local_health_; }
  /// Members other than us, in any state.
  std::size_t size() const noexcept { return members_.size(); }
  /// Updates waiting to be told (each until told retransmit_mult *
  /// ceil(log10(N + 1)) times, or superseded). Short in a quiet cluster;
  /// it grows when news arrives faster than messages carry it.
  std::size_t queued_updates() const noexcept { return queue_.size(); }
  const detector_stats& stats() const noexcept { return stats_; }
  const options& opts() const noexcept { return options_; }

  /// The suspicion timeout with `confirmations` independent confirmations,
  /// at the current cluster size (Lifeguard: from max down to min).
  duration suspicion_timeout(unsigned confirmations) const;

  /// Everything the detector holds but its id, options and listeners, so
  /// a simulation can be checkpointed and resumed (bench/swim_sim.cpp
  /// --checkpoint): a detector made with the same id and options and then
  /// loaded goes on exactly as the saved one would have. Same build both
  /// ways; not a wire or storage format.
  template <class Archive>
  void serialize(Archive& archive) {
    detail::checkpoint_engine(archive, rng_);
    archive(incarnation_, left_, local_health_);
    detail::checkpoint_flat_map(archive, members_);
    archive(suspects_, live_, queue_, order_, next_in_order_, next_probe_at_, next_gossip_at_, expected_tick_,
            next_push_pull_at_, next_dead_call_at_);
    // As cereal's optional writes it (a flag set when empty, then the
    // value), but not through it: it default-constructs in place, and
    // clang holds `probe` (nested, default member initializers) for not
    // default-constructible once std::optional<probe> is declared below.
    bool no_probe = !probe_.has_value();
    archive(no_probe);
    if constexpr (Archive::is_loading::value) {
      if (no_probe) probe_.reset();
      else probe_ = probe{};
    }
    if (!no_probe) archive(*probe_);
    archive(forwarded_, calls_, direct_, next_seq_, stats_);
  }

 private:
  // 16 bytes: a simulated cluster of 10,000 holds 10^8 of these.
  struct member {
    std::uint64_t incarnation = 0;
    member_state state = member_state::alive;

    template <class Archive>
    void serialize(Archive& archive) {
      archive(incarnation, state);
    }
  };
  // A member we hold as suspect: since when, and its distinct accusers.
  struct suspicion {
    steady_time since{};
    std::vector<replica_id> accusers;
    // The timeout passed: we ask the suspect `last_calls` times, and it
    // is dead if no refutation has come a probe timeout after the last.
    std::optional<steady_time> last_call;
    unsigned calls = 0;
    // One of our own probes of it went unanswered: we are an accuser, not
    // a bystander (options::bystander_wait).
    bool accused = false;

    template <class Archive>
    void serialize(Archive& archive) {
      archive(since, accusers, last_call, calls, accused);
    }
  };
  // Our probe in flight.
  struct probe {
    replica_id target = 0;
    std::uint32_t seq = 0;
    steady_time indirect_at{};  // ask others if no ack by then
    steady_time ends_at{};      // suspect if no ack by then
    bool acked = false;
    bool indirect_sent = false;
    std::optional<std::uint32_t> stream_seq;  // the fallback ping's, once sent
    unsigned nacks_expected = 0;
    unsigned nacks = 0;
    bool late = false;  // we ran far behind a deadline of ours meanwhile

    template <class Archive>
    void serialize(Archive& archive) {
      archive(target, seq, indirect_at, ends_at, acked, indirect_sent, stream_seq, nacks_expected, nacks, late);
    }
  };
  // A ping we send for someone else's ping_req.
  struct forwarded {
    replica_id requester = 0;
    std::uint32_t requester_seq = 0;
    replica_id target = 0;
    // The nack goes at one unscaled probe timeout, whatever our local
    // health: the requester waits for it only until its probe ends, and
    // a nack that comes late reads as our silence, which raises its local
    // health (a helper slowed by its own health slowed its requesters in
    // turn, all the way to max_local_health). A late ack is still passed
    // on until expires_at.
    steady_time nack_at{};
    steady_time expires_at{};
    bool nacked = false;

    template <class Archive>
    void serialize(Archive& archive) {
      archive(requester, requester_seq, target, nack_at, expires_at, nacked);
    }
  };

  void start_probe(steady_time now, std::vector<outgoing>& out);
  void end_probe(steady_time now);
  // `from`: who told us (0: ourselves or out of band).
  void apply(const update& u, steady_time now, bool gossip = true, replica_id from = 0);
  void set_state(replica_id id, member& m, std::uint64_t incarnation, member_state state);
  void suspect(replica_id id, std::uint64_t incarnation, steady_time now);
  // When our suspicion's timeout runs out and its last calls begin.
  steady_time calls_begin(const suspicion& s) const;
  void refute(std::uint64_t above);
  void enqueue(const update& u);
  // A message with piggy-backed updates; `first` (if any) rides first.
  // `to_alive`: for a member we hold alive; to one we hold suspect or dead
  // only `first` rides (see make()).
  message make(message_kind kind, std::uint32_t seq, replica_id target, const update* first = nullptr,
               bool to_alive = true);
  std::optional<update> news_for(replica_id to) const;
  void send(replica_id to, message m, std::vector<outgoing>& out, bool stream = false);
  void flush_direct(std::vector<outgoing>& out);
  // On return from tick() or on_message(): when the next tick is due, for
  // telling later whether we ran late (expected_tick_).
  void expect_tick(steady_time now);
  message whole_table(message_kind kind) const;
  // Our entry for `id` (ourselves included) as a table carries it.
  update entry(replica_id id) const;
  std::uint64_t entry_digest(const update& u) const;
  std::uint64_t root_digest() const;
  std::vector<std::uint32_t> bucket_digests(std::uint32_t buckets) const;
  // Our entries in the buckets `differ` (ascending) of `buckets`.
  message table_part(message_kind kind, std::uint32_t buckets, std::vector<std::uint32_t> differ) const;
  void push_pull(steady_time now, std::vector<outgoing>& out);
  void call_the_dead(steady_time now, std::vector<outgoing>& out);
  std::optional<replica_id> random_dead();
  std::optional<replica_id> next_target();
  std::vector<replica_id> random_alive(std::size_t count, replica_id except1, replica_id except2);
  unsigned retransmit_limit() const;
  void health(int delta);

  replica_id self_;
  options options_;
  std::mt19937_64 rng_;
  std::uint64_t incarnation_;
  bool left_ = false;
  unsigned local_health_ = 0;
  boost::container::flat_map<replica_id, member> members_;
  std::map<replica_id, suspicion> suspects_;
  std::size_t live_ = 0;  // members neither dead nor left
  detail::told_queue<update> queue_;  // updates to piggy-back, least told first
  std::vector<replica_id> order_;  // the probe round, shuffled
  std::size_t next_in_order_ = 0;
  steady_time next_probe_at_;
  steady_time next_gossip_at_;
  steady_time expected_tick_{};  // next_deadline() when we last returned
  steady_time next_push_pull_at_;
  steady_time next_dead_call_at_{};
  std::optional<probe> probe_;
  std::map<std::uint32_t, forwarded> forwarded_;  // by the seq we sent
  std::map<std::uint32_t, replica_id> calls_;     // last calls' pings, by seq
  // Told directly rather than left to spread: (to, update). Sent by the
  // next tick or on_message.
  std::vector<std::pair<replica_id, update>> direct_;
  // Starts where the seed says, not at 1: an ack recorded in an earlier
  // life and sent again (datagrams can be replayed) then carries a
  // number this life is unlikely to be waiting for.
  std::uint32_t next_seq_ = 1;
  detector_stats stats_;
  std::function<void(replica_id, member_state)> listener_;
  std::function<std::uint64_t(replica_id)> entry_hash_;
};

}  // namespace lattice::transport::swim
