// The protocol core in the deterministic simulator: convergence after
// faults and a partition, failure detection, graceful leave, restart.
#include <algorithm>
#include <set>
#include <string>

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include "lattice/crdt/lww_element_set.hpp"
#include "lattice/crdt/testing/replica_context.hpp"
#include "simulator.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace simulator_test {

using namespace std::chrono_literals;
using lattice::crdt::hlc_timestamp;
using set_type = lattice::crdt::lww_element_set<std::string>;
using sim_type = lattice::testing::simulator<set_type>;


TEST_CASE("replicas converge after loss, duplication and a partition", "[transport][simulator]") {
  rc::prop("all live digests equal the join of every change", [] {
    sim_type::options o;
    o.nodes = *rc::gen::inRange<std::size_t>(5, 11);
    o.drop_percent = *rc::gen::inRange(0u, 31u);
    o.duplicate_percent = *rc::gen::inRange(0u, 11u);
    o.seed = *rc::gen::arbitrary<std::uint64_t>();
    o.base.mode = *rc::gen::element(lattice::transport::dissemination::delta,
                                    lattice::transport::dissemination::state,
                                    lattice::transport::dissemination::op);
    // Tiny op logs and gap buffers force op mode's fallback to range sync.
    o.base.op_limits.log_per_origin = *rc::gen::element<std::size_t>(2, 1024);
    o.base.op_limits.pending_limit = *rc::gen::element<std::size_t>(3, 4096);
    // Without the periodic digest round, op repair alone must converge.
    o.base.op_digest_check_every = *rc::gen::element(10u, 1'000'000u);
    o.base.liveness.source = *rc::gen::element(lattice::transport::liveness_source::heartbeats,
                                               lattice::transport::liveness_source::probes);
    RC_TAG(to_string(o.base.mode));
    RC_TAG(to_string(o.base.liveness.source));
    sim_type sim(o);
    // Formation is the precondition here, not what is measured: with probes
    // and up to 30 % loss SWIM can judge a pair dead by mistake and take
    // seconds more to refute it (3 of 7,000 cases passed the old 10 s bound;
    // the slowest formed at 22 s), so the bound is generous. Virtual time: a fast formation returns at once.
    RC_ASSERT(sim.run_until([&] { return sim.everyone_alive(); }, 60s));

    std::vector<lattice::crdt::testing::replica_context> clocks;
    for (std::size_t i = 0; i < o.nodes; ++i) clocks.emplace_back(i + 1, 1'000'000);
    set_type expected;
    std::set<std::size_t> side;
    for (std::size_t i = 0; i < o.nodes / 2; ++i) side.insert(i);

    const auto changes = *rc::gen::container<std::vector<std::tuple<std::size_t, bool, int, int>>>(
        rc::gen::tuple(rc::gen::inRange<std::size_t>(0, o.nodes), rc::gen::arbitrary<bool>(),
                       rc::gen::inRange(0, 40), rc::gen::inRange(0, 30)));
    const int hold_ms = *rc::gen::inRange(0, 3000);
    const std::size_t cut_from = changes.size() / 3;
    const std::size_t cut_to = 2 * changes.size() / 3;
    for (std::size_t c = 0; c < changes.size(); ++c) {
      if (c == cut_from) {
        sim.partition(side);
        // Long enough, often, for each side to judge the other dead.
        sim.run_for(std::chrono::milliseconds(hold_ms));
      }
      if (c == cut_to) sim.heal();
      const auto& [at, insert, k, wait_ms] = changes[c];
      auto& clock = clocks[at];
      clock.wall_us = static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(sim.now().time_since_epoch()).count()) + 1'000'000;
      const std::string key = "/svc/" + std::to_string(k);
      set_type scratch;
      const auto delta = insert ? scratch.insert(key, clock.stamp()) : scratch.remove(key, clock.stamp());
      expected.merge(delta);
      sim.node(at).local_change(delta, sim.now());
      sim.run_for(std::chrono::milliseconds(wait_ms));
    }
    sim.heal();
    const auto took = sim.run_until([&] { return sim.converged(); }, 30s);
    RC_ASSERT(took.has_value());
    for (std::size_t i = 0; i < sim.size(); ++i) RC_ASSERT(sim.node(i).state() == expected);
    for (std::size_t i = 0; i < sim.size(); ++i) RC_ASSERT(sim.node(i).stats().rejected == 0u);
  });
}

TEST_CASE("anti-entropy slows down while nothing changes, and a change brings it back to full speed",
          "[transport][simulator]") {
  sim_type::options o;
  o.nodes = 5;
  o.seed = 3;
  sim_type sim(o);
  REQUIRE(sim.run_until([&] { return sim.everyone_alive(); }, 10s));
  sim.run_for(5s);
  const auto digests_sent = [&] {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < sim.size(); ++i)
      n += sim.node(i).stats().sent_by_type[static_cast<std::size_t>(lattice::transport::message_type::sync_request)];
    return n;
  };
  // Quiet: one round every 2 s per replica (anti_entropy_max_interval),
  // where it was five a second.
  auto before = digests_sent();
  sim.run_for(20s);
  const auto quiet = digests_sent() - before;
  INFO(quiet << " digests sent by 5 replicas in 20 quiet seconds");
  CHECK(quiet >= 5 * 8);
  CHECK(quiet <= 5 * 12);
  // A change: every replica that takes it runs its next five rounds at
  // full speed (200 ms apart), so those that missed it are found fast:
  // about 5 rounds each in the second (5 in all without the reset, 15
  // with doubling right after the change).
  set_type scratch;
  before = digests_sent();
  sim.node(0).local_change(scratch.insert("/svc/a", hlc_timestamp{1'000'000, 0, 1}), sim.now());
  sim.run_for(1s);
  const auto busy = digests_sent() - before;
  INFO(busy << " digests sent in the second after a change");
  CHECK(busy >= 18);
  CHECK(sim.converged());
}

TEST_CASE("in a cluster no larger than the origin's push, every change reaches every replica by its rumour alone",
          "[transport][simulator]") {
  // origin_fanout (9 by default) covers a cluster of 10: nothing is left
  // for anti-entropy to repair, which is what kept the slowest replica of
  // a change over 300 ms when the origin pushed to 3 (bench/churn_sim).
  // Anti-entropy is off here, so a replica every rumour missed would never
  // hold the change.
  sim_type::options o;
  o.nodes = 10;
  o.seed = 11;
  o.base.anti_entropy_interval = std::chrono::hours(1);
  o.base.anti_entropy_max_interval = std::chrono::hours(1);
  sim_type sim(o);
  REQUIRE(sim.run_until([&] { return sim.everyone_alive(); }, 10s));
  sim.run_for(2s);
  set_type scratch;
  for (std::uint64_t k = 0; k < 40; ++k) {
    const std::string element = "/svc/" + std::to_string(k);
    const std::size_t origin = k % sim.size();
    sim.node(origin).local_change(scratch.insert(element, hlc_timestamp{1'000'000 + k, 0, origin + 1}), sim.now());
    const auto everywhere = sim.run_until(
        [&] {
          for (std::size_t i = 0; i < sim.size(); ++i)
            if (!sim.node(i).state().contains(element)) return false;
          return true;
        },
        1s);
    INFO("change " << k << " from replica " << origin);
    REQUIRE(everywhere);
    CHECK(*everywhere <= 50ms);  // one hop: 1-10 ms delays, 5 ms ticks
  }
}

TEST_CASE("a killed replica is declared dead by all within its timeout plus propagation",
          "[transport][simulator]") {
  // 20 seeded runs; liveness defaults: suspect 350 ms, dead 700 ms,
  // heartbeat 100 ms, fanout 3, 1-10 ms network delay, 5% loss.
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    sim_type::options o;
    o.nodes = 8;
    o.drop_percent = 5;
    o.seed = seed;
    sim_type sim(o);
    REQUIRE(sim.run_until([&] { return sim.everyone_alive(); }, 10s));
    // No live replica is ever judged dead in a healthy cluster (checked
    // every tick for 3 s). Suspicion may flicker under loss; that is what
    // the suspect state is for, so it is counted, not failed.
    REQUIRE_FALSE(sim.run_until([&] { return sim.false_death(); }, 3s).has_value());

    const std::size_t victim = seed % o.nodes;
    const auto took = sim.time_to_detect_kill(victim, 5s);
    INFO("seed " << seed);
    REQUIRE(took.has_value());
    // dead_after, plus how stale the freshest heartbeat news can be.
    CHECK(*took <= 700ms + 400ms);
  }
  // The median detection time is a figure, not a law: it is reported by
  // bench/transport_bench.cpp ("kill_detection").
}

TEST_CASE("heartbeats: sixty-four replicas started at once through one seed all list each other",
          "[transport][simulator]") {
  // A heartbeat takes about log3(64) rounds of 100 ms to reach everyone,
  // against 350 ms to suspicion, so at this size some pair of the 4,032 is
  // suspect at almost any instant and "everyone alive" is not a state the
  // cluster settles in (lattice_load_sim --liveness heartbeats waited for
  // it: 60-104 virtual s at 23-25 replicas, and not within 120 s from 26).
  // Formed means every replica lists every other, alive or suspect: their
  // instances served.
  sim_type::options o;
  o.nodes = 64;
  o.drop_percent = 1;
  o.tick = 10ms;
  sim_type sim(o);
  REQUIRE(sim.run_until([&] { return sim.everyone_listed(); }, 10s));
}

TEST_CASE("a graceful leave is seen by all at once", "[transport][simulator]") {
  sim_type::options o;
  o.nodes = 6;
  o.base.liveness.source = GENERATE(lattice::transport::liveness_source::heartbeats,
                                    lattice::transport::liveness_source::probes);
  INFO("liveness " << to_string(o.base.liveness.source));
  sim_type sim(o);
  REQUIRE(sim.run_until([&] { return sim.everyone_alive(); }, 10s));
  sim.stop_gracefully(4);
  const auto took =
      sim.run_until([&] { return sim.all_see(4, lattice::transport::member_state::left); }, 1s);
  REQUIRE(took.has_value());
  CHECK(*took <= o.max_delay + o.tick);  // one message, no timeout
}

TEST_CASE("a restarted replica rejoins with a higher incarnation and catches up",
          "[transport][simulator]") {
  using lattice::transport::dissemination;
  sim_type::options o;
  o.nodes = 5;
  o.seed = 3;
  o.base.mode = GENERATE(dissemination::delta, dissemination::state, dissemination::op);
  // op mode: a log that holds everything (repair by ops) or too little
  // (repair by range sync).
  o.base.op_limits.log_per_origin = GENERATE(as<std::size_t>{}, 1024, 2);
  o.base.op_digest_check_every = 1'000'000;
  o.base.liveness.source = GENERATE(lattice::transport::liveness_source::heartbeats,
                                    lattice::transport::liveness_source::probes);
  INFO("mode " << to_string(o.base.mode) << ", log " << o.base.op_limits.log_per_origin << ", liveness "
               << to_string(o.base.liveness.source));
  sim_type sim(o);
  REQUIRE(sim.run_until([&] { return sim.everyone_alive(); }, 10s));
  for (int k = 0; k < 5; ++k) {
    set_type scratch;
    sim.node(0).local_change(scratch.insert("/svc/" + std::to_string(k), hlc_timestamp{10, 0, 1}), sim.now());
  }
  REQUIRE(sim.run_until([&] { return sim.converged(); }, 5s));

  sim.kill(2);
  REQUIRE(sim.run_until([&] { return sim.all_see(2, lattice::transport::member_state::dead); }, 5s));
  sim.restart(2);
  CHECK(sim.node(2).state().empty());
  REQUIRE(sim.run_until([&] { return sim.all_see(2, lattice::transport::member_state::alive); }, 5s));
  REQUIRE(sim.run_until([&] { return sim.converged(); }, 5s));
  CHECK(sim.node(2).state().contains("/svc/4"));
  CHECK(sim.node(0).members().table().find(3)->incarnation == 2);
}

TEST_CASE("probes: two replicas that join together and miss each other's every word meet within seconds",
          "[transport][simulator][probes]") {
  // The case the convergence property found (rapidcheck seed
  // 3501099435493683320): replicas 9 and 10 joined together, each got a
  // table from before the other arrived, and every later word between
  // them was lost at 13 %, so they met only at the first push-pull, a
  // minute on. The joiner's push-pulls at 7 s and 15 s bring them
  // together (protocol::ask_for_tables_again).
  sim_type::options o;
  o.nodes = 10;
  o.drop_percent = 13;
  o.duplicate_percent = 4;
  o.seed = 1211285882579421574ULL;
  o.base.liveness.source = lattice::transport::liveness_source::probes;
  sim_type sim(o);
  const auto formed = sim.run_until([&] { return sim.everyone_alive(); }, 60s);
  REQUIRE(formed.has_value());
  CHECK(*formed <= 16s);
}

}  // namespace simulator_test
