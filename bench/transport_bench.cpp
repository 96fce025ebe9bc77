// bench/transport_bench.cpp: how fast and how cheaply changes spread.
//
//   build/bench/lattice_transport_bench > transport.json
//
// Prints one JSON document. Sections:
//  - "spread": in the deterministic simulator (delta mode, fanout 3, 1%
//    loss, 1-10 ms delay, 100 ms rounds), for each N: virtual ms and rounds
//    until every replica holds one new change (median of 20 changes), and
//    bytes sent per replica per round while quiet and under churn (1% of a
//    1,000-entry state changing per round);
//  - "kill_detection": 8 simulated replicas, 5% loss, 20 seeds: time until
//    every live replica declares a killed one dead (median, max);
//  - "loopback": 3 replicas over real loopback TCP, each on its own thread:
//    time from local_change on one to the change listener firing on
//    another, p50/p99 over 1,000 changes.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include "lattice/crdt/lww_element_set.hpp"
#include "lattice/transport/asio_driver.hpp"
#include "simulator.hpp"

using namespace std::chrono_literals;
using lattice::crdt::hlc_timestamp;
using set_type = lattice::crdt::lww_element_set<std::string>;
using sim_type = lattice::testing::simulator<set_type>;

namespace {

std::uint64_t total_bytes(sim_type& sim) {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < sim.size(); ++i) sum += sim.node(i).stats().bytes_sent;
  return sum;
}

bool all_have(sim_type& sim, const std::string& key) {
  for (std::size_t i = 0; i < sim.size(); ++i)
    if (!sim.node(i).state().contains(key)) return false;
  return true;
}

bool all_know_all(sim_type& sim) {
  for (std::size_t i = 0; i < sim.size(); ++i)
    if (sim.node(i).members().table().size() != sim.size()) return false;
  return true;
}

nlohmann::json spread(std::size_t n, lattice::transport::dissemination mode,
                      std::chrono::milliseconds heartbeat) {
  sim_type::options o;
  o.nodes = n;
  o.drop_percent = 1;
  o.seed = 42;
  o.base.mode = mode;
  o.base.heartbeat_interval = heartbeat;
  // Liveness scales with the heartbeat: 3.5 and 7 intervals.
  o.base.liveness.suspect_after = heartbeat * 7 / 2;
  o.base.liveness.dead_after = heartbeat * 7;
  const auto wall_start = std::chrono::steady_clock::now();
  sim_type sim(o);
  nlohmann::json out{{"replicas", n}, {"mode", to_string(mode)}, {"heartbeat_ms", heartbeat.count()}};
  std::fprintf(stderr, "spread: %zu replicas, %s mode\n", n, to_string(mode));
  if (!sim.run_until([&] { return all_know_all(sim); }, 60s)) {
    out["error"] = "membership did not form within 60 s of virtual time";
    return out;
  }
  out["membership_formed_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(sim.now().time_since_epoch()).count();
  sim.run_for(1s);
  // A round is the heartbeat interval in state mode, the anti-entropy
  // interval otherwise (rumours themselves move at network speed).
  const double round_ms = static_cast<double>(
      (mode == lattice::transport::dissemination::state ? heartbeat : o.base.anti_entropy_interval).count());
  const double rounds_per_5s = 5000.0 / round_ms;
  out["round_ms"] = round_ms;

  // Quiet: nothing changes for 5 s.
  auto before = total_bytes(sim);
  sim.run_for(5s);
  out["quiet_bytes_per_replica_per_round"] =
      static_cast<double>(total_bytes(sim) - before) / static_cast<double>(n) / rounds_per_5s;
  // Of which anti-entropy, in delta mode: one sync_request per replica per
  // round (the root digest in its envelope); member-table heartbeats are
  // the rest. (op mode sends its delivered vector instead; state mode none.)
  if (mode == lattice::transport::dissemination::delta)
    out["quiet_anti_entropy_bytes_per_round_per_peer"] = lattice::crdt::encode(
      lattice::transport::envelope<lattice::transport::sync_request>{
          1, lattice::testing::simulator<set_type>::address(0), {sim.node(0).state().digest()}})
      .size();

  // Spread of single changes.
  std::vector<double> ms;
  std::uint64_t t = 1'000'000;
  for (int c = 0; c < 20; ++c) {
    const std::string key = "/svc/spread/" + std::to_string(c);
    set_type scratch;
    sim.node(static_cast<std::size_t>(c) % n).local_change(scratch.insert(key, hlc_timestamp{++t, 0, 1}), sim.now());
    const auto took = sim.run_until([&] { return all_have(sim, key); }, 30s);
    ms.push_back(took ? static_cast<double>(took->count()) : -1.0);
  }
  std::sort(ms.begin(), ms.end());
  out["spread_ms_median"] = ms[ms.size() / 2];
  out["spread_rounds_median"] = ms[ms.size() / 2] / round_ms;
  out["spread_ms_max"] = ms.back();

  // Churn: a 1,000-entry state, 10 entries (1%) changing every round.
  for (int k = 0; k < 1000; ++k) {
    set_type scratch;
    sim.node(static_cast<std::size_t>(k) % n).local_change(scratch.insert("/svc/e/" + std::to_string(k), hlc_timestamp{++t, 0, 2}), sim.now());
  }
  sim.run_for(3s);
  before = total_bytes(sim);
  for (int round = 0; round < 30; ++round) {
    for (int k = 0; k < 10; ++k) {
      set_type scratch;
      const int key = (round * 37 + k * 101) % 1000;
      sim.node(static_cast<std::size_t>(key) % n).local_change(scratch.insert("/svc/e/" + std::to_string(key), hlc_timestamp{++t, 0, 3}), sim.now());
    }
    sim.run_for(std::chrono::milliseconds(static_cast<long>(round_ms)));
  }
  out["churn_bytes_per_replica_per_round"] =
      static_cast<double>(total_bytes(sim) - before) / static_cast<double>(n) / 30.0;
  out["simulation_wall_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return out;
}

// 8 replicas, 5% loss: time until every live replica declares a killed one
// dead, over 20 seeds (virtual time; defaults: heartbeat 100 ms, dead 700 ms).
nlohmann::json kill_detection() {
  std::vector<double> ms;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    sim_type::options o;
    o.nodes = 8;
    o.drop_percent = 5;
    o.seed = seed;
    sim_type sim(o);
    if (!sim.run_until([&] { return all_know_all(sim); }, 10s)) continue;
    sim.run_for(2s);
    const auto took = sim.time_to_detect_kill(seed % o.nodes, 5s);
    if (took) ms.push_back(static_cast<double>(took->count()));
  }
  std::sort(ms.begin(), ms.end());
  nlohmann::json out{{"replicas", 8}, {"loss_percent", 5}, {"runs", ms.size()}};
  if (!ms.empty()) {
    out["median_ms"] = ms[ms.size() / 2];
    out["max_ms"] = ms.back();
  }
  return out;
}

nlohmann::json loopback() {
  using namespace lattice::transport;
  struct node {
    boost::asio::io_context io;
    std::unique_ptr<asio_driver> driver;
    std::unique_ptr<protocol<set_type>> core;
    std::thread thread;
  };
  std::vector<std::unique_ptr<node>> nodes;
  for (replica_id id = 1; id <= 3; ++id) {
    auto n = std::make_unique<node>();
    n->driver = std::make_unique<asio_driver>(n->io, driver_options{});
    protocol_options p;
    p.self = id;
    p.address = "127.0.0.1:" + std::to_string(n->driver->port());
    p.incarnation = 1;
    p.seeds = {nodes.empty() ? p.address : "127.0.0.1:" + std::to_string(nodes[0]->driver->port())};
    n->core = std::make_unique<protocol<set_type>>(p, std::chrono::steady_clock::now());
    nodes.push_back(std::move(n));
  }
  std::atomic<std::int64_t> arrived_ns{0};
  nodes[1]->core->set_change_listener([&](const set_type&, const set_type&) {
    arrived_ns = std::chrono::steady_clock::now().time_since_epoch().count();
  });
  for (auto& n : nodes) {
    n->driver->start(*n->core);
    n->thread = std::thread([&io = n->io] { io.run(); });
  }
  auto on = [](node& n, auto f) {
    std::packaged_task<decltype(f())()> task(f);
    auto result = task.get_future();
    boost::asio::post(n.io, [&task] { task(); });
    return result.get();
  };
  // Wait (bounded) until the cluster has formed.
  for (int i = 0; i < 500; ++i) {
    if (on(*nodes[0], [&] { return nodes[0]->core->members().reachable_peers(std::chrono::steady_clock::now()).size(); }) == 2) break;
    std::this_thread::sleep_for(10ms);
  }
  std::vector<double> us;
  for (int c = 0; c < 1000; ++c) {
    arrived_ns = 0;
    set_type scratch;
    const auto delta = scratch.insert("/svc/lat/" + std::to_string(c), hlc_timestamp{static_cast<std::uint64_t>(c + 1), 0, 1});
    const auto start = std::chrono::steady_clock::now();
    boost::asio::post(nodes[0]->io, [&, delta] {
      nodes[0]->core->local_change(delta, std::chrono::steady_clock::now());
      nodes[0]->driver->flush();
    });
    for (int spin = 0; spin < 200'000 && arrived_ns.load() == 0; ++spin) std::this_thread::sleep_for(5us);
    if (arrived_ns.load() == 0) continue;  // lost: counted below
    us.push_back(static_cast<double>(arrived_ns.load() - start.time_since_epoch().count()) / 1000.0);
  }
  for (auto& n : nodes) boost::asio::post(n->io, [&d = *n->driver] { d.stop(); });
  for (auto& n : nodes) n->thread.join();
  std::sort(us.begin(), us.end());
  nlohmann::json out{{"replicas", 3}, {"changes", 1000}, {"arrived", us.size()}};
  if (!us.empty()) {
    out["p50_us"] = us[us.size() / 2];
    out["p99_us"] = us[us.size() * 99 / 100];
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // `lattice_transport_bench N` runs only the spread section at N replicas
  // in delta mode (for profiling); no argument runs everything.
  if (argc > 1) {
    const auto n = static_cast<std::size_t>(std::stoul(argv[1]));
    std::printf("%s\n", spread(n, lattice::transport::dissemination::delta,
                               n >= 1000 ? 1000ms : 100ms).dump(2).c_str());
    return 0;
  }
  nlohmann::json report;
  using lattice::transport::dissemination;
  for (auto mode : {dissemination::delta, dissemination::op, dissemination::state})
    for (std::size_t n : {10u, 100u}) report["spread"].push_back(spread(n, mode, 100ms));
  // 1,000 replicas: heartbeats carry the whole member table, so large
  // clusters run a 1 s heartbeat (README, "Failure detection and cluster size").
  for (auto mode : {dissemination::delta, dissemination::op})
    report["spread"].push_back(spread(1000, mode, 1000ms));
  report["kill_detection"] = kill_detection();
  report["loopback"] = loopback();
  std::printf("%s\n", report.dump(2).c_str());
}
