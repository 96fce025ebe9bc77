// lattice/crdt/testing/replica_context.hpp: what a simulated replica needs
// to make mutations in a test: its id and a hybrid logical clock fed by a
// hand-advanced, skewable wall clock (no clock reads, so runs repeat).
//
//   lattice::crdt::testing::replica_context a{1, 13'000'000};  // 3 s ahead
//   auto t = a.stamp();      // wall advances 1 µs, then a fresh HLC stamp
//   auto u = a.stamp(0);     // same wall time: the logical counter moves
//
// Header-only; part of the law checker (laws.hpp), usable on its own.
#pragma once

#include <cstdint>

#include "lattice/crdt/hlc.hpp"

namespace lattice::crdt::testing {

struct replica_context {
  explicit replica_context(replica_id replica, std::uint64_t start_wall_us = 1'000'000)
      : id(replica), clock(replica), wall_us(start_wall_us) {}

  /// A fresh stamp; the wall clock advances by `step_us` first (0 makes the
  /// HLC fall back on its logical counter).
  hlc_timestamp stamp(std::uint64_t step_us = 1) {
    wall_us += step_us;
    return clock.now(wall_us);
  }

  /// A restart that kept its data: a new clock, brought past every stamp
  /// the old one issued (as a replica restoring a data directory observes
  /// the stamps in it), on the same wall clock.
  void restart() {
    const auto last = clock.last();
    clock = hlc(id);
    (void)clock.update(last, wall_us);
  }

  replica_id id;
  hlc clock;
  std::uint64_t wall_us;
};

}  // namespace lattice::crdt::testing
