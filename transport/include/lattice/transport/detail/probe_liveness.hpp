// lattice/transport/detail/probe_liveness.hpp: liveness by probes
// (options.liveness.source == probes), the part of a protocol core that
// runs the SWIM detector (swim.hpp) and keeps member records moving.
//
// The detector judges; its messages travel as message_type::probe (as
// datagrams, where the driver can). Member records (addresses, stamp
// floors, uptime) travel only when they change: a replica tells its own
// heartbeat and floor (record_refresh, no address) to every reachable
// member once per refresh cycle (paced, as datagrams, within a byte
// budget: see protocol_options::record_refresh_interval), and its whole
// record on a join, refutation or leave; a detector push-pull also sends
// the records of the members whose entries differ (ADR 0018); a replica
// that hears of a member it holds no record of asks for it
// (record_request). The heartbeat table gossip then runs only while we
// reach nobody (to the seeds), so quiet traffic does not grow with the
// cluster until the refresh cycle reaches its ceiling.
//
// Internal: a part of protocol.hpp, which dispatches to it and calls its
// gossip hooks around every member table it merges.
#pragma once

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/container/flat_map.hpp>

#include "lattice/transport/detail/protocol_context.hpp"
#include "lattice/transport/swim.hpp"

namespace lattice::transport::detail {

template <reconcilable S>
class probe_liveness {
 public:
  probe_liveness(protocol_context<S>& context, steady_time now)
      : context_(context),
        // The detector's incarnations start at the record's (our start
        // time in µs): a restart's first word beats everything said of the
        // last life, refutations add 1 without touching the record.
        detector_(context.options.self, context.options.probes, context.options.random_seed ^ 0x9e3779b97f4a7c15ULL,
                  now, context.options.incarnation),
        next_heartbeat_(now),
        last_beat_(now),
        refresh_{now, now + context.options.record_refresh_interval, {}, 0} {
    detector_.on_change([this](replica_id id, member_state state) {
      if (context_.members.judge(id, state)) revived_.push_back(id);
    });
    // Push-pull compares our records too, so a record one side lacks (or
    // holds from an older life) is exchanged with the entries.
    detector_.set_entry_hash([this](replica_id id) -> std::uint64_t {
      const auto* record = context_.members.table().find(id);
      return record == nullptr ? 0 : identity_hash(*record);
    });
  }
  // The detector's listeners hold `this`.
  probe_liveness(const probe_liveness&) = delete;
  probe_liveness& operator=(const probe_liveness&) = delete;

  const swim::detector& detector() const noexcept { return detector_; }

  /// Runs the timers due at `now`: the seeds while we reach nobody, a
  /// joiner's second asks, the refresh cycle, records asked again, and
  /// the detector's own (probes, suspicion timeouts).
  void tick(steady_time now) {
    auto& c = context_;
    if (now >= next_heartbeat_) {
      next_heartbeat_ = now + c.options.heartbeat_interval;
      // Nobody reachable (a joiner, or cut off from everyone): every
      // heartbeat the seeds hear our table and are asked for theirs, and
      // the members in it hear our record (strangers_in).
      const bool alone = c.members.reachable_peers(now).empty();
      if (alone) {
        if (!joined_at_) joined_at_ = now;
        for (const auto& seed : c.options.seeds) {
          c.send(seed, message_type::gossip, gossip_body<S>{c.members.table(), {}});
          c.send(seed, message_type::record_request, record_request{});
        }
      } else {
        ask_for_tables_again(now);
      }
      if (c.options.mode == dissemination::state) {
        const gossip_body<S> body{c.own_record(), c.state};
        for (replica_id peer : c.pick_peers(c.options.fanout, c.options.self, now))
          c.send(c.address_of(peer), message_type::gossip, body);
      }
    }
    if (now - last_beat_ >= c.options.record_refresh_interval) beat(now);
    refresh_records(now);
    ask_again(now);
    run_detector(detector_.tick(now));
  }

  void on_probe(envelope<swim::message> m, steady_time now) {
    auto& c = context_;
    if (m.from == c.options.self) return;
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
      if (!first) return;  // tick asks again
      ask.ids.push_back(id);
    };
    if (c.members.table().find(m.from) == nullptr) want(m.from);
    std::erase_if(m.body.updates, [&](const swim::update& u) {
      if (u.member == c.options.self || c.members.table().find(u.member) != nullptr) return false;
      if (u.state == member_state::alive || u.state == member_state::suspect) want(u.member);
      return true;
    });
    if (!ask.ids.empty()) c.send(m.from_address, message_type::record_request, ask);
    replying_to_ = {m.from, &m.from_address};
    run_detector(detector_.on_message(m.from, m.body, now));
    replying_to_ = {};
  }

  /// A refresh moves the record we hold of its sender as the whole record
  /// would have: the caller handles what this returns as gossip, so
  /// hearing from it counts the same. Of a record we do not hold, or of
  /// another life, we cannot build the record: we ask for it, as for any
  /// member we hold no record of, and return nothing.
  std::optional<envelope<gossip_body<S>>> on_refresh(const envelope<record_refresh>& m) {
    auto& c = context_;
    const auto* held = c.members.table().find(m.from);
    if (held == nullptr || held->incarnation != m.body.incarnation || held->left) {
      c.send(m.from_address, message_type::record_request, record_request{{m.from}});
      return std::nullopt;
    }
    member_record record = *held;
    record.heartbeat = m.body.heartbeat;
    record.clock_us = m.body.clock_us;
    envelope<gossip_body<S>> whole{m.from, m.from_address, {}, m.sent_us};
    whole.body.members.offer(m.from, record);
    return whole;
  }

  /// The records asked for (all of them, for a joiner's empty ask).
  void on_record_request(const envelope<record_request>& m) {
    auto& c = context_;
    gossip_body<S> body;
    if (m.body.ids.empty()) body.members = c.members.table();  // a joiner: everything
    for (std::size_t i = 0; i < std::min(m.body.ids.size(), record_request::max_ids); ++i)
      if (const auto* record = c.members.table().find(m.body.ids[i])) body.members.offer(m.body.ids[i], *record);
    if (body.members.size() != 0) c.send(m.from_address, message_type::gossip, body);
  }

  // ---- hooks around a gossiped member table (protocol::on_gossip) ----

  /// Before the merge: the members of `table`, from `sender`, new to us
  /// that we did not hear of from themselves (a seed's welcome, a
  /// push-pull table, a record asked for). They may not know us either,
  /// and nothing else would tell them before the next refresh, so
  /// learned() tells them our record. This is also how a joiner announces
  /// itself, to every member of its welcome table.
  std::vector<replica_id> strangers_in(const member_table& table, replica_id sender) const {
    std::vector<replica_id> strangers;
    for (const auto& [id, record] : table.records())
      if (id != sender && id != context_.options.self && !record.left && context_.members.table().find(id) == nullptr)
        strangers.push_back(id);
    return strangers;
  }

  /// After the merge: members whose record grew are the detector's to
  /// probe (a greater incarnation, a new life, is taken as alive), and
  /// the strangers hear our record.
  void learned(const std::vector<replica_id>& grown, const std::vector<replica_id>& strangers, steady_time now) {
    learned(grown, now);
    if (strangers.empty()) return;
    const gossip_body<S> ours{context_.own_record(), {}};
    for (replica_id id : strangers) context_.send(context_.address_of(id), message_type::gossip, ours);
  }
  void learned(const std::vector<replica_id>& grown, steady_time now) {
    for (replica_id id : grown) {
      records_asked_.erase(id);
      // A record that says it left is learned as left: the detector's
      // table then agrees with a peer's that saw the leave (push-pull
      // digests compare them).
      if (const auto* record = context_.members.table().find(id); id != context_.options.self && record)
        detector_.add_member(id, record->incarnation, now, record->left ? member_state::left : member_state::alive);
    }
  }

  /// After the whole gossip message was handled; `mine` is our record as
  /// it was before. A record of us that we refuted (ours moved) must reach
  /// everyone; a sender that holds an old record of ours (it revived us,
  /// see membership::judge, or missed an announcement) gets the current
  /// one. One record, and nothing answers it, so no exchange loops.
  void after_gossip(const envelope<gossip_body<S>>& m, const member_record& mine, steady_time now) {
    auto& c = context_;
    if (c.members.self_record() != mine) announce(now);
    if (const auto* of_us = m.body.members.find(c.options.self);
        of_us != nullptr && m.from != c.options.self && *of_us < c.members.self_record())
      c.send(m.from_address, message_type::gossip, gossip_body<S>{c.own_record(), {}});
  }

  /// Before a graceful leave's record is sent: the detector stops.
  void leave() { detector_.leave(); }

 private:
  // Tells every reachable member our record, directly. (Rumour
  // mongering, as deltas travel, missed a few members per join at 50
  // daemons, who then waited for a push-pull; a direct word reaches each
  // member once, where rumours with fanout 3 reach it three times.)
  // Joins are told member by member instead (strangers_in).
  void announce(steady_time now) {
    auto& c = context_;
    const gossip_body<S> body{c.own_record(), {}};
    for (replica_id peer : c.members.reachable_peers(now)) c.send(c.address_of(peer), message_type::gossip, body);
  }

  record_refresh own_refresh() const {
    const member_record& mine = context_.members.self_record();
    return record_refresh{mine.incarnation, mine.heartbeat, mine.clock_us};
  }

  // The heartbeat counts our uptime in heartbeat intervals, as peers read
  // it (the registry's grace rule); with probes it moves only when we tell
  // it, by the intervals that passed since it last moved (the remainder
  // carries over), and with it our stamp floor.
  void beat(steady_time now) {
    auto& c = context_;
    const auto interval = std::max(c.options.heartbeat_interval, std::chrono::milliseconds(1));
    const auto beats = (now - last_beat_) / interval;
    if (beats <= 0) return;
    c.members.beat(c.options.stamp_floor ? c.options.stamp_floor() : c.options.wall_clock(),
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
    auto& c = context_;
    refresh_.to = c.members.reachable_peers(now);
    refresh_.sent = 0;
    refresh_.started = now;
    // What telling every member costs: our record message (its size as
    // encoded now) with the frame's header and MAC, to each of them.
    static constexpr std::size_t frame_overhead = 16 + 32;
    const auto message_bytes =
        crdt::encode(envelope<record_refresh>{c.options.self, c.options.address, own_refresh(), 0}).size() +
        frame_overhead;
    const double seconds_within_budget = static_cast<double>(refresh_.to.size() * message_bytes) /
                                         static_cast<double>(std::max<std::size_t>(1, c.options.record_refresh_budget));
    const auto floor = c.options.record_refresh_interval;
    const auto ceiling = std::max(floor, c.options.record_refresh_ceiling);
    const auto wanted = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(
        std::min(seconds_within_budget, std::chrono::duration<double>(ceiling).count())));
    refresh_.ends = now + std::clamp(wanted, floor, ceiling);
  }

  void refresh_up_to(std::size_t turns, steady_time now) {
    if (turns <= refresh_.sent) return;
    auto& c = context_;
    beat(now);
    const record_refresh ours = own_refresh();
    for (; refresh_.sent < turns; ++refresh_.sent) {
      const replica_id id = refresh_.to[refresh_.sent];
      const auto state = c.members.state_of(id, now);
      if (state == member_state::alive || state == member_state::suspect)
        c.send(c.address_of(id), message_type::record_refresh, ours, /*datagram=*/true);
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
    auto& c = context_;
    if (tables_asked_again_ >= 2) {
      ++tables_asked_again_;
      if (const auto peers = c.pick_peers(1, c.options.self, now); !peers.empty())
        run_detector(detector_.push_pull_with(peers.front()));
      return;
    }
    std::vector<std::string> to;
    if (tables_asked_again_++ == 0) {
      to = c.options.seeds;
    } else if (const auto peers = c.pick_peers(1, c.options.self, now); !peers.empty()) {
      to.push_back(c.address_of(peers.front()));
    }
    const gossip_body<S> ours{c.own_record(), {}};
    for (const auto& address : to) {
      c.send(address, message_type::gossip, ours);
      c.send(address, message_type::record_request, record_request{});
    }
  }

  // Records asked for and not come within a second are asked of a random
  // reachable peer (anyone is likely to hold them), up to
  // max_record_asks times.
  static constexpr unsigned max_record_asks = 10;
  void ask_again(steady_time now) {
    auto& c = context_;
    if (now >= next_record_reask_) {
      next_record_reask_ = now + std::chrono::seconds(1);
      for (replica_id id : c.members.awaiting_records()) ask_for_own_record(id);
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
    if (const auto peers = c.pick_peers(1, c.options.self, now); !peers.empty())
      c.send(c.address_of(peers.front()), message_type::record_request, ask);
  }

  void run_detector(std::vector<swim::outgoing> out) {
    auto& c = context_;
    for (auto& o : out) {
      const std::string* to = nullptr;
      if (const auto* record = c.members.table().find(o.to)) to = &record->address;
      else if (o.to == replying_to_.first && replying_to_.second != nullptr) to = replying_to_.second;
      if (to == nullptr) {
        ++c.stats.probes_unaddressed;
        continue;
      }
      // A push-pull's entries travel with our member records of the same
      // members (addresses, lives): the records go first, on the same
      // connection, so the detector's entries find them. (The whole table
      // for the whole-table push-pull of older replicas.)
      bool with_records = true;
      if (o.body.kind == swim::message_kind::sync || o.body.kind == swim::message_kind::sync_reply)
        c.send(*to, message_type::gossip, gossip_body<S>{c.members.table(), {}});
      else if (o.body.kind == swim::message_kind::table_diff || o.body.kind == swim::message_kind::table_diff_reply)
        c.send(*to, message_type::gossip, gossip_body<S>{records_in(o.body.table), {}});
      else
        with_records = false;
      c.send(*to, message_type::probe, o.body, /*datagram=*/!with_records && !o.stream);
    }
    // Members back from the dead are asked for their current record (see
    // membership::judge); tick asks again while it has not come.
    for (replica_id id : std::exchange(revived_, {})) ask_for_own_record(id);
  }

  // Our records of the members in the buckets a push-pull found different.
  member_table records_in(const swim::table_digest& table) const {
    std::vector<bool> wanted(table.buckets, false);
    for (std::uint32_t b : table.differ) wanted[b] = true;
    member_table part;
    for (const auto& [id, record] : context_.members.table().records())
      if (wanted[swim::bucket_of(id, table.buckets)]) part.offer(id, record);
    return part;
  }

  void ask_for_own_record(replica_id id) {
    if (const auto* record = context_.members.table().find(id))
      context_.send(record->address, message_type::record_request, record_request{{id}});
  }

  protocol_context<S>& context_;
  swim::detector detector_;
  steady_time next_heartbeat_;
  steady_time last_beat_;  // when our heartbeat last moved (see beat)
  // The refresh cycle under way (refresh_records).
  struct refresh_cycle {
    steady_time started;
    steady_time ends;
    std::vector<replica_id> to;  // reachable when it started, in turn
    std::size_t sent = 0;        // turns taken
  } refresh_;
  // The sender of the message being handled, whose address the envelope
  // gives even before its record reaches us (set only while on_probe runs,
  // so the pointer never outlives the envelope).
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
  steady_time next_record_reask_{};      // members back from the dead, asked again
};

}  // namespace lattice::transport::detail
