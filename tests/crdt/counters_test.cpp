// G- and PN-Counters: values, op sequencing (duplicates and gaps), saturation.
#include <limits>

#include <catch2/catch.hpp>

#include "lattice/crdt/g_counter.hpp"
#include "lattice/crdt/pn_counter.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace counters_test {

using lattice::crdt::apply_status;
using lattice::crdt::g_counter;
using lattice::crdt::pn_counter;

TEST_CASE("g_counter sums the shares of every origin", "[crdt][counter]") {
  g_counter a, b;
  a.increment(1, 5);
  b.increment(2, 7);
  b.increment(2);
  a.merge(b);
  CHECK(a.value() == 13);
  CHECK(a.value_of(1) == 5);
  CHECK(a.value_of(2) == 8);
  CHECK(a.value_of(3) == 0);
}

TEST_CASE("counter ops: a duplicate is dropped, a gap is held back", "[crdt][counter]") {
  g_counter origin;
  const auto op1 = origin.prepare_increment(1, 10);
  origin.apply(op1);
  const auto op2 = origin.prepare_increment(1, 20);
  origin.apply(op2);
  CHECK(op1.seq == 1);
  CHECK(op2.seq == 2);

  g_counter replica;
  CHECK(replica.apply(op2) == apply_status::out_of_order);
  CHECK(replica.value() == 0);  // nothing changed
  CHECK(replica.apply(op1) == apply_status::applied);
  CHECK(replica.apply(op1) == apply_status::duplicate);
  CHECK(replica.apply(op2) == apply_status::applied);
  CHECK(replica.value() == 30);
  CHECK(replica == origin);
}

TEST_CASE("a state merge covers the ops it contains", "[crdt][counter]") {
  pn_counter origin;
  const auto op1 = origin.prepare_add(4, 3);
  origin.apply(op1);
  const auto op2 = origin.prepare_add(4, -1);
  origin.apply(op2);

  pn_counter replica;
  replica.merge(origin);
  CHECK(replica.apply(op1) == apply_status::duplicate);
  CHECK(replica.apply(op2) == apply_status::duplicate);
  CHECK(replica.value() == 2);
}

TEST_CASE("pn_counter goes up and down, and below zero", "[crdt][counter]") {
  pn_counter in_flight;
  in_flight.increment(1);
  in_flight.increment(1);
  in_flight.decrement(2);
  in_flight.decrement(2);
  in_flight.decrement(2);
  CHECK(in_flight.value() == -1);
  CHECK(in_flight.entries().at(1).p == 2);
  CHECK(in_flight.entries().at(2).n == 3);
}

TEST_CASE("counters saturate instead of wrapping", "[crdt][counter]") {
  constexpr auto top = std::numeric_limits<std::uint64_t>::max();
  g_counter g;
  g.increment(1, top - 1);
  g.increment(1, 5);
  g.increment(2, 5);
  CHECK(g.value_of(1) == top);
  CHECK(g.value() == top);

  pn_counter pn;
  pn.add(1, std::numeric_limits<std::int64_t>::min());
  pn.add(2, std::numeric_limits<std::int64_t>::min());
  CHECK(pn.value() == std::numeric_limits<std::int64_t>::min());
  pn_counter up;
  up.add(1, std::numeric_limits<std::int64_t>::max());
  up.add(2, std::numeric_limits<std::int64_t>::max());
  CHECK(up.value() == std::numeric_limits<std::int64_t>::max());
}

}  // namespace counters_test
