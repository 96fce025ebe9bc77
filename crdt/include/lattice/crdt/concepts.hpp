// lattice/crdt/concepts.hpp: the three replication styles as C++20 concepts.
//
// Every CRDT in this layer is all three at once:
//
//  - state_crdt (CvRDT): `a.merge(b)` is the lattice join: commutative,
//    associative, idempotent. It returns whether `a` changed, which gossip
//    uses to decide whether a rumour was news. Merging is total: it never
//    fails and never throws for values that decode() accepted.
//  - delta_crdt (Almeida, Shoker, Baquero, "Delta State Replicated Data
//    Types", 2018): every mutator changes the value and returns a delta of
//    the same type; merging the deltas of a run into an old copy gives the
//    same value as merging the final state.
//  - op_crdt (CmRDT): `prepare_*` builds an op from the local state without
//    changing it; `apply(op)` is the effect, run everywhere including the
//    origin. Applying the same ops in any order, with duplicates, converges.
//
// Generic code (the law checker in tests/support/, the transport) is written
// against these concepts once.
#pragma once

#include <concepts>
#include <cstdint>

namespace lattice::crdt {

/// What `apply(op)` did.
enum class apply_status {
  /// The op changed the state.
  applied,
  /// The state already reflected the op (a duplicate, or an op superseded by
  /// a later write); nothing changed.
  duplicate,
  /// The op depends on earlier ops from its origin that have not been
  /// applied (a sequence gap); nothing changed. Deliver the missing ops, or
  /// merge a state or delta that covers them, then apply this op again.
  out_of_order,
};

template <class T>
concept state_crdt = std::regular<T> && requires(T& a, const T& b) {
  { a.merge(b) } -> std::same_as<bool>;
  { b.digest() } -> std::same_as<std::uint64_t>;
  { b.empty() } -> std::same_as<bool>;
};

template <class T>
concept delta_crdt = state_crdt<T> && std::same_as<typename T::delta_type, T>;

template <class T>
concept op_crdt = state_crdt<T> && std::regular<typename T::op_type> &&
                  requires(T& a, const typename T::op_type& op) {
                    { a.apply(op) } -> std::same_as<apply_status>;
                  };

/// A type offering all three replication styles.
template <class T>
concept crdt = delta_crdt<T> && op_crdt<T>;

}  // namespace lattice::crdt
