// LWW types: clock skew, tie-breaks, tombstones, compaction and the horizon,
// and the two merge strategies of lww_map agreeing.
#include <map>
#include <string>

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include "lattice/crdt/lww_element_set.hpp"
#include "lattice/crdt/lww_map.hpp"
#include "lattice/crdt/lww_register.hpp"
#include "lattice/crdt/testing/replica_context.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace lww_test {

using lattice::crdt::apply_status;
using lattice::crdt::hlc_timestamp;
using lattice::crdt::lww_element_set;
using lattice::crdt::lww_map;
using lattice::crdt::lww_register;
using lattice::crdt::testing::replica_context;

TEST_CASE("a replica whose wall clock is behind still wins with a later HLC stamp",
          "[crdt][lww]") {
  // A's wall clock runs 3 s ahead of B's (within the 5 s drift bound). A
  // writes; B sees A's write, then writes. B's write happened later, so it
  // must win everywhere, although B's wall clock reads less than A's stamp.
  replica_context a{1, 13'000'000};
  replica_context b{2, 10'000'000};
  lww_map<std::string, std::string> at_a, at_b;

  const auto delta_a = at_a.put("/db/url", "pg://old", a.stamp());
  at_b.merge(delta_a);
  REQUIRE(b.clock.update(delta_a.find_entry("/db/url")->stamp, b.wall_us));  // B observes A
  const auto delta_b = at_b.put("/db/url", "pg://new", b.stamp());

  CHECK(b.wall_us < a.wall_us);
  at_a.merge(delta_b);
  CHECK(*at_a.find("/db/url") == "pg://new");
  CHECK(*at_b.find("/db/url") == "pg://new");
  CHECK(at_a == at_b);
}

TEST_CASE("without observing, the larger HLC stamp wins deterministically", "[crdt][lww]") {
  lww_register<int> x, y;
  x.assign(1, hlc_timestamp{100, 0, 1});
  y.assign(2, hlc_timestamp{100, 0, 2});  // same instant, replica 2 breaks the tie
  auto xy = x, yx = y;
  xy.merge(y);
  yx.merge(x);
  CHECK(xy.value() == 2);
  CHECK(yx.value() == 2);
}

TEST_CASE("equal stamps: a tombstone beats a value, and the greater value beats the lesser",
          "[crdt][lww]") {
  const hlc_timestamp same{500, 3, 7};
  SECTION("lww_map, both merge orders") {
    lww_map<std::string, int> put, erased;
    put.put("k", 1, same);
    erased.erase("k", same);
    auto a = put, b = erased;
    a.merge(erased);
    b.merge(put);
    CHECK(a.find("k") == nullptr);
    CHECK(a == b);
  }
  SECTION("lww_map values") {
    lww_map<std::string, int> low, high;
    low.put("k", 1, same);
    high.put("k", 9, same);
    auto a = low, b = high;
    a.merge(high);
    b.merge(low);
    CHECK(*a.find("k") == 9);
    CHECK(a == b);
  }
  SECTION("lww_element_set: remove wins") {
    lww_element_set<std::string> added, removed;
    added.insert("e", same);
    removed.remove("e", same);
    auto a = added, b = removed;
    a.merge(removed);
    b.merge(added);
    CHECK_FALSE(a.contains("e"));
    CHECK(a == b);
  }
  SECTION("lww_register values") {
    lww_register<int> low, high;
    low.assign(1, same);
    high.assign(9, same);
    low.merge(high);
    CHECK(low.value() == 9);
    CHECK_FALSE(high.merge(low));
  }
}

TEST_CASE("an older put arriving after an erase does not resurrect the key", "[crdt][lww]") {
  lww_map<std::string, int> m;
  const auto late_put = lww_map<std::string, int>{}.put("k", 1, hlc_timestamp{100, 0, 1});
  m.erase("k", hlc_timestamp{200, 0, 2});
  CHECK_FALSE(m.merge(late_put));
  CHECK(m.find("k") == nullptr);
  CHECK(m.tombstones() == 1);
  CHECK(m.apply(m.prepare_put("k", 1, hlc_timestamp{150, 0, 1})) == apply_status::duplicate);
}

TEST_CASE("compact drops only tombstones older than the stable point", "[crdt][lww][tombstone]") {
  lww_element_set<std::string> s;
  s.insert("live", hlc_timestamp{10, 0, 1});
  s.insert("old", hlc_timestamp{10, 0, 1});
  s.remove("old", hlc_timestamp{20, 0, 1});
  s.insert("young", hlc_timestamp{10, 0, 1});
  s.remove("young", hlc_timestamp{40, 0, 1});
  const auto digest_before = s.digest();

  CHECK(s.compact(hlc_timestamp{30, 0, 0}) == 1);
  CHECK(s.tombstones() == 1);  // "young" is newer than the stable point
  CHECK(s.contains("live"));
  CHECK(s.size() == 1);
  CHECK(s.horizon() == hlc_timestamp{30, 0, 0});
  CHECK(s.digest() != digest_before);

  // The digest still equals that of the same content built without compaction.
  lww_element_set<std::string> rebuilt;
  rebuilt.insert("live", hlc_timestamp{10, 0, 1});
  rebuilt.insert("young", hlc_timestamp{10, 0, 1});
  rebuilt.remove("young", hlc_timestamp{40, 0, 1});
  CHECK(rebuilt == s);
  CHECK(rebuilt.digest() == s.digest());
}

TEST_CASE("after compaction, a stale peer's old state cannot bring a removed key back",
          "[crdt][lww][tombstone]") {
  // Three replicas see a put; two of them then see the erase, compact at a
  // stable point past it, and forget the tombstone. The third was away and
  // still holds the put. Merging its state must not resurrect the key.
  lww_map<std::string, std::string> a, b;
  const auto put = a.put("/svc/1", "10.0.0.1:80", hlc_timestamp{100, 0, 1});
  b.merge(put);
  lww_map<std::string, std::string> stale = b;  // the absent replica's copy

  b.merge(a.erase("/svc/1", hlc_timestamp{200, 0, 1}));
  const hlc_timestamp stable{300, 0, 0};
  a.compact(stable);
  b.compact(stable);
  REQUIRE(a.empty());
  REQUIRE(a.tombstones() == 0);

  CHECK_FALSE(a.merge(stale));
  CHECK(a.find("/svc/1") == nullptr);
  CHECK(a.apply(stale.prepare_put("/svc/1", "x", hlc_timestamp{100, 0, 1})) ==
        apply_status::duplicate);

  // A key genuinely written after the stable point is accepted.
  CHECK(a.merge(stale.put("/svc/2", "10.0.0.2:80", hlc_timestamp{400, 0, 3})));
  CHECK(a.contains("/svc/2"));

  // Merging a compacted state raises the horizon and compacts the receiver.
  lww_map<std::string, std::string> c;
  c.erase("/svc/9", hlc_timestamp{250, 0, 2});
  c.merge(a);
  CHECK(c.horizon() == stable);
  CHECK(c.tombstones() == 0);
}

TEST_CASE("lww_map merges a small delta and an equal-sized state to the same result",
          "[crdt][lww]") {
  // merge() compares at the coarser of the two bucket levels: a small delta
  // has few buckets, a copy of the big map has as many as the big map. Both
  // paths must agree.
  lww_map<std::string, int> big, other_big, small;
  for (int i = 0; i < 400; ++i)
    big.put("k" + std::to_string(i), i, hlc_timestamp{static_cast<std::uint64_t>(10 + i), 0, 1});
  other_big = big;
  for (int i = 0; i < 5; ++i) {
    const auto key = "k" + std::to_string(i * 97);
    small.put(key, -i, hlc_timestamp{1000, 0, 2});
    other_big.put(key, -i, hlc_timestamp{1000, 0, 2});
  }
  small.put("new", 1, hlc_timestamp{1000, 0, 2});
  other_big.put("new", 1, hlc_timestamp{1000, 0, 2});

  auto via_delta = big;
  auto via_state = big;
  CHECK(via_delta.merge(small));
  CHECK(via_state.merge(other_big));
  CHECK(via_delta == via_state);
  CHECK(via_delta.digest() == via_state.digest());
  CHECK(via_delta.size() == 401);
  CHECK(*via_delta.find("k97") == -1);
}

TEST_CASE("lww_map size, tombstones and for_each see only what they should", "[crdt][lww]") {
  lww_map<std::string, int> m;
  m.put("a", 1, hlc_timestamp{1, 0, 1});
  m.put("b", 2, hlc_timestamp{2, 0, 1});
  m.erase("a", hlc_timestamp{3, 0, 1});
  CHECK(m.size() == 1);
  CHECK(m.tombstones() == 1);
  std::vector<std::string> seen;
  m.for_each([&](const std::string& key, int, const hlc_timestamp&) { seen.push_back(key); });
  CHECK(seen == std::vector<std::string>{"b"});
}

// A reference model: the plain per-key join over std::map. The bucketed map
// must agree with it through growth, digest-skipping merges between maps of
// different bucket counts, slices and compaction.

namespace {

using model_entry = std::pair<hlc_timestamp, std::optional<int>>;
using model = std::map<std::string, model_entry>;

void model_write(model& m, const std::string& key, const model_entry& e) {
  auto [it, inserted] = m.try_emplace(key, e);
  if (inserted) return;
  const auto& cur = it->second;
  const bool wins = e.first != cur.first ? e.first > cur.first
                    : !cur.second        ? false
                    : !e.second          ? true
                                         : *cur.second < *e.second;
  if (wins) it->second = e;
}

}  // namespace

TEST_CASE("lww_map agrees with a reference model at scale", "[crdt][lww][slow]") {
  rc::prop("random writes on three replicas, merged every way", [] {
    using map_type = lww_map<std::string, int>;
    std::vector<map_type> replicas(3);
    std::vector<model> models(3);
    // Up to 3000 writes over 2000 keys: enough for the table to grow to
    // several hundred buckets, so merges compare ranges across levels.
    const auto count = *rc::gen::inRange<std::size_t>(0, 3000);
    const auto writes = *rc::gen::container<std::vector<std::tuple<int, int, int, bool>>>(
        count, rc::gen::tuple(rc::gen::inRange(0, 3), rc::gen::inRange(0, 2000), rc::gen::inRange(0, 9),
                       rc::gen::weightedElement<bool>({{4, true}, {1, false}})));
    std::uint64_t t = 1;
    for (const auto& [r, k, v, put] : writes) {
      const std::string key = "/k/" + std::to_string(k);
      const hlc_timestamp stamp{t++, 0, static_cast<std::uint64_t>(r + 1)};
      const model_entry e{stamp, put ? std::optional<int>(v) : std::nullopt};
      auto& target = replicas[static_cast<std::size_t>(r)];
      if (put) target.put(key, v, stamp);
      else target.erase(key, stamp);
      model_write(models[static_cast<std::size_t>(r)], key, e);
    }
    // Join everything into replica 0, both ways round for replica 1.
    map_type joined = replicas[0];
    joined.merge(replicas[1]);
    joined.merge(replicas[2]);
    map_type other_way = replicas[2];
    other_way.merge(replicas[1]);
    other_way.merge(replicas[0]);
    model expected = models[0];
    for (const auto& m : {models[1], models[2]})
      for (const auto& [key, e] : m) model_write(expected, key, e);

    RC_TAG(joined.bucket_bits());
    RC_ASSERT(joined == other_way);
    std::size_t live = 0;
    for (const auto& [key, e] : expected) {
      const auto* got = joined.find_entry(key);
      RC_ASSERT(got != nullptr);
      RC_ASSERT(got->stamp == e.first);
      RC_ASSERT(got->value == e.second);
      if (e.second) ++live;
    }
    RC_ASSERT(joined.size() == live);
    RC_ASSERT(joined.size() + joined.tombstones() == expected.size());

    // Slices at any level partition the map and carry their range digests.
    const auto bits = *rc::gen::inRange(0u, joined.bucket_bits() + 3);
    map_type reassembled;
    std::uint64_t digest_sum = 0;
    for (std::size_t r = 0; r < (std::size_t{1} << bits); ++r) {
      const auto part = joined.slice(bits, r);
      RC_ASSERT(part.digest() == joined.range_digest(bits, r));
      digest_sum += part.digest();
      reassembled.merge(part);
    }
    RC_ASSERT(digest_sum == joined.digest());
    RC_ASSERT(reassembled == joined);

    // Compaction at a random point drops exactly the older tombstones.
    const hlc_timestamp stable{*rc::gen::inRange<std::uint64_t>(0, t + 1), 0, 0};
    std::size_t older_tombstones = 0;
    for (const auto& [key, e] : expected) older_tombstones += !e.second && e.first < stable;
    RC_ASSERT(joined.compact(stable) == older_tombstones);
    auto decoded = lattice::crdt::decode<map_type>(lattice::crdt::encode(joined));
    RC_ASSERT(decoded.has_value());
    RC_ASSERT(decoded.value() == joined);
    RC_ASSERT(decoded.value().horizon() == stable);
  });
}

namespace {

// Keys whose hashes fall in range 0 and range 1 at level 1.
std::pair<std::string, std::string> keys_in_both_halves() {
  std::string in0, in1;
  for (int i = 0; in0.empty() || in1.empty(); ++i) {
    REQUIRE(i < 10'000);
    lww_map<std::string, int> probe;
    const std::string k = "k" + std::to_string(i);
    probe.put(k, 0, hlc_timestamp{1, 0, 1});
    (probe.range_digest(1, 0) != 0 ? in0 : in1) = k;
  }
  return {in0, in1};
}

}  // namespace

// merge_ranges: a tombstone the part's sender has collected leaves our
// state (so the range agrees with the sender's) but still keeps older
// writes of its key out until our own horizon passes it.
TEST_CASE("a tombstone a range push shows collected becomes a shadow", "[crdt][lww][tombstone]") {
  const auto [in0, in1] = keys_in_both_halves();
  lww_map<std::string, int> sender, mine;
  sender.put(in1, 1, hlc_timestamp{5, 0, 2});
  sender.compact(hlc_timestamp{100, 0, 0});
  mine.put(in0, 0, hlc_timestamp{10, 0, 1});
  (void)mine.erase(in0, hlc_timestamp{30, 0, 1});
  const std::uint32_t range0[] = {0};
  lww_map<std::string, int> part = sender;  // holds nothing in range 0
  lww_map<std::string, int> removed;
  mine.merge_ranges(part, 1, range0, &removed);
  CHECK(mine.tombstones() == 0);
  CHECK(mine.shadows() == 1);
  CHECK(mine.range_digest(1, 0) == sender.range_digest(1, 0));
  CHECK(removed.empty());  // the tombstone is not gone yet: a store keeps its row
  CHECK(mine.horizon() == hlc_timestamp::zero());
  // An older write of the key, from a replica that missed the delete.
  lww_map<std::string, int> stale;
  stale.put(in0, 0, hlc_timestamp{10, 0, 1});
  mine.merge(stale);
  CHECK_FALSE(mine.contains(in0));
  // Not in silence: the tombstone the write missed comes back into our
  // state, so that anti-entropy takes it to the stale replica.
  CHECK(mine.tombstones() == 1);
  CHECK(mine.shadows() == 0);
  stale.merge(mine);
  CHECK_FALSE(stale.contains(in0));
  mine.merge_ranges(part, 1, range0);
  REQUIRE(mine.shadows() == 1);
  // The tombstone itself comes back in (a peer that still holds it must not
  // differ from us for ever), and so does a later write.
  lww_map<std::string, int> holder;
  (void)holder.erase(in0, hlc_timestamp{30, 0, 1});
  mine.merge(holder);
  CHECK(mine.tombstones() == 1);
  CHECK(mine.shadows() == 0);
  mine.merge_ranges(part, 1, range0);
  lww_map<std::string, int> later;
  later.put(in0, 7, hlc_timestamp{40, 0, 3});
  mine.merge(later);
  CHECK(mine.find(in0) != nullptr);
  CHECK(mine.shadows() == 0);
}

TEST_CASE("compaction collects shadows and reports them as tombstones", "[crdt][lww][tombstone]") {
  const auto [in0, in1] = keys_in_both_halves();
  lww_map<std::string, int> sender, mine;
  sender.compact(hlc_timestamp{100, 0, 0});
  (void)mine.erase(in0, hlc_timestamp{30, 0, 1});
  const std::uint32_t range0[] = {0};
  mine.merge_ranges(sender, 1, range0);
  REQUIRE(mine.shadows() == 1);
  lww_map<std::string, int> removed;
  mine.compact(hlc_timestamp{20, 0, 0}, &removed);  // below it: kept
  CHECK(mine.shadows() == 1);
  mine.compact(hlc_timestamp{50, 0, 0}, &removed);
  CHECK(mine.shadows() == 0);
  REQUIRE(removed.find_entry(in0) != nullptr);
  CHECK_FALSE(removed.find_entry(in0)->live());
}

}  // namespace lww_test
