// Regression tests for the registry-level ways merges lost, resurrected or
// diverged data (the "Merges that lose nothing" issue; reproductions in
// shared/repros/). Each names the item or reproduction it replaces.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "lattice/registry/replica.hpp"
#include "registry_sim.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace merge_regressions_test {

using namespace std::chrono_literals;
using lattice::registry::instance;
using lattice::registry::registry_document;
using lattice::registry::service_path;
using lattice::testing::all_list;
using lattice::testing::config_on;
using lattice::testing::make_registry_sim;
using lattice::testing::persistent_instance;
using lattice::testing::providers_on;
using lattice::testing::registry_sim;

namespace {

service_path path(const char* text) { return service_path::parse(text).value(); }

// What a data directory written before the floor bound was kept holds.
lattice::registry::saved_progress contact_only(std::optional<std::uint64_t> contact) {
  lattice::registry::saved_progress progress;
  progress.last_contact_us = contact;
  return progress;
}

std::unique_ptr<registry_sim> cluster(std::size_t n, lattice::registry::core_options core = {},
                                      lattice::transport::dissemination mode = lattice::transport::dissemination::delta,
                                      unsigned op_digest_check_every = 10) {
  registry_sim::options o;
  o.nodes = n;
  o.base.mode = mode;
  o.base.op_digest_check_every = op_digest_check_every;
  auto sim = make_registry_sim(o, core);
  REQUIRE(sim->run_until([&] { return sim->everyone_alive(); }, 10s));
  return sim;
}

// Three replicas with a gc_grace of 2 s, and a config key written before
// the faults that every replica holds.
std::unique_ptr<registry_sim> grace_cluster() {
  lattice::registry::core_options core;
  core.gc_grace = 2s;
  core.compaction_interval = 250ms;
  auto sim = cluster(3, core);
  REQUIRE(sim->node(0).set_config(path("/before"), "shared"));
  REQUIRE(sim->run_until([&] { return config_on(*sim, 1, "/before") == "shared"; }, 5s));
  return sim;
}

// Hands node `to` a gossip message from a made-up replica 99.
void inject(registry_sim& sim, std::size_t to, const registry_document& delta) {
  lattice::transport::envelope<lattice::transport::gossip_body<registry_document>> m{
      99, "sim:99", {lattice::transport::member_table{}, delta}};
  const auto bytes = lattice::crdt::encode(m);
  sim.node(to).on_message(lattice::transport::message_type::gossip, bytes, sim.now());
}

}  // namespace

TEST_CASE("a delete of a key this replica never saw still wins after the heal (item 1)",
          "[registry][regression]") {
  auto sim = cluster(3);
  sim->partition({2});
  REQUIRE(sim->node(0).set_config(path("/k"), "v"));
  REQUIRE(sim->node(0).register_instance(path("/svc"), persistent_instance("p1")));
  REQUIRE(sim->run_until([&] { return config_on(*sim, 1, "/k") == "v"; }, 5s));
  // Node 2 never saw either; its deletes come later and must win.
  CHECK(sim->node(2).erase_config(path("/k")).value() == false);
  CHECK(sim->node(2).deregister_instance(path("/svc"), "p1").value() == false);
  sim->heal();
  REQUIRE(sim->run_until([&] { return sim->converged(); }, 10s));
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(config_on(*sim, i, "/k") == std::nullopt);
    CHECK(providers_on(*sim, i, "/svc").empty());
  }
}

TEST_CASE("a write after a far-future stamp on its key is not lost (f_stamp)", "[registry][regression]") {
  auto sim = cluster(2);
  registry_document put;
  const std::uint64_t far = 1'700'000'000'000'000ULL + 3'600'000'000ULL;  // an hour ahead
  put.config = registry_document::config_map{}.put("/cfg", "peer", {far, 0xffffffffu, 99});
  inject(*sim, 0, put);
  REQUIRE(config_on(*sim, 0, "/cfg") == "peer");
  REQUIRE(sim->node(0).erase_config(path("/cfg")).value());
  CHECK(config_on(*sim, 0, "/cfg") == std::nullopt);
  REQUIRE(sim->node(0).set_config(path("/cfg"), "mine"));
  CHECK(config_on(*sim, 0, "/cfg") == "mine");
  REQUIRE(sim->run_until([&] { return config_on(*sim, 1, "/cfg") == "mine"; }, 5s));
}

TEST_CASE("an instance whose key and record disagree is rejected (f_keymismatch)", "[registry][regression]") {
  auto sim = cluster(2);
  instance y = persistent_instance("Y");
  y.owner = 99;
  const std::string key = lattice::registry::instance_key("/svc", lattice::registry::instance_kind::provider, "X");
  registry_document put;
  put.instances = registry_document::instance_map{}.put(key, lattice::registry::instance_record::make(y),
                                                        {1'700'000'000'500'000, 0, 99});
  const auto rejected_before = sim->node(0).stats().rejected;
  inject(*sim, 0, put);
  CHECK(sim->node(0).stats().rejected == rejected_before + 1);
  CHECK(sim->node(0).state().instances.empty());
  CHECK(providers_on(*sim, 0, "/svc").empty());
  // The well-formed twin is accepted, so the rejection was for the mismatch.
  registry_document good;
  good.instances = registry_document::instance_map{}.put(
      lattice::registry::instance_key("/svc", lattice::registry::instance_kind::provider, "Y"),
      lattice::registry::instance_record::make(y), {1'700'000'000'500'000, 0, 99});
  inject(*sim, 0, good);
  CHECK(providers_on(*sim, 0, "/svc") == std::vector<std::string>{"Y"});
}

TEST_CASE("the replica that stayed up keeps its state when the others return (f_survivor, item 3)",
          "[registry][regression]") {
  lattice::registry::core_options core;
  core.gc_grace = 2s;  // stands for the default hour
  core.compaction_interval = 500ms;
  auto sim = cluster(3, core);
  REQUIRE(sim->node(0).set_config(path("/before"), "1"));
  REQUIRE(sim->node(1).register_instance(path("/svc"), persistent_instance("p1")));
  REQUIRE(sim->run_until([&] { return providers_on(*sim, 0, "/svc").size() == 1 && config_on(*sim, 2, "/before"); }, 5s));
  const bool graceful = GENERATE(false, true);
  INFO((graceful ? "peers stopped gracefully" : "peers killed"));
  for (std::size_t i : {1u, 2u}) {
    if (graceful)
      sim->stop_gracefully(i);
    else
      sim->kill(i);
  }
  sim->run_for(1s);
  REQUIRE(sim->node(0).set_config(path("/during"), "acked"));
  REQUIRE(sim->node(0).erase_config(path("/before")).value());
  sim->run_for(5s);  // longer than gc_grace alone
  sim->restart(1);   // comes back empty
  REQUIRE(sim->run_until([&] { return config_on(*sim, 1, "/during") == "acked"; }, 10s));
  sim->run_for(2s);
  CHECK(sim->node(0).resyncs() == 0);
  CHECK(config_on(*sim, 0, "/during") == "acked");
  CHECK(config_on(*sim, 0, "/before") == std::nullopt);
  CHECK(providers_on(*sim, 0, "/svc") == std::vector<std::string>{"p1"});
  CHECK(providers_on(*sim, 1, "/svc") == std::vector<std::string>{"p1"});
}

TEST_CASE("a data directory away longer than gc_grace does not bring back what was deleted (f_stale_restore, item 4)",
          "[registry][regression]") {
  lattice::registry::core_options core;
  core.gc_grace = 2s;
  core.compaction_interval = 500ms;
  // At its minimum (gc_grace), so node 0 collects while node 2 is down,
  // and node 2 returns stale.
  core.reconnect_timeout = core.gc_grace;
  auto sim = cluster(3, core);
  REQUIRE(sim->node(0).register_instance(path("/svc"), persistent_instance("p1")));
  REQUIRE(sim->node(0).set_config(path("/cfg"), "on"));
  REQUIRE(sim->node(2).set_config(path("/mine"), "kept"));
  REQUIRE(sim->run_until([&] { return providers_on(*sim, 2, "/svc").size() == 1 && config_on(*sim, 2, "/cfg"); }, 5s));
  sim->run_for(3s);  // past everyone's first gc_grace
  const registry_document saved = sim->node(2).state();  // what node 2's data directory holds
  const auto contact = sim->node(2).last_contact_us();
  REQUIRE(contact != 0);
  sim->kill(2);
  REQUIRE(sim->node(0).deregister_instance(path("/svc"), "p1").value());
  REQUIRE(sim->node(0).erase_config(path("/cfg")).value());
  sim->run_for(6s);  // down longer than gc_grace: the tombstones are collected
  REQUIRE(sim->node(0).state().tombstones() == 0);
  sim->restart(2);
  // What replica::open does with the data directory; or, with no record of
  // the last contact, what the repro does: the newest stamp stands in.
  const bool contact_known = GENERATE(true, false);
  INFO((contact_known ? "last contact known" : "last contact unknown"));
  sim->node(2).restore(saved, contact_only(contact_known ? std::optional(contact) : std::nullopt));
  REQUIRE(sim->run_until([&] { return sim->converged(); }, 10s));
  CHECK(sim->node(2).resyncs() == 1);
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(providers_on(*sim, i, "/svc").empty());
    CHECK(config_on(*sim, i, "/cfg") == std::nullopt);
    CHECK(config_on(*sim, i, "/mine") == "kept");  // still held by the others
  }
}

TEST_CASE("a fresh replica in op mode is not replayed a write whose delete was collected (f_op_replay, item 6)",
          "[registry][regression]") {
  lattice::registry::core_options core;
  core.gc_grace = 2s;
  core.compaction_interval = 500ms;
  auto sim = cluster(3, core, lattice::transport::dissemination::op);
  REQUIRE(sim->node(0).set_config(path("/cfg"), "on"));
  REQUIRE(sim->run_until([&] { return config_on(*sim, 1, "/cfg") == "on"; }, 5s));
  REQUIRE(sim->node(1).erase_config(path("/cfg")).value());
  sim->run_for(6s);  // past gc_grace: the tombstone is collected everywhere
  REQUIRE(sim->node(0).state().tombstones() == 0);
  // The deleting replica restarts and writes: its new incarnation resets
  // its stream in every op log, so the delete's op is gone from all.
  sim->kill(1);
  sim->restart(1);
  REQUIRE(sim->run_until([&] { return sim->everyone_alive(); }, 10s));
  REQUIRE(sim->node(1).set_config(path("/other"), "x"));
  REQUIRE(sim->run_until([&] { return config_on(*sim, 0, "/other") == "x"; }, 5s));
  sim->kill(2);
  sim->restart(2);  // a new, empty replica
  // Node 0's stream reaches node 2 in order: once node 2 holds a write
  // node 0 makes now, whatever came before it in that stream was dealt
  // with too (replayed, or skipped by a range sync).
  REQUIRE(sim->node(0).set_config(path("/later"), "x"));
  CHECK(sim->run_until([&] { return config_on(*sim, 2, "/later") == "x" && sim->converged(); }, 20s));
  for (std::size_t i = 0; i < 3; ++i) CHECK(config_on(*sim, i, "/cfg") == std::nullopt);
}

TEST_CASE("after the grace rule, a replica's next ops continue its sequence (f_op_resync, item 6)",
          "[registry][regression]") {
  lattice::registry::core_options core;
  core.gc_grace = 2s;
  core.compaction_interval = 500ms;
  // No digest rounds: what reaches node 0 travels as ops.
  auto sim = cluster(3, core, lattice::transport::dissemination::op, /*op_digest_check_every=*/1'000'000);
  sim->run_for(3s);  // past everyone's first gc_grace
  for (int i = 0; i < 20; ++i) REQUIRE(sim->node(2).set_config(path(("/k" + std::to_string(i)).c_str()), "v"));
  REQUIRE(sim->run_until([&] { return config_on(*sim, 0, "/k19") == "v"; }, 5s));
  sim->partition({2});
  sim->run_for(4s);  // cut off longer than gc_grace
  sim->heal();
  REQUIRE(sim->run_until([&] { return sim->node(2).resyncs() > 0; }, 10s));
  // Virtual time: the op itself reaches node 0 within one message delay
  // (at most 10 ms here). An op numbered with a reused sequence would be
  // dropped as a duplicate, and the write would wait for an anti-entropy
  // exchange (every 200 ms) to find the gap.
  REQUIRE(sim->node(2).set_config(path("/new"), "x"));
  CHECK(sim->run_until([&] { return config_on(*sim, 0, "/new") == "x"; }, 100ms));
}

namespace {
const lattice::registry::instance_view* provider_view(registry_sim& sim, std::size_t i, const char* p) {
  sim.node(i).publish(sim.now());
  const auto* v = sim.node(i).published()->find(p);
  return v != nullptr && !v->providers.empty() ? &v->providers.front() : nullptr;
}
}  // namespace

TEST_CASE("a crashed caller's calls stop counting as in flight, and served totals only grow (f_load_leak, item 12)",
          "[registry][regression]") {
  auto sim = cluster(3);
  REQUIRE(sim->node(0).register_instance(path("/svc"), persistent_instance("p1")));
  REQUIRE(sim->run_until([&] { return provider_view(*sim, 2, "/svc") != nullptr; }, 5s));
  {
    // Node 2's first life: two calls served, three in flight when it dies.
    lattice::registry::call_guard done1(*provider_view(*sim, 2, "/svc"));
    lattice::registry::call_guard done2(*provider_view(*sim, 2, "/svc"));
  }
  std::vector<std::unique_ptr<lattice::registry::call_guard>> calls;
  for (int i = 0; i < 3; ++i)
    calls.push_back(std::make_unique<lattice::registry::call_guard>(*provider_view(*sim, 2, "/svc")));
  REQUIRE(sim->run_until([&] {
    const auto* v = provider_view(*sim, 0, "/svc");
    return v->in_flight() == 3 && v->served() == 2;
  }, 5s));
  sim->kill(2);
  calls.clear();  // the process is gone: these finishes are never published
  CHECK(sim->run_until([&] { return provider_view(*sim, 0, "/svc")->in_flight() == 0; }, 10s));
  CHECK(provider_view(*sim, 0, "/svc")->served() == 2);
  // A new life of the same id counts from zero without overwriting the
  // first life's totals.
  sim->restart(2);
  REQUIRE(sim->run_until([&] { return sim->everyone_alive() && provider_view(*sim, 2, "/svc") != nullptr; }, 10s));
  { lattice::registry::call_guard one_more(*provider_view(*sim, 2, "/svc")); }
  CHECK(sim->run_until([&] { return provider_view(*sim, 0, "/svc")->served() == 3; }, 5s));
  CHECK(provider_view(*sim, 0, "/svc")->in_flight() == 0);
  CHECK(sim->run_until([&] { return provider_view(*sim, 1, "/svc")->served() == 3; }, 5s));
}

// The chaos soak: writes acknowledged by a replica cut off from its peers,
// then a kill just after the heal, before it pushed them. Its new life
// gossiped its clock as its stamp floor at once, so peers' compaction
// horizons passed those writes before it pushed them, and the writes were
// then read as erased. Until it has had gc_grace in contact, a restarted
// replica's floor is its last contact.
TEST_CASE("a restarted replica's gossiped floor stays at its last contact", "[registry][regression]") {
  lattice::registry::core_options core;
  core.gc_grace = 2s;
  core.compaction_interval = 250ms;
  auto sim = cluster(3, core);
  const auto id = sim->node(0).self();
  const auto contact = sim->node(0).last_contact_us();
  REQUIRE(contact != 0);
  sim->partition({0});
  sim->run_for(100ms);
  REQUIRE(sim->node(0).set_config(path("/cut-off"), "acknowledged"));
  const registry_document disk = sim->node(0).state();
  const auto written = disk.config.find_entry("/cut-off")->stamp.physical_us;
  REQUIRE(written > contact);
  sim->kill(0);
  sim->restart(0);
  sim->node(0).restore(disk, contact_only(contact));
  const auto incarnation = sim->node(0).members().self_record().incarnation;
  sim->heal();
  const auto heard = [&] {
    const auto* record = sim->node(1).members().table().find(id);
    return record != nullptr && record->incarnation == incarnation && record->clock_us != 0;
  };
  REQUIRE(sim->run_until(heard, 5s));
  CHECK(sim->node(1).members().table().find(id)->clock_us <= contact);
  // And the write reaches everyone.
  REQUIRE(sim->run_until([&] { return config_on(*sim, 1, "/cut-off") == "acknowledged"; }, 5s));
}

TEST_CASE("a restarted replica's registration written blind survives a peer's reap of its earlier life",
          "[registry][regression]") {
  // Invariant sweep seeds 1505, 1525, ... (16 of 5,000): node 0 dies with an
  // ephemeral registration, a peer reaps it, and node 0 comes back without
  // its data, its clock an hour back, cut off, and registers the same id
  // persistently. Its write is stamped an hour below the reap. The reap is
  // stamped on the owner's behalf, so node 0 knows it removed an earlier
  // life's record and writes its registration again above it.
  constexpr std::int64_t hour_us = 3'600'000'000LL;
  auto skews = std::make_shared<lattice::testing::clock_skews>();
  lattice::registry::core_options core;
  core.reap_after = 1s;
  registry_sim::options o;
  o.nodes = 3;
  auto sim = make_registry_sim(o, core, skews);
  REQUIRE(sim->run_until([&] { return sim->everyone_alive(); }, 10s));
  instance ephemeral = persistent_instance("p1");
  ephemeral.ephemeral = true;
  REQUIRE(sim->node(0).register_instance(path("/svc"), ephemeral));
  REQUIRE(sim->run_until([&] { return all_list(*sim, "/svc", {"p1"}); }, 5s));
  sim->kill(0);
  const std::string key = lattice::registry::instance_key("/svc", lattice::registry::instance_kind::provider, "p1");
  const auto reaped = [&] {
    const auto* entry = sim->node(1).state().instances.find_entry(key);
    return entry != nullptr && !entry->live();
  };
  REQUIRE(sim->run_until(reaped, 30s));
  (*skews)[1] = -hour_us;  // node 0 is replica id 1
  sim->partition({0});
  sim->restart(0);  // no data directory
  REQUIRE(sim->node(0).register_instance(path("/svc"), persistent_instance("p1")));
  sim->heal();
  CHECK(sim->run_until([&] { return all_list(*sim, "/svc", {"p1"}); }, 10s));
}

TEST_CASE("a replica back after gc_grace keeps its delete when a peer's horizon has passed it",
          "[registry][regression]") {
  // Invariant sweep seeds 4455 and 5496 (state mode). Node 2 comes back
  // from its data directory after longer than gc_grace and, before it has
  // heard from anyone, deletes an instance. Node 0, alone for a while with
  // a clock ten minutes ahead, holds the instance live under a horizon far
  // above that delete. At the heal node 2 gets node 0's whole state before
  // its grace rule has run. Taking that horizon collected node 2's
  // tombstone; the grace rule then forgot the horizon, and the instance
  // came back at node 2 and stayed everywhere. While the grace rule is
  // pending, a whole state is merged without taking its horizon, and the
  // delete reaches node 0.
  auto skews = std::make_shared<lattice::testing::clock_skews>();
  (*skews)[1] = 600'000'000;  // node 0 (replica id 1): ten minutes ahead
  lattice::registry::core_options core;
  core.gc_grace = 2s;
  core.compaction_interval = 250ms;
  core.reconnect_timeout = 2s;
  registry_sim::options o;
  o.nodes = 3;
  o.base.mode = lattice::transport::dissemination::state;
  auto sim = make_registry_sim(o, core, skews);
  REQUIRE(sim->run_until([&] { return sim->everyone_alive(); }, 10s));
  REQUIRE(sim->node(1).register_instance(path("/svc"), persistent_instance("p1")));
  REQUIRE(sim->run_until([&] { return all_list(*sim, "/svc", {"p1"}); }, 5s));
  const registry_document disk = sim->node(2).state();
  const auto contact = sim->node(2).last_contact_us();
  sim->kill(2);
  sim->kill(1);
  // Node 0 alone: past reconnect_timeout its horizon follows its own clock.
  const std::string key = lattice::registry::instance_key("/svc", lattice::registry::instance_kind::provider, "p1");
  const auto ahead = [&] {
    return sim->node(0).state().instances.horizon().physical_us > disk.instances.find_entry(key)->stamp.physical_us + 300'000'000;
  };
  REQUIRE(sim->run_until(ahead, 20s));
  REQUIRE(providers_on(*sim, 0, "/svc") == std::vector<std::string>{"p1"});
  sim->partition({2});
  sim->restart(2);
  sim->node(2).restore(disk, contact_only(contact));
  REQUIRE(sim->node(2).deregister_instance(path("/svc"), "p1").value());
  sim->heal();
  // Node 2 never lists it again, and in the end nobody does.
  bool listed_again = false;
  const bool gone = sim->run_until([&] {
    listed_again |= !providers_on(*sim, 2, "/svc").empty();
    return all_list(*sim, "/svc", {});
  }, 10s).has_value();
  CHECK_FALSE(listed_again);
  CHECK(gone);
}

TEST_CASE("a write made after the last message from a peer survives a long down", "[registry][regression]") {
  // The 30-minute soak (seed 678919206) lost two writes: acknowledged by a
  // daemon cut off by a flapping partition 130 ms and 200 ms earlier, which
  // was then killed and kept down longer than gc_grace. Its last contact
  // was counted up to the kill, because its peers were still judged alive,
  // so the restarted replica's grace rule forgot everything older, the two
  // writes that nobody else held included. Contact is now the last time a
  // peer was heard from.
  auto sim = grace_cluster();
  sim->partition({0});
  sim->run_for(100ms);  // peers not yet suspected
  REQUIRE(sim->node(0).set_config(path("/cut-off"), "acknowledged"));
  sim->run_for(100ms);
  const registry_document disk = sim->node(0).state();
  const auto contact = sim->node(0).last_contact_us();
  sim->kill(0);
  sim->run_for(3s);  // down longer than gc_grace
  sim->restart(0);
  sim->node(0).restore(disk, contact_only(contact));
  sim->heal();
  CHECK(sim->run_until([&] { return config_on(*sim, 1, "/cut-off") == "acknowledged"; }, 10s));
  CHECK(config_on(*sim, 0, "/cut-off") == "acknowledged");
}

TEST_CASE("a write that reached no peer survives a long down while a peer was still heard",
          "[registry][regression]") {
  // The 20-minute soak (seed 540597191) lost three writes: acknowledged by
  // a daemon cut off from the cluster together with one peer it kept
  // hearing, whose pushes of them went nowhere; killed 140 ms later and
  // kept down longer than gc_grace. Its last contact was the kill, so the
  // restarted replica's grace rule forgot everything older, the three
  // writes included. Peers keep tombstones above our last advertised
  // floor minus gc_grace, so only what is older can be stale.
  auto sim = grace_cluster();
  sim->partition({0, 1});
  sim->cut_one_way(0, 1);  // node 0 hears node 1; nothing of node 0's arrives
  sim->run_for(100ms);
  REQUIRE(sim->node(0).set_config(path("/unshared"), "acknowledged"));
  sim->run_for(100ms);
  const registry_document disk = sim->node(0).state();
  const lattice::registry::saved_progress progress{sim->node(0).last_contact_us(),
                                                   sim->node(0).advertised_floor_bound()};
  CHECK(*progress.last_contact_us > sim->node(0).state().config.find_entry("/unshared")->stamp.physical_us);
  sim->kill(0);
  sim->run_for(3s);  // down longer than gc_grace
  sim->restart(0);
  sim->node(0).restore(disk, progress);
  sim->heal();
  CHECK(sim->run_until([&] { return config_on(*sim, 1, "/unshared") == "acknowledged"; }, 10s));
  CHECK(config_on(*sim, 0, "/unshared") == "acknowledged");
  CHECK(config_on(*sim, 2, "/before") == "shared");
}

TEST_CASE("a write that reached no peer survives a long partition that follows it", "[registry][regression]") {
  // The same at run time: node 0 writes while its messages reach nobody,
  // then is cut off entirely for longer than gc_grace. The grace rule on
  // the heal forgets what is older than its last contact, which the write
  // is; while cut off, the floor it advertises stays where it was, so
  // peers' horizons stay below the write by gc_grace.
  auto sim = grace_cluster();
  sim->partition({0, 1});
  sim->cut_one_way(0, 1);
  sim->run_for(100ms);
  REQUIRE(sim->node(0).set_config(path("/unshared"), "acknowledged"));
  sim->run_for(100ms);
  sim->heal();
  sim->partition({0});
  sim->run_for(3s);  // cut off longer than gc_grace
  const auto resyncs = sim->node(0).resyncs();
  sim->heal();
  REQUIRE(sim->run_until([&] { return sim->node(0).resyncs() > resyncs; }, 5s));
  CHECK(sim->run_until([&] { return config_on(*sim, 1, "/unshared") == "acknowledged"; }, 10s));
  CHECK(config_on(*sim, 0, "/unshared") == "acknowledged");
}

}  // namespace merge_regressions_test
