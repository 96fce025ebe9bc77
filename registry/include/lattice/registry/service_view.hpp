// lattice/registry/service_view.hpp: one path as readers see it: its
// visible instances, each with its load figures, and its version. Part of
// a snapshot (snapshot.hpp); watch callbacks receive one.
//
// Thread safety: immutable once published; share freely. The load cells
// are atomics, written by call guards on any thread.
#pragma once

#include <cstdint>
#include <string>

#include "lattice/registry/instance_list.hpp"

namespace lattice::registry {

/// One path: its visible instances, in id order, and its version.
struct service_view {
  std::string path;
  /// Moves (grows) on every change of this path's visible instances; equal
  /// versions mean equal lists. Versions are this replica's: compare them
  /// only with versions from the same replica.
  std::uint64_t version = 0;
  instance_list providers;
  instance_list consumers;
};

}  // namespace lattice::registry
