// lattice/crdt/replica_id.hpp: the identity of a replica.
//
// A replica id names the origin of every stamp, dot and counter entry. It is
// a 64-bit number so that stamps stay small and compare in one instruction;
// upper layers derive it from a human name (see registry::options). Two live
// replicas must never share an id: a shared id merges their counters and
// breaks LWW tie-breaking.
#pragma once

#include <cstdint>

namespace lattice::crdt {

using replica_id = std::uint64_t;

}  // namespace lattice::crdt
