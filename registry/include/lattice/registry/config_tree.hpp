// lattice/registry/config_tree.hpp: a snapshot's config keys -> values, in
// key order, shared between snapshots.
//
// Every publication makes a new snapshot, and a config write changes one
// key among all of them. Building a fresh std::map each time made a write
// cost O(keys log keys): 6 ms of CPU per write with 10,000 keys, 230 ms with
// 100,000 (bench config/write_publish), and the chaos soak's writes per
// round fell tenfold as its keys accumulated. The tree is a sorted_chunks:
// a publication copies only the chunks its changed keys fall in.
//
//   for (auto it = tree.lower_bound("/db/"); it != tree.end() && it->key.starts_with("/db/"); ++it)
//     use(it->key, it->value);
//   if (const auto* entry = tree.find("/db/url")) connect(entry->value);
//
// Each entry also says when the write that set it was stamped
// (modified_us): the same at every replica, so it can serve as a per-key
// version (the Consul API's ModifyIndex).
//
// Thread safety: immutable once its snapshot is published; an editor is
// used by the one thread that builds the next snapshot.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lattice/registry/sorted_chunks.hpp"

namespace lattice::registry {

/// One key of a snapshot's config.
struct config_entry {
  std::string key;
  std::string value;
  /// The physical time (HLC, microseconds since the Unix epoch) of the
  /// stamp of the write that set this value: grows with every write of
  /// the key (two writes stamped in the same microsecond may share it).
  std::uint64_t modified_us = 0;
  /// Written with the value, by the same write (Consul's KV Flags).
  std::uint64_t flags = 0;

  friend bool operator==(const config_entry&, const config_entry&) = default;
};

struct config_key_of {
  std::string_view operator()(const config_entry& entry) const noexcept { return entry.key; }
};

class config_tree : public sorted_chunks<config_entry, config_key_of> {
  using base = sorted_chunks<config_entry, config_key_of>;

 public:
  config_tree() = default;
  /// From entries sorted by key, keys unique.
  static config_tree from_sorted(std::vector<value_type> entries) { return config_tree(base::from_sorted(std::move(entries))); }

  /// The value of `key`; throws std::out_of_range if there is none.
  const std::string& at(std::string_view key) const;

  /// Edits a tree in place, copying each shared chunk the first time it
  /// touches it. One editor per new snapshot.
  class editor {
   public:
    explicit editor(config_tree& tree) : tree_(tree), edit_(tree) {}
    /// Sets `key` to `value` with `flags`, written at `modified_us`;
    /// nullptr removes it.
    void set(std::string_view key, const std::string* value, std::uint64_t modified_us = 0, std::uint64_t flags = 0);

   private:
    const config_tree& tree_;
    base::editor edit_;
  };

 private:
  explicit config_tree(base entries) : base(std::move(entries)) {}
};

}  // namespace lattice::registry
