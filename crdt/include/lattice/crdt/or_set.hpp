// lattice/crdt/or_set.hpp: observed-remove set, add-wins (Shapiro et al.
// 2011, §3.3.5; the optimised dot-store form of Almeida et al. 2018, §5.2
// "add-wins OR-Set", as in CBaquero/delta-enabled-crdts `aworset`).
//
// Lattice: pairs (entries, context) where entries maps each element to the
// dots of the insertions that made it present, and context is every dot the
// replica has seen (dot_context.hpp). Join keeps a dot when both sides have
// it, or when one side has it and the other side's context has not seen it
// (so the other side cannot have removed it). An insertion concurrent with a
// removal survives: add wins. A removal leaves no per-element tombstone; the
// removed dots live on only in the compact context.
//
//   or_set<std::string> members;
//   auto d1 = members.insert(self, "a");
//   auto d2 = members.remove("a");    // removes the insertions this replica saw
//
// Merging costs O(size of this set) even for a small delta, because a
// removal delta can touch any element; use lww_element_set for large sets
// on a hot path.
//
// REQUIRES of E: totally ordered, default constructible, cereal-serializable.
// Thread safety: a value type with no internal synchronisation.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include <cereal/types/optional.hpp>
#include <cereal/types/vector.hpp>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/concepts.hpp"
#include "lattice/crdt/digest.hpp"
#include "lattice/crdt/dot_context.hpp"

namespace lattice::crdt {

template <class E>
class or_set {
 public:
  using delta_type = or_set;
  /// Dots of one element, sorted ascending; usually exactly one.
  using dots = std::vector<dot>;

  /// An insertion (with the dot it adds) or a removal; either way it carries
  /// the element's dots its origin had observed, which it removes.
  struct op_type {
    E element{};
    std::optional<dot> added;
    dots removed;

    friend bool operator==(const op_type&, const op_type&) = default;
    template <class Archive>
    void serialize(Archive& archive) {
      archive(element, added, removed);
    }
  };

  /// Inserts `element` as an event of replica `self`. Returns the delta.
  or_set insert(replica_id self, const E& element) { return record(prepare_insert(self, element)); }
  /// Removes the insertions of `element` this replica has seen. Returns the
  /// delta (empty entries; the removed dots in its context).
  or_set remove(const E& element) { return record(prepare_remove(element)); }

  /// REQUIRES: apply() the op before preparing the next one for `self`.
  op_type prepare_insert(replica_id self, const E& element) const {
    return op_type{element, context_.next(self), dots_of(element)};
  }
  op_type prepare_remove(const E& element) const {
    return op_type{element, std::nullopt, dots_of(element)};
  }

  apply_status apply(const op_type& op) {
    bool changed = false;
    auto it = entries_.find(op.element);
    for (const dot& d : op.removed) {
      if (it != entries_.end()) {
        auto& present = it->second;
        const auto pos = std::lower_bound(present.begin(), present.end(), d);
        if (pos != present.end() && *pos == d) {
          present.erase(pos);
          changed = true;
        }
      }
      changed |= context_.insert(d);
    }
    if (op.added && context_.insert(*op.added)) {
      if (it == entries_.end()) it = entries_.try_emplace(op.element).first;
      auto& present = it->second;
      present.insert(std::lower_bound(present.begin(), present.end(), *op.added), *op.added);
      changed = true;
    }
    if (it != entries_.end() && it->second.empty()) entries_.erase(it);
    return changed ? apply_status::applied : apply_status::duplicate;
  }

  bool merge(const or_set& other) {
    std::map<E, dots> joined;
    bool changed = false;
    auto mine = entries_.begin();
    auto theirs = other.entries_.begin();
    // Walk both ordered maps once; each element's dots are joined by the
    // dot-kernel rule in join_dots().
    while (mine != entries_.end() || theirs != other.entries_.end()) {
      const bool take_mine = theirs == other.entries_.end() ||
                             (mine != entries_.end() && !(theirs->first < mine->first));
      const bool take_theirs = mine == entries_.end() ||
                               (theirs != other.entries_.end() && !(mine->first < theirs->first));
      static const dots none;
      const dots& a = take_mine ? mine->second : none;
      const dots& b = take_theirs ? theirs->second : none;
      dots result = join_dots(a, other.context_, b, context_);
      if (result != a) changed = true;
      const E& key = take_mine ? mine->first : theirs->first;
      if (!result.empty()) joined.emplace_hint(joined.end(), key, std::move(result));
      if (take_mine) ++mine;
      if (take_theirs) ++theirs;
    }
    entries_ = std::move(joined);
    changed |= context_.merge(other.context_);
    return changed;
  }

  bool contains(const E& element) const { return entries_.count(element) != 0; }
  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty() && context_.empty(); }
  /// The present elements with the dots that keep them present.
  const std::map<E, dots>& entries() const noexcept { return entries_; }
  const dot_context& context() const noexcept { return context_; }
  std::uint64_t digest() const { return stable_hash(*this); }

  friend bool operator==(const or_set&, const or_set&) = default;

  template <class Archive>
  void save(Archive& archive) const {
    save_ordered_map(archive, entries_);
    archive(context_);
  }
  template <class Archive>
  void load(Archive& archive) {
    load_ordered_map(archive, entries_);
    archive(context_);
    for (const auto& [element, present] : entries_) {
      if (present.empty() || !std::is_sorted(present.begin(), present.end())) throw_malformed();
      if (std::adjacent_find(present.begin(), present.end()) != present.end()) throw_malformed();
      for (const dot& d : present)
        if (!context_.contains(d)) throw_malformed();
    }
  }

 private:
  dots dots_of(const E& element) const {
    const auto it = entries_.find(element);
    return it == entries_.end() ? dots{} : it->second;
  }

  // Applies `op` here and returns it as a delta: the empty state with op applied.
  or_set record(const op_type& op) {
    or_set delta;
    delta.apply(op);
    apply(op);
    return delta;
  }

  // Dot-kernel join of one element: (a ∩ b) ∪ (a \ context_b) ∪ (b \ context_a).
  static dots join_dots(const dots& a, const dot_context& context_b, const dots& b,
                        const dot_context& context_a) {
    dots result;
    result.reserve(a.size() + b.size());
    auto i = a.begin();
    auto j = b.begin();
    while (i != a.end() || j != b.end()) {
      if (j == b.end() || (i != a.end() && *i < *j)) {
        if (!context_b.contains(*i)) result.push_back(*i);
        ++i;
      } else if (i == a.end() || *j < *i) {
        if (!context_a.contains(*j)) result.push_back(*j);
        ++j;
      } else {
        result.push_back(*i);
        ++i;
        ++j;
      }
    }
    return result;
  }

  std::map<E, dots> entries_;
  dot_context context_;
};

}  // namespace lattice::crdt
