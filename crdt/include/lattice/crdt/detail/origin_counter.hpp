// lattice/crdt/detail/origin_counter.hpp: the machinery G- and PN-Counters
// share. Not a public API; use g_counter or pn_counter.
//
// Each origin replica owns one entry and is its only writer. The entry holds
// a sequence number that counts the origin's updates and the totals those
// updates produced, so (origin, seq) names one exact entry value everywhere.
// That gives all three replication styles one shape:
//  - join: per origin, keep the greater entry in the entry's own total
//    order, (seq, totals...). Seq decides between updates of one life of
//    the origin. Equal seqs with different totals should not exist, but do
//    when an origin restarts without its state under the same id and counts
//    again from seq 1; the totals then break the tie, so every replica keeps
//    the same entry and merge() reports the change (before, each side kept
//    its own and reported nothing: permanent divergence). The losing life's
//    counts are not added: an origin that restarts without its state must
//    take a new origin id, or its counts are merged by max, not sum;
//  - delta: the origin's new entry alone;
//  - op: (origin, seq, amount); applied only when seq is the next one for
//    that origin, so a duplicate (seq already covered) is dropped and a gap
//    is reported as out_of_order rather than silently skipped.
#pragma once

#include <cstdint>
#include <map>

#include <cereal/cereal.hpp>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/concepts.hpp"
#include "lattice/crdt/digest.hpp"
#include "lattice/crdt/replica_id.hpp"

namespace lattice::crdt::detail {

/// Entry must offer: `seq` (std::uint64_t), `amount_type`, `add(amount)`,
/// `valid()` (invariants a decoded entry must meet), `<=>`, `serialize`.
template <class Entry>
class origin_counter {
 public:
  using amount_type = typename Entry::amount_type;

  /// One update from one origin.
  struct op {
    replica_id origin = 0;
    std::uint64_t seq = 0;
    amount_type amount{};

    friend bool operator==(const op&, const op&) = default;
    template <class Archive>
    void serialize(Archive& archive) {
      archive(origin, seq, amount);
    }
  };

  /// Applies `amount` as `origin`'s next update; returns the new entry.
  Entry record(replica_id origin, amount_type amount) {
    Entry& entry = entries_[origin];
    entry.add(amount);
    ++entry.seq;
    return entry;
  }

  op prepare(replica_id origin, amount_type amount) const {
    const auto it = entries_.find(origin);
    const std::uint64_t seq = it == entries_.end() ? 0 : it->second.seq;
    return op{origin, seq + 1, amount};
  }

  apply_status apply(const op& update) {
    auto it = entries_.find(update.origin);
    const std::uint64_t have = it == entries_.end() ? 0 : it->second.seq;
    if (update.seq <= have) return apply_status::duplicate;
    if (update.seq != have + 1) return apply_status::out_of_order;
    record(update.origin, update.amount);
    return apply_status::applied;
  }

  /// Adopts `entry` for `origin` if it is greater (see the file comment);
  /// returns whether it was.
  bool merge_entry(replica_id origin, const Entry& entry) {
    auto [it, inserted] = entries_.try_emplace(origin, entry);
    if (inserted) return true;
    if (!(it->second < entry)) return false;
    it->second = entry;
    return true;
  }

  bool merge(const origin_counter& other) {
    bool changed = false;
    for (const auto& [origin, entry] : other.entries_) changed |= merge_entry(origin, entry);
    return changed;
  }

  std::uint64_t digest() const { return stable_hash(*this); }
  bool empty() const noexcept { return entries_.empty(); }
  const std::map<replica_id, Entry>& entries() const noexcept { return entries_; }

  friend bool operator==(const origin_counter&, const origin_counter&) = default;

  template <class Archive>
  void save(Archive& archive) const {
    save_ordered_map(archive, entries_);
  }
  template <class Archive>
  void load(Archive& archive) {
    load_ordered_map(archive, entries_);
    for (const auto& [origin, entry] : entries_)
      if (!entry.valid()) throw_malformed();
  }

 private:
  std::map<replica_id, Entry> entries_;
};

/// Saturating add: counters stop at the top instead of wrapping to zero.
inline std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t sum = 0;
  return __builtin_add_overflow(a, b, &sum) ? ~std::uint64_t{0} : sum;
}

}  // namespace lattice::crdt::detail
