// detail::interpolation_find: the same answer as a binary search, for
// tables of ids spread evenly (hashes of names), dense (the simulators'
// 1..N), bunched, or at the ends of the 64-bit range, and for ids held and
// not held.
#include <cstdint>
#include <limits>
#include <set>
#include <vector>

#include <boost/container/flat_map.hpp>
#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include "lattice/transport/detail/interpolation_find.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace interpolation_find_test {

using lattice::transport::detail::interpolation_find;
using table = boost::container::flat_map<std::uint64_t, int>;

namespace {

// Every id in `held` and every id in `asked` is found exactly where
// flat_map::find finds it (or not at all).
void check_against_find(const std::vector<std::uint64_t>& held, const std::vector<std::uint64_t>& asked) {
  table t;
  for (std::size_t i = 0; i < held.size(); ++i) t.emplace(held[i], static_cast<int>(i));
  const table& ct = t;
  for (const auto* ids : {&held, &asked})
    for (std::uint64_t id : *ids) {
      RC_ASSERT(interpolation_find(t, id) == t.find(id));
      RC_ASSERT(interpolation_find(ct, id) == ct.find(id));
    }
}

}  // namespace

TEST_CASE("interpolation find: ids spread over 64 bits, held and not", "[transport][interpolation_find]") {
  rc::prop("same as find", [] {
    const auto held = *rc::gen::container<std::vector<std::uint64_t>>(rc::gen::arbitrary<std::uint64_t>());
    const auto asked = *rc::gen::container<std::vector<std::uint64_t>>(rc::gen::arbitrary<std::uint64_t>());
    check_against_find(held, asked);
  });
}

TEST_CASE("interpolation find: dense, bunched and extreme ids", "[transport][interpolation_find]") {
  rc::prop("same as find", [] {
    // A few bunches, each a run of nearby ids somewhere in the range, some
    // at its ends, so the spread is as uneven as it gets.
    const auto starts = *rc::gen::container<std::vector<std::uint64_t>>(rc::gen::oneOf(
        rc::gen::just<std::uint64_t>(0), rc::gen::just<std::uint64_t>(1),
        rc::gen::just(std::numeric_limits<std::uint64_t>::max() - 200), rc::gen::arbitrary<std::uint64_t>()));
    std::vector<std::uint64_t> held, asked;
    for (std::uint64_t start : starts) {
      const auto count = *rc::gen::inRange<std::uint64_t>(1, 200);
      const auto stride = *rc::gen::inRange<std::uint64_t>(1, 4);
      for (std::uint64_t i = 0; i < count && start <= std::numeric_limits<std::uint64_t>::max() - i * stride; ++i) {
        held.push_back(start + i * stride);
        asked.push_back(start + i * stride + 1);  // between or beside held ids
      }
    }
    check_against_find(held, asked);
  });
}

TEST_CASE("interpolation find: by hand", "[transport][interpolation_find]") {
  table t;
  CHECK(interpolation_find(t, 5) == t.end());
  for (std::uint64_t id = 1; id <= 10'000; ++id) t.emplace(id, static_cast<int>(id));
  CHECK(interpolation_find(t, 0) == t.end());
  CHECK(interpolation_find(t, 10'001) == t.end());
  for (std::uint64_t id : {1ull, 2ull, 4'999ull, 10'000ull}) {
    const auto it = interpolation_find(t, id);
    REQUIRE(it != t.end());
    CHECK(it->second == static_cast<int>(id));
  }
  t.emplace(std::numeric_limits<std::uint64_t>::max(), -1);  // one far outlier
  for (std::uint64_t id : {1ull, 7'777ull, 10'000ull}) CHECK(interpolation_find(t, id) == t.find(id));
  CHECK(interpolation_find(t, std::numeric_limits<std::uint64_t>::max())->second == -1);
  CHECK(interpolation_find(t, 10'001) == t.end());
}

}  // namespace interpolation_find_test
