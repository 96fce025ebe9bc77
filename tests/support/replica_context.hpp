// tests/support/replica_context.hpp: what a simulated replica needs to make
// mutations: its id and an HLC fed by a hand-advanced, skewable wall clock.
#pragma once

#include <cstdint>

#include "lattice/crdt/hlc.hpp"

namespace lattice::testing {

struct replica_context {
  explicit replica_context(crdt::replica_id replica, std::uint64_t start_wall_us = 1'000'000)
      : id(replica), clock(replica), wall_us(start_wall_us) {}

  /// A fresh stamp; the wall clock advances by `step_us` first (0 makes the
  /// HLC fall back on its logical counter).
  crdt::hlc_timestamp stamp(std::uint64_t step_us = 1) {
    wall_us += step_us;
    return clock.now(wall_us);
  }

  crdt::replica_id id;
  crdt::hlc clock;
  std::uint64_t wall_us;
};

}  // namespace lattice::testing
