// G-Set, 2P-Set, OR-Set semantics and the dot context's canonical form.
#include <catch2/catch.hpp>

#include "lattice/crdt/dot_context.hpp"
#include "lattice/crdt/g_set.hpp"
#include "lattice/crdt/or_set.hpp"
#include "lattice/crdt/two_phase_set.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace sets_test {

using lattice::crdt::apply_status;
using lattice::crdt::dot;
using lattice::crdt::dot_context;
using lattice::crdt::g_set;
using lattice::crdt::or_set;
using lattice::crdt::two_phase_set;

TEST_CASE("g_set is a union", "[crdt][set]") {
  g_set<int> a, b;
  a.insert(1);
  b.insert(2);
  CHECK(a.merge(b));
  CHECK_FALSE(a.merge(b));
  CHECK(a.elements() == std::set<int>{1, 2});
  CHECK(a.apply(a.prepare_insert(1)) == apply_status::duplicate);
}

TEST_CASE("two_phase_set: a removal is final", "[crdt][set]") {
  two_phase_set<int> s;
  s.insert(1);
  s.remove(1);
  s.insert(1);
  CHECK_FALSE(s.contains(1));
  CHECK(s.removed() == std::set<int>{1});
  two_phase_set<int> late;
  late.insert(1);
  CHECK(late.merge(s));
  CHECK_FALSE(late.contains(1));
}

TEST_CASE("or_set: a concurrent insert survives a remove (add wins)", "[crdt][set]") {
  or_set<std::string> a, b;
  b.merge(a.insert(1, "x"));
  // Concurrently: A removes x, B re-inserts it.
  const auto removal = a.remove("x");
  const auto reinsert = b.insert(2, "x");
  a.merge(reinsert);
  b.merge(removal);
  CHECK(a.contains("x"));
  CHECK(b.contains("x"));
  CHECK(a == b);
}

TEST_CASE("or_set: a remove of what was seen wins over that insert", "[crdt][set]") {
  or_set<std::string> a, b;
  const auto add = a.insert(1, "x");
  b.merge(add);
  const auto removal = b.remove("x");
  a.merge(removal);
  CHECK_FALSE(a.contains("x"));
  CHECK(a.entries().empty());
  // Re-inserting later works (unlike a 2P-Set).
  a.insert(1, "x");
  CHECK(a.contains("x"));
}

TEST_CASE("or_set ops: a remove delivered before its insert cancels it", "[crdt][set]") {
  or_set<int> origin;
  const auto add = origin.prepare_insert(1, 42);
  origin.apply(add);
  const auto remove = origin.prepare_remove(42);
  origin.apply(remove);

  or_set<int> replica;
  CHECK(replica.apply(remove) == apply_status::applied);  // records the dot as seen
  CHECK(replica.apply(add) == apply_status::duplicate);
  CHECK_FALSE(replica.contains(42));
  CHECK(replica == origin);
}

TEST_CASE("dot_context stays canonical as dots arrive out of order", "[crdt][set]") {
  dot_context c;
  CHECK(c.insert(dot{1, 3}));
  CHECK(c.insert(dot{1, 2}));
  CHECK(c.cloud().size() == 2);
  CHECK(c.vector().empty());
  CHECK(c.insert(dot{1, 1}));  // closes the gap: 1..3 move into the vector
  CHECK(c.vector().at(1) == 3);
  CHECK(c.cloud().empty());
  CHECK_FALSE(c.insert(dot{1, 2}));
  CHECK_FALSE(c.insert(dot{1, 0}));  // never a valid dot
  CHECK(c.next(1) == dot{1, 4});
  CHECK(c.canonical());

  dot_context other;
  other.insert(dot{1, 5});
  other.insert(dot{2, 1});
  CHECK(c.merge(other));
  CHECK(c.max_counter(1) == 5);
  CHECK(c.cloud().count(dot{1, 5}) == 1);
  CHECK(c.contains(dot{2, 1}));
  CHECK_FALSE(c.contains(dot{1, 4}));
  CHECK(c.canonical());
}

}  // namespace sets_test
