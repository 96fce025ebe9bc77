// Hybrid logical clock: ordering, monotonicity, receive rule, drift limit.
#include <catch2/catch.hpp>

#include "lattice/crdt/hlc.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace hlc_test {

using lattice::crdt::errc;
using lattice::crdt::hlc;
using lattice::crdt::hlc_timestamp;

TEST_CASE("hlc stamps order by physical time, then logical, then replica", "[crdt][hlc]") {
  CHECK(hlc_timestamp{1, 0, 9} < hlc_timestamp{2, 0, 1});
  CHECK(hlc_timestamp{2, 0, 9} < hlc_timestamp{2, 1, 1});
  CHECK(hlc_timestamp{2, 1, 1} < hlc_timestamp{2, 1, 2});
  CHECK(hlc_timestamp::zero() < hlc_timestamp{0, 0, 1});
  CHECK(hlc_timestamp{5, 5, 5} < hlc_timestamp::max());
}

TEST_CASE("hlc now() is strictly increasing even when the wall clock stalls or steps back",
          "[crdt][hlc]") {
  hlc clock{1};
  const auto a = clock.now(1000);
  CHECK(a == hlc_timestamp{1000, 0, 1});
  const auto b = clock.now(1000);  // same µs
  CHECK(b == hlc_timestamp{1000, 1, 1});
  const auto c = clock.now(900);  // wall clock stepped back (NTP slew)
  CHECK(c == hlc_timestamp{1000, 2, 1});
  const auto d = clock.now(2000);
  CHECK(d == hlc_timestamp{2000, 0, 1});
  CHECK(clock.last() == d);
}

TEST_CASE("hlc update() follows a remote clock that is ahead", "[crdt][hlc]") {
  hlc clock{1};
  clock.now(1000);
  const auto received = clock.update(hlc_timestamp{3000, 7, 2}, 1500);
  REQUIRE(received);
  CHECK(received.value() == hlc_timestamp{3000, 8, 1});
  // Our next local event is after the remote one although our wall clock lags.
  CHECK(clock.now(1600) > hlc_timestamp{3000, 7, 2});
}

TEST_CASE("hlc update() covers every receive case of Kulkarni et al.", "[crdt][hlc]") {
  SECTION("local, remote and wall at the same physical time") {
    hlc clock{1};
    clock.now(1000);
    clock.now(1000);  // logical 1
    CHECK(clock.update({1000, 5, 2}, 1000).value() == hlc_timestamp{1000, 6, 1});
  }
  SECTION("local ahead of remote") {
    hlc clock{1};
    clock.now(5000);
    CHECK(clock.update({1000, 9, 2}, 10).value() == hlc_timestamp{5000, 1, 1});
  }
  SECTION("wall clock ahead of both") {
    hlc clock{1};
    clock.now(1000);
    CHECK(clock.update({1200, 9, 2}, 2000).value() == hlc_timestamp{2000, 0, 1});
  }
}

TEST_CASE("hlc rejects a remote stamp beyond the maximum drift and stays unchanged",
          "[crdt][hlc]") {
  hlc clock{1, std::chrono::milliseconds{100}};
  const auto before = clock.now(1'000'000);
  const auto far = clock.update(hlc_timestamp{1'000'000 + 100'001, 0, 2}, 1'000'000);
  REQUIRE_FALSE(far);
  CHECK(far.error() == errc::clock_drift_exceeded);
  CHECK(clock.last() == before);
  // Exactly at the bound is accepted.
  CHECK(clock.update(hlc_timestamp{1'000'000 + 100'000, 0, 2}, 1'000'000));
  // A stamp near the top of the range does not overflow the check.
  CHECK_FALSE(clock.update(hlc_timestamp::max(), 1'000'000));
}

TEST_CASE("hlc carries a saturated logical counter into the physical part", "[crdt][hlc]") {
  hlc clock{1};
  const std::uint32_t top = std::numeric_limits<std::uint32_t>::max();
  const auto received = clock.update(hlc_timestamp{1000, top, 2}, 1000);
  REQUIRE(received);
  CHECK(received.value() == hlc_timestamp{1001, 0, 1});
  CHECK(received.value() > hlc_timestamp{1000, top, 2});
}

TEST_CASE("error codes have readable messages", "[crdt][hlc]") {
  const std::error_code code = errc::clock_drift_exceeded;
  CHECK(std::string(code.category().name()) == "lattice.crdt");
  CHECK(code.message().find("drift") != std::string::npos);
}

}  // namespace hlc_test
