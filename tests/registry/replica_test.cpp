// The replica facade over real loopback TCP: discovery across replicas,
// watches (initial view, every change or a later one, never stale at the
// end), graceful stop, load-aware balancing, and the balancers themselves.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

#include "lattice/registry/balancer.hpp"
#include "lattice/registry/replica.hpp"
#include "eventually.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace replica_test {

using namespace std::chrono_literals;
using namespace lattice::registry;
using lattice::testing::eventually;

namespace {

instance provider(const char* address, std::uint16_t port, std::uint32_t weight = 100) {
  instance i;
  i.address = address;
  i.port = port;
  i.weight = weight;
  return i;
}

// A registration that outlives its owner's liveness (ephemeral = false).
instance kept(const char* id) {
  instance i = provider("10.0.0.1", 80);
  i.id = id;
  i.ephemeral = false;
  return i;
}

std::vector<std::unique_ptr<replica>> cluster(std::size_t n) {
  std::vector<std::unique_ptr<replica>> out;
  for (std::size_t i = 0; i < n; ++i) {
    replica_options o;
    o.id = i + 1;
    if (!out.empty()) o.seeds = {out.front()->address()};
    out.push_back(replica::open(o).value());
  }
  return out;
}

std::size_t provider_count(const replica& r, std::string_view path) {
  return r.lookup(path).providers().size();
}

}  // namespace

TEST_CASE("three replicas over loopback discover, watch and stop gracefully", "[registry][replica]") {
  auto rs = cluster(3);
  REQUIRE(rs[0]->register_instance("/HelloWorldService/1.0.0", provider("127.0.0.1", 9001)));
  REQUIRE(rs[1]->register_instance("/HelloWorldService/1.0.0", provider("127.0.0.1", 9002)));
  CHECK(eventually([&] {
    return provider_count(*rs[0], "/HelloWorldService/1.0.0") == 2 &&
           provider_count(*rs[1], "/HelloWorldService/1.0.0") == 2 &&
           provider_count(*rs[2], "/HelloWorldService/1.0.0") == 2;
  }));

  // A prefix watch on the third replica: it sees the current list first.
  std::mutex m;
  std::vector<std::pair<std::uint64_t, std::size_t>> seen;  // (version, providers)
  auto w = rs[2]->watch("/HelloWorldService", [&](const service_view& v) {
    std::lock_guard lock(m);
    seen.emplace_back(v.version, v.providers.size());
  }).value();
  REQUIRE(eventually([&] { std::lock_guard lock(m); return !seen.empty(); }));
  { std::lock_guard lock(m); CHECK(seen.front().second == 2); }

  // Graceful stop of replica 1: its instance is removed everywhere at once.
  rs[1]->stop();
  CHECK(eventually([&] { return provider_count(*rs[2], "/HelloWorldService/1.0.0") == 1; }, 2s));
  CHECK(eventually([&] { std::lock_guard lock(m); return seen.back().second == 1; }, 2s));
  {
    std::lock_guard lock(m);
    for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i].first > seen[i - 1].first);  // in order
    CHECK(seen.back().first == rs[2]->lookup("/HelloWorldService/1.0.0").version());  // not stale
  }
  CHECK(rs[1]->register_instance("/x", provider("a", 1)).error() == errc::stopped);

  SECTION("config changes reach a config watch on another replica") {
    std::vector<config_change> changes;
    auto cw = rs[2]->watch_config("/app", [&](const config_change& c) {
      std::lock_guard lock(m);
      changes.push_back(c);
    }).value();
    REQUIRE(rs[0]->set_config("/app/timeout", "5s"));
    REQUIRE(eventually([&] { std::lock_guard lock(m); return !changes.empty(); }));
    REQUIRE(rs[0]->erase_config("/app/timeout"));
    REQUIRE(eventually([&] { std::lock_guard lock(m); return changes.size() == 2; }));
    std::lock_guard lock(m);
    CHECK(changes[0].value == std::optional<std::string>("5s"));
    CHECK_FALSE(changes[1].value.has_value());
  }
}

TEST_CASE("status() follows members and metrics within a tick, without the replica thread",
          "[registry][replica]") {
  auto rs = cluster(2);
  // Taken before open() returns: never null, and already lists us.
  const auto first = rs[1]->status();
  REQUIRE(first);
  CHECK(first->members.size() >= 1);
  REQUIRE(rs[0]->register_instance("/s", provider("127.0.0.1", 9001)));
  REQUIRE(eventually([&] {
    const auto s = rs[1]->status();
    return s->members.size() == 2 && s->metrics.alive == 2 && s->metrics.instances == 1 &&
           s->metrics.services == 1;
  }));
  // The same table members() takes on the replica thread.
  const auto s = rs[1]->status();
  std::set<replica_id> ids;
  for (const auto& m : s->members) ids.insert(m.id);
  CHECK(ids == std::set<replica_id>{rs[0]->id(), rs[1]->id()});
  CHECK(s->taken > first->taken);
  // A stopped replica keeps its last status.
  rs[0]->stop();
  CHECK(rs[0]->status() != nullptr);
}

TEST_CASE("a watch handle stops its callback, several watches each get one call", "[registry][replica]") {
  auto rs = cluster(1);
  std::atomic<int> a{0}, b{0};
  auto wa = rs[0]->watch("/svc", [&](const service_view&) { ++a; }).value();
  auto wb = rs[0]->watch("/svc", [&](const service_view&) { ++b; }).value();
  REQUIRE(rs[0]->register_instance("/svc/p", provider("h", 1)));
  REQUIRE(eventually([&] { return a == 1 && b == 1; }));
  wa.cancel();
  REQUIRE(rs[0]->register_instance("/svc/p", provider("h", 2)));
  REQUIRE(eventually([&] { return b == 2; }));
  CHECK(a == 1);
}

TEST_CASE("least-loaded balancing steers away from an instance others keep busy",
          "[registry][replica]") {
  auto rs = cluster(2);
  REQUIRE(rs[0]->register_instance("/api/user", provider("127.0.0.1", 1)));
  REQUIRE(rs[0]->register_instance("/api/user", provider("127.0.0.1", 2)));
  REQUIRE(eventually([&] { return provider_count(*rs[1], "/api/user") == 2; }));
  // Consumer on replica 0 holds 5 calls open to :1.
  auto list0 = rs[0]->lookup("/api/user");
  std::vector<call_guard> open_calls;
  for (int i = 0; i < 5; ++i) open_calls.emplace_back(list0.providers().front());
  // Consumer on replica 1 sees it through the gossiped counter.
  least_loaded lb;
  CHECK(eventually([&] {
    auto list1 = rs[1]->lookup("/api/user");
    return list1.providers().front().in_flight() == 5 && lb.pick(*list1) == &*std::next(list1.providers().begin());
  }));
  open_calls.clear();
  CHECK(eventually([&] { return rs[1]->lookup("/api/user").providers().front().in_flight() == 0; }));
}

TEST_CASE("a provider that counts what it serves steers least-loaded picks elsewhere",
          "[registry][replica]") {
  auto rs = cluster(2);
  const auto registered = rs[0]->register_instance("/api/user", provider("127.0.0.1", 1));
  REQUIRE(registered);
  REQUIRE(rs[0]->register_instance("/api/user", provider("127.0.0.1", 2)));
  REQUIRE(eventually([&] { return provider_count(*rs[1], "/api/user") == 2; }));
  CHECK(rs[1]->count_serving("/api/user", registered.value().id).error() == errc::not_found);
  CHECK(rs[0]->count_serving("not a path", registered.value().id).error() == errc::invalid_path);
  // :1's process serves 5 calls, from callers Lattice does not see.
  auto counted = rs[0]->count_serving("/api/user", registered.value().id);
  REQUIRE(counted);
  const std::shared_ptr<serve_counter> served = std::move(counted).value();
  std::vector<serve_guard> serving;
  for (int i = 0; i < 5; ++i) serving.emplace_back(*served);
  least_loaded lb;
  CHECK(eventually([&] {
    auto list1 = rs[1]->lookup("/api/user");
    const auto& first = list1.providers().front();
    return first.provider_counted && first.in_flight() == 5 &&
           lb.pick(*list1) == &*std::next(list1.providers().begin());
  }));
  // Reported outright, as latticed's clients do.
  serving.clear();
  served->set(2, 40);
  CHECK(eventually([&] {
    const auto& first = rs[1]->lookup("/api/user").providers().front();
    return first.in_flight() == 2 && first.served() == 40;
  }));
}

TEST_CASE("balancers pick as documented", "[registry][balancer]") {
  std::vector<instance_view> providers;
  auto add = [&](const char* id, std::uint32_t weight, instance_role role) {
    instance i;
    i.id = id;
    i.address = "h";
    i.weight = weight;
    i.role = role;
    providers.push_back(instance_view{instance_record::make(i), load_cell_ptr(new load_cell), 0, 0, {}});
  };
  add("a", 100, instance_role::secondary);
  add("b", 300, instance_role::primary);
  add("c", 0, instance_role::primary);  // drained
  service_view v;
  v.providers = instance_list::from_sorted(providers);

  round_robin rr;
  std::map<std::string, int, std::less<>> counts;
  for (int i = 0; i < 10; ++i) ++counts[std::string(rr.pick(v)->record->id())];
  CHECK(counts["a"] == 5);
  CHECK(counts["b"] == 5);
  CHECK(counts.count("c") == 0);

  weighted_random wr;
  counts.clear();
  for (int i = 0; i < 4000; ++i) ++counts[std::string(wr.pick(v)->record->id())];
  CHECK(counts["b"] > 2 * counts["a"]);  // 3:1 expected; bound far from the 1:1 of ignoring weight
  CHECK(counts.count("c") == 0);

  primary_first pf(std::make_unique<round_robin>());
  for (int i = 0; i < 4; ++i) CHECK(pf.pick(v)->record->id() == "b");

  // Least-loaded: with nothing in flight, sequential calls spread by
  // weight (1:3) instead of all going to one provider...
  least_loaded ll;
  counts.clear();
  for (int i = 0; i < 4000; ++i) ++counts[std::string(ll.pick(v)->record->id())];
  CHECK(counts["a"] > 500);
  CHECK(counts["b"] > 2 * counts["a"]);
  CHECK(counts.count("c") == 0);
  // ...and the one with fewer calls in flight wins outright.
  providers[1].local->started = 3;
  for (int i = 0; i < 20; ++i) CHECK(ll.pick(v)->record->id() == "a");
  // Equal loads: fewer per unit of weight (b: 3/300 beats a: 3/100).
  providers[0].local->started = 3;
  for (int i = 0; i < 20; ++i) CHECK(ll.pick(v)->record->id() == "b");

  consistent_hash ch;
  const auto* first = ch.pick(v, {.role = {}, .key = "user-42"});
  for (int i = 0; i < 5; ++i) CHECK(ch.pick(v, {.role = {}, .key = "user-42"}) == first);
  int moved = 0;
  for (int k = 0; k < 200; ++k) {
    const std::string key = "k" + std::to_string(k);
    const auto before = ch.pick(v, {.role = {}, .key = key})->record->id();
    service_view without_a = v;
    without_a.providers = instance_list::from_sorted({providers.begin() + 1, providers.end()});
    const auto after = ch.pick(without_a, {.role = {}, .key = key})->record->id();
    if (before != "a") CHECK(after == before);  // only a's keys move
    moved += before == "a";
  }
  CHECK(moved > 0);
}

TEST_CASE("a change reaches exactly the watches whose prefix covers it, segment-wise", "[registry][replica]") {
  auto rs = cluster(1);
  struct seen_paths {
    std::mutex m;
    std::vector<std::string> paths;
    bool has(const std::string& p) {
      std::lock_guard lock(m);
      return std::find(paths.begin(), paths.end(), p) != paths.end();
    }
  };
  std::map<std::string, seen_paths> seen;
  std::vector<watch_handle> handles;
  for (const char* prefix : {"/", "/api", "/api/user", "/api-x", "/other"}) {
    auto& s = seen[prefix];
    handles.push_back(rs[0]->watch(prefix, [&s](const service_view& v) {
      std::lock_guard lock(s.m);
      s.paths.push_back(v.path);
    }).value());
  }
  // Published in this order; a watch gets its changes in publication
  // order, so once it has the later one, a wrongly matched earlier one
  // would be there too.
  REQUIRE(rs[0]->register_instance("/api-x/v2", provider("h", 1)));
  REQUIRE(rs[0]->register_instance("/api/user/v2", provider("h", 2)));
  REQUIRE(rs[0]->register_instance("/other", provider("h", 3)));
  REQUIRE(eventually([&] { return seen["/"].has("/other"); }));
  CHECK(seen["/"].has("/api-x/v2"));
  CHECK(seen["/"].has("/api/user/v2"));
  REQUIRE(eventually([&] { return seen["/api"].has("/api/user/v2"); }));
  CHECK_FALSE(seen["/api"].has("/api-x/v2"));
  REQUIRE(eventually([&] { return seen["/api/user"].has("/api/user/v2"); }));
  CHECK_FALSE(seen["/api/user"].has("/api-x/v2"));
  REQUIRE(eventually([&] { return seen["/other"].has("/other"); }));
  CHECK_FALSE(seen["/other"].has("/api/user/v2"));
  CHECK(eventually([&] { return seen["/api-x"].has("/api-x/v2"); }));
  handles.clear();  // before `seen` goes
}

TEST_CASE("a prefix watch starts with every path under it, segment-wise", "[registry][replica]") {
  auto rs = cluster(1);
  // "/api-x" sorts between "/api" and "/api/user" ('-' < '/').
  REQUIRE(rs[0]->register_instance("/api-x/v1", provider("h", 1)));
  REQUIRE(rs[0]->register_instance("/api/user", provider("h", 2)));
  REQUIRE(rs[0]->register_instance("/api", provider("h", 3)));
  std::mutex m;
  std::vector<std::string> paths;
  auto w = rs[0]->watch("/api", [&](const service_view& v) {
    std::lock_guard lock(m);
    paths.push_back(v.path);
  }).value();
  REQUIRE(eventually([&] { std::lock_guard lock(m); return paths.size() >= 2; }));
  std::lock_guard lock(m);
  CHECK(paths == std::vector<std::string>{"/api", "/api/user"});
}

TEST_CASE("a throwing watch callback is contained, the replica keeps serving (item 15)",
          "[registry][regression][replica]") {
  replica_options o;
  o.id = 1;
  auto r = replica::open(o).value();
  std::atomic<int> calls{0};
  auto w = r->watch("/svc", [&](const service_view&) {
               ++calls;
               throw std::runtime_error("a user's bug");
             }).value();
  REQUIRE(r->register_instance("/svc/a", kept("a")));
  REQUIRE(eventually([&] { return r->metrics().callback_errors >= 1; }));
  // Still serving, and the watch still fires.
  const int before = calls.load();
  REQUIRE(r->register_instance("/svc/b", kept("b")));
  CHECK(r->lookup("/svc/b").providers().size() == 1);
  CHECK(eventually([&] { return calls.load() > before; }));
}

}  // namespace replica_test
