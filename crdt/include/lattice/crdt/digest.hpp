// lattice/crdt/digest.hpp: stable 64-bit hashes of values, for digests.
//
// Anti-entropy compares digests of two replicas' states and exchanges data
// only when they differ. A digest must therefore be stable across processes,
// builds and hosts (no std::hash, no pointers), and equal only for equal
// states with overwhelming probability.
//
//   std::uint64_t h = lattice::crdt::stable_hash(std::pair{key, stamp});
//
// stable_hash(v) is XXH3-64 of v's canonical wire encoding (without the
// endianness marker), so it is defined for every type codec.hpp can encode
// and two values hash equal exactly when their encodings are equal (up to
// XXH3 collisions, ~2^-64). Map-like CRDTs keep their digest as the sum
// (mod 2^64) of their entries' hashes: order-independent, updated in O(1)
// per changed entry, and split by key into buckets for anti-entropy.
// Not a cryptographic hash: frames are authenticated separately.
//
// Thread safety: thread-safe; each thread reuses its own scratch buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "lattice/crdt/wire_archive.hpp"

namespace lattice::crdt {

/// XXH3-64 of a byte range with a seed.
std::uint64_t hash_bytes(std::span<const std::byte> bytes, std::uint64_t seed = 0) noexcept;

namespace digest_detail {
// One per thread, so hashing allocates only until the buffer has grown to
// the largest entry this thread has hashed.
std::vector<std::byte>& scratch() noexcept;
}  // namespace digest_detail

/// The stable hash of `value`'s canonical encoding.
template <class... T>
[[nodiscard]] std::uint64_t stable_hash(const T&... values) {
  auto& buffer = digest_detail::scratch();
  buffer.clear();
  wire_output_archive archive(buffer, /*with_marker=*/false);
  archive(values...);
  return hash_bytes(buffer);
}

}  // namespace lattice::crdt
