// Replicas whose wall clocks disagree (item 2 of the "Merges that lose
// nothing" issue): received stamps move the HLC, stamps beyond the drift
// bound are merged but counted and do not drag the clock, and compaction's
// horizon is a point every live member has passed, so neither a lagging
// nor a leading clock makes anyone drop the others' writes.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "lattice/registry/registry_core.hpp"
#include "registry_sim.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace clock_skew_test {

using namespace std::chrono_literals;
using lattice::registry::service_path;
using lattice::testing::clock_skews;
using lattice::testing::config_on;
using lattice::testing::make_registry_sim;
using lattice::testing::persistent_instance;
using lattice::testing::providers_on;
using lattice::testing::registry_sim;

namespace {

constexpr std::int64_t hour_us = 3'600'000'000LL;

service_path path(const char* text) { return service_path::parse(text).value(); }

// Three replicas, collecting tombstones older than 2 s every 250 ms (the
// defaults, an hour and a minute, scaled down), with node i's clock skewed
// by skews[i + 1] (its replica id).
std::unique_ptr<registry_sim> skewed_cluster(std::shared_ptr<const clock_skews> skews) {
  lattice::registry::core_options core;
  core.gc_grace = 2s;
  core.compaction_interval = 250ms;
  registry_sim::options o;
  o.nodes = 3;
  auto sim = make_registry_sim(o, core, std::move(skews));
  REQUIRE(sim->run_until([&] { return sim->everyone_alive(); }, 10s));
  return sim;
}

lattice::crdt::hlc_timestamp config_stamp(registry_sim& sim, std::size_t i, const std::string& key) {
  const auto* entry = sim.node(i).state().config.find_entry(key);
  REQUIRE(entry != nullptr);
  return entry->stamp;
}

}  // namespace

TEST_CASE("a replica whose clock lags two hours keeps replicating after compaction (item 2)",
          "[registry][regression]") {
  auto skews = std::make_shared<clock_skews>(clock_skews{{3, -2 * hour_us}});
  auto sim = skewed_cluster(skews);
  sim->run_for(4s);  // past every replica's first gc_grace: compaction runs
  REQUIRE(sim->node(0).compaction_horizon(sim->now()).has_value());
  REQUIRE(sim->node(2).register_instance(path("/svc"), persistent_instance("late")));
  REQUIRE(sim->node(2).set_config(path("/late"), "v"));
  REQUIRE(sim->run_until([&] {
    return providers_on(*sim, 0, "/svc") == std::vector<std::string>{"late"} &&
           providers_on(*sim, 1, "/svc") == std::vector<std::string>{"late"} && config_on(*sim, 0, "/late") == "v" &&
           config_on(*sim, 1, "/late") == "v";
  }, 5s));
  // Horizons are below the lagging replica's clock, so its writes are not
  // taken for deletions that were forgotten.
  const auto lagging_floor = sim->node(2).members().self_record().clock_us;
  for (std::size_t i = 0; i < 3; ++i) {
    const auto horizon = sim->node(i).compaction_horizon(sim->now());
    REQUIRE(horizon.has_value());
    CHECK(horizon->physical_us < lagging_floor);
  }
  CHECK(sim->converged());
}

TEST_CASE("a replica whose clock leads two hours still accepts everyone's writes (item 2)", "[registry][regression]") {
  auto skews = std::make_shared<clock_skews>(clock_skews{{1, 2 * hour_us}});
  auto sim = skewed_cluster(skews);
  sim->run_for(4s);
  REQUIRE(sim->node(1).register_instance(path("/svc"), persistent_instance("p")));
  REQUIRE(sim->node(2).set_config(path("/k"), "v"));
  REQUIRE(sim->run_until([&] {
    return providers_on(*sim, 0, "/svc") == std::vector<std::string>{"p"} && config_on(*sim, 0, "/k") == "v";
  }, 5s));
  // Its stamps are beyond the drift bound for the others: merged, counted,
  // and their clocks stay their own.
  REQUIRE(sim->node(0).set_config(path("/from-ahead"), "x"));
  REQUIRE(sim->run_until([&] { return config_on(*sim, 1, "/from-ahead") == "x"; }, 5s));
  CHECK(sim->node(1).clock_drift() >= 1);
  REQUIRE(sim->node(1).set_config(path("/after"), "y"));
  CHECK(config_stamp(*sim, 1, "/after") < config_stamp(*sim, 1, "/from-ahead"));
  // And it sees how far ahead node 0 (replica 1) runs, within a second:
  // the simulator's messages take milliseconds.
  const auto& offsets = sim->node(1).clock_offsets();
  REQUIRE(offsets.contains(1));
  CHECK(offsets.at(1) > 2 * hour_us - 1'000'000);
  CHECK(offsets.at(1) < 2 * hour_us + 1'000'000);
  CHECK(sim->run_until([&] { return sim->converged(); }, 5s));
}

TEST_CASE("a merged stamp within the drift bound moves the receiver's clock past it (item 2)",
          "[registry][regression]") {
  // Node 0 (replica 1) runs three seconds ahead: within the five-second
  // bound.
  auto skews = std::make_shared<clock_skews>(clock_skews{{1, 3'000'000}});
  auto sim = skewed_cluster(skews);
  REQUIRE(sim->node(0).set_config(path("/first"), "a"));
  REQUIRE(sim->run_until([&] { return config_on(*sim, 1, "/first") == "a"; }, 5s));
  // A write made after seeing node 0's is stamped after it, though node
  // 1's own clock is three seconds behind that stamp: causality wins.
  REQUIRE(sim->node(1).set_config(path("/second"), "b"));
  CHECK(config_stamp(*sim, 0, "/first") < config_stamp(*sim, 1, "/second"));
  CHECK(sim->node(1).clock_drift() == 0);
}

TEST_CASE("a partition longer than gc_grace where both sides keep serving loses no write", "[registry][regression]") {
  auto sim = skewed_cluster(nullptr);
  sim->run_for(3s);  // past everyone's first gc_grace
  sim->partition({0});
  // Both sides write early in the partition, then stay apart for three
  // times gc_grace: each judges the other dead long enough to compact.
  sim->run_for(1s);
  REQUIRE(sim->node(0).set_config(path("/alone"), "a"));
  REQUIRE(sim->node(1).set_config(path("/majority"), "b"));
  REQUIRE(sim->node(2).register_instance(path("/svc"), persistent_instance("p")));
  sim->run_for(6s);
  sim->heal();
  REQUIRE(sim->run_until([&] { return sim->converged(); }, 10s));
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(config_on(*sim, i, "/alone") == "a");
    CHECK(config_on(*sim, i, "/majority") == "b");
    CHECK(providers_on(*sim, i, "/svc") == std::vector<std::string>{"p"});
  }
}

TEST_CASE("probes: a member back from the dead counts with its old floor for gc_grace more", "[registry][probes]") {
  // With probes the core redoes its passes over every member only when
  // membership::generation() moves (a verdict, a record that grew): the
  // hold must still be placed at the death and kept from the return.
  lattice::registry::core_options core;
  core.gc_grace = 10s;  // longer than the partition: no grace rule at the heal
  core.compaction_interval = 250ms;
  core.reconnect_timeout = 30s;  // apart for less: the member's writes may still come
  registry_sim::options o;
  o.nodes = 3;
  o.base.liveness.source = lattice::transport::liveness_source::probes;
  auto sim = make_registry_sim(o, core);
  REQUIRE(sim->run_until([&] { return sim->everyone_alive(); }, 10s));
  // Node 2 has told node 0 a floor (its record refresh, every gc_grace / 8).
  REQUIRE(sim->run_until([&] { return sim->node(0).members().table().find(3)->clock_us != 0; }, 5s));
  sim->partition({2});
  REQUIRE(sim->run_until([&] { return sim->all_see(2, lattice::transport::member_state::dead); }, 10s));
  const std::uint64_t floor_at_death = sim->node(0).members().table().find(3)->clock_us;
  sim->run_for(8s);  // apart: the others' floors move on
  sim->heal();
  // Back, node 2 tells a floor from after the partition.
  const auto back_with_a_new_floor = [&] {
    return sim->everyone_alive() && sim->node(0).members().table().find(3)->clock_us > floor_at_death + 4'000'000;
  };
  REQUIRE(sim->run_until(back_with_a_new_floor, 10s));
  const std::uint64_t grace_us = 10'000'000;
  const auto horizon = [&] { return sim->node(0).compaction_horizon(sim->now()); };
  REQUIRE(horizon().has_value());
  CHECK(horizon()->physical_us <= floor_at_death - grace_us);
  // gc_grace after the return the hold goes, and the horizon moves on.
  CHECK(sim->run_until([&] { return horizon() && horizon()->physical_us > floor_at_death - grace_us; }, 15s));
}

}  // namespace clock_skew_test
