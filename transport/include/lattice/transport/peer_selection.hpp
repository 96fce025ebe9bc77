// lattice/transport/peer_selection.hpp: which peers a replica sends to.
//
// Every rumour, anti-entropy round and push goes to a few peers drawn at
// random from those it holds reachable; the protocol core asks for them
// for every message it spreads, so the draw must not cost O(N) when the
// list is long (at 10,000 members, copying the list per message was most
// of a simulation's time: docs/adr/0022).
//
//   std::mt19937_64 rng(seed);
//   auto peers = pick_peers(members.reachable_peers(now), 3, self, rng);
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <random>
#include <vector>

#include "lattice/crdt/replica_id.hpp"

namespace lattice::transport {

/// Up to `count` distinct peers of `from` other than `except` and
/// `also_except`, each subset of that size equally likely. From a long
/// list (at least 4 × count + 2), by drawing positions until `count`
/// distinct allowed ones came: O(count), and since at most two are
/// excluded, three draws in four are kept. From a short list, by a partial
/// Fisher-Yates shuffle of a copy (only the picked prefix is shuffled).
/// `from` holds no duplicates.
template <class Rng>
std::vector<crdt::replica_id> pick_peers(const std::vector<crdt::replica_id>& from, std::size_t count,
                                         crdt::replica_id except, Rng& rng,
                                         std::optional<crdt::replica_id> also_except = std::nullopt) {
  const auto allowed = [&](crdt::replica_id p) { return p != except && p != also_except; };
  if (from.size() >= 4 * count + 2) {
    std::vector<crdt::replica_id> picked;
    picked.reserve(count);
    std::uniform_int_distribution<std::size_t> any(0, from.size() - 1);
    // The bound on draws is for safety, not reached in practice: the
    // chance that 64 × count draws bring fewer than count is below 1e-30.
    for (std::size_t draws = 0; picked.size() < count && draws < 64 * count; ++draws) {
      const crdt::replica_id p = from[any(rng)];
      if (allowed(p) && std::find(picked.begin(), picked.end(), p) == picked.end()) picked.push_back(p);
    }
    return picked;
  }
  auto peers = from;
  std::erase_if(peers, [&](crdt::replica_id p) { return !allowed(p); });
  const std::size_t picked = std::min(count, peers.size());
  for (std::size_t i = 0; i < picked; ++i) {
    std::uniform_int_distribution<std::size_t> pick(i, peers.size() - 1);
    std::swap(peers[i], peers[pick(rng)]);
  }
  peers.resize(picked);
  return peers;
}

}  // namespace lattice::transport
