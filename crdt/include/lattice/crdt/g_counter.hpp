// lattice/crdt/g_counter.hpp: grow-only counter (Shapiro et al., "A
// comprehensive study of Convergent and Commutative Replicated Data Types",
// 2011, §3.1.1; delta form after Almeida et al. 2018, §4.1).
//
// Lattice: a map origin -> (seq, value), ordered pointwise by (seq, value).
// Join keeps, per origin, the greater entry: the higher seq, and for equal
// seqs (an origin restarted without its state under the same id) the higher
// value, so the join is total. value() is the sum of values.
//
//   g_counter served;
//   auto delta = served.increment(self, 1);   // gossip `delta`
//   peer.merge(delta);                        // or peer.apply(op) for ops
//   served.value();                           // == 1
//
// What a user can get wrong: incrementing under another replica's id (two
// writers of one entry break the join); restarting a replica without its
// state under the same id (its new counts start again at seq 1 and are
// merged by max with its old ones, not added: give the new life a new id).
// Totals saturate at 2^64-1.
//
// Thread safety: a value type with no internal synchronisation.
#pragma once

#include <cstdint>
#include <map>

#include "lattice/crdt/detail/origin_counter.hpp"

namespace lattice::crdt {

class g_counter {
 public:
  /// One origin's share: how many updates it made and their total.
  struct entry {
    using amount_type = std::uint64_t;
    std::uint64_t seq = 0;
    std::uint64_t value = 0;

    void add(std::uint64_t amount) noexcept { value = detail::saturating_add(value, amount); }
    bool valid() const noexcept { return seq > 0 || value == 0; }
    friend auto operator<=>(const entry&, const entry&) = default;
    template <class Archive>
    void serialize(Archive& archive) {
      archive(seq, value);
    }
  };

  using delta_type = g_counter;
  /// An increment: (origin, seq, amount).
  using op_type = detail::origin_counter<entry>::op;

  /// Adds `amount` to `origin`'s share. Returns the delta (origin's entry).
  g_counter increment(replica_id origin, std::uint64_t amount = 1) {
    g_counter delta;
    delta.counter_.merge_entry(origin, counter_.record(origin, amount));
    return delta;
  }

  /// The op for the same increment; the state is unchanged until apply().
  /// REQUIRES: apply() the op before preparing the next one for `origin`.
  op_type prepare_increment(replica_id origin, std::uint64_t amount = 1) const {
    return counter_.prepare(origin, amount);
  }

  apply_status apply(const op_type& op) { return counter_.apply(op); }
  bool merge(const g_counter& other) { return counter_.merge(other.counter_); }

  /// The sum over all origins (saturating).
  std::uint64_t value() const noexcept {
    std::uint64_t total = 0;
    for (const auto& [origin, e] : counter_.entries()) total = detail::saturating_add(total, e.value);
    return total;
  }
  /// One origin's share; 0 if it never incremented.
  std::uint64_t value_of(replica_id origin) const noexcept {
    const auto it = counter_.entries().find(origin);
    return it == counter_.entries().end() ? 0 : it->second.value;
  }
  const std::map<replica_id, entry>& entries() const noexcept { return counter_.entries(); }

  std::uint64_t digest() const { return counter_.digest(); }
  bool empty() const noexcept { return counter_.empty(); }
  friend bool operator==(const g_counter&, const g_counter&) = default;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(counter_);
  }

 private:
  detail::origin_counter<entry> counter_;
};

}  // namespace lattice::crdt
