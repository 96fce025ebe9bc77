// Decoding hostile bytes must not allocate far more than it reads (the
// "Merges that lose nothing" issue, item 14; shared/repros/f_alloc.cpp: a
// 1 MiB op_repair made the decoder allocate ~268 MiB before reading one
// op). This executable replaces the global operator new to track the peak
// of live heap bytes, so it is its own test binary.
#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include <catch2/catch.hpp>

#include "lattice/registry/document.hpp"
#include "lattice/transport/messages.hpp"

namespace {

std::atomic<std::size_t> live_bytes{0};
std::atomic<std::size_t> peak_bytes{0};

// A header in front of each block remembers its size for delete.
constexpr std::size_t header = alignof(std::max_align_t);

void* allocate(std::size_t size) {
  void* block = std::malloc(size + header);
  if (block == nullptr) throw std::bad_alloc();
  *static_cast<std::size_t*>(block) = size;
  const std::size_t now = live_bytes.fetch_add(size) + size;
  std::size_t peak = peak_bytes.load();
  while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {
  }
  return static_cast<char*>(block) + header;
}

void release(void* p) noexcept {
  if (p == nullptr) return;
  void* block = static_cast<char*>(p) - header;
  live_bytes.fetch_sub(*static_cast<std::size_t*>(block));
  std::free(block);
}

}  // namespace

void* operator new(std::size_t size) { return allocate(size); }
void* operator new[](std::size_t size) { return allocate(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return allocate(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }

TEST_CASE("an op_repair claiming a million ops allocates about what it reads (f_alloc)", "[transport][regression]") {
  using doc = lattice::registry::registry_document;
  constexpr std::size_t count = 1u << 20;
  // envelope<op_repair>: endianness marker, from, from_address "", sent_us, then the
  // ops' size tag and `count` zero bytes, so the tag passes the
  // "no more elements than bytes" check.
  std::vector<std::byte> bytes;
  bytes.push_back(std::byte{1});
  bytes.insert(bytes.end(), 24, std::byte{0});
  for (int i = 0; i < 8; ++i) bytes.push_back(std::byte((count >> (8 * i)) & 0xff));
  bytes.resize(bytes.size() + count, std::byte{0});

  const std::size_t before = live_bytes.load();
  peak_bytes.store(before);
  const auto decoded = lattice::crdt::decode<lattice::transport::envelope<lattice::transport::op_repair<doc>>>(bytes);
  const std::size_t peak = peak_bytes.load() - before;
  CHECK_FALSE(decoded.has_value());  // zeros are not a valid op
  INFO("peak heap growth while decoding: " << peak << " bytes for " << bytes.size() << " input bytes");
  CHECK(peak < 4 * bytes.size());  // was ~256x
}
