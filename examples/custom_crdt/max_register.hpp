// max_register.hpp: a CRDT of our own, built on lattice::crdt's codec and
// digest: the largest value any replica wrote (a high-water mark: the
// highest config version seen, the newest schema a fleet has rolled out to).
//
//   max_register seen;
//   auto delta = seen.raise(7);   // gossip `delta`, or the op
//   peer.merge(delta);            // peer.value() >= 7
//
// Join is max, so it is commutative, associative and idempotent; the delta
// of raise(v) is the register holding v; the op is v itself. It satisfies
// lattice::crdt::crdt, so Lattice's transport can replicate it and its law
// checker can test it (max_register_laws.cpp).
#pragma once

#include <cstdint>

#include "lattice/crdt/concepts.hpp"
#include "lattice/crdt/digest.hpp"

class max_register {
 public:
  using delta_type = max_register;
  struct op_type {
    std::uint64_t value = 0;
    friend bool operator==(const op_type&, const op_type&) = default;
    template <class Archive>
    void serialize(Archive& archive) {
      archive(value);
    }
  };

  /// Raises the register to at least `v`. Returns the delta.
  max_register raise(std::uint64_t v) {
    apply(prepare_raise(v));
    return max_register{v};
  }
  op_type prepare_raise(std::uint64_t v) const { return op_type{v}; }

  lattice::crdt::apply_status apply(const op_type& op) {
    if (op.value <= value_) return lattice::crdt::apply_status::duplicate;
    value_ = op.value;
    return lattice::crdt::apply_status::applied;
  }
  bool merge(const max_register& other) { return apply(op_type{other.value_}) == lattice::crdt::apply_status::applied; }

  std::uint64_t value() const noexcept { return value_; }
  std::uint64_t digest() const { return lattice::crdt::stable_hash(value_); }
  bool empty() const noexcept { return value_ == 0; }

  friend bool operator==(const max_register&, const max_register&) = default;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(value_);
  }

  max_register() = default;

 private:
  explicit max_register(std::uint64_t v) : value_(v) {}
  std::uint64_t value_ = 0;
};

static_assert(lattice::crdt::crdt<max_register>);
