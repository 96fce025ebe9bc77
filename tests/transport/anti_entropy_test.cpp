// Push-pull range reconciliation: one exchange brings two replicas to the
// same state; a quiet pair exchanges one small message; bytes shipped follow
// the differences, not the state size.
#include <string>

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include "lattice/crdt/lww_element_set.hpp"
#include "lattice/crdt/lww_map.hpp"
#include "lattice/transport/anti_entropy.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace anti_entropy_test {

using namespace lattice::transport;
using lattice::crdt::decode;
using lattice::crdt::encode;
using lattice::crdt::hlc_timestamp;
using set_type = lattice::crdt::lww_element_set<std::string>;

namespace {

struct exchange_result {
  std::size_t messages = 0;
  std::size_t bytes = 0;  // encoded payload bytes, all messages
};

// Runs one exchange initiated by `a`, passing every message through the
// codec as the wire would.
exchange_result run_exchange(set_type& a, set_type& b) {
  exchange_result r;
  auto wire = [&](const auto& message) {
    auto bytes = encode(message);
    ++r.messages;
    r.bytes += bytes.size();
    auto decoded = decode<std::decay_t<decltype(message)>>(bytes);
    REQUIRE(decoded);
    return std::move(decoded).value();
  };
  const auto request = wire(make_sync_request(a));
  const auto digests = answer_sync_request(b, request);
  if (!digests) return r;
  const auto push = answer_range_digests(a, wire(*digests));
  if (!push) return r;
  const auto reply = absorb_range_push(b, wire(*push));
  REQUIRE(reply);
  REQUIRE_FALSE(absorb_range_push(a, wire(*reply)));  // the reply asks for nothing
  return r;
}

std::string key(int i) { return "/svc/1.0/10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256); }

set_type shared_base(int n) {
  set_type s;
  for (int i = 0; i < n; ++i) s.insert(key(i), hlc_timestamp{static_cast<std::uint64_t>(i + 1), 0, 1});
  return s;
}

}  // namespace

TEST_CASE("a quiet pair exchanges one request of a few bytes", "[transport][anti-entropy]") {
  auto a = shared_base(5000);
  auto b = a;
  const auto r = run_exchange(a, b);
  CHECK(r.messages == 1);
  CHECK(r.bytes <= 64);
}

TEST_CASE("one exchange reconciles divergent replicas", "[transport][anti-entropy]") {
  rc::prop("both sides end equal to the join", [] {
    const int n = *rc::gen::inRange(0, 3000);
    const auto base = shared_base(n);
    set_type a = base, b = base;
    const auto changes = *rc::gen::container<std::vector<std::tuple<bool, bool, int>>>(
        rc::gen::tuple(rc::gen::arbitrary<bool>(), rc::gen::arbitrary<bool>(),
                       rc::gen::inRange(0, n + 200)));
    std::uint64_t t = 1'000'000;
    for (const auto& [on_a, insert, k] : changes) {
      auto& side = on_a ? a : b;
      const hlc_timestamp stamp{++t, 0, on_a ? 2u : 3u};
      if (insert) side.insert(key(k), stamp);
      else side.remove(key(k), stamp);
    }
    set_type expected = a;
    expected.merge(b);
    run_exchange(a, b);
    RC_ASSERT(a == expected);
    RC_ASSERT(b == expected);
    RC_ASSERT(a.digest() == b.digest());
  });
}

TEST_CASE("bytes shipped follow the differences, not the state size",
          "[transport][anti-entropy]") {
  // Same 10 changed keys over a 2,000- and a 20,000-element state: the
  // entries shipped stay small; only the digest list grows with size.
  std::size_t digest_bytes[2] = {};
  std::size_t push_bytes[2] = {};
  const int sizes[2] = {2000, 20000};
  for (int s = 0; s < 2; ++s) {
    auto a = shared_base(sizes[s]);
    auto b = a;
    for (int i = 0; i < 10; ++i) a.insert(key(i * 97) + "x", hlc_timestamp{9'000'000u + static_cast<unsigned>(i), 0, 2});
    const auto digests = answer_sync_request(b, make_sync_request(a));
    REQUIRE(digests);
    const auto push = answer_range_digests(a, *digests);
    REQUIRE(push);
    CHECK(push->indices.size() <= 10);
    digest_bytes[s] = encode(*digests).size();
    push_bytes[s] = encode(*push).size();
  }
  CHECK(push_bytes[1] < 2 * push_bytes[0]);       // not 10x
  CHECK(digest_bytes[1] > 5 * digest_bytes[0]);   // the digest list does scale
}

TEST_CASE("anti-entropy messages reject impossible shapes", "[transport][anti-entropy]") {
  range_digests bad;
  bad.bits = 3;
  bad.digests.resize(5);  // must be 8
  CHECK_FALSE(decode<range_digests>(encode(bad)));
  range_push<set_type> unordered;
  unordered.bits = 4;
  unordered.indices = {3, 2};
  CHECK_FALSE(decode<range_push<set_type>>(encode(unordered)));
  range_push<set_type> out_of_range;
  out_of_range.bits = 2;
  out_of_range.indices = {4};
  CHECK_FALSE(decode<range_push<set_type>>(encode(out_of_range)));
}

TEST_CASE("a large catch-up is split into pushes under the byte cap", "[transport][anti-entropy]") {
  // A fresh replica (a) meets one holding 5,000 entries (b); pushes are
  // capped at 16 KiB of entries, so it takes several exchanges.
  set_type a;
  set_type b = shared_base(5000);
  constexpr std::size_t cap = 16 * 1024;
  std::size_t exchanges = 0, largest_push = 0;
  for (; exchanges < 200 && a.digest() != b.digest(); ++exchanges) {
    const auto digests = answer_sync_request(b, make_sync_request(a));
    REQUIRE(digests);
    const auto push = answer_range_digests(a, *digests, cap);
    REQUIRE(push);
    const auto reply = absorb_range_push(b, *push, cap);
    REQUIRE(reply);
    largest_push = std::max({largest_push, encode(push->entries).size(), encode(reply->entries).size()});
    a.merge(reply->entries);
  }
  CHECK(a.digest() == b.digest());
  CHECK(a.size() == 5000);
  CHECK(exchanges > 1);
  // Whole ranges only, so a push may pass the cap by at most one range
  // (about 8 entries of ~60 bytes here).
  CHECK(largest_push <= cap + 1024);
  // And without a cap the same catch-up is one exchange.
  set_type fresh;
  const auto digests = answer_sync_request(b, make_sync_request(fresh));
  const auto reply = absorb_range_push(b, *answer_range_digests(fresh, *digests, SIZE_MAX), SIZE_MAX);
  fresh.merge(reply->entries);
  CHECK(fresh.digest() == b.digest());
}

// lww_map::merge_ranges reads a part's horizon within the ranges it lists
// only.
TEST_CASE("absences outside the pushed ranges mean nothing", "[transport][anti-entropy]") {
  lattice::crdt::lww_map<std::string, int> whole;
  for (int i = 0; i < 64; ++i) whole.put(key(i), i, hlc_timestamp{10, 0, 1});
  // The part: whole's range 0 at level 1, with a horizon past every stamp.
  std::vector<std::uint32_t> indices{0};
  auto part = collect_ranges(whole, 1, indices);
  part.compact(hlc_timestamp{100, 0, 0});
  auto mine = whole;
  const auto in_range_0 = [](const std::string& k) {
    lattice::crdt::lww_map<std::string, int> probe;
    probe.put(k, 0, hlc_timestamp{1, 0, 1});
    return probe.range_digest(1, 0) != 0;
  };
  // A key only `mine` has, in each range, below the part's horizon.
  std::string in0, in1;
  for (int i = 64; in0.empty() || in1.empty(); ++i) {
    auto& slot = in_range_0(key(i)) ? in0 : in1;
    if (slot.empty()) slot = key(i);
    REQUIRE(i < 10'000);
  }
  mine.put(in0, 0, hlc_timestamp{20, 0, 1});
  mine.put(in1, 1, hlc_timestamp{20, 0, 1});
  mine.merge_ranges(part, 1, indices);
  CHECK_FALSE(mine.contains(in0));  // in the pushed range: erased there
  CHECK(mine.contains(in1));        // outside it: nothing is known
  CHECK(mine.size() == 65);
}

namespace {

// The first key (key(i), i >= from) whose hash falls in range `index` at
// level 1.
std::string key_in_range(std::uint32_t index, int from) {
  for (int i = from; i < from + 10'000; ++i) {
    lattice::crdt::lww_map<std::string, int> probe;
    probe.put(key(i), 0, hlc_timestamp{1, 0, 1});
    if (probe.range_digest(1, index) != 0) return key(i);
  }
  FAIL("no key in range " << index);
  return {};
}

}  // namespace

// The chaos soak's loss: a replica lacking a key (not fetched yet after a
// restart, or forgotten by the grace rule) took a peer's horizon from a push
// covering other ranges; its own pushes then carried that horizon and
// erased the key at every peer that held it.
TEST_CASE("a push's horizon is not taken for the ranges it left out", "[transport][anti-entropy]") {
  using map = lattice::crdt::lww_map<std::string, int>;
  const std::string in0 = key_in_range(0, 0), in1 = key_in_range(1, 0);
  // P has compacted up to 100 and holds both keys; Q holds in1; R lacks in1.
  map p, q, r;
  p.put(in0, 0, hlc_timestamp{20, 0, 1});
  p.put(in1, 1, hlc_timestamp{20, 0, 1});
  p.compact(hlc_timestamp{100, 0, 0});
  q.put(in1, 1, hlc_timestamp{20, 0, 1});
  r.put(in0, 0, hlc_timestamp{20, 0, 1});
  // P pushes range 0 to R (say its digests differed there only).
  std::vector<std::uint32_t> range0{0};
  const auto from_p = collect_ranges(p, 1, range0);
  REQUIRE(from_p.horizon() == hlc_timestamp{100, 0, 0});
  r.merge_ranges(from_p, 1, range0);
  CHECK(r.horizon() == hlc_timestamp::zero());
  // R pushes range 1 to Q: it lacks in1 there, but says nothing about it.
  std::vector<std::uint32_t> range1{1};
  q.merge_ranges(collect_ranges(r, 1, range1), 1, range1);
  CHECK(q.contains(in1));
  // And R, lacking in1, still takes it when it comes.
  r.merge_ranges(collect_ranges(q, 1, range1), 1, range1);
  CHECK(r.contains(in1));
}

}  // namespace anti_entropy_test
