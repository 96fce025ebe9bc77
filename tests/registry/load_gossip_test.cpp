// Load gossip at scale (issue #14, registry/load_gossip.hpp): the pacing
// rules on their own, the byte estimates against the encoder, and the
// rules at work between registry cores in the simulator.
#include <algorithm>
#include <iterator>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "lattice/registry/load_pacer.hpp"
#include "lattice/transport/messages.hpp"
#include "registry_sim.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace load_gossip_test {

using namespace std::chrono_literals;
using lattice::registry::instance;
using lattice::registry::load_gossip_options;
using lattice::registry::load_pacer;
using lattice::registry::service_path;
using lattice::testing::all_list;
using lattice::testing::make_registry_sim;
using lattice::testing::registry_sim;
using ids = std::vector<std::string>;

namespace {

service_path path(const char* text) { return service_path::parse(text).value(); }

instance provider(std::uint16_t port) {
  instance i;
  i.address = "10.0.0.1";
  i.port = port;
  return i;
}

std::unique_ptr<registry_sim> cluster(std::size_t n, lattice::registry::core_options core) {
  registry_sim::options o;
  o.nodes = n;
  o.seed = 7;
  o.drop_percent = 1;
  auto sim = make_registry_sim(o, core);
  REQUIRE(sim->run_until([&] { return sim->everyone_alive(); }, 10s));
  return sim;
}

const lattice::registry::instance_view& provider_on(registry_sim& sim, std::size_t node, const char* p,
                                                    std::size_t index = 0) {
  sim.node(node).publish(sim.now());
  const auto& list = sim.node(node).published()->find(p)->providers;
  REQUIRE(index < list.size());
  return *std::next(list.begin(), static_cast<std::ptrdiff_t>(index));
}

}  // namespace

TEST_CASE("load_pacer: significant moves go at once, small ones wait for max_hold", "[registry][load]") {
  const lattice::transport::steady_time t0{};
  load_gossip_options o;
  o.budget_bytes_per_second = 16 * 1024;
  o.significance = 0.25;
  o.max_hold = 2s;
  load_pacer pacer(o, 3, t0);
  // From 10 in flight: 3 more is 30 %, significant; 1 is not, until 2 s.
  CHECK(pacer.urgency(10, 13, t0, t0).has_value());
  CHECK(pacer.urgency(10, 7, t0, t0).has_value());
  CHECK_FALSE(pacer.urgency(10, 11, t0, t0).has_value());
  CHECK_FALSE(pacer.urgency(10, 11, t0, t0 + 1999ms).has_value());
  CHECK(pacer.urgency(10, 11, t0, t0 + 2s).has_value());
  // Served totals grew, calls in flight did not: waits too.
  CHECK_FALSE(pacer.urgency(0, 0, t0, t0 + 1s).has_value());
  // One call is always significant from zero, whatever the fraction.
  CHECK(pacer.urgency(0, 1, t0, t0).has_value());
  // Overdue changes outrank any move, the oldest first; then larger moves.
  CHECK(*pacer.urgency(10, 11, t0, t0 + 3s) > *pacer.urgency(10, 11, t0 + 1s, t0 + 3s));
  CHECK(*pacer.urgency(10, 11, t0, t0 + 3s) > *pacer.urgency(1, 100, t0 + 3s, t0 + 3s));
  CHECK(*pacer.urgency(1, 100, t0, t0) > *pacer.urgency(10, 20, t0, t0));

  SECTION("no budget: every change is due at once") {
    o.budget_bytes_per_second = 0;
    load_pacer unlimited(o, 3, t0);
    CHECK(unlimited.urgency(0, 0, t0, t0).has_value());
    CHECK(unlimited.spend(1'000'000'000));
  }
}

TEST_CASE("load_pacer: the budget is shared among fanout times callers", "[registry][load]") {
  const lattice::transport::steady_time t0{};
  load_gossip_options o;
  o.budget_bytes_per_second = 3'000;
  load_pacer pacer(o, 3, t0);
  pacer.refill(t0, 10);
  CHECK(pacer.share() == Approx(100.0));
  CHECK(pacer.callers() == 10);
  // The bucket holds a second's share, and never less than one small
  // write (512 bytes): it starts full.
  CHECK(pacer.spend(500));
  CHECK_FALSE(pacer.spend(100));
  pacer.refill(t0 + 1s, 10);
  CHECK(pacer.spend(100));
  CHECK_FALSE(pacer.spend(20));
  // A long pause earns no more than the bucket holds.
  pacer.refill(t0 + 1h, 10);
  CHECK(pacer.spend(512));
  CHECK_FALSE(pacer.spend(1));
  // Fewer callers, larger shares.
  pacer.refill(t0 + 1h, 1);
  CHECK(pacer.share() == Approx(1000.0));
}

TEST_CASE("load_pacer's byte estimates cover what the encoder writes", "[registry][load]") {
  using lattice::registry::registry_document;
  const auto entry = [](std::uint64_t n, std::size_t key_length) {
    lattice::registry::load_key key{std::string(key_length, 'k') + std::to_string(n),
                                    lattice::crdt::hlc_timestamp{1'700'000'000'000'000 + n, 3, 0xfeedULL},
                                    0xabcdef0123456789ULL, 1'700'000'000'000'000ULL};
    return registry_document::load_map{}.put(
        key, lattice::registry::load_counts{1'000'000 + n, 999'000 + n},
        lattice::crdt::hlc_timestamp{1'700'000'000'000'000 + n, 7, 0xabcdef0123456789ULL});
  };
  for (const std::size_t key_length : {std::size_t{8}, std::size_t{40}, std::size_t{200}}) {
    registry_document one, two;
    one.load.merge(entry(1, key_length));
    two.load.merge(entry(1, key_length));
    two.load.merge(entry(2, key_length));
    const auto one_bytes = lattice::crdt::encode(one).size();
    const auto two_bytes = lattice::crdt::encode(two).size();
    const auto key_bytes = key_length + 1;
    INFO("key " << key_bytes << " bytes: one entry " << one_bytes << ", two " << two_bytes);
    CHECK(two_bytes - one_bytes <= load_pacer::entry_bytes(key_bytes));
    // The whole message: envelope, the sender's member record, the delta,
    // and the frame's 48 bytes of header and MAC.
    lattice::transport::member_table members;
    lattice::transport::member_record self;
    self.address = "192.168.100.200:7946";
    self.incarnation = 1'700'000'000;
    self.clock_us = 1'700'000'000'000'000ULL;
    self.heartbeat = 36'000'000;
    members.offer(0xabcdef0123456789ULL, self);
    const auto message = lattice::crdt::encode(lattice::transport::envelope<lattice::transport::gossip_body<registry_document>>{
        0xabcdef0123456789ULL, self.address, lattice::transport::gossip_body<registry_document>{members, one},
        1'700'000'000'000'000ULL});
    CHECK(message.size() + 48 <= load_pacer::write_bytes + load_pacer::entry_bytes(key_bytes));
  }
}

TEST_CASE("load gossip: a significant move is seen elsewhere at once, a small one after max_hold",
          "[registry][load][simulator]") {
  lattice::registry::core_options core;
  core.load_gossip.max_hold = 2s;
  auto sim = cluster(3, core);
  REQUIRE(sim->node(0).register_instance(path("/svc/g"), provider(1)));
  REQUIRE(sim->run_until([&] { return all_list(*sim, "/svc/g", ids{"10.0.0.1:1"}); }, 2s));
  CHECK_FALSE(provider_on(*sim, 2, "/svc/g").remote_load_heard.has_value());

  auto cell = provider_on(*sim, 1, "/svc/g").local;
  const auto changed_at = sim->now();
  cell->started += 10;
  const auto significant = sim->run_until([&] { return provider_on(*sim, 2, "/svc/g").in_flight() == 10; }, 5s);
  REQUIRE(significant);
  CHECK(*significant <= 300ms);
  const auto heard = provider_on(*sim, 2, "/svc/g").remote_load_heard;
  REQUIRE(heard.has_value());
  CHECK(*heard >= changed_at);

  // 10 -> 9 is 10 %: held until max_hold, then written. A quiet second
  // first, so that a hold still counted from the significant write (not
  // ended by it) would show as a write one second early.
  sim->run_for(1s);
  cell->finished += 1;
  const auto small = sim->run_until([&] { return provider_on(*sim, 2, "/svc/g").in_flight() == 9; }, 5s);
  REQUIRE(small);
  CHECK(*small >= 2s);
  CHECK(*small <= 2500ms);
  CHECK(provider_on(*sim, 2, "/svc/g").served() == 1);
  CHECK(sim->node(1).load_stats().entries_held == 0);

  SECTION("with no budget every change goes at the next flush") {
    core.load_gossip.budget_bytes_per_second = 0;
    auto open = cluster(3, core);
    REQUIRE(open->node(0).register_instance(path("/svc/g"), provider(1)));
    REQUIRE(open->run_until([&] { return all_list(*open, "/svc/g", ids{"10.0.0.1:1"}); }, 2s));
    auto c = provider_on(*open, 1, "/svc/g").local;
    c->started += 10;
    REQUIRE(open->run_until([&] { return provider_on(*open, 2, "/svc/g").in_flight() == 10; }, 5s));
    c->finished += 1;
    const auto at_once = open->run_until([&] { return provider_on(*open, 2, "/svc/g").in_flight() == 9; }, 5s);
    REQUIRE(at_once);
    CHECK(*at_once <= 300ms);
  }
}

TEST_CASE("load gossip: the budget bounds what a caller writes, and the figures catch up when calls settle",
          "[registry][load][simulator]") {
  lattice::registry::core_options core;
  // One caller, fanout 3: a share of 200 bytes per second.
  core.load_gossip.budget_bytes_per_second = 600;
  auto sim = cluster(3, core);
  constexpr std::uint16_t providers = 20;
  ids expected;
  for (std::uint16_t p = 1; p <= providers; ++p) {
    REQUIRE(sim->node(0).register_instance(path("/svc/b"), provider(p)));
    expected.push_back("10.0.0.1:" + std::to_string(p));
  }
  std::sort(expected.begin(), expected.end());
  REQUIRE(sim->run_until([&] { return all_list(*sim, "/svc/b", expected); }, 5s));
  const auto written_before = sim->node(1).load_stats().entries_written;

  // Every 100 ms the caller doubles or halves its calls to each provider:
  // every change is significant, far more than 100 bytes per second.
  std::vector<lattice::registry::load_cell_ptr> cells;
  for (std::size_t i = 0; i < providers; ++i) cells.push_back(provider_on(*sim, 1, "/svc/b", i).local);
  std::uint64_t round = 0;
  std::size_t max_held = 0;
  for (; round < 100; ++round) {
    for (auto& c : cells) {
      if (round % 2 == 0)
        c->started += 10;
      else
        c->finished += 10;
    }
    sim->run_for(100ms);
    max_held = std::max(max_held, sim->node(1).load_stats().entries_held);
  }
  const auto& stats = sim->node(1).load_stats();
  CHECK(stats.share_bytes_per_second == Approx(200.0));
  CHECK(stats.budget_deferrals > 0);
  CHECK(max_held > 0);
  // 10 s at 200 B/s plus the bucket's 512 bytes, at no less than the
  // estimate for the shortest key: the entries written fit.
  const auto written = stats.entries_written - written_before;
  const auto key_bytes = lattice::registry::instance_key("/svc/b", lattice::registry::instance_kind::provider,
                                                         "10.0.0.1:1")
                             .size();
  INFO("entries written in 10 s: " << written);
  CHECK(written >= 1);
  CHECK(written * load_pacer::entry_bytes(key_bytes) <= 200 * 10 + 512);

  // Calls settle: every provider ends with its true counts everywhere
  // (20 writes of about 430 bytes at 200 bytes per second: about 45 s).
  const auto settled = sim->run_until([&] {
    for (std::size_t i = 0; i < providers; ++i) {
      const auto& truth = provider_on(*sim, 1, "/svc/b", i);
      const auto& seen = provider_on(*sim, 2, "/svc/b", i);
      if (seen.in_flight() != truth.in_flight() || seen.served() != truth.served()) return false;
    }
    return true;
  }, 120s);
  CHECK(settled);
  CHECK(sim->node(1).load_stats().entries_held == 0);
}

}  // namespace load_gossip_test
