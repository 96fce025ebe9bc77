// lattice/crdt/pn_counter.hpp: increment/decrement counter (Shapiro et al.
// 2011, §3.1.2: a pair of G-Counters P and N; delta form after Almeida et al.
// 2018).
//
// Lattice: a map origin -> (seq, p, n), ordered pointwise by (seq, p, n); the
// pair of G-Counters shares one per-origin sequence so a single op can carry
// a signed amount. Join keeps, per origin, the greater entry: the higher
// seq, and for equal seqs (an origin restarted without its state under the
// same id) the greater (p, n), so the join is total. value() = sum(p) -
// sum(n).
//
//   pn_counter in_flight;
//   auto d1 = in_flight.increment(self);   // a call starts
//   auto d2 = in_flight.decrement(self);   // ... and ends
//   in_flight.value();                     // == 0
//
// Registry use: calls in flight per instance, raised and lowered by every
// consumer. A decrement need not be matched by the same origin's increment:
// the value is cluster-wide, so it may dip below zero transiently.
//
// Thread safety: a value type with no internal synchronisation.
#pragma once

#include <cstdint>
#include <limits>
#include <map>

#include "lattice/crdt/detail/origin_counter.hpp"

namespace lattice::crdt {

class pn_counter {
 public:
  /// One origin's share: its update count, and the totals added and removed.
  struct entry {
    using amount_type = std::int64_t;
    std::uint64_t seq = 0;
    std::uint64_t p = 0;
    std::uint64_t n = 0;

    void add(std::int64_t amount) noexcept {
      if (amount >= 0) {
        p = detail::saturating_add(p, static_cast<std::uint64_t>(amount));
      } else {
        // -(amount + 1) + 1 avoids negating INT64_MIN.
        n = detail::saturating_add(n, static_cast<std::uint64_t>(-(amount + 1)) + 1);
      }
    }
    bool valid() const noexcept { return seq > 0 || (p == 0 && n == 0); }
    friend auto operator<=>(const entry&, const entry&) = default;
    template <class Archive>
    void serialize(Archive& archive) {
      archive(seq, p, n);
    }
  };

  using delta_type = pn_counter;
  /// An update: (origin, seq, signed amount).
  using op_type = detail::origin_counter<entry>::op;

  /// Adds a signed `amount` to `origin`'s share. Returns the delta.
  pn_counter add(replica_id origin, std::int64_t amount) {
    pn_counter delta;
    delta.counter_.merge_entry(origin, counter_.record(origin, amount));
    return delta;
  }
  /// REQUIRES: amount <= INT64_MAX.
  pn_counter increment(replica_id origin, std::uint64_t amount = 1) {
    return add(origin, static_cast<std::int64_t>(amount));
  }
  /// REQUIRES: amount <= INT64_MAX.
  pn_counter decrement(replica_id origin, std::uint64_t amount = 1) {
    return add(origin, -static_cast<std::int64_t>(amount));
  }

  /// The op for `add(origin, amount)`; the state is unchanged until apply().
  /// REQUIRES: apply() the op before preparing the next one for `origin`.
  op_type prepare_add(replica_id origin, std::int64_t amount) const {
    return counter_.prepare(origin, amount);
  }

  apply_status apply(const op_type& op) { return counter_.apply(op); }
  bool merge(const pn_counter& other) { return counter_.merge(other.counter_); }

  /// sum(p) - sum(n), clamped to the int64 range.
  std::int64_t value() const noexcept {
    std::uint64_t added = 0;
    std::uint64_t removed = 0;
    for (const auto& [origin, e] : counter_.entries()) {
      added = detail::saturating_add(added, e.p);
      removed = detail::saturating_add(removed, e.n);
    }
    constexpr auto hi = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (added >= removed) {
      const std::uint64_t difference = added - removed;
      return difference > hi ? std::numeric_limits<std::int64_t>::max()
                             : static_cast<std::int64_t>(difference);
    }
    const std::uint64_t difference = removed - added;
    return difference > hi ? std::numeric_limits<std::int64_t>::min()
                           : -static_cast<std::int64_t>(difference);
  }
  const std::map<replica_id, entry>& entries() const noexcept { return counter_.entries(); }

  std::uint64_t digest() const { return counter_.digest(); }
  bool empty() const noexcept { return counter_.empty(); }
  friend bool operator==(const pn_counter&, const pn_counter&) = default;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(counter_);
  }

 private:
  detail::origin_counter<entry> counter_;
};

}  // namespace lattice::crdt
