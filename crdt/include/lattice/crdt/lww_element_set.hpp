// lattice/crdt/lww_element_set.hpp: last-writer-wins element set (Shapiro et
// al. 2011, §3.3.3), stamped by a hybrid logical clock.
//
// Lattice: an add-set A and a remove-set R of (element, stamp), each keeping
// the greatest stamp per element; join is pointwise max. An element is
// present iff its add stamp is greater than its remove stamp. Bias for equal
// stamps: remove wins (equal stamps need a misbehaving replica, since the
// stamp includes the replica id; removal bias keeps "nothing deleted comes
// back" true even then).
//
// Implementation: an lww_map from element to an empty value, which keeps per
// element only max(add stamp, remove stamp) and whether it was an add. That
// is equivalent for lookups and joins (see lww_map.hpp), and shares the map's
// incremental digest, tombstone compaction and horizon.
//
//   lww_element_set<std::string> up;
//   auto d1 = up.insert("10.0.0.1:80", clock.now(wall_us));
//   auto d2 = up.remove("10.0.0.1:80", clock.now(wall_us));
//   up.contains("10.0.0.1:80");   // false
//
// REQUIRES of E: totally ordered, default constructible, cereal-serializable.
// Thread safety: a value type with no internal synchronisation.
#pragma once

#include <compare>
#include <cstdint>

#include "lattice/crdt/lww_map.hpp"

namespace lattice::crdt {

/// The value an lww_element_set stores per element: none.
struct set_member {
  friend constexpr auto operator<=>(const set_member&, const set_member&) = default;
  template <class Archive>
  void serialize(Archive&) {}
};

template <class E>
class lww_element_set {
  using map_type = lww_map<E, set_member>;

 public:
  using delta_type = lww_element_set;
  /// An add (present) or a remove (!present) of one element.
  struct op_type {
    E element{};
    hlc_timestamp stamp;
    bool present = true;
    friend bool operator==(const op_type&, const op_type&) = default;
    template <class Archive>
    void serialize(Archive& archive) {
      archive(element, stamp, present);
    }
  };

  /// Adds `element` at `stamp`. Returns the delta.
  lww_element_set insert(const E& element, hlc_timestamp stamp) {
    return lww_element_set(map_.put(element, set_member{}, stamp));
  }
  /// Removes `element` at `stamp`, leaving a tombstone. Returns the delta.
  lww_element_set remove(const E& element, hlc_timestamp stamp) {
    return lww_element_set(map_.erase(element, stamp));
  }
  op_type prepare_insert(const E& element, hlc_timestamp stamp) const { return {element, stamp, true}; }
  op_type prepare_remove(const E& element, hlc_timestamp stamp) const { return {element, stamp, false}; }

  apply_status apply(const op_type& op) {
    return map_.apply(op.present ? map_.prepare_put(op.element, set_member{}, op.stamp)
                                 : map_.prepare_erase(op.element, op.stamp));
  }
  bool merge(const lww_element_set& other) { return map_.merge(other.map_); }

  bool contains(const E& element) const { return map_.contains(element); }
  /// Number of present elements.
  std::size_t size() const noexcept { return map_.size(); }
  std::size_t tombstones() const noexcept { return map_.tombstones(); }
  bool empty() const noexcept { return map_.empty(); }
  /// Calls f(element, stamp) for each present element, in (hash, element) order.
  template <class F>
  void for_each(F&& f) const {
    map_.for_each([&](const E& element, const set_member&, const hlc_timestamp& stamp) {
      f(element, stamp);
    });
  }
  /// Calls f(element, entry) for every element kept, removed ones included;
  /// entry.stamp is its latest stamp and entry.live() whether it is present.
  template <class F>
  void for_each_entry(F&& f) const {
    map_.for_each_entry(std::forward<F>(f));
  }
  /// The digest of one key-hash range, and its entries; see lww_map.
  std::uint64_t range_digest(unsigned bits, std::size_t index) const noexcept {
    return map_.range_digest(bits, index);
  }
  lww_element_set slice(unsigned bits, std::size_t index) const {
    return lww_element_set(map_.slice(bits, index));
  }

  /// See lww_map::take_horizon_of and lww_map::merge_ranges.
  void take_horizon_of(const lww_element_set& whole) noexcept { map_.take_horizon_of(whole.map_); }
  bool merge_ranges(const lww_element_set& part, unsigned bits, std::span<const std::uint32_t> indices) {
    return map_.merge_ranges(part.map_, bits, indices);
  }

  /// See lww_map::compact.
  std::size_t compact(hlc_timestamp stable) { return map_.compact(stable); }
  hlc_timestamp horizon() const noexcept { return map_.horizon(); }
  std::uint64_t digest() const noexcept { return map_.digest(); }

  friend bool operator==(const lww_element_set&, const lww_element_set&) = default;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(map_);
  }

  lww_element_set() = default;

 private:
  explicit lww_element_set(map_type map) : map_(std::move(map)) {}

  map_type map_;
};

}  // namespace lattice::crdt
