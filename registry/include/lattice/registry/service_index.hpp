// lattice/registry/service_index.hpp: a snapshot's paths -> service views,
// shared between snapshots.
//
// Every publication makes a new snapshot, and most publications change a
// handful of paths among thousands. Copying a whole map each time made a
// write cost O(paths) (1,000 paths: ~160 µs per registration). The index
// is split into 256 shards by the hash of the path; a new snapshot copies
// the array of shard pointers and only the shards its changed paths fall
// in (copy-on-write), so a publication costs O(changed paths x shard size).
//
// A shard is a vector of (hash, view) sorted by hash: 24 bytes per path and
// one allocation per shard, where a node-based hash map took ~72 bytes and
// an allocation per path, and copying a shard is one memcpy-like pass.
// Lookups hash once, pick the shard by the top bits and binary-search it
// by hash (a shard holds paths/256 entries); there is no order among paths
// (`starting_with` sorts what it finds).
//
// Thread safety: immutable once its snapshot is published; an editor is
// used by the one thread that builds the next snapshot.
#pragma once

#include <algorithm>
#include <array>
#include <bitset>
#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "lattice/registry/service_view.hpp"

namespace lattice::registry {

class service_index {
 public:
  static constexpr std::size_t shard_count = 256;

  /// The view of `path`, or nullptr.
  const service_view* find(std::string_view path) const noexcept {
    const entry* e = find_entry(path);
    return e ? e->view.get() : nullptr;
  }
  /// The same, keeping the view alive on its own.
  std::shared_ptr<const service_view> find_shared(std::string_view path) const {
    const entry* e = find_entry(path);
    return e ? e->view : nullptr;
  }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  /// Calls f(const std::shared_ptr<const service_view>&) for every path,
  /// in no particular order.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& s : shards_)
      if (s)
        for (const auto& e : *s) f(e.view);
  }
  /// Every view whose path starts with `text` (characters, not segments),
  /// sorted by path. O(paths): for listings and new watches, not hot paths.
  std::vector<std::shared_ptr<const service_view>> starting_with(std::string_view text) const;

  /// Edits an index in place, copying each shared shard the first time it
  /// touches it. One editor per new snapshot.
  class editor {
   public:
    explicit editor(service_index& index) : index_(index) {}
    /// Adds or replaces the view of view->path.
    void put(std::shared_ptr<const service_view> view);

   private:
    service_index& index_;
    std::bitset<shard_count> owned_;
  };

 private:
  struct entry {
    std::size_t hash;
    std::shared_ptr<const service_view> view;
  };
  using shard = std::vector<entry>;  // ascending hash

  // The first entry of `s` whose hash is not below `hash`.
  static shard::const_iterator first_at(const shard& s, std::size_t hash) noexcept {
    return std::lower_bound(s.begin(), s.end(), hash,
                            [](const entry& e, std::size_t h) { return e.hash < h; });
  }
  const entry* find_entry(std::string_view path) const noexcept {
    const auto hash = hash_of(path);
    const auto& s = shards_[shard_of(hash)];
    if (!s) return nullptr;
    for (auto it = first_at(*s, hash); it != s->end() && it->hash == hash; ++it)
      if (it->view->path == path) return &*it;
    return nullptr;
  }

  static std::size_t hash_of(std::string_view path) noexcept { return std::hash<std::string_view>{}(path); }
  // The top bits: std::unordered_map buckets by the low ones.
  static std::size_t shard_of(std::size_t hash) noexcept { return hash >> (sizeof(std::size_t) * 8 - 8); }

  std::array<std::shared_ptr<const shard>, shard_count> shards_;
  std::size_t size_ = 0;
};

}  // namespace lattice::registry
