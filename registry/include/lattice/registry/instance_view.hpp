// lattice/registry/instance_view.hpp: one instance as a reader sees it:
// its record and its load figures. Held in a service_view's lists
// (instance_list.hpp); balancers return one.
//
// Thread safety: immutable once published, except the load cells, which
// are atomics written by call guards on any thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include <boost/smart_ptr/intrusive_ptr.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>

#include "lattice/registry/instance_record.hpp"

namespace lattice::registry {

/// This replica's own calls to one instance, counted by call guards; or,
/// for an instance registered here whose provider counts what it serves
/// (replica::count_serving), the calls it serves from every caller,
/// counted by serve guards.
struct load_cell : boost::intrusive_ref_counter<load_cell, boost::thread_safe_counter> {
  load_cell() = default;
  explicit load_cell(bool serving_cell) : serving(serving_cell) {}
  /// A provider's count of the calls it serves: call guards leave it
  /// alone (the provider counts a call it makes to itself when serving it).
  const bool serving = false;
  /// The replica thread's: the provider of this instance counts its calls
  /// itself, so this replica writes none of its own (and has erased them).
  bool provider_counts = false;
  /// The replica thread's note of what it last wrote to the document:
  /// started + finished then (mod 2^32). Both only grow, so the sum moves
  /// exactly when there is something new to write. Only that thread
  /// touches it; it sits in what would be padding.
  std::uint32_t flushed_sum = 0;
  /// Also the replica thread's: a change not yet written is held (the
  /// load_gossip.hpp rules) since `held_since`; calls in flight as last
  /// written.
  bool holding = false;
  std::int64_t written_in_flight = 0;
  std::chrono::steady_clock::time_point held_since{};
  std::atomic<std::uint64_t> started{0};
  std::atomic<std::uint64_t> finished{0};
};
using load_cell_ptr = boost::intrusive_ptr<load_cell>;

/// One call counted in a cell while it lives: started on construction,
/// finished on destruction; nothing with a null cell. Two relaxed atomics,
/// any thread. What call_guard (replica.hpp) and serve_guard
/// (serve_counter.hpp) are.
class counted_call {
 public:
  explicit counted_call(load_cell_ptr cell) noexcept : cell_(std::move(cell)) {
    if (cell_) cell_->started.fetch_add(1, std::memory_order_relaxed);
  }
  counted_call(counted_call&& other) noexcept : cell_(std::move(other.cell_)) {}
  counted_call(const counted_call&) = delete;
  counted_call& operator=(const counted_call&) = delete;
  ~counted_call() {
    if (cell_) cell_->finished.fetch_add(1, std::memory_order_relaxed);
  }

 private:
  load_cell_ptr cell_;
};

/// One instance as a reader sees it.
struct instance_view {
  record_ptr record;
  /// This replica's counts, live (null for consumers).
  load_cell_ptr local;
  /// The other replicas' calls in flight and served, as of publication.
  std::int64_t remote_in_flight = 0;
  std::uint64_t remote_served = 0;
  /// When this replica last merged another replica's counts for this
  /// registration (steady clock), or nullopt if none has come: how old the
  /// newest remote figure is. A caller writes a significant move of its
  /// calls in flight at its next flush the budget allows and any other
  /// change within load_gossip_options::max_hold, so with an old
  /// `remote_load_heard` the figures are as of then, unless a caller's
  /// budget held it back longer (its load_stats().oldest_held says so).
  std::optional<std::chrono::steady_clock::time_point> remote_load_heard;
  /// The figures are the provider's own count of the calls it serves, from
  /// every caller (replica::count_serving), not the sum of the callers'
  /// counts. This replica's calls are in it already as they stood when it
  /// merged here (`local_started_counted`, `local_finished_counted`), so
  /// only what this replica's calls did since is added to it. On the
  /// provider's own replica the figures are its serve guards', live.
  bool provider_counted = false;
  std::uint64_t local_started_counted = 0;
  std::uint64_t local_finished_counted = 0;

  const instance_record& operator*() const noexcept { return *record; }
  const instance_record* operator->() const noexcept { return record.get(); }

  /// Calls in flight to this instance, cluster-wide: the other replicas'
  /// (as last gossiped) plus this replica's own (live); or the provider's
  /// count plus what this replica's calls did since it came.
  std::int64_t in_flight() const noexcept {
    if (!local) return remote_in_flight;
    // Finished first: every call finished was started, so the pair read
    // never shows more finished than started.
    const auto finished = local->finished.load(std::memory_order_relaxed) - local_finished_counted;
    const auto started = local->started.load(std::memory_order_relaxed) - local_started_counted;
    return std::max<std::int64_t>(0, remote_in_flight + static_cast<std::int64_t>(started) -
                                         static_cast<std::int64_t>(finished));
  }
  /// Calls served by this instance in its current registration, cluster-wide.
  std::uint64_t served() const noexcept {
    return remote_served + (local ? local->finished.load(std::memory_order_relaxed) - local_finished_counted : 0);
  }
};

}  // namespace lattice::registry
