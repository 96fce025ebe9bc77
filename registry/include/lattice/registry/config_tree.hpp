// lattice/registry/config_tree.hpp: a snapshot's config keys -> values, in
// key order, shared between snapshots.
//
// Every publication makes a new snapshot, and a config write changes one
// key among all of them. Building a fresh std::map each time made a write
// cost O(keys log keys): 6 ms of CPU per write with 10,000 keys, 230 ms with
// 100,000 (bench config/write_publish), and the chaos soak's writes per
// round fell tenfold as its keys accumulated. The tree is a vector of
// chunks, each a sorted vector of at most 2 x chunk_target entries; a new
// snapshot copies the vector of chunk pointers and only the chunks its
// changed keys fall in (copy-on-write), so a publication costs
// O(keys / chunk_target + changed keys x chunk size).
//
//   for (auto it = tree.lower_bound("/db/"); it != tree.end() && it->first.starts_with("/db/"); ++it)
//     use(it->first, it->second);
//
// Thread safety: immutable once its snapshot is published; an editor is
// used by the one thread that builds the next snapshot.
#pragma once

#include <cstddef>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lattice::registry {

class config_tree {
 public:
  using value_type = std::pair<std::string, std::string>;
  /// Entries a chunk is split back to; a chunk holds at most twice that.
  static constexpr std::size_t chunk_target = 64;

  /// Iterates in key order; valid while the tree lives.
  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = config_tree::value_type;
    using difference_type = std::ptrdiff_t;
    using pointer = const value_type*;
    using reference = const value_type&;

    const_iterator() = default;
    reference operator*() const { return (*tree_->chunks_[chunk_])[pos_]; }
    pointer operator->() const { return &**this; }
    const_iterator& operator++() {
      if (++pos_ == tree_->chunks_[chunk_]->size()) ++chunk_, pos_ = 0;
      return *this;
    }
    const_iterator operator++(int) {
      auto before = *this;
      ++*this;
      return before;
    }
    friend bool operator==(const const_iterator& a, const const_iterator& b) {
      return a.chunk_ == b.chunk_ && a.pos_ == b.pos_;
    }

   private:
    friend class config_tree;
    const_iterator(const config_tree* tree, std::size_t chunk, std::size_t pos) : tree_(tree), chunk_(chunk), pos_(pos) {}
    const config_tree* tree_ = nullptr;
    std::size_t chunk_ = 0;
    std::size_t pos_ = 0;
  };
  using iterator = const_iterator;

  config_tree() = default;
  /// From entries sorted by key, keys unique.
  static config_tree from_sorted(std::vector<value_type> entries);

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  const_iterator begin() const noexcept { return {this, 0, 0}; }
  const_iterator end() const noexcept { return {this, chunks_.size(), 0}; }
  /// The entry of `key`, or end().
  const_iterator find(std::string_view key) const;
  /// The first entry whose key is not below `key`, or end().
  const_iterator lower_bound(std::string_view key) const;
  /// The value of `key`; throws std::out_of_range if there is none.
  const std::string& at(std::string_view key) const;

  /// Edits a tree in place, copying each shared chunk the first time it
  /// touches it. One editor per new snapshot.
  class editor {
   public:
    explicit editor(config_tree& tree) : tree_(tree), owned_(tree.chunks_.size(), false) {}
    /// Sets `key` to `value`; nullptr removes it.
    void set(std::string_view key, const std::string* value);

   private:
    // Chunk `i`, made ours (copied if it is shared) so that it may change.
    std::vector<value_type>& own(std::size_t i);
    config_tree& tree_;
    std::vector<bool> owned_;  // parallel to tree_.chunks_
  };

 private:
  using chunk = std::vector<value_type>;  // ascending key, never empty
  // The chunk `key` belongs in: the first whose last key is not below it
  // (the last chunk for a key above all). REQUIRES: chunks_ not empty.
  std::size_t chunk_for(std::string_view key) const;

  std::vector<std::shared_ptr<const chunk>> chunks_;
  std::size_t size_ = 0;
};

}  // namespace lattice::registry
