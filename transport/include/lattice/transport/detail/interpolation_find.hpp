// lattice/transport/detail/interpolation_find.hpp: find in a flat map keyed by
// replica id, by interpolation.
//
// Replica ids are hashes of names (uniform over 64 bits) or, in the
// simulators, 1..N, so a key's place in a sorted table is close to where
// its value says: a probe or two land on it or next to it. A binary search
// of a 10,000-member table is 14 dependent reads, each a cache miss when
// many tables are in use (a simulator holds 10,000 of them), and was a
// third of a 10,000-member simulation with stalls (perf). A few
// interpolation steps, then a binary search of what is left, so keys
// bunched by chance cost at most four probes more than before.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace lattice::transport::detail {

/// The element of `map` (a sorted random-access map keyed by an unsigned
/// 64-bit integer: boost flat_map) whose key is `key`, or map.end().
template <class FlatMap>
auto interpolation_find(FlatMap& map, std::uint64_t key) -> decltype(map.begin()) {
  const auto first = map.begin();
  const auto last = map.end();
  std::size_t lo = 0;
  std::size_t hi = map.size();  // the key, if held, is in [lo, hi)
  for (int step = 0; step < 4 && hi - lo > 8; ++step) {
    const std::uint64_t low_key = first[static_cast<std::ptrdiff_t>(lo)].first;
    const std::uint64_t high_key = first[static_cast<std::ptrdiff_t>(hi - 1)].first;
    if (key < low_key || key > high_key) return last;
    // Where the key would be if the keys in between were evenly spread.
    const double fraction = static_cast<double>(key - low_key) / static_cast<double>(high_key - low_key);
    const auto at = std::min(hi - 1, lo + static_cast<std::size_t>(fraction * static_cast<double>(hi - 1 - lo)));
    const std::uint64_t at_key = first[static_cast<std::ptrdiff_t>(at)].first;
    if (at_key == key) return first + static_cast<std::ptrdiff_t>(at);
    if (at_key < key) lo = at + 1;
    else hi = at;
  }
  const auto end = first + static_cast<std::ptrdiff_t>(hi);
  const auto it = std::lower_bound(first + static_cast<std::ptrdiff_t>(lo), end, key,
                                   [](const auto& element, std::uint64_t k) { return element.first < k; });
  return it != end && it->first == key ? it : last;
}

}  // namespace lattice::transport::detail
