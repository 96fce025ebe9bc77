// lattice/crdt/lww_register.hpp: last-writer-wins register (Shapiro et al.
// 2011, §3.2.1) stamped by a hybrid logical clock.
//
// Lattice: (stamp, value) ordered by stamp, then by value. Join keeps the
// greater pair. Distinct replicas never issue equal stamps (the replica id
// is part of the stamp), so the value tie-break only decides between writes
// that claim the same stamp, which a correct replica never makes; it exists
// so that even then every replica picks the same value.
//
//   lww_register<std::string> leader_hint;
//   auto delta = leader_hint.assign("10.0.0.7:9000", clock.now(wall_us));
//
// An unassigned register has stamp hlc_timestamp::zero() and a
// value-initialised value.
//
// REQUIRES of V: totally ordered, default constructible, cereal-serializable.
// Thread safety: a value type with no internal synchronisation.
#pragma once

#include <cstdint>
#include <utility>

#include "lattice/crdt/concepts.hpp"
#include "lattice/crdt/digest.hpp"
#include "lattice/crdt/hlc.hpp"

namespace lattice::crdt {

template <class V>
class lww_register {
 public:
  using delta_type = lww_register;
  /// A write: the value and its stamp.
  struct op_type {
    V value{};
    hlc_timestamp stamp;
    friend bool operator==(const op_type&, const op_type&) = default;
    template <class Archive>
    void serialize(Archive& archive) {
      archive(stamp, value);
    }
  };

  /// Writes `value` at `stamp` (from the local hlc, so it wins over every
  /// write this replica has seen). Returns the delta: the write itself.
  lww_register assign(V value, hlc_timestamp stamp) {
    const op_type op = prepare_assign(std::move(value), stamp);
    apply(op);
    lww_register delta;
    delta.apply(op);
    return delta;
  }
  op_type prepare_assign(V value, hlc_timestamp stamp) const { return op_type{std::move(value), stamp}; }

  apply_status apply(const op_type& op) {
    if (!wins(op.stamp, op.value)) return apply_status::duplicate;
    stamp_ = op.stamp;
    value_ = op.value;
    return apply_status::applied;
  }

  bool merge(const lww_register& other) {
    return apply(op_type{other.value_, other.stamp_}) == apply_status::applied;
  }

  const V& value() const noexcept { return value_; }
  hlc_timestamp stamp() const noexcept { return stamp_; }
  bool empty() const noexcept { return stamp_ == hlc_timestamp::zero() && value_ == V{}; }
  std::uint64_t digest() const { return stable_hash(*this); }

  friend bool operator==(const lww_register&, const lww_register&) = default;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(stamp_, value_);
  }

 private:
  bool wins(const hlc_timestamp& stamp, const V& value) const {
    return stamp > stamp_ || (stamp == stamp_ && value_ < value);
  }

  hlc_timestamp stamp_;
  V value_{};
};

}  // namespace lattice::crdt
