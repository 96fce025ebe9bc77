// partition_heal: two groups of replicas cut apart keep working, and
// converge when the cut heals, with nothing lost and nothing resurrected.
//
//   build/examples/partition_heal
//
// Six replicas, each registering one provider of /orders/1.0.0, are cut
// into {r1, r2, r3} and {r4, r5, r6} by in-process fault injection (each
// side drops what it sends to the other). Both sides keep registering (AP:
// a partition never blocks a write): r1 and r4 register a new instance each,
// r2 deregisters its own, r5 sets a config key. Each side sees its own
// writes at once; the other side's instances are hidden while their owners
// look dead to it (they come back without re-registration: the reap delay,
// 30 s, is longer than the cut). Then the cut heals and every replica ends
// with the same list.
//
// Ends with
//   Summary: converged=true nothing_lost=true nothing_resurrected=true heal_ms=<n>
// and exit code 0 only if all three hold.
#include <set>
#include <string>

#include "lattice/registry/replica.hpp"
#include "narrate.hpp"

namespace reg = lattice::registry;
using lattice::examples::eventually;
using lattice::examples::say;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPath = "/orders/1.0.0";

std::set<std::string> ids(const reg::replica& r) {
  std::set<std::string> out;
  for (const auto& i : r.lookup(kPath).providers()) out.emplace(i->id());
  return out;
}

std::string show(const std::set<std::string>& s) {
  std::string out;
  for (const auto& id : s) out += (out.empty() ? "" : " ") + id;
  return "{" + out + "}";
}

reg::instance provider(const std::string& id) {
  reg::instance i;
  i.id = id;
  i.address = "127.0.0.1";
  i.port = 9000;
  return i;
}

}  // namespace

int main() {
  std::vector<std::unique_ptr<reg::replica>> rs;
  for (int n = 1; n <= 6; ++n) {
    rs.push_back(lattice::examples::open_replica(rs.empty() ? std::vector<std::string>{}
                                                            : std::vector<std::string>{rs.front()->address()}));
    rs.back()->register_instance(kPath, provider("r" + std::to_string(n) + "-a")).value();
  }
  const std::set<std::string> initial = {"r1-a", "r2-a", "r3-a", "r4-a", "r5-a", "r6-a"};
  if (!eventually([&] { for (auto& r : rs) if (ids(*r) != initial) return false; return true; }, 5s)) return 1;
  say("6 replicas, each sees {}", show(initial));

  // The cut: each side drops what it sends to the other's addresses.
  std::set<std::string> side_a, side_b;
  for (std::size_t n = 0; n < 6; ++n) (n < 3 ? side_a : side_b).insert(rs[n]->address());
  for (std::size_t n = 0; n < 6; ++n) {
    const auto& other = n < 3 ? side_b : side_a;
    rs[n]->set_send_filter([other](const std::string& peer) { return !other.contains(peer); });
  }
  say("cut: {{r1 r2 r3}} | {{r4 r5 r6}}");

  // Both sides keep writing.
  rs[0]->register_instance(kPath, provider("r1-b")).value();
  rs[3]->register_instance(kPath, provider("r4-b")).value();
  rs[1]->deregister_instance(kPath, "r2-a").value();
  rs[4]->set_config("/config/orders/batch-size", "500").value();
  say("during the cut: r1 registers r1-b, r4 registers r4-b, r2 deregisters r2-a, r5 sets a config key");
  const std::set<std::string> a_sees = {"r1-a", "r1-b", "r3-a"};
  const std::set<std::string> b_sees = {"r4-a", "r4-b", "r5-a", "r6-a"};
  const bool sides_ok = eventually([&] { return ids(*rs[2]) == a_sees && ids(*rs[5]) == b_sees; }, 5s);
  say("side A (r3) sees {}; side B (r6) sees {}", show(ids(*rs[2])), show(ids(*rs[5])));
  say("  (each side hides the other's ephemeral instances while their owners look dead to it)");
  std::this_thread::sleep_for(1s);

  for (auto& r : rs) r->set_send_filter({});
  say("the cut heals");
  const std::set<std::string> expected = {"r1-a", "r1-b", "r3-a", "r4-a", "r4-b", "r5-a", "r6-a"};
  std::chrono::milliseconds took{};
  const bool converged = eventually(
      [&] {
        for (auto& r : rs)
          if (ids(*r) != expected || r->get_config("/config/orders/batch-size") != "500") return false;
        return true;
      },
      10s, &took);
  for (std::size_t n = 0; n < rs.size(); ++n) say("r{} sees {}", n + 1, show(ids(*rs[n])));
  bool lost = false, resurrected = false;
  for (auto& r : rs) {
    const auto seen = ids(*r);
    lost |= !seen.contains("r1-b") || !seen.contains("r4-b") || !r->get_config("/config/orders/batch-size");
    resurrected |= seen.contains("r2-a");
  }
  std::printf("Summary: converged=%s nothing_lost=%s nothing_resurrected=%s heal_ms=%lld sides_ok=%s\n",
              converged ? "true" : "false", lost ? "false" : "true", resurrected ? "false" : "true",
              static_cast<long long>(took.count()), sides_ok ? "true" : "false");
  return converged && !lost && !resurrected && sides_ok ? 0 : 1;
}
