// api_user: three api.user nodes with different weights (seed 000), and
// consumers balancing over them by weight and by load.
//
//   build/examples/api_user
//
// Three providers register /api/user/1.0.0 with weights 100, 200 and 300.
// Consumer A picks 6,000 times with weighted_random: the shares follow the
// weights. Then consumer B (another replica) opens 20 long calls to node 3,
// each under a call_guard: the in-flight PN-Counter moves, gossip carries
// it, and consumer A's least_loaded balancer, which reads the cluster-wide
// count from its own snapshot, stops picking node 3 until B's calls end.
// Ends with
//   Summary: weighted_shares_ok=true steered_away=true recovered=true
// and exit code 0 only if all three hold.
#include <map>
#include <string>

#include "lattice/registry/balancer.hpp"
#include "lattice/registry/replica.hpp"
#include "narrate.hpp"

namespace reg = lattice::registry;
using lattice::examples::eventually;
using lattice::examples::open_replica;
using lattice::examples::say;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPath = "/api/user/1.0.0";

std::string in_flight_line(const reg::replica& r) {
  std::string out;
  for (const auto& i : r.lookup(kPath).providers())
    out += fmt::format("{}={} ", i->tags().at("node"), i.in_flight());
  return out;
}

}  // namespace

int main() {
  std::vector<std::unique_ptr<reg::replica>> nodes;
  for (int n = 1; n <= 3; ++n) {
    nodes.push_back(open_replica(nodes.empty() ? std::vector<std::string>{}
                                               : std::vector<std::string>{nodes.front()->address()}));
    reg::instance inst;
    inst.address = "10.0.0." + std::to_string(n);
    inst.port = 8080;
    inst.protocol = "http";
    inst.weight = static_cast<std::uint32_t>(100 * n);
    inst.tags["node"] = "node" + std::to_string(n);
    if (!nodes.back()->register_instance(kPath, inst)) return 1;
    say("api.user node{} registered at {}:8080 with weight {}", n, inst.address, inst.weight);
  }
  auto consumer_a = open_replica({nodes.front()->address()});
  auto consumer_b = open_replica({nodes.front()->address()});
  for (auto* c : {consumer_a.get(), consumer_b.get()})
    if (!eventually([&] { return c->lookup(kPath).providers().size() == 3; }, 5s)) return 1;
  say("both consumers see 3 nodes");

  // Weighted random: shares follow weights (1:2:3).
  reg::weighted_random weighted;
  std::map<std::string, int> picks;
  for (int i = 0; i < 6000; ++i) ++picks[(*weighted.pick(*consumer_a->lookup(kPath)))->tags().at("node")];
  say("weighted_random over 6000 picks: node1={} node2={} node3={} (expect about 1000/2000/3000)", picks["node1"],
      picks["node2"], picks["node3"]);
  const bool shares_ok = picks["node1"] > 800 && picks["node1"] < 1200 && picks["node3"] > 2700 &&
                         picks["node3"] < 3300;

  // B keeps node 3 busy; A's least-loaded choice moves away from it.
  reg::least_loaded least;
  say("consumer B opens 20 long calls to node3");
  std::vector<reg::call_guard> busy;
  {
    auto list = consumer_b->lookup(kPath);
    for (const auto& i : list.providers())
      if (i->tags().at("node") == "node3")
        for (int k = 0; k < 20; ++k) busy.emplace_back(i);
  }
  std::chrono::milliseconds took{};
  const bool seen = eventually(
      [&] {
        for (const auto& i : consumer_a->lookup(kPath).providers())
          if (i->tags().at("node") == "node3" && i.in_flight() == 20) return true;
        return false;
      },
      3s, &took);
  say("consumer A sees in flight: {}(after {} ms)", in_flight_line(*consumer_a), took.count());
  std::map<std::string, int> steered;
  for (int i = 0; i < 300; ++i) {
    auto list = consumer_a->lookup(kPath);
    const auto* target = least.pick(*list);
    reg::call_guard call(*target);  // A's own short call
    ++steered[(*target)->tags().at("node")];
  }
  say("least_loaded over 300 calls by A while B is busy: node1={} node2={} node3={}", steered["node1"],
      steered["node2"], steered["node3"]);
  const bool steered_away = seen && steered["node3"] == 0;

  say("consumer B's calls end");
  busy.clear();
  const bool back = eventually(
      [&] {
        for (const auto& i : consumer_a->lookup(kPath).providers())
          if (i.in_flight() != 0) return false;
        return true;
      },
      3s, &took);
  say("consumer A sees in flight: {}(after {} ms)", in_flight_line(*consumer_a), took.count());
  const bool recovered = back;
  std::printf("Summary: weighted_shares_ok=%s steered_away=%s recovered=%s\n", shares_ok ? "true" : "false",
              steered_away ? "true" : "false", recovered ? "true" : "false");
  return shares_ok && steered_away && recovered ? 0 : 1;
}
