// Recursive config deletes (item 1 of the "Merges that lose nothing"
// issue): one prefix tombstone per delete, covering keys not seen yet. The
// laws are checked over the states replicas reach (writes, prefix erasures,
// merges, compaction after a global sync, replacement by an empty replica),
// and the end state is checked against a model built from the operations
// alone.
#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include "lattice/registry/document.hpp"
#include "registry_sim.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace config_erasure_test {

using namespace std::chrono_literals;
using lattice::crdt::decode;
using lattice::crdt::encode;
using lattice::crdt::hlc;
using lattice::crdt::hlc_timestamp;
using lattice::registry::registry_document;
using lattice::registry::service_path;
using lattice::testing::make_registry_sim;
using lattice::testing::registry_sim;
using doc = registry_document;

namespace {

// Keys and prefixes chosen to overlap: "/a" covers "/ab" as a string
// prefix, "/a/" does not.
const std::vector<std::string> keys{"/a", "/a/x", "/a/y", "/ab", "/b/x", "/b/y/z"};
const std::vector<std::string> prefixes{"/a", "/a/", "/b/", "/", "/b/y/"};

doc put(const std::string& key, std::string value, hlc_timestamp stamp) {
  doc d;
  d.config.put(key, std::move(value), stamp);
  return d;
}
doc erase(const std::string& key, hlc_timestamp stamp) {
  doc d;
  d.config.erase(key, stamp);
  return d;
}

doc join(doc a, const doc& b) {
  a.merge(b);
  return a;
}

// The live config of a document, as a plain map.
std::map<std::string, std::string> live_config(const doc& d) {
  std::map<std::string, std::string> out;
  d.config.for_each([&](const std::string& k, const std::string& v, const auto&) { out.emplace(k, v); });
  return out;
}

}  // namespace

TEST_CASE("config erasures: merge is a join over the states replicas reach", "[registry][crdt][regression]") {
  rc::prop("commutative, associative, idempotent, normal, decodable, honest about changes", [] {
    const auto steps = *rc::gen::container<std::vector<std::tuple<int, int, int, int>>>(
        rc::gen::tuple(rc::gen::inRange(0, 7), rc::gen::inRange(0, 3), rc::gen::inRange(0, 3),
                       rc::gen::inRange(0, 6)));
    std::vector<doc> replicas(3);
    std::vector<hlc> clocks{hlc{1}, hlc{2}, hlc{3}};
    std::uint64_t wall = 1'000;
    for (const auto& [kind, who, peer, index] : steps) {
      wall += 10;
      auto& r = replicas[static_cast<std::size_t>(who)];
      auto& clock = clocks[static_cast<std::size_t>(who)];
      const auto& key = keys[static_cast<std::size_t>(index) % keys.size()];
      const auto& prefix = prefixes[static_cast<std::size_t>(index) % prefixes.size()];
      switch (kind) {
        case 0: r.merge(put(key, std::to_string(wall), clock.now(wall))); break;
        case 1: r.merge(erase(key, clock.now(wall))); break;
        case 2: r.merge(doc::erase_config_prefix(prefix, clock.now(wall))); break;
        case 3: r.merge(replicas[static_cast<std::size_t>(peer)]); break;
        case 4: {
          // A global sync, then `who` compacts below every stamp issued.
          doc all;
          for (const auto& each : replicas) all.merge(each);
          for (auto& each : replicas) each.merge(all);
          hlc_timestamp stable{};
          for (const auto& c : clocks) stable = std::max(stable, c.last());
          for (auto& c : clocks) (void)c.update(stable, wall);
          r.compact(stable);
          break;
        }
        case 5: r = doc{}; break;  // replaced by a new, empty replica
        default: break;
      }
    }
    // References, not a structured binding: clang 15 cannot capture one.
    const doc& a = replicas[0];
    const doc& b = replicas[1];
    const doc& c = replicas[2];
    RC_ASSERT(join(a, b) == join(b, a));
    RC_ASSERT(join(a, b).digest() == join(b, a).digest());
    RC_ASSERT(join(join(a, b), c) == join(a, join(b, c)));
    RC_ASSERT(join(a, a) == a);
    for (const auto& state : {a, b, c, join(a, b), join(join(a, b), c)}) {
      RC_ASSERT(state.normal());
      const auto decoded = decode<doc>(encode(state));
      RC_ASSERT(decoded.has_value());
      RC_ASSERT(decoded.value() == state);
    }
    // merge() says exactly whether the state changed, and names every
    // config key whose entry changed: won from `b`, or reported removed.
    doc x = a;
    doc removed;
    const bool changed = x.merge(b, &removed);
    RC_ASSERT(changed == !(x == a));
    RC_ASSERT(!doc(x).merge(b));  // a repeat changes nothing (a rumour stops)
    a.config.for_each_entry([&](const std::string& key, const doc::config_map::entry& before) {
      const auto* after = x.config.find_entry(key);
      if (after != nullptr && *after == before) return;
      if (after != nullptr) {
        RC_ASSERT(b.config.find_entry(key) != nullptr);
        RC_ASSERT(*b.config.find_entry(key) == *after);
      } else {
        RC_ASSERT(removed.config.find_entry(key) != nullptr);
        RC_ASSERT(*removed.config.find_entry(key) == before);
      }
    });
  });
}

TEST_CASE("config erasures: the joined state is what the operations say, in any delivery order",
          "[registry][crdt][regression]") {
  rc::prop("model built from the operations alone; deltas in any order equal the states", [] {
    const auto steps = *rc::gen::container<std::vector<std::tuple<int, int, int>>>(
        rc::gen::tuple(rc::gen::inRange(0, 3), rc::gen::inRange(0, 3), rc::gen::inRange(0, 6)));
    std::vector<doc> replicas(3);
    std::vector<hlc> clocks{hlc{1}, hlc{2}, hlc{3}};
    std::vector<doc> deltas;
    // Per key: every write (stamp, value or nullopt); per prefix: erasures.
    std::vector<std::tuple<hlc_timestamp, std::string, std::optional<std::string>>> writes;
    std::vector<std::pair<hlc_timestamp, std::string>> erasures;
    std::uint64_t wall = 1'000;
    for (const auto& [kind, who, index] : steps) {
      wall += 7;
      auto& clock = clocks[static_cast<std::size_t>(who)];
      // Replicas' clocks lag one another: replica 2 is 24 µs behind.
      const auto stamp = clock.now(wall - static_cast<std::uint64_t>(who) * 12);
      const auto& key = keys[static_cast<std::size_t>(index) % keys.size()];
      const auto& prefix = prefixes[static_cast<std::size_t>(index) % prefixes.size()];
      doc delta;
      if (kind == 0) {
        delta = put(key, std::to_string(wall), stamp);
        writes.emplace_back(stamp, key, std::to_string(wall));
      } else if (kind == 1) {
        delta = erase(key, stamp);
        writes.emplace_back(stamp, key, std::nullopt);
      } else {
        delta = doc::erase_config_prefix(prefix, stamp);
        erasures.emplace_back(stamp, prefix);
      }
      replicas[static_cast<std::size_t>(who)].merge(delta);
      deltas.push_back(std::move(delta));
    }
    // The model: a key holds its latest write, unless an erasure covering
    // it is later still.
    std::map<std::string, std::string> expected;
    for (const auto& key : keys) {
      std::optional<std::tuple<hlc_timestamp, std::optional<std::string>>> latest;
      for (const auto& [stamp, k, value] : writes)
        if (k == key && (!latest || std::get<0>(*latest) < stamp)) latest = std::tuple{stamp, value};
      if (!latest || !std::get<1>(*latest)) continue;
      const bool erased = std::any_of(erasures.begin(), erasures.end(), [&](const auto& e) {
        return key.starts_with(e.second) && std::get<0>(*latest) < e.first;
      });
      if (!erased) expected.emplace(key, *std::get<1>(*latest));
    }
    const doc all = join(join(replicas[0], replicas[1]), replicas[2]);
    RC_ASSERT(live_config(all) == expected);
    auto shuffled = deltas;
    std::reverse(shuffled.begin(), shuffled.end());
    const auto rotate_by = *rc::gen::inRange<std::size_t>(0, shuffled.size() + 1);
    std::rotate(shuffled.begin(), shuffled.begin() + static_cast<std::ptrdiff_t>(rotate_by % (shuffled.size() + 1)),
                shuffled.end());
    doc replayed;
    for (const auto& d : shuffled) replayed.merge(d);
    RC_ASSERT(replayed == all);
  });
}

TEST_CASE("a collected erasure still keeps out an older write (the horizon)", "[registry][crdt][regression]") {
  hlc writer{1}, deleter{2};
  const auto old_put = writer.now(1'000);
  doc compacted = doc::erase_config_prefix("/app/", deleter.now(2'000));
  compacted.compact(hlc_timestamp{3'000, 0, 0});
  CHECK(compacted.config_erasures.empty());
  // A replica that missed everything offers the old write as a full state.
  doc stale = put("/app/x", "old", old_put);
  CHECK_FALSE(compacted.merge(stale));
  CHECK(compacted.config.empty());
  // A write after the horizon is a new write.
  CHECK(compacted.merge(put("/app/x", "new", writer.now(4'000))));
}

TEST_CASE("a document holding an entry an erasure covers, or a live erasure, does not decode",
          "[registry][crdt][regression]") {
  doc covered;
  covered.config.put("/app/x", "v", hlc_timestamp{10, 0, 1});
  covered.config_erasures.erase("/app/", hlc_timestamp{20, 0, 2});
  CHECK_FALSE(decode<doc>(encode(covered)).has_value());
  doc live_erasure;
  live_erasure.config_erasures.put("/app/", "x", hlc_timestamp{20, 0, 2});
  CHECK_FALSE(decode<doc>(encode(live_erasure)).has_value());
  doc fine;
  fine.config.put("/app/x", "v", hlc_timestamp{30, 0, 1});
  fine.config_erasures.erase("/app/", hlc_timestamp{20, 0, 2});
  CHECK(decode<doc>(encode(fine)).has_value());
}

TEST_CASE("a recursive delete covers keys the deleting replica never saw, and is collected (item 1)",
          "[registry][regression]") {
  lattice::registry::core_options core;
  core.gc_grace = 2s;
  core.compaction_interval = 250ms;
  registry_sim::options o;
  o.nodes = 3;
  auto sim = make_registry_sim(o, core);
  REQUIRE(sim->run_until([&] { return sim->everyone_alive(); }, 10s));
  const auto key = [](const char* text) { return service_path::parse(text).value(); };
  const auto config_on = [&](std::size_t i) {
    sim->node(i).publish(sim->now());
    const auto& tree = *sim->node(i).published()->config;
    std::map<std::string, std::string, std::less<>> out;
    for (const auto& e : tree) out.emplace(e.key, e.value);
    return out;
  };
  sim->partition({0});
  sim->run_for(2s);
  REQUIRE(sim->node(1).set_config(key("/app/a"), "1"));
  REQUIRE(sim->node(2).set_config(key("/app/b/c"), "2"));
  REQUIRE(sim->node(2).set_config(key("/apple"), "kept"));
  REQUIRE(sim->run_until([&] { return config_on(1).size() == 3 && config_on(2).size() == 3; }, 5s));
  // Node 0 has seen none of them.
  REQUIRE(config_on(0).empty());
  CHECK(sim->node(0).erase_config_prefix("/app/").value() == 0);
  sim->heal();
  const std::map<std::string, std::string, std::less<>> kept{{"/apple", "kept"}};
  REQUIRE(sim->run_until([&] { return config_on(0) == kept && config_on(1) == kept && config_on(2) == kept; }, 10s));
  // A write after the delete is a new key.
  REQUIRE(sim->node(1).set_config(key("/app/new"), "3"));
  REQUIRE(sim->run_until([&] { return config_on(0).size() == 2 && config_on(2).size() == 2; }, 5s));
  // Past gc_grace the erasure is collected everywhere, like any tombstone.
  REQUIRE(sim->run_until([&] {
    for (std::size_t i = 0; i < 3; ++i)
      if (!sim->node(i).state().config_erasures.empty()) return false;
    return true;
  }, 10s));
  CHECK(config_on(0).size() == 2);
  CHECK(sim->run_until([&] { return sim->converged(); }, 5s));
}

}  // namespace config_erasure_test
