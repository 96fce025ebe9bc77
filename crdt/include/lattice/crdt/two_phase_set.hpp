// lattice/crdt/two_phase_set.hpp: two-phase set (Shapiro et al. 2011, §3.3.2).
//
// Lattice: pairs (A, R) of an added set and a removed set, each ordered by
// inclusion; join is pointwise union. An element is present iff it is in A
// and not in R, so a removal is final: the element can never be re-added.
//
// Representation: we store A \ R rather than A. An element in R can never be
// visible again, so forgetting it in A loses nothing and is the compaction
// this type allows; R itself must be kept for ever (it is what stops a late
// add from resurrecting the element). Equality compares (A \ R, R).
//
//   two_phase_set<std::string> names;
//   names.insert("a");
//   auto delta = names.remove("a");   // "a" can never come back
//
// REQUIRES of E: totally ordered, default constructible, cereal-serializable.
// Thread safety: a value type with no internal synchronisation.
#pragma once

#include <cstdint>
#include <set>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/concepts.hpp"
#include "lattice/crdt/digest.hpp"

namespace lattice::crdt {

template <class E>
class two_phase_set {
 public:
  using delta_type = two_phase_set;
  /// An insertion or a removal.
  struct op_type {
    E element{};
    bool remove = false;
    friend bool operator==(const op_type&, const op_type&) = default;
    template <class Archive>
    void serialize(Archive& archive) {
      archive(element, remove);
    }
  };

  /// Adds `element` unless it was ever removed. Returns the delta.
  two_phase_set insert(const E& element) {
    two_phase_set delta;
    delta.apply(prepare_insert(element));
    apply(prepare_insert(element));
    return delta;
  }
  /// Removes `element` for ever (also when it was never added: that forbids
  /// adding it later). Returns the delta.
  two_phase_set remove(const E& element) {
    two_phase_set delta;
    delta.apply(prepare_remove(element));
    apply(prepare_remove(element));
    return delta;
  }
  op_type prepare_insert(const E& element) const { return op_type{element, false}; }
  op_type prepare_remove(const E& element) const { return op_type{element, true}; }

  apply_status apply(const op_type& op) {
    if (op.remove) {
      const bool erased = added_.erase(op.element) != 0;
      const bool inserted = removed_.insert(op.element).second;
      return erased || inserted ? apply_status::applied : apply_status::duplicate;
    }
    if (removed_.count(op.element) != 0) return apply_status::duplicate;
    return added_.insert(op.element).second ? apply_status::applied : apply_status::duplicate;
  }

  bool merge(const two_phase_set& other) {
    bool changed = false;
    for (const auto& element : other.removed_) {
      changed |= removed_.insert(element).second;
      changed |= added_.erase(element) != 0;
    }
    for (const auto& element : other.added_) {
      if (removed_.count(element) == 0) changed |= added_.insert(element).second;
    }
    return changed;
  }

  bool contains(const E& element) const { return added_.count(element) != 0; }
  /// The present elements (A \ R).
  const std::set<E>& elements() const noexcept { return added_; }
  /// The removed elements (R), kept for ever.
  const std::set<E>& removed() const noexcept { return removed_; }
  std::size_t size() const noexcept { return added_.size(); }
  bool empty() const noexcept { return added_.empty() && removed_.empty(); }
  std::uint64_t digest() const { return stable_hash(*this); }

  friend bool operator==(const two_phase_set&, const two_phase_set&) = default;

  template <class Archive>
  void save(Archive& archive) const {
    save_ordered_set(archive, added_);
    save_ordered_set(archive, removed_);
  }
  template <class Archive>
  void load(Archive& archive) {
    load_ordered_set(archive, added_);
    load_ordered_set(archive, removed_);
    // Canonical form keeps A and R disjoint.
    for (const auto& element : removed_)
      if (added_.count(element) != 0) throw_malformed();
  }

 private:
  std::set<E> added_;    // A \ R
  std::set<E> removed_;  // R
};

}  // namespace lattice::crdt
