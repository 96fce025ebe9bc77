// lattice/registry/instance_list.hpp: a service view's providers (or
// consumers), in id order, shared between snapshots.
//
// Every publication makes a new view of each changed path, and a write
// changes one instance among all of the path's. Copying the whole list
// each time made a registration cost O(instances of its path): with 16
// services of 5,000 instances each, building and freeing views took 47 % of
// the daemon's CPU at 64 concurrent writers (perf, bench/http_writes.sh).
// The list is a vector of chunks, each an id-ordered vector of at most
// 2 x chunk_target views; a new view copies the vector of chunk pointers
// and only the chunks its changed instances fall in (copy-on-write), as
// config_tree does for config keys.
//
//   for (const instance_view& i : view.providers) connect(i->address(), i->port());
//   if (const instance_view* i = view.providers.find("10.0.0.7:8080")) ...
//
// Thread safety: immutable once its view is published; an editor is used
// by the one thread that builds the next view.
#pragma once

#include <cstddef>
#include <iterator>
#include <memory>
#include <string_view>
#include <vector>

#include "lattice/registry/instance_view.hpp"

namespace lattice::registry {

class instance_list {
 public:
  using value_type = instance_view;
  /// Views a chunk is split back to; a chunk holds at most twice that.
  static constexpr std::size_t chunk_target = 64;

  /// Iterates in id order; valid while the list lives.
  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = instance_view;
    using difference_type = std::ptrdiff_t;
    using pointer = const instance_view*;
    using reference = const instance_view&;

    const_iterator() = default;
    reference operator*() const { return (*list_->chunks_[chunk_])[pos_]; }
    pointer operator->() const { return &**this; }
    const_iterator& operator++() {
      if (++pos_ == list_->chunks_[chunk_]->size()) ++chunk_, pos_ = 0;
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
    friend class instance_list;
    const_iterator(const instance_list* list, std::size_t chunk, std::size_t pos)
        : list_(list), chunk_(chunk), pos_(pos) {}
    const instance_list* list_ = nullptr;
    std::size_t chunk_ = 0;
    std::size_t pos_ = 0;
  };
  using iterator = const_iterator;

  instance_list() = default;
  /// From views in id order, ids unique.
  static instance_list from_sorted(std::vector<instance_view> views);

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  const_iterator begin() const noexcept { return {this, 0, 0}; }
  const_iterator end() const noexcept { return {this, chunks_.size(), 0}; }
  /// The first view. REQUIRES: !empty().
  const instance_view& front() const noexcept { return chunks_.front()->front(); }
  /// The view of instance `id`, or nullptr. O(log size).
  const instance_view* find(std::string_view id) const;

  /// Whether both list the same record objects in the same order: what a
  /// new version means. Load figures are not compared. Chunks the two
  /// share are skipped, so comparing a list with its successor costs
  /// O(chunks + changed chunks x chunk size).
  static bool same_records(const instance_list& a, const instance_list& b);
  /// How many of this list's chunks `other` holds too (the same objects):
  /// what a publication shared with the one before it.
  std::size_t shared_chunks(const instance_list& other) const;
  std::size_t chunk_count() const noexcept { return chunks_.size(); }

  /// Edits a list in place, copying each shared chunk the first time it
  /// touches it. One editor per new view.
  class editor {
   public:
    explicit editor(instance_list& list) : list_(list), owned_(list.chunks_.size(), false) {}
    /// Sets the view of instance `id` (view->record->id() == id), or
    /// removes it (nullptr). Returns true if the list's records changed (an
    /// instance added, removed or its record replaced), false if at most
    /// its load figures did.
    bool set(std::string_view id, const instance_view* view);

   private:
    // Chunk `i`, made ours (copied if it is shared) so that it may change.
    std::vector<instance_view>& own(std::size_t i);
    instance_list& list_;
    std::vector<bool> owned_;  // parallel to list_.chunks_
  };

 private:
  using chunk = std::vector<instance_view>;  // ascending id, never empty
  // The chunk `id` belongs in: the first whose last id is not below it
  // (the last chunk for an id above all). REQUIRES: chunks_ not empty.
  std::size_t chunk_for(std::string_view id) const;

  std::vector<std::shared_ptr<const chunk>> chunks_;
  std::size_t size_ = 0;
};

}  // namespace lattice::registry
