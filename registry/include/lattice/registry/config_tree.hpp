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
//   for (auto it = tree.lower_bound("/db/"); it != tree.end() && it->first.starts_with("/db/"); ++it)
//     use(it->first, it->second);
//   if (const auto* entry = tree.find("/db/url")) connect(entry->second);
//
// Thread safety: immutable once its snapshot is published; an editor is
// used by the one thread that builds the next snapshot.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lattice/registry/sorted_chunks.hpp"

namespace lattice::registry {

struct config_key_of {
  std::string_view operator()(const std::pair<std::string, std::string>& entry) const noexcept { return entry.first; }
};

class config_tree : public sorted_chunks<std::pair<std::string, std::string>, config_key_of> {
  using base = sorted_chunks<std::pair<std::string, std::string>, config_key_of>;

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
    /// Sets `key` to `value`; nullptr removes it.
    void set(std::string_view key, const std::string* value);

   private:
    const config_tree& tree_;
    base::editor edit_;
  };

 private:
  explicit config_tree(base entries) : base(std::move(entries)) {}
};

}  // namespace lattice::registry
