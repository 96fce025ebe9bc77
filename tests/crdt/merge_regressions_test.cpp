// Regression tests for the CRDT-layer ways merges lost, resurrected or
// diverged data (the "Merges that lose nothing" issue; reproductions in
// shared/repros/). Each names the reproduction it replaces.
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include "lattice/crdt/g_counter.hpp"
#include "lattice/crdt/lww_map.hpp"
#include "lattice/crdt/pn_counter.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace merge_regressions_test {

using lattice::crdt::decode;
using lattice::crdt::encode;
using lattice::crdt::g_counter;
using lattice::crdt::hlc;
using lattice::crdt::hlc_timestamp;
using lattice::crdt::pn_counter;
using map = lattice::crdt::lww_map<std::string, std::string>;

namespace {

hlc_timestamp at(std::uint64_t physical, lattice::crdt::replica_id replica = 1) {
  return {physical, 0, replica};
}

}  // namespace

TEST_CASE("a compacted map's old live keys reach an empty replica (f_join_bottom)", "[crdt][lww][regression]") {
  map x;
  x.put("old", "v1", at(10));
  x.put("new", "v2", at(50));
  x.compact(at(30, 0));  // horizon 30: drops no live entry
  map y;                 // a new or restarted replica
  CHECK(y.merge(x));
  CHECK(y == x);
  REQUIRE(y.find("old") != nullptr);
  CHECK(*y.find("old") == "v1");
  // And through the codec, as state-mode gossip carries it.
  map z;
  z.merge(decode<map>(encode(x)).value());
  CHECK(z == x);
}

TEST_CASE("merge order does not matter when a tombstone below a horizon meets a live key (f4_horizon)",
          "[crdt][lww][regression]") {
  map a;
  a.put("k", "v", at(10, 1));
  map b = a;
  b.erase("k", at(20, 2));
  map c = b;
  c.compact(at(30, 0));  // saw both writes, collected the tombstone

  map x = a;
  x.merge(b);
  x.merge(c);
  map y = a;
  y.merge(c);
  y.merge(b);
  CHECK(x == y);
  CHECK(x.digest() == y.digest());
  CHECK(x.find("k") == nullptr);
  CHECK(decode<map>(encode(x)).has_value());
  CHECK(decode<map>(encode(y)).has_value());
}

TEST_CASE("a key erased and compacted on one side is dropped from the side that still has it",
          "[crdt][lww][regression]") {
  map stale;
  stale.put("k", "v", at(10));
  map fresh = stale;
  fresh.erase("k", at(20, 2));
  fresh.compact(at(30, 0));
  CHECK(stale.merge(fresh));
  CHECK(stale.find("k") == nullptr);
  CHECK(stale == fresh);
  // ... and the stale side's copy cannot come back into the fresh one.
  map older;
  older.put("k", "v", at(10));
  CHECK_FALSE(fresh.merge(older));
  CHECK(fresh.find("k") == nullptr);
}

TEST_CASE("an erase stamped below the horizon removes the key and keeps the map decodable",
          "[crdt][lww][regression]") {
  // Found by the law checker over reachable states: a replica whose clock
  // lags the horizon (a new life, before it has heard from anyone) erases
  // a key a compacted replica holds. The tombstone won and was kept below
  // the horizon, a state decode() rejects (every later full-state exchange
  // of it would have been refused).
  map compacted;
  compacted.put("k", "v", at(10));
  compacted.compact(at(30, 0));
  map lagging;
  const auto erase = lagging.erase("k", at(20, 7));

  for (const bool as_op : {false, true}) {
    map m = compacted;
    if (as_op) CHECK(m.apply(lagging.prepare_erase("k", at(20, 7))) == lattice::crdt::apply_status::applied);
    else CHECK(m.merge(erase));
    CHECK(m.find_entry("k") == nullptr);
    CHECK(m.tombstones() == 0);
    const auto decoded = decode<map>(encode(m));
    REQUIRE(decoded.has_value());
    CHECK(decoded.value() == m);
    // Either order gives the same state.
    map other = lagging;
    other.merge(compacted);
    CHECK(other == m);
    CHECK(encode(other) == encode(m));
  }
}

// Histories of three replicas that write, merge each other's full states,
// are replaced by new empty replicas, and compact only at points every
// replica has passed (a global sync just before): the states real replicas
// reach. Merge must be a join over them.
TEST_CASE("lww_map merge is a join over compacted states replicas reach", "[crdt][lww][regression]") {
  rc::prop("commutative, associative, idempotent, canonical", [] {
    const auto steps = *rc::gen::container<std::vector<std::tuple<int, int, int, int>>>(
        rc::gen::tuple(rc::gen::inRange(0, 6), rc::gen::inRange(0, 3), rc::gen::inRange(0, 3),
                       rc::gen::inRange(0, 6)));
    std::vector<map> replicas(3);
    std::vector<hlc> clocks{hlc{1}, hlc{2}, hlc{3}};
    std::uint64_t wall = 1'000;
    for (const auto& [kind, who, peer, key_index] : steps) {
      wall += 10;
      const std::string key = "k" + std::to_string(key_index);
      auto& r = replicas[static_cast<std::size_t>(who)];
      auto& clock = clocks[static_cast<std::size_t>(who)];
      switch (kind) {
        case 0: r.put(key, std::to_string(wall), clock.now(wall)); break;
        case 1: r.erase(key, clock.now(wall)); break;
        case 2: r.merge(replicas[static_cast<std::size_t>(peer)]); break;
        case 3: {
          // Everything written so far reaches everyone; then `who` may
          // compact below the latest stamp any replica issued.
          map all;
          for (const auto& each : replicas) all.merge(each);
          for (auto& each : replicas) each.merge(all);
          hlc_timestamp stable{};
          for (const auto& c : clocks) stable = std::max(stable, c.last());
          for (auto& c : clocks) (void)c.update(stable, wall);
          r.compact(stable);
          break;
        }
        case 4: r = map{}; break;  // replaced by a new, empty replica
        default: break;            // a pause
      }
    }
    const auto join = [](map a, const map& b) {
      a.merge(b);
      return a;
    };
    // References, not a structured binding: clang 15 cannot capture one.
    const map& a = replicas[0];
    const map& b = replicas[1];
    const map& c = replicas[2];
    RC_ASSERT(join(a, b) == join(b, a));
    RC_ASSERT(join(a, b).horizon() == join(b, a).horizon());
    RC_ASSERT(join(join(a, b), c) == join(a, join(b, c)));
    RC_ASSERT(join(a, a) == a);
    for (const auto& state : {a, b, c, join(a, b), join(join(a, b), c), join(c, join(b, a))}) {
      const auto decoded = decode<map>(encode(state));
      RC_ASSERT(decoded.has_value());
      RC_ASSERT(decoded.value() == state);
      RC_ASSERT(decoded.value().horizon() == state.horizon());
    }
    // merge() reports exactly whether an entry changed.
    map x = a;
    const bool changed = x.merge(b);
    RC_ASSERT(changed == !(x == a));
    // And names every key it changed: a key whose entry moved either won
    // from `b` or was removed here, and then is reported with its old entry
    // (an index or a store drops it; see the registry's change listener).
    map y = a;
    map removed;
    y.merge(b, &removed);
    RC_ASSERT(y == x);
    a.for_each_entry([&](const std::string& key, const map::entry& before) {
      const auto* after = y.find_entry(key);
      if (after != nullptr && *after == before) return;
      if (after != nullptr) {
        RC_ASSERT(b.find_entry(key) != nullptr);
        RC_ASSERT(*b.find_entry(key) == *after);
      } else {
        RC_ASSERT(removed.find_entry(key) != nullptr);
        RC_ASSERT(*removed.find_entry(key) == before);
      }
    });
    removed.for_each_entry([&](const std::string& key, const map::entry&) { RC_ASSERT(y.find_entry(key) == nullptr); });
  });
}

TEST_CASE("counter entries with equal seq and different totals converge (f_counter)", "[crdt][counter][regression]") {
  // The same origin id counted twice from seq 1: a restart without state.
  g_counter first_life, second_life;
  first_life.increment(7, 5);
  second_life.increment(7, 3);
  g_counter x = first_life, y = second_life;
  const bool x_changed = x.merge(second_life);
  const bool y_changed = y.merge(first_life);
  CHECK(x == y);
  CHECK(x.value() == 5);  // max, not sum: the header says to take a new id
  CHECK(x_changed != y_changed);  // exactly one side adopted the other's entry

  pn_counter p1, p2;
  p1.add(7, 4);
  p2.add(7, -4);
  pn_counter px = p1, py = p2;
  px.merge(p2);
  py.merge(p1);
  CHECK(px == py);
  CHECK(px.value() == py.value());
}

TEST_CASE("a write after a far-future stamp with a maxed logical counter still wins (f_stamp)",
          "[crdt][hlc][regression]") {
  hlc clock{1};
  const std::uint64_t wall = 1'700'000'000'000'000ULL;
  const hlc_timestamp far{wall + 3'600'000'000ULL, 0xffffffffu, 99};  // beyond max_drift
  const auto mine = clock.after(far, wall);
  CHECK(mine > far);
  CHECK(clock.last().physical_us <= wall + 1);  // the far stamp did not drag the clock
  const hlc_timestamp near{wall + 1'000, 0xffffffffu, 0};  // within max_drift, lower id
  const auto next = clock.after(near, wall);
  CHECK(next > near);
  CHECK(clock.last() == next);  // observed: the clock moved past it
  CHECK(hlc::successor({5, 0xffffffffu, 9}, 1) == hlc_timestamp{6, 0, 1});
  CHECK(hlc::successor({5, 3, 1}, 9) == hlc_timestamp{5, 3, 9});
}

}  // namespace merge_regressions_test
