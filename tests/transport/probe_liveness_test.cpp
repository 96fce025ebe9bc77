// The protocol core with liveness by probes (SWIM with Lifeguard, swim.hpp)
// in the deterministic simulator: detection without false deaths,
// partitions, joins, and what probes are for: quiet traffic that does not
// grow with the cluster. Leave and restart are simulator_test.cpp's cases,
// run with both liveness sources.
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "lattice/crdt/lww_element_set.hpp"
#include "simulator.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace probe_liveness_test {

using namespace std::chrono_literals;
using lattice::crdt::hlc_timestamp;
using lattice::transport::liveness_source;
using lattice::transport::member_state;
using lattice::transport::message_type;
using set_type = lattice::crdt::lww_element_set<std::string>;
using sim_type = lattice::testing::simulator<set_type>;

namespace {

sim_type::options probing(std::size_t nodes, std::uint64_t seed, unsigned drop_percent = 0) {
  sim_type::options o;
  o.nodes = nodes;
  o.seed = seed;
  o.drop_percent = drop_percent;
  o.base.liveness.source = liveness_source::probes;
  return o;
}

// Bytes every live node sent per second over `window`, averaged.
double bytes_per_node_second(sim_type& sim, std::chrono::milliseconds window) {
  std::uint64_t before = 0, after = 0;
  for (std::size_t i = 0; i < sim.size(); ++i) before += sim.node(i).stats().bytes_sent;
  sim.run_for(window);
  for (std::size_t i = 0; i < sim.size(); ++i) after += sim.node(i).stats().bytes_sent;
  return static_cast<double>(after - before) / static_cast<double>(sim.size()) /
         std::chrono::duration<double>(window).count();
}

}  // namespace

TEST_CASE("probes: a killed replica is judged dead by all, and nobody else is", "[transport][probes]") {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    INFO("seed " << seed);
    sim_type sim(probing(8, seed, 1));
    REQUIRE(sim.run_until([&] { return sim.everyone_alive(); }, 10s));
    REQUIRE_FALSE(sim.run_until([&] { return sim.false_death(); }, 5s).has_value());
    const std::size_t victim = seed % 8;
    const auto took = sim.time_to_detect_kill(victim, 10s);
    REQUIRE(took.has_value());
    // Only the victim: the survivors still hold each other alive.
    for (std::size_t i = 0; i < sim.size(); ++i)
      if (sim.alive(i))
        for (std::size_t j = 0; j < sim.size(); ++j)
          if (j != i && sim.alive(j)) CHECK(sim.node(i).members().state_of(j + 1, sim.now()) != member_state::dead);
  }
}

TEST_CASE("probes: quiet traffic per replica does not grow with the cluster", "[transport][probes]") {
  // With heartbeats every message carries the whole member table, so a
  // replica's quiet traffic grows with N; with probes it is a few small
  // messages per period whatever N is. Measured after joining settles.
  const auto quiet = [](std::size_t nodes, liveness_source source) {
    auto o = probing(nodes, 7);
    o.base.liveness.source = source;
    sim_type sim(o);
    INFO(nodes << " nodes, " << to_string(source));
    // (Heartbeats at 64 flicker: some pair of the 4,032 is suspect at
    // almost any instant, so only probes are held to "everyone alive".)
    if (source == liveness_source::probes) REQUIRE(sim.run_until([&] { return sim.everyone_alive(); }, 20s));
    sim.run_for(10s);
    return bytes_per_node_second(sim, 20s);
  };
  const double probes_small = quiet(8, liveness_source::probes);
  const double probes_large = quiet(64, liveness_source::probes);
  const double heartbeats_large = quiet(64, liveness_source::heartbeats);
  INFO("probes: " << probes_small << " B/s at 8, " << probes_large << " B/s at 64; heartbeats " << heartbeats_large
                  << " B/s at 64");
  // Probes and anti-entropy digests (backed off to one every 2 s while
  // nothing changes) are the same at any N; the member table at 64 would
  // double it alone.
  CHECK(probes_large < probes_small * 1.5);
  CHECK(probes_large * 4 < heartbeats_large);
}

TEST_CASE("probes: push-pulls in a settled cluster find the tables equal, after a restart and a leave too",
          "[transport][probes]") {
  // Push-pull compares the detector's entries and the identity of each
  // member record (address, life, leave) by digest; records' heartbeats
  // and floors move all the time and are left out. A settled cluster's
  // push-pulls must then end at the root: one message each.
  auto o = probing(12, 11);
  o.base.probes.push_pull_interval = 1s;
  sim_type sim(o);
  REQUIRE(sim.run_until([&] { return sim.everyone_alive(); }, 20s));
  sim.restart(4);       // a new life: its old record is replaced everywhere
  sim.stop_gracefully(7);  // a leave: every table holds it left
  REQUIRE(sim.run_until([&] { return sim.all_see(4, member_state::alive) && sim.all_see(7, member_state::left); }, 20s));
  sim.run_for(15s);
  const auto totals = [&] {
    std::pair<std::uint64_t, std::uint64_t> t{0, 0};  // (started, ended at the root)
    for (std::size_t i = 0; i < sim.size(); ++i)
      if (sim.alive(i)) {
        t.first += sim.node(i).detector()->stats().push_pulls;
        t.second += sim.node(i).detector()->stats().push_pulls_in_sync;
      }
    return t;
  };
  const auto before = totals();
  // Longer than a record refresh (60 s): every record's heartbeat moves
  // within the window, and reaches the others at different times.
  sim.run_for(70s);
  const auto after = totals();
  const auto started = after.first - before.first;
  const auto in_sync = after.second - before.second;
  INFO(started << " push-pulls started, " << in_sync << " ended at the root");
  CHECK(started > 500);  // 11 replicas, one a second (give or take half)
  // A push-pull started just before the window ends at its peer inside
  // it, or one after: allow a few either way; none found tables apart.
  CHECK(in_sync + 11 >= started);
}

TEST_CASE("probes: record refreshes stay within their byte budget, and every record stays fresh",
          "[transport][probes]") {
  // 40 replicas, a 2 s shortest cycle and a 20 s ceiling, 300 bytes/s:
  // telling 39 members a refresh of about 100 bytes (frame included)
  // costs about 3.9 KB, so the cycle stretches to about 13 s (at 2 s it
  // would be six times the budget).
  auto o = probing(40, 11);
  o.base.record_refresh_interval = 2s;
  o.base.record_refresh_ceiling = 20s;
  o.base.record_refresh_budget = 300;
  o.base.probes.push_pull_interval = std::chrono::hours(1);
  sim_type sim(o);
  REQUIRE(sim.run_until([&] { return sim.everyone_alive(); }, 20s));
  sim.run_for(30s);  // past the joins' messages and the first whole cycle

  const auto refresh = static_cast<std::size_t>(message_type::record_refresh);
  const auto sent = [&](std::size_t i) {
    const auto& st = sim.node(i).stats();
    return std::pair{st.sent_by_type[refresh], st.bytes_sent_by_type[refresh]};
  };
  std::vector<std::pair<std::uint64_t, std::uint64_t>> before;
  std::vector<std::vector<std::uint64_t>> held_before(sim.size(), std::vector<std::uint64_t>(sim.size()));
  for (std::size_t i = 0; i < sim.size(); ++i) {
    before.push_back(sent(i));
    for (std::size_t j = 0; j < sim.size(); ++j)
      held_before[i][j] = sim.node(i).members().table().find(j + 1)->heartbeat;
  }
  const auto window = 60s;
  sim.run_for(window);
  for (std::size_t i = 0; i < sim.size(); ++i) {
    INFO("replica " << i);
    const auto [messages, payload] = sent(i);
    const auto framed = payload - before[i].second + 48 * (messages - before[i].first);
    const double per_second = static_cast<double>(framed) / 60.0;
    INFO(per_second << " bytes/s of refreshes");
    CHECK(per_second <= 300 * 1.1);
    // Four cycles in the window: each member was told at least three times.
    CHECK(messages - before[i].first >= 3 * 39);
    const auto own = sim.node(i).members().self_record().heartbeat;
    for (std::size_t j = 0; j < sim.size(); ++j) {
      if (j == i) continue;
      const auto held = sim.node(j).members().table().find(i + 1)->heartbeat;
      INFO("held by " << j);
      // Our heartbeat (uptime, 100 ms a beat) moved, and reached j, within
      // two cycles (20 s each at most, 200 beats).
      CHECK(held > held_before[j][i]);
      CHECK(own - held <= 2 * 200);
    }
  }
}

TEST_CASE("probes: a refresh is a third smaller than the record, and one we cannot apply asks for the record",
          "[transport][probes]") {
  using lattice::transport::envelope;
  using lattice::transport::record_refresh;
  using lattice::transport::record_request;
  sim_type sim(probing(3, 4));
  REQUIRE(sim.run_until([&] { return sim.everyone_alive(); }, 10s));
  auto& a = sim.node(0);
  const auto b_id = lattice::crdt::replica_id{2};
  const auto b = *a.members().table().find(b_id);
  const auto whole = lattice::crdt::encode(
      envelope<lattice::transport::gossip_body<set_type>>{b_id, b.address, {[&] {
        lattice::transport::member_table t;
        t.offer(b_id, b);
        return t;
      }(), {}}, 1});
  const auto refresh_of = [&](lattice::crdt::replica_id from, std::uint64_t incarnation, std::uint64_t heartbeat) {
    return lattice::crdt::encode(
        envelope<record_refresh>{from, sim_type::address(from - 1), {incarnation, heartbeat, b.clock_us + 7}, 1});
  };
  CHECK(refresh_of(b_id, b.incarnation, b.heartbeat).size() * 3 <= whole.size() * 2);
  (void)a.take_outgoing();

  // Of the life we hold: the record moves, and nothing is asked.
  a.on_message(message_type::record_refresh, refresh_of(b_id, b.incarnation, b.heartbeat + 50), sim.now());
  CHECK(a.members().table().find(b_id)->heartbeat == b.heartbeat + 50);
  CHECK(a.members().table().find(b_id)->clock_us == b.clock_us + 7);
  CHECK(a.members().table().find(b_id)->address == b.address);
  for (const auto& out : a.take_outgoing()) CHECK(out.type != message_type::record_request);

  // Of another life, or of a member we hold no record of: the record is asked for.
  for (const auto& [from, incarnation] : {std::pair{b_id, b.incarnation + 1}, std::pair{lattice::crdt::replica_id{9}, std::uint64_t{1}}}) {
    a.on_message(message_type::record_refresh, refresh_of(from, incarnation, 1), sim.now());
    bool asked = false;
    for (const auto& out : a.take_outgoing())
      if (out.type == message_type::record_request && out.to == sim_type::address(from - 1)) {
        const auto ask = lattice::crdt::decode<envelope<record_request>>(out.payload);
        asked = asked || (ask.has_value() && ask.value().body.ids == std::vector<lattice::crdt::replica_id>{from});
      }
    CHECK(asked);
  }
  CHECK(a.members().table().find(b_id)->incarnation == b.incarnation);
  CHECK(a.members().table().find(9) == nullptr);
}

TEST_CASE("probes: the two sides of a healed partition take each other back, with current records",
          "[transport][probes]") {
  sim_type sim(probing(6, 5));
  REQUIRE(sim.run_until([&] { return sim.everyone_alive(); }, 10s));
  sim.partition({0, 1, 2});
  const auto apart = [&] {
    for (std::size_t i = 0; i < 6; ++i)
      for (std::size_t j = 0; j < 6; ++j)
        if ((i < 3) != (j < 3) && sim.node(i).members().state_of(j + 1, sim.now()) != member_state::dead) return false;
    return true;
  };
  REQUIRE(sim.run_until(apart, 20s));
  // Writes on both sides while apart.
  set_type scratch;
  sim.node(0).local_change(scratch.insert("/left", hlc_timestamp{10, 0, 1}), sim.now());
  sim.node(5).local_change(scratch.insert("/right", hlc_timestamp{10, 0, 6}), sim.now());
  // Apart longer than a record refresh, so the records held of the other
  // side are old when it comes back.
  sim.run_for(65s);
  const auto heartbeat_before = sim.node(0).members().table().find(6)->heartbeat;
  sim.heal();
  // Nobody probes a dead member: each side calls one dead member a second
  // (swim::options::dead_call_interval), and the called refutes. Without
  // the calls only a push-pull with a dead member (one in four, every
  // 60 s) would find the other side, in minutes.
  REQUIRE(sim.run_until([&] { return sim.everyone_alive(); }, 10s));
  CHECK(sim.node(0).members().table().find(6)->heartbeat > heartbeat_before);
  REQUIRE(sim.run_until([&] { return sim.converged(); }, 10s));
  CHECK(sim.node(3).state().contains("/left"));
  CHECK(sim.node(0).state().contains("/right"));
}

TEST_CASE("probes: a cluster started formed holds every member alive at once, and detects and spreads as one that formed",
          "[transport][probes]") {
  // adopt_formed_table is how lattice_churn_sim --formed starts 10,000
  // replicas without 10^8 join announcements: it must leave each replica
  // as a join would (every member known, probed, alive) and send nothing.
  sim_type sim(probing(30, 4, 1));
  lattice::transport::member_table everyone;
  for (std::size_t i = 0; i < sim.size(); ++i) everyone.offer(i + 1, sim.node(i).members().self_record());
  for (std::size_t i = 0; i < sim.size(); ++i) {
    sim.node(i).adopt_formed_table(everyone, sim.now());
    REQUIRE(sim.node(i).take_outgoing().empty());
    REQUIRE(sim.node(i).members().reachable_peers(sim.now()).size() == sim.size() - 1);
  }
  REQUIRE(sim.everyone_alive());
  set_type scratch;
  sim.node(7).local_change(scratch.insert("/formed", hlc_timestamp{10, 0, 8}), sim.now());
  REQUIRE(sim.run_until([&] { return sim.converged(); }, 5s));
  CHECK(sim.node(20).state().contains("/formed"));
  // The detectors know every member: a kill is judged by all.
  REQUIRE(sim.time_to_detect_kill(12, 10s).has_value());
  for (std::size_t i = 0; i < sim.size(); ++i)
    if (sim.alive(i))
      for (std::size_t j = 0; j < sim.size(); ++j)
        if (j != i && sim.alive(j)) REQUIRE(sim.node(i).members().state_of(j + 1, sim.now()) == member_state::alive);
}

TEST_CASE("probes: a replica joining through a seed is known to all and probes them", "[transport][probes]") {
  // Node 7 starts alone (killed at once, then restarted after the others
  // settled): it knows only the seed, and the seed's welcome and its
  // forwarded record make it known everywhere.
  sim_type sim(probing(8, 6));
  sim.kill(7);
  REQUIRE(sim.run_until(
      [&] {
        for (std::size_t i = 0; i < 7; ++i)
          for (std::size_t j = 0; j < 7; ++j)
            if (i != j && sim.node(i).members().state_of(j + 1, sim.now()) != member_state::alive) return false;
        return true;
      },
      10s));
  sim.restart(7);
  const auto took = sim.run_until([&] { return sim.everyone_alive(); }, 10s);
  REQUIRE(took.has_value());
  CHECK(*took <= 1s);
  CHECK(sim.node(7).detector()->size() == 7);
  for (std::size_t i = 0; i < 7; ++i) CHECK(sim.node(i).detector()->state_of(8) == member_state::alive);
}

TEST_CASE("probes: a mass start through one seed forms in seconds, each replica sending a few tables",
          "[transport][probes]") {
  // All 150 start at once and know only node 0. Each first table comes
  // from the seed before most of the others reached it, so about a third
  // of the pairs are unknown to each other until the joiners ask for a
  // table again (a second later). And no member answers a joiner's
  // record with its whole table: that was 150 tables per joiner.
  constexpr std::size_t n = 150;
  sim_type sim(probing(n, 3));
  const auto formed = sim.run_until([&] { return sim.everyone_alive(); }, 20s);
  REQUIRE(formed.has_value());
  CHECK(*formed <= 2500ms);
  const auto table_bytes = lattice::crdt::encode(sim.node(0).members().table()).size();
  std::uint64_t gossip_bytes = 0;
  for (std::size_t i = 0; i < n; ++i)
    gossip_bytes += sim.node(i).stats().bytes_sent_by_type[static_cast<std::size_t>(message_type::gossip)];
  const double tables_per_replica = static_cast<double>(gossip_bytes) / n / static_cast<double>(table_bytes);
  INFO("formed in " << formed->count() << " ms; gossip sent per replica: " << tables_per_replica
                    << " tables of " << table_bytes << " B");
  CHECK(tables_per_replica < 8);
}

TEST_CASE("a joiner asks each seed once per heartbeat, however often it is listed", "[transport][probes]") {
  for (const auto source : {liveness_source::probes, liveness_source::heartbeats}) {
    INFO(to_string(source));
    lattice::transport::protocol_options o;
    o.self = 1;
    o.address = "sim:0";
    o.incarnation = 1;
    o.liveness.source = source;
    o.seeds = {"sim:2", "sim:1", "sim:2", "sim:0", "sim:1"};  // ourselves too
    lattice::transport::protocol<set_type> p(o, lattice::transport::steady_time{});
    p.on_tick(lattice::transport::steady_time{});
    std::multiset<std::string> gossip_to;
    for (const auto& m : p.take_outgoing())
      if (m.type == message_type::gossip) gossip_to.insert(m.to);
    CHECK(gossip_to == std::multiset<std::string>{"sim:1", "sim:2"});
  }
}

TEST_CASE("probes: a probe from a cluster that judges by heartbeats is rejected, not merged", "[transport][probes]") {
  // Every replica of a cluster must agree on the liveness source; a probe
  // reaching a heartbeat replica is counted as bad input.
  sim_type::options o;
  o.nodes = 2;
  sim_type sim(o);
  lattice::transport::protocol_options p;
  p.self = 9;
  p.address = "sim:9";
  p.liveness.source = liveness_source::probes;
  lattice::transport::protocol<set_type> prober(p, sim.now());
  prober.on_tick(sim.now() + 1s);
  bool sent_probe = false;
  for (auto& m : prober.take_outgoing())
    if (m.type == message_type::probe) sent_probe = true;
  // Alone, the prober has nobody to probe: build one probe by hand.
  lattice::transport::envelope<lattice::transport::swim::message> ping{9, "sim:9", {}, 1};
  const auto bytes = lattice::crdt::encode(ping);
  const auto rejected = sim.node(0).stats().rejected;
  sim.node(0).on_message(message_type::probe, bytes, sim.now());
  CHECK_FALSE(sent_probe);
  CHECK(sim.node(0).stats().rejected == rejected + 1);
}

}  // namespace probe_liveness_test
