// Peer selection (peer_selection.hpp): the peers a replica spreads to are
// distinct, never the excluded ones, as many as asked where there are
// enough, and evenly drawn, both from long lists (drawn by position) and
// short ones (shuffled).
#include <map>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include "lattice/transport/peer_selection.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace peer_selection_test {

using lattice::crdt::replica_id;
using lattice::transport::pick_peers;

namespace {

std::vector<replica_id> ids(replica_id first, replica_id last) {
  std::vector<replica_id> out;
  for (replica_id id = first; id <= last; ++id) out.push_back(id);
  return out;
}

}  // namespace

TEST_CASE("picked peers are distinct, listed, never excluded, and as many as asked where there are enough",
          "[transport][peers]") {
  rc::prop("pick_peers", [] {
    const auto n = *rc::gen::inRange<replica_id>(0, 60);
    const auto from = ids(1, n);
    const auto count = *rc::gen::inRange<std::size_t>(0, 13);
    const auto except = *rc::gen::inRange<replica_id>(0, 70);
    const auto also_drawn = *rc::gen::maybe(rc::gen::inRange<replica_id>(0, 70));
    const std::optional<replica_id> also = also_drawn ? std::optional(*also_drawn) : std::nullopt;
    std::mt19937_64 rng(*rc::gen::arbitrary<std::uint64_t>());
    const auto picked = pick_peers(from, count, except, rng, also);
    std::size_t allowed = 0;
    for (replica_id id : from) allowed += (id != except && id != also) ? 1u : 0u;
    RC_ASSERT(picked.size() == std::min(count, allowed));
    RC_ASSERT(std::set<replica_id>(picked.begin(), picked.end()).size() == picked.size());
    for (replica_id id : picked) {
      RC_ASSERT(id >= 1);
      RC_ASSERT(id <= n);
      RC_ASSERT(id != except);
      RC_ASSERT(!(also && id == *also));
    }
  });
}

TEST_CASE("every allowed peer is picked about equally often, from a long list and from a short one",
          "[transport][peers]") {
  // 30,000 picks of 3: each of the n - 1 allowed peers is expected
  // 90,000 / (n - 1) times; a draw that favoured some would miss by far
  // more than the 15 % allowed (7 standard deviations at n = 40).
  for (const replica_id n : {replica_id{40}, replica_id{10}}) {  // 40: drawn by position; 10: shuffled
    INFO("list of " << n);
    const auto from = ids(1, n);
    std::mt19937_64 rng(n);
    std::map<replica_id, int> times;
    constexpr int rounds = 30'000;
    for (int i = 0; i < rounds; ++i)
      for (replica_id id : pick_peers(from, 3, /*except=*/5, rng)) ++times[id];
    const double expected = 3.0 * rounds / static_cast<double>(n - 1);
    CHECK(times.count(5) == 0);
    REQUIRE(times.size() == n - 1);
    for (const auto& [id, count] : times) {
      INFO("peer " << id);
      CHECK(count > expected * 0.85);
      CHECK(count < expected * 1.15);
    }
  }
}

}  // namespace peer_selection_test
