// Registry cores in the deterministic simulator: propagation, liveness of
// ephemeral instances, reaping and re-assertion, partitions, load counters,
// the grace rule.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "registry_sim.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace registry_sim_test {

using namespace std::chrono_literals;
using lattice::registry::instance;
using lattice::registry::service_path;
using lattice::testing::all_list;
using lattice::testing::make_registry_sim;
using lattice::testing::providers_on;
using lattice::testing::registry_sim;
using ids = std::vector<std::string>;

namespace {

service_path path(const char* text) { return service_path::parse(text).value(); }

instance provider(const char* address, std::uint16_t port, bool ephemeral = true) {
  instance i;
  i.address = address;
  i.port = port;
  i.protocol = "http";
  i.ephemeral = ephemeral;
  return i;
}

std::unique_ptr<registry_sim> cluster(std::size_t n, std::uint64_t seed = 1,
                                      lattice::registry::core_options core = {}) {
  registry_sim::options o;
  o.nodes = n;
  o.seed = seed;
  o.drop_percent = 1;
  auto sim = make_registry_sim(o, core);
  REQUIRE(sim->run_until([&] { return sim->everyone_alive(); }, 10s));
  return sim;
}

}  // namespace

TEST_CASE("a registration on one replica is listed on every replica", "[registry][simulator]") {
  auto sim = cluster(3);
  REQUIRE(sim->node(0).register_instance(path("/HelloWorldService/1.0.0"), provider("10.0.0.1", 80)));
  REQUIRE(sim->node(1).register_instance(path("/HelloWorldService/1.0.0"), provider("10.0.0.2", 80)));
  CHECK(sim->run_until([&] { return all_list(*sim, "/HelloWorldService/1.0.0", ids{"10.0.0.1:80", "10.0.0.2:80"}); }, 2s));

  SECTION("deregistration propagates") {
    REQUIRE(sim->node(1).deregister_instance(path("/HelloWorldService/1.0.0"), "10.0.0.2:80"));
    CHECK(sim->run_until([&] { return all_list(*sim, "/HelloWorldService/1.0.0", ids{"10.0.0.1:80"}); }, 2s));
    sim->run_for(2s);
    CHECK(all_list(*sim, "/HelloWorldService/1.0.0", ids{"10.0.0.1:80"}));
  }
  SECTION("an ephemeral instance removed elsewhere is written back by its live owner") {
    // The end state alone (both listed) is the same if the removal did
    // nothing: check that it wrote a tombstone past the registration, and
    // that every replica ends with a write past that tombstone.
    const auto key = lattice::registry::instance_key("/HelloWorldService/1.0.0",
                                                     lattice::registry::instance_kind::provider, "10.0.0.2:80");
    const auto registered = sim->node(1).state().instances.find_entry(key)->stamp;
    REQUIRE(sim->node(2).deregister_instance(path("/HelloWorldService/1.0.0"), "10.0.0.2:80"));
    const auto* tombstone = sim->node(2).state().instances.find_entry(key);
    REQUIRE(tombstone != nullptr);
    REQUIRE_FALSE(tombstone->live());
    REQUIRE(registered < tombstone->stamp);
    const auto removed_at = tombstone->stamp;
    CHECK(sim->run_until([&] {
      for (std::size_t i = 0; i < 3; ++i) {
        const auto* entry = sim->node(i).state().instances.find_entry(key);
        if (entry == nullptr || !entry->live() || !(removed_at < entry->stamp)) return false;
      }
      return all_list(*sim, "/HelloWorldService/1.0.0", ids{"10.0.0.1:80", "10.0.0.2:80"});
    }, 2s));
  }
  SECTION("re-registering the same record writes nothing; a changed one updates in place") {
    const auto before = sim->node(0).stats().messages_sent;
    const auto epoch = sim->node(0).register_instance(path("/HelloWorldService/1.0.0"), provider("10.0.0.1", 80)).value().epoch;
    CHECK(sim->node(0).stats().messages_sent == before);
    auto changed = provider("10.0.0.1", 80);
    changed.weight = 7;
    const auto updated = sim->node(0).register_instance(path("/HelloWorldService/1.0.0"), changed).value();
    CHECK(updated.epoch == epoch);  // same registration: load counts carry on
    CHECK(sim->run_until([&] {
      sim->node(2).publish(sim->now());
      const auto* v = sim->node(2).published()->find("/HelloWorldService/1.0.0");
      return v && !v->providers.empty() && v->providers.front()->weight() == 7;
    }, 2s));
  }
}

TEST_CASE("a killed owner's ephemeral instances vanish everywhere within the liveness bound",
          "[registry][simulator]") {
  lattice::registry::core_options core;
  core.reap_after = 3s;
  auto sim = cluster(4, 7, core);
  REQUIRE(sim->node(3).register_instance(path("/api/user/1.0.0"), provider("10.0.0.4", 80)));
  REQUIRE(sim->node(3).register_instance(path("/api/user/1.0.0"), provider("10.0.0.5", 80, /*ephemeral=*/false)));
  REQUIRE(sim->run_until([&] { return all_list(*sim, "/api/user/1.0.0", ids{"10.0.0.4:80", "10.0.0.5:80"}); }, 2s));

  sim->kill(3);
  const auto took = sim->run_until([&] { return all_list(*sim, "/api/user/1.0.0", ids{"10.0.0.5:80"}); }, 5s);
  REQUIRE(took.has_value());
  CHECK(*took <= 700ms + 400ms);  // dead_after plus heartbeat staleness
  // After the reap delay some replica tombstones it; the persistent one stays.
  REQUIRE(sim->run_until([&] {
    for (std::size_t i = 0; i < 3; ++i)
      if (sim->node(i).state().instances.contains(lattice::registry::instance_key(
              "/api/user/1.0.0", lattice::registry::instance_kind::provider, "10.0.0.4:80")))
        return false;
    return true;
  }, 10s));
  std::uint64_t reaped = 0;
  for (std::size_t i = 0; i < 3; ++i) reaped += sim->node(i).reaped();
  CHECK(reaped >= 1);
  CHECK(all_list(*sim, "/api/user/1.0.0", ids{"10.0.0.5:80"}));
}

TEST_CASE("an owner cut off long enough to be reaped re-asserts its instances when it returns",
          "[registry][simulator]") {
  lattice::registry::core_options core;
  core.reap_after = 2s;
  auto sim = cluster(4, 11, core);
  REQUIRE(sim->node(0).register_instance(path("/svc/a"), provider("10.0.0.1", 1)));
  REQUIRE(sim->run_until([&] { return all_list(*sim, "/svc/a", ids{"10.0.0.1:1"}); }, 2s));
  sim->partition({0});
  // The majority hides it, then reaps it; the owner, isolated, keeps
  // listing its peers' and its own instances.
  REQUIRE(sim->run_until([&] {
    return providers_on(*sim, 1, "/svc/a").empty() &&
           !sim->node(1).state().instances.contains(lattice::registry::instance_key(
               "/svc/a", lattice::registry::instance_kind::provider, "10.0.0.1:1"));
  }, 10s));
  CHECK(providers_on(*sim, 0, "/svc/a") == ids{"10.0.0.1:1"});
  sim->heal();
  CHECK(sim->run_until([&] { return all_list(*sim, "/svc/a", ids{"10.0.0.1:1"}); }, 5s));
}

TEST_CASE("both sides of a partition register, after healing nothing is lost or resurrected",
          "[registry][simulator]") {
  auto sim = cluster(5, 5);
  REQUIRE(sim->node(0).register_instance(path("/svc/x"), provider("10.0.0.9", 9, false)));
  REQUIRE(sim->run_until([&] { return all_list(*sim, "/svc/x", ids{"10.0.0.9:9"}); }, 2s));
  sim->partition({0, 1});  // minority {0, 1}, majority {2, 3, 4}
  REQUIRE(sim->node(0).register_instance(path("/svc/x"), provider("10.0.1.1", 1, false)));
  REQUIRE(sim->node(3).register_instance(path("/svc/x"), provider("10.0.2.1", 1, false)));
  REQUIRE(sim->node(4).deregister_instance(path("/svc/x"), "10.0.0.9:9"));
  REQUIRE(sim->node(1).set_config(path("/db/url"), "pg://minority"));
  sim->run_for(1s);
  // Each side reads its own writes during the cut.
  CHECK(providers_on(*sim, 1, "/svc/x") == ids{"10.0.0.9:9", "10.0.1.1:1"});
  CHECK(providers_on(*sim, 2, "/svc/x") == ids{"10.0.2.1:1"});
  sim->heal();
  REQUIRE(sim->run_until([&] { return sim->converged(); }, 10s));
  CHECK(all_list(*sim, "/svc/x", ids{"10.0.1.1:1", "10.0.2.1:1"}));
  for (std::size_t i = 0; i < 5; ++i) {
    sim->node(i).publish(sim->now());
    CHECK(sim->node(i).published()->config->at("/db/url") == "pg://minority");
  }
}

TEST_CASE("config flags travel and are replaced with their value, every value reads back as written",
          "[registry][simulator][config]") {
  auto sim = cluster(3, 21);
  const auto entry_on = [&](std::size_t i, const char* key) {
    sim->node(i).publish(sim->now());
    const auto* e = sim->node(i).published()->config->find(key);
    return e ? std::optional<std::pair<std::string, std::uint64_t>>({e->value, e->flags}) : std::nullopt;
  };
  REQUIRE(sim->node(0).set_config(path("/app/a"), "v1", 0xfeedULL << 40));
  // Bytes that look like the flags' envelope (registry/src/config_value.hpp).
  const std::string tricky("\0lattice-flags:\0\0\0\0\0\0\0\x07rest", 27);
  REQUIRE(sim->node(1).set_config(path("/app/b"), tricky));
  const auto expected_a = std::pair<std::string, std::uint64_t>{"v1", 0xfeedULL << 40};
  const auto expected_b = std::pair<std::string, std::uint64_t>{tricky, 0};
  REQUIRE(sim->run_until([&] {
    for (std::size_t i = 0; i < 3; ++i)
      if (entry_on(i, "/app/a") != expected_a || entry_on(i, "/app/b") != expected_b) return false;
    return true;
  }, 5s));
  // A later write without flags replaces them everywhere.
  REQUIRE(sim->node(2).set_config(path("/app/a"), "v2"));
  const auto replaced = std::pair<std::string, std::uint64_t>{"v2", 0};
  REQUIRE(sim->run_until([&] {
    for (std::size_t i = 0; i < 3; ++i)
      if (entry_on(i, "/app/a") != replaced) return false;
    return true;
  }, 5s));
}

TEST_CASE("a restarted owner's earlier registrations are hidden and removed",
          "[registry][simulator]") {
  auto sim = cluster(3, 9);
  REQUIRE(sim->node(2).register_instance(path("/svc/r"), provider("10.0.0.3", 3)));
  REQUIRE(sim->run_until([&] { return all_list(*sim, "/svc/r", ids{"10.0.0.3:3"}); }, 2s));
  sim->kill(2);
  sim->restart(2);  // before anyone judged it dead: a fast restart
  CHECK(sim->run_until([&] { return all_list(*sim, "/svc/r", ids{}); }, 3s));
  CHECK(sim->run_until([&] {
    return !sim->node(0).state().instances.contains(lattice::registry::instance_key(
        "/svc/r", lattice::registry::instance_kind::provider, "10.0.0.3:3"));
  }, 3s));
}

TEST_CASE("load counted on one replica is seen on the others, per registration",
          "[registry][simulator]") {
  auto sim = cluster(3, 4);
  REQUIRE(sim->node(0).register_instance(path("/svc/l"), provider("10.0.0.1", 1)));
  REQUIRE(sim->run_until([&] { return all_list(*sim, "/svc/l", ids{"10.0.0.1:1"}); }, 2s));
  const auto* seen_on_1 = sim->node(1).published()->find("/svc/l");
  REQUIRE(seen_on_1 != nullptr);
  auto cell = seen_on_1->providers.front().local;
  cell->started += 5;
  cell->finished += 2;
  CHECK(seen_on_1->providers.front().in_flight() == 3);  // live locally
  CHECK(sim->run_until([&] {
    sim->node(2).publish(sim->now());
    const auto& p = sim->node(2).published()->find("/svc/l")->providers.front();
    return p.in_flight() == 3 && p.served() == 2;
  }, 2s));

  SECTION("a new registration of the same id starts from zero") {
    REQUIRE(sim->node(0).deregister_instance(path("/svc/l"), "10.0.0.1:1"));
    REQUIRE(sim->run_until([&] { return all_list(*sim, "/svc/l", ids{}); }, 2s));
    REQUIRE(sim->node(0).register_instance(path("/svc/l"), provider("10.0.0.1", 1)));
    REQUIRE(sim->run_until([&] { return all_list(*sim, "/svc/l", ids{"10.0.0.1:1"}); }, 2s));
    sim->run_for(1s);
    sim->node(2).publish(sim->now());
    const auto& p = sim->node(2).published()->find("/svc/l")->providers.front();
    CHECK(p.in_flight() == 0);
    CHECK(p.served() == 0);
    // The ended registration's counts leave the document everywhere: node
    // 1, their only writer, erased them (issue #14: load entries only for
    // registrations that are live).
    const auto* record = sim->node(0).state().instances.find(
        lattice::registry::instance_key("/svc/l", lattice::registry::instance_kind::provider, "10.0.0.1:1"));
    REQUIRE(record != nullptr);
    const auto new_epoch = (*record)->epoch();
    const auto old_counts_anywhere = [&] {
      for (std::size_t i = 0; i < 3; ++i) {
        bool found = false;
        sim->node(i).state().load.for_each([&](const auto& key, const auto&, const auto&) {
          found = found || key.epoch != new_epoch;
        });
        if (found) return true;
      }
      return false;
    };
    CHECK(sim->run_until([&] { return !old_counts_anywhere(); }, 2s));
  }
}

TEST_CASE("the counts of a caller that died leave the document when the registration it called ends",
          "[registry][simulator]") {
  lattice::registry::core_options core;
  core.compaction_interval = 200ms;  // the sweep runs with compaction
  auto sim = cluster(3, 5, core);
  REQUIRE(sim->node(0).register_instance(path("/svc/o"), provider("10.0.0.1", 1)));
  REQUIRE(sim->run_until([&] { return all_list(*sim, "/svc/o", ids{"10.0.0.1:1"}); }, 2s));
  auto cell = sim->node(2).published()->find("/svc/o")->providers.front().local;
  cell->started += 4;
  cell->finished += 1;
  const auto live_load_entries = [&](std::size_t i) { return sim->node(i).state().load.size(); };
  REQUIRE(sim->run_until([&] { return live_load_entries(0) == 1 && live_load_entries(1) == 1; }, 2s));
  // The caller dies for good; its counts stay while the registration lives
  // (they are what it called), and go when the registration ends: nobody
  // else writes them, so a survivor sweeps them.
  sim->kill(2);
  sim->run_for(3s);
  CHECK(live_load_entries(0) == 1);
  REQUIRE(sim->node(0).deregister_instance(path("/svc/o"), "10.0.0.1:1"));
  CHECK(sim->run_until([&] { return live_load_entries(0) == 0 && live_load_entries(1) == 0; }, 3s));
}

TEST_CASE("a replica cut off for longer than the grace period starts over from its peers",
          "[registry][simulator]") {
  lattice::registry::core_options core;
  core.gc_grace = 3s;
  core.compaction_interval = 500ms;
  core.reap_after = 1s;
  // At its minimum (gc_grace), so the others collect while node 2 is away,
  // and it returns stale.
  core.reconnect_timeout = core.gc_grace;
  auto sim = cluster(3, 8, core);
  REQUIRE(sim->node(0).register_instance(path("/svc/g"), provider("10.0.0.1", 1, false)));
  REQUIRE(sim->node(1).register_instance(path("/svc/g"), provider("10.0.0.2", 1, false)));
  REQUIRE(sim->run_until([&] { return all_list(*sim, "/svc/g", ids{"10.0.0.1:1", "10.0.0.2:1"}); }, 2s));
  sim->partition({2});
  // The others erase node 1's instance and forget the tombstone after the
  // grace period; node 2 still holds the put.
  REQUIRE(sim->node(1).deregister_instance(path("/svc/g"), "10.0.0.2:1"));
  sim->run_for(6s);
  CHECK(sim->node(0).state().instances.tombstones() == 0);
  CHECK(providers_on(*sim, 2, "/svc/g") == ids{"10.0.0.1:1", "10.0.0.2:1"});
  sim->heal();
  REQUIRE(sim->run_until([&] { return sim->converged(); }, 10s));
  CHECK(sim->node(2).resyncs() == 1);
  CHECK(all_list(*sim, "/svc/g", ids{"10.0.0.1:1"}));  // nothing resurrected
}

TEST_CASE("bad input is rejected and changes nothing", "[registry]") {
  using lattice::registry::errc;
  auto sim = cluster(1);
  auto& core = sim->node(0);
  const auto digest = core.state().digest();
  CHECK(core.register_instance(lattice::registry::service_path::root(), provider("a", 1)).error() == errc::root_path_not_allowed);
  instance no_address;
  CHECK(core.register_instance(path("/svc"), no_address).error() == errc::invalid_address);
  auto tagged = provider("a", 1);
  tagged.tags.emplace("k", std::string(lattice::registry::max_tag_value_length + 1, 'v'));
  CHECK(core.register_instance(path("/svc"), tagged).error() == errc::invalid_tag);
  auto heavy = provider("a", 1);
  heavy.weight = lattice::registry::max_weight + 1;
  CHECK(core.register_instance(path("/svc"), heavy).error() == errc::invalid_weight);
  auto bad_id = provider("a", 1);
  bad_id.id = std::string("x\ny");
  CHECK(core.register_instance(path("/svc"), bad_id).error() == errc::invalid_id);
  CHECK(core.set_config(path("/big"), std::string(600 * 1024, 'x')).error() == errc::value_too_large);
  CHECK(core.state().digest() == digest);
  // Deletes of unknown keys are not bad input: they write tombstones
  // (tests/registry/merge_regressions_test.cpp), and say the key was unknown.
  CHECK(core.deregister_instance(path("/svc"), "nobody").value() == false);
  CHECK(core.erase_config(path("/no/such/key")).value() == false);
}

TEST_CASE("a change to a path of thousands copies one chunk of its view, here and on a peer", "[registry][simulator]") {
  // The view after a registration shares every chunk but the one the
  // instance falls in with the view before (instance_list), on the writer
  // and where the change merges in; a rebuilt view would share none.
  auto sim = cluster(2);
  for (std::uint16_t port = 1; port <= 2000; ++port)
    REQUIRE(sim->node(0).register_instance(path("/big"), provider("10.0.0.1", port)));
  REQUIRE(sim->run_until([&] { return providers_on(*sim, 1, "/big").size() == 2000; }, 5s));
  sim->node(0).publish(sim->now());
  const auto before0 = sim->node(0).published()->find("/big")->providers;
  const auto before1 = sim->node(1).published()->find("/big")->providers;

  REQUIRE(sim->node(0).register_instance(path("/big"), provider("10.0.0.1", 4321)));
  REQUIRE(sim->run_until([&] { return providers_on(*sim, 1, "/big").size() == 2001; }, 5s));
  sim->node(0).publish(sim->now());
  const auto& after0 = sim->node(0).published()->find("/big")->providers;
  const auto& after1 = sim->node(1).published()->find("/big")->providers;
  CHECK(after0.size() == 2001);
  CHECK(after0.shared_chunks(before0) == after0.chunk_count() - 1);
  CHECK(after1.shared_chunks(before1) == after1.chunk_count() - 1);
}

TEST_CASE("a new replica's first registration is listed everywhere as fast as any other", "[registry][simulator]") {
  // Node 9 starts after the others have formed a cluster, knowing only its
  // seed (node 0): its registration's delta and its member record must
  // travel together, or replicas that have never heard of the owner hide
  // the instance (an unknown owner is dead) until heartbeats spread its
  // record, several 100 ms rounds later (520-710 ms here before they did).
  // The joiner also learns the member table from its seed at once, so it
  // spreads its change as widely as any member. Over 21 seeds, against a
  // registration by an established member at the same moment.
  std::vector<long> joined, established;
  for (std::uint64_t seed = 1; seed <= 21; ++seed) {
    registry_sim::options o;
    o.nodes = 10;
    o.seed = seed;
    auto sim = make_registry_sim(o);
    sim->kill(9);
    REQUIRE(sim->run_until([&] { return sim->everyone_alive(); }, 10s));
    sim->run_for(1s);
    sim->restart(9);
    sim->run_for(5ms);  // one tick: its first heartbeat is on its way to the seed
    REQUIRE(sim->node(9).register_instance(path("/joined/service"), provider("10.0.0.9", 80)));
    const auto took = sim->run_until([&] { return all_list(*sim, "/joined/service", ids{"10.0.0.9:80"}); }, 2s);
    REQUIRE(took);
    joined.push_back(took->count());
    // And the joiner knows every member (from its seed's answer).
    CHECK(sim->run_until([&] { return sim->everyone_alive(); }, 100ms));
    // The baseline: a registration by a member of long standing, once the
    // joiner is known to all.
    sim->run_for(1s);
    REQUIRE(sim->node(5).register_instance(path("/member/service"), provider("10.0.0.5", 80)));
    const auto baseline = sim->run_until([&] { return all_list(*sim, "/member/service", ids{"10.0.0.5:80"}); }, 2s);
    REQUIRE(baseline);
    established.push_back(baseline->count());
  }
  std::sort(joined.begin(), joined.end());
  std::sort(established.begin(), established.end());
  INFO("joiner: median " << joined[10] << " ms, max " << joined.back() << " ms; established member: median "
                         << established[10] << " ms, max " << established.back() << " ms");
  // Message delays are 1-10 ms and a heartbeat round 100 ms: a few hops,
  // not rounds; the tail is the epidemic's miss, repaired by anti-entropy
  // (200 ms rounds) for either kind of replica.
  CHECK(joined[10] <= 40);
  CHECK(joined[10] <= established[10] + 20);
}

}  // namespace registry_sim_test
