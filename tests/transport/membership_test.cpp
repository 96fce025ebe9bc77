// Membership: the gossiped table is a join; liveness is judged from local
// progress on a hand-advanced clock; leave, restart and refutation.
#include <algorithm>

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include "lattice/crdt/testing/laws.hpp"
#include "lattice/crdt/codec.hpp"
#include "lattice/transport/membership.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace membership_test {

using namespace lattice::transport;
using namespace std::chrono_literals;

namespace {

const steady_time t0{};  // the hand clock's origin

member_record record(std::uint64_t incarnation, std::uint64_t heartbeat, bool left = false) {
  return member_record{"127.0.0.1:7000", incarnation, heartbeat, left};
}

member_table table_with(replica_id id, const member_record& r) {
  member_table t;
  t.offer(id, r);
  return t;
}

// Tables of members with ids in [1, ids_below).
rc::Gen<member_table> gen_table(int ids_below = 5) {
  return rc::gen::map(
      rc::gen::container<std::vector<std::tuple<int, int, int, bool>>>(
          rc::gen::tuple(rc::gen::inRange(1, ids_below), rc::gen::inRange(0, 3), rc::gen::inRange(0, 5),
                         rc::gen::arbitrary<bool>())),
      [](const std::vector<std::tuple<int, int, int, bool>>& rows) {
        member_table t;
        for (const auto& [id, inc, hb, left] : rows)
          t.offer(static_cast<replica_id>(id),
                  record(static_cast<std::uint64_t>(inc), static_cast<std::uint64_t>(hb), left));
        return t;
      });
}

}  // namespace

TEST_CASE("member tables merge as a join", "[transport][membership]") {
  rc::prop("commutative, associative, idempotent", [] {
    const auto a = *gen_table();
    const auto b = *gen_table();
    const auto c = *gen_table();
    const auto ab_c = lattice::crdt::testing::check_join_laws(a, b, c);
    auto aa = a;
    RC_ASSERT(aa.merge(a).empty());  // nothing reported as grown
    const auto decoded = lattice::crdt::decode<member_table>(lattice::crdt::encode(ab_c));
    RC_ASSERT(decoded.has_value());
    RC_ASSERT(decoded.value() == ab_c);
  });
}

TEST_CASE(
    "a merge keeps what offering each record keeps, and reports the ids that grew, ascending, however many are new",
    "[transport][membership]") {
  // Ids from a range wide enough that a merge often brings more than a few
  // members new to the table: member_table::merge inserts a few in place
  // and rebuilds the table for more, two paths that must agree.
  rc::prop("merge == offers", [] {
    const auto mine = *gen_table(80);
    const auto theirs = *gen_table(80);
    member_table expected = mine;
    std::vector<replica_id> expected_grown;
    bool expected_born = false;
    for (const auto& [id, r] : theirs.records()) {
      const member_record* was = mine.find(id);
      if (!expected.offer(id, r)) continue;
      expected_grown.push_back(id);
      expected_born = expected_born || was == nullptr || was->incarnation != r.incarnation || was->left != r.left;
    }
    member_table merged = mine;
    bool born = false;
    const auto grown = merged.merge(theirs, &born);
    RC_ASSERT(merged == expected);
    RC_ASSERT(grown == expected_grown);
    RC_ASSERT(born == expected_born);
  });
}

TEST_CASE("a table learned whole holds no spare capacity, and every member in it has progressed",
          "[transport][membership]") {
  // At 10,000 members in each of 10,000 simulated replicas, spare capacity
  // in the per-member maps was gigabytes (bench/churn_sim.cpp --formed).
  liveness_options probes;
  probes.source = liveness_source::probes;
  membership m(1, record(1, 0), probes, t0);
  m.merge(table_with(500, record(1, 0)), t0 + 1s);  // one member known before
  member_table everyone;
  for (replica_id id = 2; id <= 1000; ++id) everyone.offer(id, record(1, id == 500 ? 3 : 0));
  std::vector<replica_id> grown;
  REQUIRE(m.merge(everyone, t0 + 2s, &grown));
  CHECK(grown.size() == 999);  // 998 new, and 500's record grew
  CHECK(std::is_sorted(grown.begin(), grown.end()));
  CHECK(m.table().size() == 1000);
  CHECK(m.table().records().capacity() == m.table().records().size());
  for (replica_id id = 2; id <= 1000; ++id) {
    INFO("member " << id);
    REQUIRE(m.last_progress(id) == t0 + 2s);
    REQUIRE(m.state_of(id, t0 + 2s) == member_state::alive);
  }
  CHECK(m.last_progress(1) == t0);  // ourselves: our start
  CHECK(m.reachable_peers(t0 + 2s).size() == 999);
}

TEST_CASE("a silent peer goes alive -> suspect -> dead on the local clock",
          "[transport][membership]") {
  membership m(1, record(10, 0), liveness_options{400ms, 800ms}, t0);
  CHECK(m.state_of(2, t0) == member_state::dead);  // unknown
  m.merge(table_with(2, record(20, 5)), t0);
  CHECK(m.state_of(2, t0 + 399ms) == member_state::alive);
  CHECK(m.state_of(2, t0 + 400ms) == member_state::suspect);
  CHECK(m.state_of(2, t0 + 799ms) == member_state::suspect);
  CHECK(m.state_of(2, t0 + 800ms) == member_state::dead);
  CHECK(m.reachable_peers(t0 + 500ms) == std::vector<replica_id>{2});
  CHECK(m.reachable_peers(t0 + 900ms).empty());

  // The same record again is not progress...
  m.merge(table_with(2, record(20, 5)), t0 + 700ms);
  CHECK(m.state_of(2, t0 + 800ms) == member_state::dead);
  // ...a grown heartbeat is, and brings the member back.
  m.merge(table_with(2, record(20, 6)), t0 + 900ms);
  CHECK(m.state_of(2, t0 + 900ms) == member_state::alive);
  CHECK(m.state_of(1, t0 + 10s) == member_state::alive);  // ourselves
}

TEST_CASE("a graceful leave is seen at once, without a timeout", "[transport][membership]") {
  membership leaving(2, record(20, 0), liveness_options{}, t0);
  leaving.beat();
  leaving.leave();
  CHECK(leaving.state_of(2, t0) == member_state::left);

  membership observer(1, record(10, 0), liveness_options{}, t0);
  observer.merge(table_with(2, record(20, 1)), t0);
  observer.merge(leaving.table(), t0 + 1ms);
  CHECK(observer.state_of(2, t0 + 1ms) == member_state::left);
  CHECK(observer.reachable_peers(t0 + 1ms).empty());
  // A stale, pre-leave record arriving later changes nothing.
  CHECK_FALSE(observer.merge(table_with(2, record(20, 1)), t0 + 2ms));
  CHECK(observer.state_of(2, t0 + 2ms) == member_state::left);
}

TEST_CASE("a restarted replica comes back with a higher incarnation", "[transport][membership]") {
  membership observer(1, record(10, 0), liveness_options{400ms, 800ms}, t0);
  observer.merge(table_with(2, record(20, 500)), t0);
  CHECK(observer.state_of(2, t0 + 1s) == member_state::dead);  // killed
  // It restarts: new incarnation, heartbeat back to 0, and still wins.
  observer.merge(table_with(2, record(21, 0)), t0 + 2s);
  CHECK(observer.state_of(2, t0 + 2s) == member_state::alive);
  CHECK(observer.table().find(2)->incarnation == 21);
  // Gossip still carrying the old life loses.
  CHECK_FALSE(observer.merge(table_with(2, record(20, 900)), t0 + 2s));
  // A leave from the old life does not end the new one.
  observer.merge(table_with(2, record(20, 900, true)), t0 + 2s);
  CHECK(observer.state_of(2, t0 + 2s) == member_state::alive);
}

TEST_CASE("a replica refutes a record of itself that beats its own", "[transport][membership]") {
  membership m(1, record(10, 3), liveness_options{}, t0);
  // A stale "left" of our own incarnation comes back through gossip.
  CHECK(m.merge(table_with(1, record(10, 3, true)), t0));
  CHECK(m.state_of(1, t0) == member_state::alive);
  CHECK(m.self_record().incarnation == 11);
  CHECK_FALSE(m.self_record().left);
  // Peers merging our refutation see us alive again.
  membership peer(2, record(20, 0), liveness_options{}, t0);
  peer.merge(table_with(1, record(10, 3, true)), t0);
  CHECK(peer.state_of(1, t0) == member_state::left);
  peer.merge(m.table(), t0 + 1ms);
  CHECK(peer.state_of(1, t0 + 1ms) == member_state::alive);
}

TEST_CASE("probes: generation moves with every verdict and new record life, and not with a refresh, time or our own beat",
          "[transport][membership]") {
  // registry_core redoes its passes over every member only when
  // generation() moved; a change it missed would leave a dead member's
  // stamp floor unheld or an owner listed.
  membership m(1, record(1, 0), liveness_options{400ms, 800ms, liveness_source::probes}, t0);
  auto g = m.generation();
  const auto moved = [&] { return std::exchange(g, m.generation()) != m.generation(); };
  m.beat(5, 1);
  CHECK_FALSE(moved());
  CHECK_FALSE(m.last_peer_progress().has_value());  // nobody but us
  REQUIRE(m.merge(table_with(2, record(1, 0)), t0 + 1s));
  CHECK(moved());
  CHECK(m.last_peer_progress() == t0 + 1s);
  CHECK_FALSE(m.merge(table_with(2, record(1, 0)), t0 + 2s));  // nothing new
  CHECK_FALSE(moved());
  // A refresh (a later heartbeat and floor, the same life) grows the
  // record and counts as progress, but no state can have moved with it.
  auto refreshed = record(1, 7);
  refreshed.clock_us = 1'000;
  REQUIRE(m.merge(table_with(2, refreshed), t0 + 2s));
  CHECK_FALSE(moved());
  CHECK(m.last_peer_progress() == t0 + 2s);
  // A new life does move it: a restart, or a leave.
  REQUIRE(m.merge(table_with(2, record(2, 0)), t0 + 2s));
  CHECK(moved());
  m.heard(2, t0 + 3s);
  CHECK_FALSE(moved());  // progress is not a verdict
  CHECK(m.last_peer_progress() == t0 + 3s);
  m.judge(2, member_state::suspect);
  CHECK(moved());
  m.judge(2, member_state::suspect);
  CHECK_FALSE(moved());
  CHECK(m.reachable_peers(t0 + 3s) == std::vector<replica_id>{2});  // suspect: still reachable
  m.judge(2, member_state::dead);
  CHECK(moved());
  // reachable_peers() is kept between generations: it must follow them.
  CHECK(m.reachable_peers(t0 + 3s).empty());
  REQUIRE(m.judge(2, member_state::alive));  // back: dead until its record comes
  CHECK(moved());
  CHECK(m.state_of(2, t0 + 4s) == member_state::dead);
  CHECK(m.reachable_peers(t0 + 4s).empty());
  m.record_from(2);
  CHECK(moved());
  CHECK(m.state_of(2, t0 + 4s) == member_state::alive);
  CHECK(m.reachable_peers(t0 + 4s) == std::vector<replica_id>{2});
  REQUIRE(m.merge(table_with(3, record(1, 0)), t0 + 4s));
  CHECK(m.reachable_peers(t0 + 4s) == std::vector<replica_id>{2, 3});
  REQUIRE(m.merge(table_with(3, record(1, 1, true)), t0 + 5s));  // 3 left
  CHECK(m.reachable_peers(t0 + 5s) == std::vector<replica_id>{2});
  m.leave();
  CHECK(moved());
}

}  // namespace membership_test
