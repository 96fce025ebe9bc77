// transport/src/flat_growth.hpp: how the per-member flat maps grow.
//
// A flat map's vector grows by 60 % when full, so a table built one
// member at a time holds on average a fifth of its memory as spare
// capacity, up to three fifths just after a growth. One replica's tables
// are small either way; a simulator holding 10,000 replicas of 10,000
// members each holds 10^8 entries per table, where that slack is
// gigabytes. Growing by an eighth instead keeps the slack under 12 % for
// about eight element moves per insertion (amortised), which a member
// table, changed rarely, can afford.
#pragma once

#include <algorithm>
#include <cstddef>

namespace lattice::transport::detail {

/// Makes room for one more element in `map` (a boost flat_map or
/// flat_set, or a vector) ahead of an insertion, growing by an eighth
/// when full.
template <class FlatMap>
void reserve_one_more(FlatMap& map) {
  if (map.size() < map.capacity()) return;
  map.reserve(map.size() + std::max<std::size_t>(map.size() / 8, 8));
}

}  // namespace lattice::transport::detail
