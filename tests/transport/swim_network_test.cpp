// The simulator itself (tests/support/swim_network.hpp), on which the
// membership figures rest: windowed mode replays the same run on one
// thread and on two, and a run checkpointed and resumed goes on exactly as
// one that was not (bench/swim_sim.cpp --checkpoint: a 10,000-member hour
// takes longer than a working session).
#include <random>
#include <sstream>
#include <tuple>
#include <vector>

#include <catch2/catch.hpp>
#include <cereal/archives/binary.hpp>

#include "swim_network.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace swim_network_test {

using namespace std::chrono_literals;
using lattice::testing::swim_network;

namespace {

// Loss, stalls and a kill: suspicions, refutations, last calls and a
// death are all in flight at any moment.
swim_network::options harsh(unsigned threads) {
  swim_network::options o;
  o.nodes = 60;
  o.loss_per_mille = 50;
  o.seed = 5;
  o.threads = threads;
  o.parallel_from = 1;  // every window split between the threads
  return o;
}

// Every view of every member, each detector's counters and bytes: what a
// run leaves behind.
using view = std::tuple<int, std::uint64_t>;
struct outcome {
  std::vector<view> views;
  std::vector<std::uint64_t> counters;
  bool operator==(const outcome&) const = default;
};

outcome outcome_of(swim_network& net) {
  outcome o;
  for (std::size_t i = 0; i < net.size(); ++i) {
    auto& d = net.node(i);
    for (std::size_t j = 0; j < net.size(); ++j)
      o.views.emplace_back(static_cast<int>(d.state_of(swim_network::id_of(j))),
                           d.incarnation_of(swim_network::id_of(j)));
    const auto& s = d.stats();
    o.counters.insert(o.counters.end(), {s.probes, s.indirect_probes, s.suspicions, s.deaths, s.refutations,
                                         s.messages_sent, s.updates_sent, s.push_pulls, d.incarnation(),
                                         d.local_health(), d.queued_updates(), net.bytes_sent(i)});
  }
  o.counters.push_back(net.messages_lost());
  return o;
}

// Each second from `from` to `to`, every member stalls 200 ms with
// chance 5 %; member 4 is killed at second 6.
void run(swim_network& net, std::mt19937_64& rng, int from, int to) {
  for (int second = from; second < to; ++second) {
    if (second == 6) net.kill(3);
    for (std::size_t i = 0; i < net.size(); ++i)
      if (!net.killed(i) && std::uniform_int_distribution<int>(0, 99)(rng) < 5) net.stall(i, 200ms);
    net.run_until(net.now() + 1s);
  }
}

using change_record = std::tuple<lattice::transport::steady_time, std::size_t, lattice::crdt::replica_id, int>;
void record(swim_network& net, std::vector<change_record>& changes) {
  net.on_change([&changes](const swim_network::change& c) {
    changes.emplace_back(c.at, c.observer, c.member, static_cast<int>(c.state));
  });
}

// The checkpoint falls at 15.5 s, half a second into a stall of member 10:
// it is held suspect then, with timers, accusers and last calls in flight.
void first_half(swim_network& net, std::mt19937_64& rng) {
  run(net, rng, 0, 15);
  net.stall(9, 1s);
  net.run_until(net.now() + 500ms);
}
void second_half(swim_network& net, std::mt19937_64& rng) {
  net.run_until(net.start() + 16s);
  run(net, rng, 16, 30);
}

}  // namespace

TEST_CASE("swim network: windowed mode replays the same run on one thread and on two", "[transport][swim]") {
  std::vector<change_record> changes1, changes2;
  swim_network one(harsh(1)), two(harsh(2));
  record(one, changes1);
  record(two, changes2);
  std::mt19937_64 rng1(9), rng2(9);
  run(one, rng1, 0, 30);
  run(two, rng2, 0, 30);
  // Something happened worth comparing: suspicions, refutations, the kill
  // judged.
  std::uint64_t suspicions = 0, refutations = 0, deaths = 0;
  for (std::size_t i = 0; i < one.size(); ++i) {
    suspicions += one.node(i).stats().suspicions;
    refutations += one.node(i).stats().refutations;
    deaths += one.node(i).stats().deaths;
  }
  CHECK(suspicions > 10);
  CHECK(refutations > 10);
  CHECK(deaths > 0);
  CHECK(changes1 == changes2);
  CHECK(outcome_of(one) == outcome_of(two));
}

TEST_CASE("swim network: a run checkpointed and resumed goes on exactly as one that was not", "[transport][swim]") {
  const unsigned threads = GENERATE(0u, 2u);
  CAPTURE(threads);
  std::vector<change_record> straight_changes, resumed_changes;
  swim_network straight(harsh(threads));
  std::mt19937_64 straight_rng(9);
  first_half(straight, straight_rng);
  record(straight, straight_changes);
  second_half(straight, straight_rng);

  std::stringstream saved;
  std::mt19937_64 rng(9);
  {
    swim_network first(harsh(threads));
    first_half(first, rng);
    // A suspicion is in flight: its timers and accusers must be saved.
    std::size_t suspecting = 0;
    for (std::size_t i = 0; i < first.size(); ++i)
      if (first.node(i).state_of(swim_network::id_of(9)) == lattice::transport::swim::member_state::suspect)
        ++suspecting;
    CHECK(suspecting > 0);
    cereal::BinaryOutputArchive out(saved);
    first.checkpoint(out);
  }
  swim_network resumed(harsh(threads));
  {
    cereal::BinaryInputArchive in(saved);
    resumed.checkpoint(in);
  }
  record(resumed, resumed_changes);
  second_half(resumed, rng);

  CHECK(resumed.now() == straight.now());
  CHECK(resumed_changes.size() > 10);  // the second half judged and refuted
  CHECK(resumed_changes == straight_changes);
  CHECK(outcome_of(resumed) == outcome_of(straight));
}

}  // namespace swim_network_test
