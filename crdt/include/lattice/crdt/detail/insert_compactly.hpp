// lattice/crdt/detail/insert_compactly.hpp: vector insertion that grows by
// a quarter instead of doubling.
//
// Maps and indexes here keep many small sorted vectors (a bucket per ~8
// entries, a vector per service path, a shard per 1/256 of the paths).
// Doubling leaves about a third of each one's capacity empty on average,
// which at 100k registry instances was tens of bytes per instance
// (docs/adr/0005). Growing by a quarter still amortizes to O(1) copies per
// element.
#pragma once

#include <vector>

namespace lattice::crdt::detail {

/// v.insert(at, value), reserving size + size/4 + 1 when full. Returns the
/// inserted element's iterator.
template <class T, class A>
typename std::vector<T, A>::iterator insert_compactly(std::vector<T, A>& v, typename std::vector<T, A>::iterator at,
                                                      T value) {
  if (v.size() == v.capacity()) {
    const auto offset = at - v.begin();
    v.reserve(v.size() + v.size() / 4 + 1);
    at = v.begin() + offset;
  }
  return v.insert(at, std::move(value));
}

}  // namespace lattice::crdt::detail
