#include "lattice/crdt/digest.hpp"

#include <xxhash.h>

namespace lattice::crdt {

std::uint64_t hash_bytes(std::span<const std::byte> bytes, std::uint64_t seed) noexcept {
  return XXH3_64bits_withSeed(bytes.data(), bytes.size(), seed);
}

namespace digest_detail {
std::vector<std::byte>& scratch() noexcept {
  thread_local std::vector<std::byte> buffer;
  return buffer;
}
}  // namespace digest_detail

}  // namespace lattice::crdt
