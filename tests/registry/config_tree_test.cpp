// config_tree, the snapshot's config map: the same answers as std::map
// under random edits, and a published tree unchanged by later edits of
// the next one (they share chunks).
#include <cstdint>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "lattice/registry/config_tree.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace config_tree_test {

using lattice::registry::config_tree;
// key -> (value, modified_us)
using model = std::map<std::string, std::pair<std::string, std::uint64_t>, std::less<>>;

namespace {

model contents(const config_tree& tree) {
  model out;
  for (const auto& e : tree) out.emplace(e.key, std::pair{e.value, e.modified_us});
  return out;
}

// Every answer of `tree` against `expected`, for the keys it holds and
// for probes around them.
void check_same(const config_tree& tree, const model& expected, std::mt19937& rng) {
  REQUIRE(tree.size() == expected.size());
  REQUIRE(tree.empty() == expected.empty());
  REQUIRE(contents(tree) == expected);
  for (int probe = 0; probe < 50; ++probe) {
    const std::string key = "k" + std::to_string(rng() % 3000);
    const auto want = expected.lower_bound(key);
    const auto got = tree.lower_bound(key);
    if (want == expected.end()) {
      CHECK(got == tree.end());
    } else {
      REQUIRE(got != tree.end());
      CHECK(got->key == want->first);
    }
    const auto found = tree.find(key);
    CHECK((found != nullptr) == expected.contains(key));
    if (expected.contains(key)) {
      CHECK(found->value == expected.at(key).first);
      CHECK(found->modified_us == expected.at(key).second);
      CHECK(tree.at(key) == expected.at(key).first);
    } else {
      CHECK_THROWS_AS(tree.at(key), std::out_of_range);
    }
  }
}

}  // namespace

TEST_CASE("config_tree answers as std::map does under random edits", "[registry][config]") {
  std::mt19937 rng(7);
  // Built sorted, then edited: sets, overwrites and removals, with enough
  // keys that chunks split and empty out.
  model expected;
  std::vector<config_tree::value_type> initial;
  for (int i = 0; i < 1000; i += 3) expected.emplace("k" + std::to_string(i), std::pair{"v0", 1});
  for (const auto& [key, entry] : expected) initial.push_back({key, entry.first, entry.second});
  auto tree = config_tree::from_sorted(initial);
  check_same(tree, expected, rng);
  for (int round = 0; round < 40; ++round) {
    const config_tree before = tree;
    const model expected_before = expected;
    config_tree::editor edit(tree);
    for (int op = 0; op < 200; ++op) {
      const std::string key = "k" + std::to_string(rng() % 3000);
      if (rng() % 3 == 0) {
        edit.set(key, nullptr);
        expected.erase(key);
      } else {
        // Now and then the same value again, written later: only its stamp moves.
        const bool same = rng() % 4 == 0 && expected.contains(key);
        const std::string value = same ? expected[key].first : "v" + std::to_string(round) + "-" + std::to_string(op);
        const auto modified_us = static_cast<std::uint64_t>(round * 1000 + op + 2);
        edit.set(key, &value, modified_us);
        expected[key] = {value, modified_us};
      }
    }
    check_same(tree, expected, rng);
    // The tree the edits started from, as a published snapshot is: unchanged.
    CHECK(contents(before) == expected_before);
  }
  // Remove everything: every chunk goes.
  config_tree::editor edit(tree);
  for (const auto& [key, value] : model(expected)) edit.set(key, nullptr);
  CHECK(tree.empty());
  CHECK(tree.begin() == tree.end());
  const std::string value = "back";
  edit.set("k1", &value);
  CHECK(tree.at("k1") == "back");
}

}  // namespace config_tree_test
