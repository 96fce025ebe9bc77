// instance_list, a view's providers or consumers: the same answers as
// std::map under random edits, an edited list's predecessor unchanged (as
// a published view must be), and edits that copy only the chunks they
// touch.
#include <map>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "lattice/registry/instance_list.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace instance_list_test {

using namespace lattice::registry;

namespace {

// id -> (record, remote_in_flight): what a list should hold.
using model = std::map<std::string, std::pair<record_ptr, std::int64_t>, std::less<>>;

std::string id_of(unsigned n) { return "10.0." + std::to_string(n / 250) + "." + std::to_string(n % 250) + ":80"; }

// Records compare by value: each call makes one unlike any before it.
instance_view view(const std::string& id) {
  static unsigned generation = 0;
  instance i;
  i.id = id;
  i.address = "h" + std::to_string(++generation);
  return instance_view{instance_record::make(i), nullptr, 0, 0, {}};
}

model contents(const instance_list& list) {
  model out;
  std::string last;
  for (const auto& v : list) {
    CHECK(std::string(v->id()) > last);  // ascending, no duplicates
    last = std::string(v->id());
    out.emplace(last, std::pair{v.record, v.remote_in_flight});
  }
  return out;
}

void check_same(const instance_list& list, const model& expected, std::mt19937& rng) {
  REQUIRE(list.size() == expected.size());
  REQUIRE(list.empty() == expected.empty());
  REQUIRE(contents(list) == expected);
  if (!expected.empty()) CHECK(list.front().record == expected.begin()->second.first);
  for (int probe = 0; probe < 50; ++probe) {
    const auto id = id_of(static_cast<unsigned>(rng() % 3000));
    const auto* found = list.find(id);
    const auto want = expected.find(id);
    REQUIRE((found != nullptr) == (want != expected.end()));
    if (found != nullptr) CHECK(found->record == want->second.first);
  }
}

}  // namespace

TEST_CASE("instance_list answers as std::map does under random edits", "[registry][view]") {
  std::mt19937 rng(11);
  // Built sorted, then edited: inserts, replaced records, load-only
  // changes and removals, with enough ids that chunks split and empty out.
  model expected;
  std::vector<instance_view> initial;
  for (unsigned n = 0; n < 1000; n += 3) {
    auto v = view(id_of(n));
    expected.emplace(std::string(v->id()), std::pair{v.record, 0});
    initial.push_back(v);
  }
  std::sort(initial.begin(), initial.end(), [](const auto& a, const auto& b) { return a->id() < b->id(); });
  auto list = instance_list::from_sorted(initial);
  check_same(list, expected, rng);
  for (int round = 0; round < 40; ++round) {
    const instance_list before = list;
    const model expected_before = expected;
    bool records_moved = false;
    instance_list::editor edit(list);
    for (int op = 0; op < 100; ++op) {
      const auto id = id_of(static_cast<unsigned>(rng() % 3000));
      const auto held = expected.find(id);
      const int what = static_cast<int>(rng() % 4);
      if (what == 0) {  // remove
        CHECK(edit.set(id, nullptr) == (held != expected.end()));
        records_moved |= held != expected.end();
        expected.erase(id);
      } else if (what == 1 && held != expected.end()) {  // same record, other load figures: not a record change
        instance_view v{held->second.first, nullptr, held->second.second + 1, 0, {}};
        CHECK_FALSE(edit.set(id, &v));
        ++held->second.second;
      } else {  // a new record (registered or re-registered)
        const auto v = view(id);
        CHECK(edit.set(id, &v));
        records_moved = true;
        expected[id] = {v.record, 0};
      }
    }
    check_same(list, expected, rng);
    CHECK(instance_list::same_records(list, before) == !records_moved);
    // The list the edits started from, as a published view is: unchanged.
    CHECK(contents(before) == expected_before);
  }
  // Remove everything: every chunk goes.
  instance_list::editor edit(list);
  for (const auto& [id, held] : model(expected)) edit.set(id, nullptr);
  CHECK(list.empty());
  CHECK(list.begin() == list.end());
  const auto back = view(id_of(1));
  CHECK(edit.set(id_of(1), &back));
  CHECK(list.find(id_of(1))->record == back.record);
}

TEST_CASE("an edit copies only the chunk it touches", "[registry][view]") {
  std::vector<instance_view> initial;
  for (unsigned n = 0; n < 2000; ++n) initial.push_back(view(id_of(n)));
  std::sort(initial.begin(), initial.end(), [](const auto& a, const auto& b) { return a->id() < b->id(); });
  const auto before = instance_list::from_sorted(initial);
  REQUIRE(before.chunk_count() >= 2000 / (2 * instance_list::chunk_target));

  auto after = before;
  instance_list::editor edit(after);
  const auto replaced = view(id_of(777));
  CHECK(edit.set(id_of(777), &replaced));
  CHECK(after.shared_chunks(before) == before.chunk_count() - 1);
  CHECK_FALSE(instance_list::same_records(after, before));

  // Inserting until the chunk splits still leaves every other chunk shared.
  for (unsigned n = 0; n < 2 * instance_list::chunk_target; ++n) {
    const auto added = view(id_of(777) + "-" + std::to_string(1000 + n));
    edit.set(added->id(), &added);
  }
  CHECK(after.chunk_count() > before.chunk_count());
  CHECK(after.shared_chunks(before) == before.chunk_count() - 1);
  CHECK(after.size() == before.size() + 2 * instance_list::chunk_target);
}

}  // namespace instance_list_test
