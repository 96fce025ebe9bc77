// examples/crdt_walkthrough.cpp: what Lattice's CRDT core does, in one run.
//
// Scenario: three replicas (A, B, C) each hold the registry's membership as
// an lww_element_set of instance keys, config as an lww_map, and calls in
// flight as a pn_counter. A provider registers on A and the delta reaches
// everyone. Then the network splits {A} | {B, C}: both sides keep writing,
// with C's wall clock 2 s behind. The split heals, the replicas exchange
// states, and every replica ends identical (same digest) with nothing lost
// and nothing resurrected, including after tombstone compaction when a
// stale copy from before the split is merged back.
//
// Run: scripts/demo.sh   (or build/examples/crdt_walkthrough)
// Exits 1 if any replica disagrees at the end.
#include <array>
#include <cstdio>
#include <string>

#include <fmt/format.h>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/hlc.hpp"
#include "lattice/crdt/lww_element_set.hpp"
#include "lattice/crdt/lww_map.hpp"
#include "lattice/crdt/pn_counter.hpp"

namespace {

using namespace lattice::crdt;

struct replica {
  replica(const char* replica_name, replica_id replica_id_value, std::uint64_t wall)
      : name(replica_name), id(replica_id_value), clock(replica_id_value), wall_us(wall) {}

  hlc_timestamp stamp() { return clock.now(wall_us += 1000); }

  // Anti-entropy with a peer: take its whole state (what a heal does).
  void merge_from(const replica& peer) {
    instances.merge(peer.instances);
    config.merge(peer.config);
    in_flight.merge(peer.in_flight);
    // Observing the peer's latest stamp keeps our next writes after it.
    (void)clock.update(peer.clock.last(), wall_us);
  }

  std::uint64_t digest() const {
    return instances.digest() ^ (config.digest() * 31) ^ (in_flight.digest() * 131);
  }

  const char* name;
  replica_id id;
  hlc clock;
  std::uint64_t wall_us;
  lww_element_set<std::string> instances;
  lww_map<std::string, std::string> config;
  pn_counter in_flight;
};

void show(const replica& r) {
  std::string list;
  r.instances.for_each([&](const std::string& key, const hlc_timestamp&) {
    list += (list.empty() ? "" : ", ") + key;
  });
  const auto* timeout = r.config.find("/config/HelloWorldService/timeout_ms");
  fmt::print("  {}: instances [{}], timeout_ms={}, in-flight={}, digest={:016x}\n", r.name, list,
             timeout ? *timeout : "-", r.in_flight.value(), r.digest());
}

void show_all(const std::array<replica, 3>& rs) {
  for (const auto& r : rs) show(r);
}

}  // namespace

int main() {
  const std::uint64_t now = system_wall_clock_us();
  std::array<replica, 3> rs{replica{"A", 1, now}, replica{"B", 2, now},
                            replica{"C", 3, now - 2'000'000}};  // C's clock lags 2 s
  auto& [a, b, c] = rs;
  const std::string i1 = "/HelloWorldService/1.0.0/10.0.0.1:8080";
  const std::string i2 = "/HelloWorldService/1.0.0/10.0.0.2:8080";
  const std::string i3 = "/HelloWorldService/1.0.0/10.0.0.3:8080";

  fmt::print("1. A registers {} and pushes the delta to B and C.\n", i1);
  const auto delta = a.instances.insert(i1, a.stamp());
  const auto bytes = encode(delta);
  for (replica* peer : {&b, &c}) peer->instances.merge(decode<lww_element_set<std::string>>(bytes).value());
  fmt::print("   the delta is {} bytes on the wire; everyone sees it:\n", bytes.size());
  show_all(rs);

  fmt::print("\n2. The network splits {{A}} | {{B, C}}. Both sides keep working:\n");
  a.instances.remove(i1, a.stamp());
  fmt::print("   A deregisters {}\n", i1);
  b.instances.insert(i2, b.stamp());
  b.in_flight.increment(b.id, 3);
  fmt::print("   B registers {} and starts 3 calls\n", i2);
  c.merge_from(b);
  c.config.put("/config/HelloWorldService/timeout_ms", "250", c.stamp());
  c.instances.insert(i3, c.stamp());
  c.in_flight.decrement(c.id, 1);
  fmt::print("   C (clock 2 s behind) sets timeout_ms=250, registers {}, ends 1 call\n", i3);
  show_all(rs);

  fmt::print("\n3. The split heals; each replica merges the others' states.\n");
  for (auto& r : rs)
    for (const auto& peer : rs) r.merge_from(peer);
  show_all(rs);
  const bool converged = a.digest() == b.digest() && b.digest() == c.digest() &&
                         a.instances == b.instances && b.instances == c.instances &&
                         a.config == c.config && a.in_flight == c.in_flight;
  const bool nothing_lost = !a.instances.contains(i1) && a.instances.contains(i2) &&
                            a.instances.contains(i3) && a.in_flight.value() == 2;

  fmt::print("\n4. Every replica compacts tombstones older than a stable point; then a\n"
             "   stale copy of A from before the split (still holding {}) is merged.\n",
             i1);
  replica stale{"stale", 9, now};
  stale.instances.insert(i1, hlc_timestamp{a.clock.last().physical_us - 1'000'000, 0, 1});
  const hlc_timestamp stable = a.clock.last();
  std::size_t dropped = 0;
  for (auto& r : rs) dropped += r.instances.compact(stable);
  for (auto& r : rs) r.instances.merge(stale.instances);
  const bool nothing_resurrected = !a.instances.contains(i1) && !b.instances.contains(i1);
  fmt::print("   {} tombstones dropped; {} is {}\n", dropped, i1,
             nothing_resurrected ? "still gone" : "BACK (bug!)");

  fmt::print("\nSummary: converged={} nothing_lost={} nothing_resurrected={}\n", converged,
             nothing_lost, nothing_resurrected);
  return converged && nothing_lost && nothing_resurrected ? 0 : 1;
}
