// lattice/registry/load_gossip.hpp: how much of the gossip a replica's own
// call counts may take, and what that held back.
//
// Every replica that calls instances writes its counts to the document,
// and every change of every count reaches every replica (each forwards it
// to `fanout` peers once). Left alone, that grows with the callers times
// the instances they call times the flush rate: at 1,000 consumers each
// calling 10 providers it is far more than any replica can absorb. So each
// replica paces what it writes:
//
//  - Budget. A replica may cause `budget_bytes_per_second` of load gossip
//    at every replica. With C replicas writing load (the live lives with
//    entries in the document this replica holds, callers and providers
//    writing their own totals (serve_counter.hpp) alike, itself included)
//    and fanout F, its own writes get
//    budget / (F × C) bytes per second: every replica applies the same
//    rule, so the load gossip any one replica sends and receives stays
//    near the budget whatever the cluster's size. The share refills a
//    token bucket holding at most one second of it (and always room for
//    one small write).
//  - Significance. A change of an instance's calls in flight by at least
//    max(1, significance × what was last written) is written at the next
//    flush the budget allows, the largest relative moves first. Smaller
//    moves, and served totals that grew while in flight stayed put, are
//    held for up to `max_hold` and then written like significant ones, so
//    the figures others read are never further behind than max_hold plus
//    what the budget stretches it by (registry_core::load_stats() reports
//    the oldest change still held).
//  - Correctness is not paced: erasing the counts of a registration that
//    ended is always written at once.
//
// Readers see how old the figures from other replicas are on each
// instance (instance_view::remote_load_heard).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace lattice::registry {

struct load_gossip_options {
  /// Bytes per second of load gossip each replica may see; 0: no budget
  /// (every change is written at the next flush; small clusters and tests).
  std::size_t budget_bytes_per_second = 16 * 1024;
  /// A move of calls in flight this large, relative to the last written
  /// figure (and never less than one call), is written as soon as the
  /// budget allows; smaller moves wait up to max_hold.
  double significance = 0.25;
  /// The longest a change waits for being insignificant (the budget may
  /// stretch it).
  std::chrono::milliseconds max_hold{2'000};
};

/// What the pacing did, as of the last flush.
struct load_gossip_stats {
  /// Count entries written (puts; erasures are not paced and not counted).
  std::uint64_t entries_written = 0;
  /// Flushes at which the budget, not significance, held back a change
  /// that was due.
  std::uint64_t budget_deferrals = 0;
  /// Changes not yet written, and how long the oldest of them has waited.
  std::size_t entries_held = 0;
  std::chrono::milliseconds oldest_held{0};
  /// This replica's share of the budget, bytes per second (0: no budget),
  /// and the writers it was divided among (callers, and providers writing
  /// their totals).
  double share_bytes_per_second = 0;
  std::size_t callers = 0;
  /// Instances registered here whose calls their provider counts
  /// (replica::count_serving, ADR 0021): this replica writes their totals.
  std::size_t provider_counted = 0;
};

}  // namespace lattice::registry
