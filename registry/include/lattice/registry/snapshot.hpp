// lattice/registry/snapshot.hpp: what readers see. The replica thread
// publishes an immutable snapshot after each batch of changes; a lookup
// reads one without taking a lock, and may keep it as long as it likes.
//
//   auto snap = replica.current();                        // shared_ptr
//   if (const service_view* s = snap->find("/api/user/1.0.0"))
//     for (const auto& i : s->providers) connect(i->address(), i->port());
//
// Only visible instances are listed: an ephemeral instance whose owner is
// judged dead (or has restarted since registering it) is left out.
//
// Thread safety: immutable once published; share freely. The load cells
// are atomics, written by call guards on any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lattice/registry/config_tree.hpp"
#include "lattice/registry/service_index.hpp"
#include "lattice/registry/service_view.hpp"

namespace lattice::registry {

struct snapshot {
  /// Grows with every publication.
  std::uint64_t sequence = 0;
  /// Every path that has or had instances (shared with earlier snapshots).
  service_index services;
  /// Config key -> value, in key order (shares unchanged chunks with
  /// earlier snapshots).
  std::shared_ptr<const config_tree> config;
  /// The latest config change this replica has applied (the greatest
  /// physical time of a write, tombstone or prefix erasure it merged,
  /// microseconds): moves with every config change and with no other.
  std::uint64_t config_clock_us = 0;
  /// Peers this replica judges alive or suspect, and all it knows of.
  std::size_t reachable_peers = 0;
  std::size_t known_peers = 0;
  /// Knows peers but reaches none: instances of peers are kept visible
  /// (it is more likely that we are cut off than that everyone died).
  bool isolated = false;

  /// The view of `path`, or nullptr if it never had instances.
  const service_view* find(std::string_view path) const noexcept { return services.find(path); }
};

}  // namespace lattice::registry
