// lattice/crdt/g_set.hpp: grow-only set (Shapiro et al. 2011, §3.3.1).
//
// Lattice: sets of E ordered by inclusion; join is union. Elements are never
// removed, so there are no tombstones. Registry use: names that must stay
// unique for ever (the naming service of seed 003).
//
//   g_set<std::string> names;
//   auto delta = names.insert("orders");   // {"orders"}
//   names.contains("orders");              // true
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
class g_set {
 public:
  using delta_type = g_set;
  /// An insertion.
  struct op_type {
    E element{};
    friend bool operator==(const op_type&, const op_type&) = default;
    template <class Archive>
    void serialize(Archive& archive) {
      archive(element);
    }
  };

  /// Adds `element`; returns the delta {element}.
  g_set insert(const E& element) {
    elements_.insert(element);
    g_set delta;
    delta.elements_.insert(element);
    return delta;
  }
  op_type prepare_insert(const E& element) const { return op_type{element}; }

  apply_status apply(const op_type& op) {
    return elements_.insert(op.element).second ? apply_status::applied : apply_status::duplicate;
  }

  bool merge(const g_set& other) {
    const auto before = elements_.size();
    elements_.insert(other.elements_.begin(), other.elements_.end());
    return elements_.size() != before;
  }

  bool contains(const E& element) const { return elements_.count(element) != 0; }
  std::size_t size() const noexcept { return elements_.size(); }
  bool empty() const noexcept { return elements_.empty(); }
  const std::set<E>& elements() const noexcept { return elements_; }
  std::uint64_t digest() const { return stable_hash(*this); }

  friend bool operator==(const g_set&, const g_set&) = default;

  template <class Archive>
  void save(Archive& archive) const {
    save_ordered_set(archive, elements_);
  }
  template <class Archive>
  void load(Archive& archive) {
    load_ordered_set(archive, elements_);
  }

 private:
  std::set<E> elements_;
};

}  // namespace lattice::crdt
