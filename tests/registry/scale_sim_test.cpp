// The whole protocol (registry cores, probes, rumours, refreshes,
// anti-entropy) at 1,000 replicas in the simulator, the largest size CI
// runs (issue #14): the paths only large clusters take (tables learned
// whole and merged in one pass, peers drawn from a list kept between
// messages, ADR 0022) must still form a cluster, spread a registration,
// and judge a killed owner dead everywhere and nobody else. Figures (how
// fast, how many bytes) are benchmarks: bench/scale_table.py.
#include <chrono>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "registry_sim.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace scale_sim_test {

using namespace std::chrono_literals;
using lattice::registry::instance;
using lattice::registry::service_path;
using lattice::testing::make_registry_sim;
using lattice::testing::providers_on;
using lattice::testing::registry_sim;
using lattice::transport::member_state;

namespace {

constexpr std::size_t replicas = 1000;

// Runs `sim` in steps of 100 ms (a check asks all 1,000 replicas) until
// `done` holds; false if `limit` passed first.
template <class Pred>
bool poll(registry_sim& sim, Pred done, std::chrono::milliseconds limit) {
  for (std::chrono::milliseconds waited{0}; waited <= limit; waited += 100ms) {
    if (done()) return true;
    sim.run_for(100ms);
  }
  return false;
}

bool everywhere(registry_sim& sim, const std::vector<std::string>& ids) {
  for (std::size_t i = 0; i < sim.size(); ++i)
    if (sim.alive(i) && providers_on(sim, i, "/scale/api/1.0.0") != ids) return false;
  return true;
}

void spread_then_kill(registry_sim& sim) {
  instance provider;
  provider.address = "10.0.0.9";
  provider.port = 80;
  provider.protocol = "http";
  provider.ephemeral = true;
  const std::size_t owner = 613;
  REQUIRE(sim.node(owner).register_instance(service_path::parse("/scale/api/1.0.0").value(), provider));
  REQUIRE(poll(sim, [&] { return everywhere(sim, {"10.0.0.9:80"}); }, 5s));

  sim.kill(owner);
  REQUIRE(poll(sim, [&] { return sim.all_see(owner, member_state::dead) && everywhere(sim, {}); }, 10s));
  // Nobody but the victim, at any step of the next simulated 10 s: each
  // live replica holds exactly the other live ones reachable (a count per
  // replica, where false_death() asks every replica about every member,
  // 10^6 questions a step).
  const auto live = sim.size() - 1;
  const auto someone_misjudged = [&] {
    for (std::size_t i = 0; i < sim.size(); ++i)
      if (sim.alive(i) && sim.node(i).members().reachable_peers(sim.now()).size() != live - 1) return true;
    return false;
  };
  REQUIRE_FALSE(sim.run_until(someone_misjudged, 10s).has_value());
}

registry_sim::options large(std::uint64_t seed) {
  registry_sim::options o;
  o.nodes = replicas;
  o.seed = seed;
  o.drop_percent = 1;
  o.tick = 10ms;
  o.base.liveness.source = lattice::transport::liveness_source::probes;
  return o;
}

}  // namespace

TEST_CASE(
    "1,000 replicas started at once through one seed form, spread a registration, and judge its killed owner dead",
    "[registry][sim][scale][slow]") {
  auto sim = make_registry_sim(large(21));
  REQUIRE(poll(*sim, [&] { return sim->everyone_alive(); }, 60s));
  spread_then_kill(*sim);
}

TEST_CASE("1,000 replicas started formed spread a registration and judge its killed owner dead",
          "[registry][sim][scale][slow]") {
  // How lattice_churn_sim --formed starts 10,000 (ADR 0022).
  auto sim = make_registry_sim(large(22));
  lattice::transport::member_table everyone;
  for (std::size_t i = 0; i < sim->size(); ++i) everyone.offer(i + 1, sim->node(i).members().self_record());
  for (std::size_t i = 0; i < sim->size(); ++i) sim->node(i).adopt_formed_table(everyone, sim->now());
  REQUIRE(sim->everyone_alive());
  spread_then_kill(*sim);
}

}  // namespace scale_sim_test
