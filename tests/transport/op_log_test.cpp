// op_log: exactly-once, per-origin-ordered delivery with bounded buffers,
// repair from the log, and the range-sync fallback when the log is short.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "lattice/crdt/g_set.hpp"
#include "lattice/transport/op_log.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace op_log_test {

using lattice::transport::numbered_op;
using lattice::transport::op_log;
using lattice::transport::op_log_limits;
using lattice::transport::op_verdict;
using lattice::transport::stream_position;
using lattice::transport::stream_vector;
using set_type = lattice::crdt::g_set<int>;

namespace {

numbered_op<set_type> op(std::uint64_t origin, std::uint64_t incarnation, std::uint64_t seq,
                         std::uint64_t born_us = 0) {
  set_type delta;
  delta.insert(static_cast<int>(seq));
  return {origin, incarnation, seq, born_us, delta};
}

std::vector<std::uint64_t> seqs(const std::vector<numbered_op<set_type>>& ops) {
  std::vector<std::uint64_t> out;
  for (const auto& o : ops) out.push_back(o.seq);
  return out;
}

}  // namespace

TEST_CASE("ops are delivered once, in origin order, across gaps", "[transport][op_log]") {
  op_log<set_type> log;
  std::vector<numbered_op<set_type>> ready;
  CHECK(log.accept(op(7, 1, 2), ready) == op_verdict::buffered);
  CHECK(log.accept(op(7, 1, 3), ready) == op_verdict::buffered);
  CHECK(log.accept(op(7, 1, 3), ready) == op_verdict::duplicate);
  CHECK(ready.empty());
  CHECK(log.pending() == 2);
  CHECK(log.accept(op(7, 1, 1), ready) == op_verdict::delivered);
  CHECK(seqs(ready) == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(log.pending() == 0);
  ready.clear();
  CHECK(log.accept(op(7, 1, 2), ready) == op_verdict::duplicate);
  CHECK(ready.empty());
  CHECK(log.vector() == stream_vector{{7, stream_position{1, 3}}});
}

TEST_CASE("a greater incarnation restarts the stream, an older one is stale", "[transport][op_log]") {
  op_log<set_type> log;
  std::vector<numbered_op<set_type>> ready;
  REQUIRE(log.accept(op(7, 1, 1), ready) == op_verdict::delivered);
  REQUIRE(log.accept(op(7, 1, 5), ready) == op_verdict::buffered);
  CHECK(log.accept(op(7, 2, 1), ready) == op_verdict::delivered);
  CHECK(log.pending() == 0);  // the old life's buffered op is gone
  CHECK(log.accept(op(7, 1, 2), ready) == op_verdict::duplicate);
  CHECK(log.vector().at(7) == stream_position{2, 1});
}

TEST_CASE("the gap buffer is bounded", "[transport][op_log]") {
  op_log<set_type> log(op_log_limits{.log_per_origin = 8, .pending_limit = 2});
  std::vector<numbered_op<set_type>> ready;
  CHECK(log.accept(op(1, 1, 3), ready) == op_verdict::buffered);
  CHECK(log.accept(op(2, 1, 3), ready) == op_verdict::buffered);
  CHECK(log.accept(op(1, 1, 4), ready) == op_verdict::overflow);
  CHECK(log.pending() == 2);
}

TEST_CASE("a peer's gaps are filled from the log, or a range sync is asked for",
          "[transport][op_log]") {
  op_log<set_type> origin(op_log_limits{.log_per_origin = 3, .pending_limit = 16});
  for (int i = 1; i <= 5; ++i) {
    set_type delta;
    delta.insert(i);
    origin.record_local(9, 4, delta);
  }
  // The log holds seqs 3..5.
  SECTION("a peer at seq 2 gets 3, 4, 5") {
    const auto c = origin.missing_from(stream_vector{{9, {4, 2}}}, 100);
    CHECK(seqs(c.ops) == std::vector<std::uint64_t>{3, 4, 5});
    CHECK_FALSE(c.needs_range_sync);
  }
  SECTION("the batch limit caps the answer") {
    CHECK(seqs(origin.missing_from(stream_vector{{9, {4, 2}}}, 2).ops) ==
          std::vector<std::uint64_t>{3, 4});
  }
  SECTION("a peer at seq 1 needs what the log dropped: range sync") {
    const auto c = origin.missing_from(stream_vector{{9, {4, 1}}}, 100);
    CHECK(c.ops.empty());
    CHECK(c.needs_range_sync);
  }
  SECTION("a peer that never heard of the origin, or knew an older life") {
    CHECK(origin.missing_from(stream_vector{}, 100).needs_range_sync);
    CHECK(origin.missing_from(stream_vector{{9, {3, 50}}}, 100).needs_range_sync);
  }
  SECTION("a peer that is up to date gets nothing") {
    const auto c = origin.missing_from(stream_vector{{9, {4, 5}}}, 100);
    CHECK(c.ops.empty());
    CHECK_FALSE(c.needs_range_sync);
    CHECK_FALSE(origin.behind(stream_vector{{9, {4, 5}}}));
    CHECK(origin.behind(stream_vector{{9, {4, 6}}}));
    CHECK(origin.behind(stream_vector{{8, {1, 1}}}));
  }
}

TEST_CASE("skip_to moves past a gap and releases what was buffered beyond it",
          "[transport][op_log]") {
  op_log<set_type> log;
  std::vector<numbered_op<set_type>> ready;
  REQUIRE(log.accept(op(7, 1, 4), ready) == op_verdict::buffered);
  REQUIRE(log.accept(op(7, 1, 2), ready) == op_verdict::buffered);
  log.skip_to(stream_vector{{7, {1, 3}}}, ready);
  CHECK(seqs(ready) == std::vector<std::uint64_t>{4});
  CHECK(log.pending() == 0);
  CHECK(log.vector().at(7) == stream_position{1, 4});
}

// f_op_replay: a fresh replica was sent every op since seq 1, including a
// write whose later delete had been collected as a tombstone (its op gone
// with a restarted origin's stream), and the key came back. Ops older than
// max_age are not replayed, and not delivered: the peer range-syncs.
TEST_CASE("ops older than max_age are neither replayed nor delivered (f_op_replay)",
          "[transport][op_log][regression]") {
  using std::chrono::seconds;
  const std::uint64_t s = 1'000'000;  // µs
  op_log<set_type> origin(op_log_limits{.log_per_origin = 100, .pending_limit = 16, .max_age = seconds(10)});
  origin.set_now(100 * s);
  set_type delta;
  origin.record_local(9, 4, delta);  // seq 1, born at 100 s
  origin.set_now(105 * s);
  origin.record_local(9, 4, delta);  // seq 2, born at 105 s

  SECTION("young enough: replayed from the log") {
    origin.set_now(109 * s);
    const auto c = origin.missing_from(stream_vector{}, 100);
    CHECK_FALSE(c.needs_range_sync);
    CHECK(seqs(c.ops) == std::vector<std::uint64_t>{1, 2});
  }
  SECTION("a peer that needs an expired op gets a range sync, not the rest") {
    origin.set_now(111 * s);
    const auto c = origin.missing_from(stream_vector{}, 100);
    CHECK(c.needs_range_sync);
    CHECK(c.ops.empty());
    // A peer past the expired op still gets the young one.
    CHECK(seqs(origin.missing_from(stream_vector{{9, {4, 1}}}, 100).ops) == std::vector<std::uint64_t>{2});
  }
  SECTION("an expired op that arrives is dropped, the stream does not move") {
    op_log<set_type> receiver(op_log_limits{.log_per_origin = 100, .pending_limit = 16, .max_age = seconds(10)});
    receiver.set_now(111 * s);
    std::vector<numbered_op<set_type>> ready;
    CHECK(receiver.accept(op(9, 4, 1, 100 * s), ready) == op_verdict::expired);
    CHECK(ready.empty());
    CHECK(receiver.vector().empty());
    CHECK(receiver.accept(op(9, 4, 1, 105 * s), ready) == op_verdict::delivered);
  }
}

}  // namespace op_log_test
