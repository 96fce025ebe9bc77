// lattice/registry/serve_counter.hpp: a provider's own count of the calls
// it serves, for instances whose callers should not each count them.
//
//   auto served = replica.count_serving("/api/user/1.0.0", "node-1").value();
//   ...                                        // in the request handler:
//   lattice::registry::serve_guard call(*served);   // in flight until it ends
//
// Callers count their calls to an instance with call guards (replica.hpp),
// and each writes its own entry per instance it calls: at 1,000 callers of
// 100 providers that is 10,000 entries sharing one byte budget, too many
// to keep fresh (ADR 0015). A provider that counts what it serves lets its
// replica write one entry for the instance, its totals over every caller;
// every replica then reads those totals (plus what its own calls did since
// they came) and stops writing its own (ADR 0021).
//
// Thread safety: serve guards and set() may be used from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "lattice/registry/instance_view.hpp"

namespace lattice::registry {

/// The counts of one instance registered on this replica, as its provider
/// serves calls. Shared: while any copy of the shared_ptr that
/// count_serving returned lives, the replica writes the totals; when the
/// last goes, it erases them and callers count the instance's calls again.
class serve_counter {
 public:
  explicit serve_counter(load_cell_ptr cell) : cell_(std::move(cell)) {}

  /// For a provider that counts elsewhere (a process reporting through
  /// latticed): its calls in flight and served now, outright. Use either
  /// this or serve guards on one counter, not both.
  void set(std::uint64_t in_flight, std::uint64_t served) noexcept {
    if (!cell_) return;  // never: made with a cell (the check keeps GCC's overflow warning quiet)
    // Finished first, as readers load it first: a reader between the two
    // stores sees the old in flight against the new served at worst, and
    // the replica writes nothing while finished exceeds started.
    cell_->finished.store(served, std::memory_order_relaxed);
    cell_->started.store(served + in_flight, std::memory_order_relaxed);
  }

  /// Calls in flight and served as counted here, live.
  std::uint64_t in_flight() const noexcept {
    if (!cell_) return 0;
    const auto finished = cell_->finished.load(std::memory_order_relaxed);
    return cell_->started.load(std::memory_order_relaxed) - finished;
  }
  std::uint64_t served() const noexcept { return cell_ ? cell_->finished.load(std::memory_order_relaxed) : 0; }

  const load_cell_ptr& cell() const noexcept { return cell_; }

 private:
  load_cell_ptr cell_;
};

/// Counts one call served: in flight on construction, served on
/// destruction. Two relaxed atomics, any thread.
class serve_guard : public counted_call {
 public:
  explicit serve_guard(const serve_counter& counter) : counted_call(counter.cell()) {}
};

}  // namespace lattice::registry
