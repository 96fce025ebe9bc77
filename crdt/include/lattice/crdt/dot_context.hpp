// lattice/crdt/dot_context.hpp: dots and causal contexts, the kernel of the
// causal CRDTs (Almeida, Shoker, Baquero 2018, §5: "dot stores" and
// "causal contexts").
//
// A dot (replica, n) names the n-th event of a replica. A causal context is
// the set of dots a replica has seen, kept compact as a version vector (all
// dots 1..v[r] of each replica r) plus a "cloud" of dots seen out of order.
// Inserting the dot right after v[r] absorbs any contiguous cloud dots into
// the vector, so the representation is canonical: equal sets of dots have
// equal (vector, cloud), and equal contexts encode to equal bytes.
//
// Thread safety: a value type with no internal synchronisation.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <set>

#include "lattice/crdt/replica_id.hpp"

namespace lattice::crdt {

struct dot {
  replica_id replica = 0;
  /// 1 for the replica's first event; 0 is never a valid dot.
  std::uint64_t counter = 0;

  friend constexpr auto operator<=>(const dot&, const dot&) = default;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(replica, counter);
  }
};

class dot_context {
 public:
  /// Whether `d` has been seen.
  bool contains(const dot& d) const noexcept;
  /// The highest counter seen for `replica` (0 if none).
  std::uint64_t max_counter(replica_id replica) const noexcept;
  /// The dot a replica should use for its next event: (replica, max + 1).
  dot next(replica_id replica) const noexcept { return {replica, max_counter(replica) + 1}; }

  /// Records `d` as seen; returns false if it already was.
  bool insert(const dot& d);
  /// Joins `other` into this context (set union); returns whether it grew.
  bool merge(const dot_context& other);

  bool empty() const noexcept { return vector_.empty() && cloud_.empty(); }
  const std::map<replica_id, std::uint64_t>& vector() const noexcept { return vector_; }
  const std::set<dot>& cloud() const noexcept { return cloud_; }

  /// Whether (vector, cloud) is in canonical form: no zero vector entry, no
  /// cloud dot covered by or contiguous with the vector. decode() rejects
  /// contexts that are not, so a decoded context compares correctly.
  bool canonical() const noexcept;

  friend bool operator==(const dot_context&, const dot_context&) = default;

  template <class Archive>
  void save(Archive& archive) const;
  template <class Archive>
  void load(Archive& archive);

 private:
  // Moves cloud dots contiguous with vector_[replica] into the vector.
  void absorb(replica_id replica);

  std::map<replica_id, std::uint64_t> vector_;
  std::set<dot> cloud_;
};

}  // namespace lattice::crdt

#include "lattice/crdt/codec.hpp"

namespace lattice::crdt {

template <class Archive>
void dot_context::save(Archive& archive) const {
  save_ordered_map(archive, vector_);
  save_ordered_set(archive, cloud_);
}

template <class Archive>
void dot_context::load(Archive& archive) {
  load_ordered_map(archive, vector_);
  load_ordered_set(archive, cloud_);
  if (!canonical()) throw_malformed();
}

}  // namespace lattice::crdt
