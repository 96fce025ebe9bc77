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
//
// Liveness (options.liveness.source). With `heartbeats` the member table
// gossiped every heartbeat is how members are judged alive, as above. With
// `probes` a SWIM detector (swim.hpp) judges, its messages travel as
// message_type::probe (as datagrams, where the driver can), and member
// records (addresses, stamp floors, uptime) travel only when they change:
// a replica tells its own heartbeat and floor (record_refresh, no address)
// to every reachable member once per refresh cycle (paced, as datagrams,
// within a byte budget: see
// protocol_options::record_refresh_interval), and its whole record on a
// join, refutation or leave; a detector push-pull also sends the records
// of the members whose entries differ (ADR 0018); a replica
// that hears of a member it holds no record of asks for it
// (record_request). The heartbeat table gossip then runs only while we
// reach nobody (to the seeds), so quiet traffic does not grow with the
// cluster until the refresh cycle reaches its ceiling.
//
// `op` mode (CmRDT style, op_log.hpp): each local change becomes an op
// numbered per origin and is pushed at once to `origin_fanout` peers, who deliver
// it exactly once in origin order and forward it once. Every anti-entropy
// interval a replica sends one random peer its delivered vector; the peer
// answers with the ops it lacks from a bounded log of recent ops, or, when
// its log no longer reaches back that far, asks for a range sync. Every
// `op_digest_check_every`-th round is a digest range sync instead, so a
// divergence the vectors cannot see (a lost range push) is still repaired.
//
// Bad input: a payload that does not decode is dropped and counted in
// stats().rejected; it never reaches the state. (Frames that fail their
// CRC or MAC never get here: the driver closes that connection.)
//
// Thread safety: not thread-safe; one thread owns a protocol.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <boost/container/flat_map.hpp>

#include "lattice/crdt/hlc.hpp"
#include "lattice/transport/anti_entropy.hpp"
#include "lattice/transport/membership.hpp"
#include "lattice/transport/messages.hpp"
#include "lattice/transport/op_log.hpp"
#include "lattice/transport/peer_selection.hpp"
#include "lattice/transport/protocol_options.hpp"
#include "lattice/transport/swim.hpp"

namespace lattice::transport {

template <reconcilable S>
class protocol final : public protocol_core {
 public:
  protocol(protocol_options options, steady_time now)
      : options_(std::move(options)),
        members_(options_.self, member_record{options_.address, options_.incarnation, 0, false},
                 options_.liveness, now),
        ops_(options_.op_limits),
        rng_(options_.random_seed),
        next_heartbeat_(now),
        next_anti_entropy_(now + options_.anti_entropy_interval),
        last_beat_(now),
        refresh_{now, now + options_.record_refresh_interval, {}, 0} {
    // A seed listed twice (and ourselves) would be asked twice, every
    // heartbeat while we reach nobody: the simulator once listed its one
    // seed N times and so asked it for N tables at each of N joins.
    std::erase(options_.seeds, options_.address);
    std::sort(options_.seeds.begin(), options_.seeds.end());
    options_.seeds.erase(std::unique(options_.seeds.begin(), options_.seeds.end()), options_.seeds.end());
    if (options_.liveness.source == liveness_source::probes) {
      // The detector's incarnations start at the record's (our start time
      // in µs): a restart's first word beats everything said of the last
      // life, refutations add 1 without touching the record.
      detector_.emplace(options_.self, options_.probes, options_.random_seed ^ 0x9e3779b97f4a7c15ULL, now,
                        options_.incarnation);
      detector_->on_change([this](replica_id id, member_state state) {
        if (members_.judge(id, state)) revived_.push_back(id);
      });
      // Push-pull compares our records too, so a record one side lacks
      // (or holds from an older life) is exchanged with the entries.
      detector_->set_entry_hash([this](replica_id id) -> std::uint64_t {
        const auto* record = members_.table().find(id);
        return record == nullptr ? 0 : identity_hash(*record);
      });
    }
  }
  // The detector's listener holds `this`.
  protocol(const protocol&) = delete;
  protocol& operator=(const protocol&) = delete;

  const S& state() const noexcept { return state_; }
  /// Local maintenance that peers must not hear of, such as compacting
  /// tombstones: `f` may change the state in place; nothing is spread and
  /// no listener is called.
  template <class F>
  void maintain(F&& f) {
    f(state_);
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
    listener_ = std::move(listener);
  }

  const membership& members() const noexcept { return members_; }
  /// Takes `table` as the cluster's, as a joiner takes its seed's answer,
  /// except that no member in it is told our record: the caller vouches
  /// that every one of them holds it already. For simulators that start a
  /// cluster formed, so that a benchmark of its steady state at 10,000
  /// replicas does not first run the 10^8 announcements of 10,000 joins
  /// (lattice_churn_sim --formed). A real replica joins through its seeds.
  void adopt_formed_table(const member_table& table, steady_time now) {
    steady_now_ = now;
    std::vector<replica_id> grown;
    members_.merge(table, now, &grown);
    if (detector_) learned(grown, now);
  }
  /// Probes: the failure detector (its stats, local health); null with
  /// heartbeats.
  const swim::detector* detector() const noexcept { return detector_ ? &*detector_ : nullptr; }
  const protocol_stats& stats() const noexcept { return stats_; }
  /// Per peer that sent us a message: its wall clock minus ours, in µs, as
  /// of its latest message (its send time against our receive time, so the
  /// transit delay counts against it: well under a millisecond on a LAN).
  const boost::container::flat_map<replica_id, std::int64_t>& clock_offsets() const noexcept {
    return clock_offsets_;
  }
  /// What a peer last told us of its state's root digest (in a digest sync
  /// request or an op summary), and whether it equalled ours when it came.
  /// Shows convergence: every peer whose latest digest agreed held the same
  /// state as this replica at that moment.
  struct peer_digest {
    std::uint64_t root = 0;
    steady_time seen{};
    bool agreed = false;
  };
  const boost::container::flat_map<replica_id, peer_digest>& peer_digests() const noexcept { return peer_digests_; }
  replica_id self() const noexcept { return options_.self; }
  /// The sender of the message whose merge is being reported, for the
  /// change listener's logs (0 outside a gossip or range push).
  replica_id merging_from() const noexcept { return merging_from_; }

  /// Merges a local mutation's delta and spreads it.
  void local_change(const S& delta, steady_time now) {
    steady_now_ = now;
    merge_in(delta);
    if (options_.mode == dissemination::delta) spread(delta, /*except=*/options_.self, now);
    if (options_.mode == dissemination::op) {
      ops_.set_now(options_.wall_clock());
      const auto& op = ops_.record_local(options_.self, members_.self_record().incarnation, delta);
      for (replica_id peer : pick_peers(options_.origin_fanout, options_.self, now))
        send(address_of(peer), message_type::op, op);
    }
  }

  /// Handles one received message.
  void on_message(message_type type, std::span<const std::byte> payload,
                  steady_time now) override {
    steady_now_ = now;
    ++stats_.messages_received;
    if (const auto t = static_cast<std::size_t>(type); t < stats_.received_by_type.size()) ++stats_.received_by_type[t];
    switch (type) {
      case message_type::gossip:
        if (auto m = decode_or_count<envelope<gossip_body<S>>>(payload)) on_gossip(*m, now);
        return;
      case message_type::sync_request:
        if (auto m = decode_or_count<envelope<sync_request>>(payload)) {
          note_digest(m->from, m->body.root, now);
          if (auto digests = answer_sync_request(state_, m->body))
            send(m->from_address, message_type::range_digests, *digests);
        }
        return;
      case message_type::range_digests:
        if (auto m = decode_or_count<envelope<range_digests>>(payload)) {
          if (auto push = answer_range_digests(state_, m->body, options_.max_push_bytes))
            send(m->from_address, message_type::range_push, *push);
        }
        return;
      case message_type::range_push:
        if (auto m = decode_or_count<envelope<range_push<S>>>(payload)) {
          merging_from_ = m->from;
          const auto before = state_.digest();
          S removed;
          auto reply = absorb_range_push(state_, m->body, options_.max_push_bytes, &removed);
          if (state_.digest() != before) changed(m->body.entries, removed);
          if (reply) send(m->from_address, message_type::range_push, *reply);
        }
        return;
      case message_type::op:
        if (auto m = decode_or_count<envelope<numbered_op<S>>>(payload)) {
          merging_from_ = m->from;
          on_op(std::move(*m), now);
        }
        return;
      case message_type::op_summary:
        if (auto m = decode_or_count<envelope<op_summary>>(payload)) {
          note_digest(m->from, m->body.root, now);
          on_op_summary(*m);
        }
        return;
      case message_type::op_repair:
        if (auto m = decode_or_count<envelope<op_repair<S>>>(payload)) {
          merging_from_ = m->from;
          on_op_repair(std::move(*m));
        }
        return;
      case message_type::probe:
        if (!detector_) break;  // a cluster must agree on its liveness source
        if (auto m = decode_or_count<envelope<swim::message>>(payload)) on_probe(std::move(*m), now);
        return;
      case message_type::record_refresh:
        if (!detector_) break;
        if (auto m = decode_or_count<envelope<record_refresh>>(payload); m && m->from != options_.self)
          on_refresh(*m, now);
        return;
      case message_type::record_request:
        if (!detector_) break;
        if (auto m = decode_or_count<envelope<record_request>>(payload); m && m->from != options_.self) {
          gossip_body<S> body;
          if (m->body.ids.empty()) body.members = members_.table();  // a joiner: everything
          for (std::size_t i = 0; i < std::min(m->body.ids.size(), record_request::max_ids); ++i)
            if (const auto* record = members_.table().find(m->body.ids[i]))
              body.members.offer(m->body.ids[i], *record);
          if (body.members.size() != 0) send(m->from_address, message_type::gossip, body);
        }
        return;
    }
    ++stats_.rejected;  // unknown type
  }

  /// Runs the timers that are due at `now`.
  void on_tick(steady_time now) override {
    if (options_.mode == dissemination::op) {
      ops_.set_now(options_.wall_clock());
      ops_.forget_expired();
    }
    if (detector_) {
      probe_tick(now);
    } else if (now >= next_heartbeat_) {
      members_.beat(options_.stamp_floor ? options_.stamp_floor() : options_.wall_clock());
      const auto peers = pick_peers(options_.fanout, options_.self, now);
      if (peers.empty()) {
        for (const auto& seed : options_.seeds) send(seed, message_type::gossip, gossip_body<S>{members_.table(), {}});
      }
      gossip_body<S> body{members_.table(), {}};
      if (options_.mode == dissemination::state) body.delta = state_;
      for (replica_id peer : peers) send(address_of(peer), message_type::gossip, body);
      probe_one_dead(now);
      next_heartbeat_ = now + options_.heartbeat_interval;
    }
    if (options_.mode != dissemination::state && now >= next_anti_entropy_) {
      const auto peers = pick_peers(1, options_.self, now);
      const bool digest_round = options_.mode == dissemination::delta ||
                                ++op_rounds_ % std::max(1u, options_.op_digest_check_every) == 0;
      if (!peers.empty()) {
        if (digest_round)
          send(address_of(peers.front()), message_type::sync_request, make_sync_request(state_));
        else
          send(address_of(peers.front()), message_type::op_summary,
               op_summary{state_.digest(), ops_.vector(), false});
      }
      next_anti_entropy_ = now + anti_entropy_wait_;
      // Full speed for a few rounds after a change (a peer that every
      // rumour missed is found within about a second), then doubling.
      if (++rounds_since_change_ >= options_.anti_entropy_rounds_after_change)
        anti_entropy_wait_ = std::max<steady_time::duration>(
            options_.anti_entropy_interval,
            std::min<steady_time::duration>(anti_entropy_wait_ * 2, options_.anti_entropy_max_interval));
    }
  }

  /// Announces a graceful leave to every reachable peer; call before stopping.
  void leave(steady_time now) override {
    members_.leave();
    // With probes, only our own record: a whole table to every peer would
    // be O(N^2) bytes at 10,000 members.
    gossip_body<S> body{detector_ ? own_record() : members_.table(), {}};
    if (detector_) detector_->leave();
    for (replica_id peer : members_.reachable_peers(now)) send(address_of(peer), message_type::gossip, body);
  }

  /// The messages produced since the last call.
  std::vector<outgoing_message> take_outgoing() override { return std::exchange(outgoing_, {}); }

 private:
  // Decodes an envelope, counting a failure, and notes the sender's clock.
  template <class M>
  std::optional<M> decode_or_count(std::span<const std::byte> payload) {
    auto decoded = crdt::decode<M>(payload);
    if (!decoded) {
      ++stats_.rejected;
      return std::nullopt;
    }
    const M& m = decoded.value();
    if (m.from != options_.self && m.sent_us != 0)
      clock_offsets_[m.from] = static_cast<std::int64_t>(m.sent_us - options_.wall_clock());
    members_.heard(m.from, steady_now_);
    return std::move(decoded).value();
  }

  void note_digest(replica_id from, std::uint64_t root, steady_time now) {
    if (from == options_.self) return;
    peer_digests_[from] = peer_digest{root, now, root == state_.digest()};
  }

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
    const auto* known = members_.table().find(m.from);
    const auto* told = m.body.members.find(m.from);
    const bool newcomer = !detector_ && m.from != options_.self && told != nullptr &&
                          (known == nullptr || known->incarnation < told->incarnation);
    const member_record mine = members_.self_record();
    // Probes: members new to us that we did not hear of from themselves
    // (a seed's welcome, a push-pull table, a record asked for) may not
    // know us either, and nothing else would tell them before the next
    // refresh: they get our record. This is also how a joiner announces
    // itself, to every member of its welcome table.
    std::vector<replica_id> strangers;
    if (detector_)
      for (const auto& [id, record] : m.body.members.records())
        if (id != m.from && id != options_.self && !record.left && members_.table().find(id) == nullptr)
          strangers.push_back(id);
    std::vector<replica_id> grown;
    members_.merge(m.body.members, now, &grown);
    if (told != nullptr) members_.record_from(m.from);
    if (newcomer) send(m.from_address, message_type::gossip, gossip_body<S>{members_.table(), {}});
    if (detector_) {
      learned(grown, now);
      if (!strangers.empty()) {
        const gossip_body<S> ours{own_record(), {}};
        for (replica_id id : strangers) send(address_of(id), message_type::gossip, ours);
      }
    }
    merging_from_ = m.from;
    if (m.body.delta && merge_in(*m.body.delta, /*whole=*/options_.mode == dissemination::state)) {
      // News: forward it once (delta mode; in state mode every round
      // already carries everything), with the member records that came
      // with it.
      if (options_.mode == dissemination::delta) spread(*m.body.delta, m.from, now, &m.body.members);
    }
    if (!detector_) return;
    if (members_.self_record() != mine) {
      // We refuted a record of ourselves: everyone must hear the new one.
      announce(now);
    }
    // The sender holds an old record of ours (it revived us, see
    // membership::judge, or missed an announcement): it gets the current
    // one. One record, and nothing answers it, so no exchange loops.
    if (const auto* of_us = m.body.members.find(options_.self);
        of_us != nullptr && m.from != options_.self && *of_us < members_.self_record())
      send(m.from_address, message_type::gossip, gossip_body<S>{own_record(), {}});
  }

  // ---- liveness by probes (options_.liveness.source == probes) ----

  member_table own_record() const {
    member_table t;
    t.offer(options_.self, members_.self_record());
    return t;
  }

  record_refresh own_refresh() const {
    const member_record& mine = members_.self_record();
    return record_refresh{mine.incarnation, mine.heartbeat, mine.clock_us};
  }

  // A refresh moves the record we hold of its sender as the whole record
  // would have: through on_gossip, so hearing from it counts the same.
  // Of a record we do not hold, or of another life, we cannot build the
  // record: we ask for it, as for any member we hold no record of.
  void on_refresh(const envelope<record_refresh>& m, steady_time now) {
    const auto* held = members_.table().find(m.from);
    if (held == nullptr || held->incarnation != m.body.incarnation || held->left) {
      send(m.from_address, message_type::record_request, record_request{{m.from}});
      return;
    }
    member_record record = *held;
    record.heartbeat = m.body.heartbeat;
    record.clock_us = m.body.clock_us;
    envelope<gossip_body<S>> whole{m.from, m.from_address, {}, m.sent_us};
    whole.body.members.offer(m.from, record);
    on_gossip(whole, now);
  }

  // Tells every reachable member our record, directly. (Rumour
  // mongering, as deltas travel, missed a few members per join at 50
  // daemons, who then waited for a push-pull; a direct word reaches each
  // member once, where rumours with fanout 3 reach it three times.)
  // Joins are told member by member instead (on_gossip's strangers).
  void announce(steady_time now) {
    const gossip_body<S> body{own_record(), {}};
    for (replica_id peer : members_.reachable_peers(now)) send(address_of(peer), message_type::gossip, body);
  }

  // Members whose record grew: the detector probes the ones it did not
  // know, and takes a new life (a greater incarnation) as alive.
  void learned(const std::vector<replica_id>& grown, steady_time now) {
    for (replica_id id : grown) {
      records_asked_.erase(id);
      // A record that says it left is learned as left: the detector's
      // table then agrees with a peer's that saw the leave (push-pull
      // digests compare them).
      if (const auto* record = members_.table().find(id); id != options_.self && record)
        detector_->add_member(id, record->incarnation, now, record->left ? member_state::left : member_state::alive);
    }
  }

  void probe_tick(steady_time now) {
    if (now >= next_heartbeat_) {
      next_heartbeat_ = now + options_.heartbeat_interval;
      // Nobody reachable (a joiner, or cut off from everyone): every
      // heartbeat the seeds hear our table and are asked for theirs, and
      // the members in it hear our record (on_gossip's strangers).
      const bool alone = members_.reachable_peers(now).empty();
      if (alone) {
        if (!joined_at_) joined_at_ = now;
        for (const auto& seed : options_.seeds) {
          send(seed, message_type::gossip, gossip_body<S>{members_.table(), {}});
          send(seed, message_type::record_request, record_request{});
        }
      } else {
        ask_for_tables_again(now);
      }
      if (options_.mode == dissemination::state) {
        const gossip_body<S> body{own_record(), state_};
        for (replica_id peer : pick_peers(options_.fanout, options_.self, now))
          send(address_of(peer), message_type::gossip, body);
      }
    }
    if (now - last_beat_ >= options_.record_refresh_interval) beat(now);
    refresh_records(now);
    ask_again(now);
    run_detector(detector_->tick(now));
  }

  // The heartbeat counts our uptime in heartbeat intervals, as peers read
  // it (the registry's grace rule); with probes it moves only when we tell
  // it, by the intervals that passed since it last moved (the remainder
  // carries over), and with it our stamp floor.
  void beat(steady_time now) {
    const auto interval = std::max(options_.heartbeat_interval, std::chrono::milliseconds(1));
    const auto beats = (now - last_beat_) / interval;
    if (beats <= 0) return;
    members_.beat(options_.stamp_floor ? options_.stamp_floor() : options_.wall_clock(),
                  static_cast<std::uint64_t>(beats));
    last_beat_ += beats * interval;
  }

  // The refresh cycle (protocol_options::record_refresh_interval): the
  // members reachable when it began hear our record, each at its turn, so
  // a cycle's messages are spread over it rather than sent in one burst
  // (10,000 datagrams at once would overflow a socket buffer). Each goes
  // as a datagram: it is one small record, and a lost one is told again
  // next cycle.
  void refresh_records(steady_time now) {
    if (now >= refresh_.ends) {
      refresh_up_to(refresh_.to.size(), now);  // the cycle's last turns
      start_refresh_cycle(now);
    }
    const auto length = std::max(refresh_.ends - refresh_.started, steady_time::duration(1));
    const auto turns = static_cast<std::size_t>(static_cast<double>(refresh_.to.size()) *
                                                std::chrono::duration<double>(now - refresh_.started) /
                                                std::chrono::duration<double>(length));
    refresh_up_to(std::min(turns, refresh_.to.size()), now);
  }

  void start_refresh_cycle(steady_time now) {
    refresh_.to = members_.reachable_peers(now);
    refresh_.sent = 0;
    refresh_.started = now;
    // What telling every member costs: our record message (its size as
    // encoded now) with the frame's header and MAC, to each of them.
    static constexpr std::size_t frame_overhead = 16 + 32;
    const auto message_bytes =
        crdt::encode(envelope<record_refresh>{options_.self, options_.address, own_refresh(), 0}).size() +
        frame_overhead;
    const double seconds_within_budget = static_cast<double>(refresh_.to.size() * message_bytes) /
                                         static_cast<double>(std::max<std::size_t>(1, options_.record_refresh_budget));
    const auto floor = options_.record_refresh_interval;
    const auto ceiling = std::max(floor, options_.record_refresh_ceiling);
    const auto wanted = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(
        std::min(seconds_within_budget, std::chrono::duration<double>(ceiling).count())));
    refresh_.ends = now + std::clamp(wanted, floor, ceiling);
  }

  void refresh_up_to(std::size_t turns, steady_time now) {
    if (turns <= refresh_.sent) return;
    beat(now);
    const record_refresh ours = own_refresh();
    for (; refresh_.sent < turns; ++refresh_.sent) {
      const replica_id id = refresh_.to[refresh_.sent];
      const auto state = members_.state_of(id, now);
      if (state == member_state::alive || state == member_state::suspect)
        send(address_of(id), message_type::record_refresh, ours, /*datagram=*/true);
    }
  }

  // Replicas that joined at the same time each got a seed's table from
  // before the other arrived, and would not hear of each other until a
  // probe round or a push-pull brought them together: at 300 started at
  // once, 30 % of pairs after the first table, and the last pair a minute
  // later (lattice_load_sim). So a joiner asks for a whole table twice
  // more: the seeds a second after it first asked, and a random member two
  // seconds after that (in case that answer was lost). The members new to
  // it in these tables hear its record as at the first. Both answers can
  // be lost too (at 13 % loss, computed, about one pair in 250 of replicas
  // joining together, which then waited a minute for the first push-pull;
  // found by simulator_test's property), so at 7 s and 15 s it also starts a
  // push-pull by digest with a random member: one small message each way
  // when the tables agree, the records of the buckets that differ when not.
  void ask_for_tables_again(steady_time now) {
    static constexpr int due_seconds[] = {1, 3, 7, 15};
    if (!joined_at_ || tables_asked_again_ >= std::size(due_seconds)) return;
    const auto due = *joined_at_ + std::chrono::seconds(due_seconds[tables_asked_again_]);
    if (now < due) return;
    if (tables_asked_again_ >= 2) {
      ++tables_asked_again_;
      if (!detector_) return;  // heartbeats: their tables are the safety net
      if (const auto peers = pick_peers(1, options_.self, now); !peers.empty())
        run_detector(detector_->push_pull_with(peers.front()));
      return;
    }
    std::vector<std::string> to;
    if (tables_asked_again_++ == 0) {
      to = options_.seeds;
    } else if (const auto peers = pick_peers(1, options_.self, now); !peers.empty()) {
      to.push_back(address_of(peers.front()));
    }
    const gossip_body<S> ours{own_record(), {}};
    for (const auto& address : to) {
      send(address, message_type::gossip, ours);
      send(address, message_type::record_request, record_request{});
    }
  }

  // Records asked for and not come within a second are asked of a random
  // reachable peer (anyone is likely to hold them), up to
  // max_record_asks times.
  static constexpr unsigned max_record_asks = 10;
  void ask_again(steady_time now) {
    if (now >= next_record_reask_) {
      next_record_reask_ = now + std::chrono::seconds(1);
      for (replica_id id : members_.awaiting_records()) ask_for_own_record(id);
    }
    if (records_asked_.empty()) return;
    record_request ask;
    for (auto it = records_asked_.begin(); it != records_asked_.end();) {
      if (now - it->second.at < std::chrono::seconds(1)) {
        ++it;
        continue;
      }
      if (++it->second.times > max_record_asks) {
        it = records_asked_.erase(it);
        continue;
      }
      it->second.at = now;
      if (ask.ids.size() < record_request::max_ids) ask.ids.push_back(it->first);
      ++it;
    }
    if (ask.ids.empty()) return;
    if (const auto peers = pick_peers(1, options_.self, now); !peers.empty())
      send(address_of(peers.front()), message_type::record_request, ask);
  }

  void on_probe(envelope<swim::message> m, steady_time now) {
    if (m.from == options_.self) return;
    // Word of members we hold no record of is dropped: we could not
    // address them, and a probe we cannot send would become a false
    // suspicion. Their records reach us by gossip, and with them the
    // detector learns them.
    // The sender holds those records (or it is one of them: a joiner
    // whose record the rumours missed here), so it is asked for them,
    // again a second later if they have not come (the ask or the answer
    // may be lost).
    record_request ask;
    const auto want = [&](replica_id id) {
      if (ask.ids.size() >= record_request::max_ids) return;
      auto [asked, first] = records_asked_.try_emplace(id, record_ask{now, 0});
      if (!first) return;  // probe_tick asks again
      ask.ids.push_back(id);
    };
    if (members_.table().find(m.from) == nullptr) want(m.from);
    std::erase_if(m.body.updates, [&](const swim::update& u) {
      if (u.member == options_.self || members_.table().find(u.member) != nullptr) return false;
      if (u.state == member_state::alive || u.state == member_state::suspect) want(u.member);
      return true;
    });
    if (!ask.ids.empty()) send(m.from_address, message_type::record_request, ask);
    replying_to_ = {m.from, &m.from_address};
    run_detector(detector_->on_message(m.from, m.body, now));
    replying_to_ = {};
  }

  void run_detector(std::vector<swim::outgoing> out) {
    for (auto& o : out) {
      const std::string* to = nullptr;
      if (const auto* record = members_.table().find(o.to)) to = &record->address;
      else if (o.to == replying_to_.first && replying_to_.second != nullptr) to = replying_to_.second;
      if (to == nullptr) {
        ++stats_.probes_unaddressed;
        continue;
      }
      // A push-pull's entries travel with our member records of the same
      // members (addresses, lives): the records go first, on the same
      // connection, so the detector's entries find them. (The whole table
      // for the whole-table push-pull of older replicas.)
      bool with_records = true;
      if (o.body.kind == swim::message_kind::sync || o.body.kind == swim::message_kind::sync_reply)
        send(*to, message_type::gossip, gossip_body<S>{members_.table(), {}});
      else if (o.body.kind == swim::message_kind::table_diff || o.body.kind == swim::message_kind::table_diff_reply)
        send(*to, message_type::gossip, gossip_body<S>{records_in(o.body.table), {}});
      else
        with_records = false;
      send(*to, message_type::probe, o.body, /*datagram=*/!with_records && !o.stream);
    }
    // Members back from the dead are asked for their current record (see
    // membership::judge); probe_tick asks again while it has not come.
    for (replica_id id : std::exchange(revived_, {})) ask_for_own_record(id);
  }

  // Our records of the members in the buckets a push-pull found different.
  member_table records_in(const swim::table_digest& table) const {
    std::vector<bool> wanted(table.buckets, false);
    for (std::uint32_t b : table.differ) wanted[b] = true;
    member_table part;
    for (const auto& [id, record] : members_.table().records())
      if (wanted[swim::bucket_of(id, table.buckets)]) part.offer(id, record);
    return part;
  }

  void ask_for_own_record(replica_id id) {
    if (const auto* record = members_.table().find(id))
      send(record->address, message_type::record_request, record_request{{id}});
  }

  void on_op(envelope<numbered_op<S>> m, steady_time now) {
    const auto origin = m.body.origin;
    std::vector<numbered_op<S>> ready;
    ops_.set_now(options_.wall_clock());
    switch (ops_.accept(m.body, ready)) {
      case op_verdict::delivered:
      case op_verdict::buffered:
        // News either way: forward it once, to peers other than the sender
        // and the origin.
        for (replica_id peer : pick_peers(options_.fanout, m.from, now, origin))
          send(address_of(peer), message_type::op, m.body);
        break;
      case op_verdict::duplicate: ++stats_.ops_duplicate; break;
      case op_verdict::overflow: ++stats_.ops_overflow; break;
      case op_verdict::expired: ++stats_.ops_expired; break;
    }
    apply_ops(ready);
  }

  void on_op_summary(const envelope<op_summary>& m) {
    auto catch_up = ops_.missing_from(m.body.delivered, options_.op_repair_batch);
    const bool we_lag = ops_.behind(m.body.delivered);
    // Same ops delivered on both sides but different states: something the
    // vectors cannot see (a range sync that skipped ahead and lost its
    // push). Only a range sync repairs that.
    if (catch_up.ops.empty() && !we_lag && m.body.root != state_.digest())
      catch_up.needs_range_sync = true;
    if (!catch_up.ops.empty() || catch_up.needs_range_sync)
      send(m.from_address, message_type::op_repair,
           op_repair<S>{std::move(catch_up.ops), catch_up.needs_range_sync, ops_.vector()});
    if (we_lag && !m.body.is_reply)
      send(m.from_address, message_type::op_summary, op_summary{state_.digest(), ops_.vector(), true});
  }

  void on_op_repair(envelope<op_repair<S>> m) {
    std::vector<numbered_op<S>> ready;
    ops_.set_now(options_.wall_clock());
    for (auto& op : m.body.ops) switch (ops_.accept(std::move(op), ready)) {
        case op_verdict::duplicate: ++stats_.ops_duplicate; break;
        case op_verdict::expired: ++stats_.ops_expired; break;
        default: break;
      }
    if (m.body.needs_range_sync) {
      // The range sync brings the sender's state, which covers its vector;
      // if that exchange is lost, the periodic digest round repairs it.
      ops_.skip_to(m.body.sender_vector, ready);
      send(m.from_address, message_type::sync_request, make_sync_request(state_));
    }
    apply_ops(ready);
  }

  void apply_ops(const std::vector<numbered_op<S>>& ready) {
    for (const auto& op : ready) merge_in(op.delta);
  }

  // Members judged dead are never picked as gossip peers, so without this
  // two sides of a healed partition would each wait forever for the other
  // to speak first. Each round one random dead (not left) member hears our
  // table; if it is alive, its reply revives it here, and its own probes
  // do the same on its side.
  void probe_one_dead(steady_time now) {
    std::vector<replica_id> dead;
    for (const auto& [id, record] : members_.table().records())
      if (id != options_.self && members_.state_of(id, now) == member_state::dead) dead.push_back(id);
    if (dead.empty()) return;
    std::uniform_int_distribution<std::size_t> pick(0, dead.size() - 1);
    send(address_of(dead[pick(rng_)]), message_type::gossip, gossip_body<S>{members_.table(), {}});
  }

  // Merges `in` into the state; on a change, tells the listener what was
  // merged and what the merge removed. Returns whether anything changed.
  // `whole`: `in` is a peer's whole state (see hold_horizon).
  bool merge_in(const S& in, bool whole = false) {
    if constexpr (range_mergeable<S>) {
      if (whole && options_.hold_horizon && options_.hold_horizon()) {
        static constexpr std::uint32_t everything[] = {0};
        S removed;
        if (!state_.merge_ranges(in, 0, everything, &removed)) return false;
        changed(in, removed);
        return true;
      }
    }
    if constexpr (requires(S& s, const S& o, S* r) { s.merge(o, r); }) {
      S removed;
      if (!state_.merge(in, &removed)) return false;
      changed(in, removed);
    } else {
      if (!state_.merge(in)) return false;
      changed(in, S{});
    }
    return true;
  }

  void changed(const S& merged, const S& removed) {
    ++stats_.state_changes;
    // Anti-entropy back at full speed: we hold something new, which some
    // peers may have missed (options: anti_entropy_max_interval). At a
    // random point of the next interval, as when rounds never slowed: a
    // round a fixed time after the change that woke it runs while that
    // change is still spreading, and repairs what its rumour was about to
    // bring (at 300 replicas under churn, 3 % more bytes, at once or
    // one interval later).
    rounds_since_change_ = 0;
    if (anti_entropy_wait_ != options_.anti_entropy_interval) {
      anti_entropy_wait_ = options_.anti_entropy_interval;
      const auto phase = std::uniform_int_distribution<steady_time::rep>(0, anti_entropy_wait_.count())(rng_);
      next_anti_entropy_ = std::min(next_anti_entropy_, steady_now_ + steady_time::duration(phase));
    }
    if (listener_) listener_(merged, removed);
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
    body.members.offer(options_.self, members_.self_record());
    const auto peers = pick_peers(except == options_.self ? options_.origin_fanout : options_.fanout, except, now);
    if (peers.empty() && except == options_.self) {
      // A joiner that has not heard back from anyone yet: its seeds.
      for (const auto& seed : options_.seeds) send(seed, message_type::gossip, body);
      return;
    }
    for (replica_id peer : peers) send(address_of(peer), message_type::gossip, body);
  }

  // Up to `count` distinct reachable peers other than `except` and
  // `also_except`, at random (peer_selection.hpp).
  std::vector<replica_id> pick_peers(std::size_t count, replica_id except, steady_time now,
                                     std::optional<replica_id> also_except = std::nullopt) {
    return transport::pick_peers(members_.reachable_peers(now), count, except, rng_, also_except);
  }

  const std::string& address_of(replica_id peer) const { return members_.table().find(peer)->address; }

  template <class Body>
  void send(const std::string& to, message_type type, const Body& body, bool datagram = false) {
    auto payload = crdt::encode(envelope<Body>{options_.self, options_.address, body, options_.wall_clock()});
    ++stats_.messages_sent;
    stats_.bytes_sent += payload.size();
    if (const auto t = static_cast<std::size_t>(type); t < stats_.sent_by_type.size()) {
      ++stats_.sent_by_type[t];
      stats_.bytes_sent_by_type[t] += payload.size();
    }
    outgoing_.push_back(outgoing_message{to, type, std::move(payload), datagram});
  }

  protocol_options options_;
  membership members_;
  S state_;
  replica_id merging_from_ = 0;
  op_log<S> ops_;
  unsigned op_rounds_ = 0;
  std::mt19937_64 rng_;
  steady_time next_heartbeat_;
  steady_time next_anti_entropy_;
  // The wait before the next round: doubles while the state is unchanged.
  steady_time::duration anti_entropy_wait_{options_.anti_entropy_interval};
  unsigned rounds_since_change_ = 0;
  steady_time last_beat_;  // probes: when our heartbeat last moved (see beat)
  // Probes: the refresh cycle under way (refresh_records).
  struct refresh_cycle {
    steady_time started;
    steady_time ends;
    std::vector<replica_id> to;  // reachable when it started, in turn
    std::size_t sent = 0;        // turns taken
  } refresh_;
  std::optional<swim::detector> detector_;
  // Probes: the sender of the message being handled, whose address the
  // envelope gives even before its record reaches us (set only while
  // on_probe runs, so the pointer never outlives the envelope).
  std::pair<replica_id, const std::string*> replying_to_{0, nullptr};
  std::vector<replica_id> revived_;  // judged alive again since the last run_detector
  // Records asked for and not come yet.
  struct record_ask {
    steady_time at;
    unsigned times = 0;
  };
  boost::container::flat_map<replica_id, record_ask> records_asked_;
  std::optional<steady_time> joined_at_;  // first asked the seeds for a table
  unsigned tables_asked_again_ = 0;      // see ask_for_tables_again
  steady_time next_record_reask_{};  // members back from the dead, asked again
  steady_time steady_now_{};  // of the message or local change being handled
  protocol_stats stats_;
  std::vector<outgoing_message> outgoing_;
  std::function<void(const S&, const S&)> listener_;
  boost::container::flat_map<replica_id, std::int64_t> clock_offsets_;
  boost::container::flat_map<replica_id, peer_digest> peer_digests_;
};

}  // namespace lattice::transport
