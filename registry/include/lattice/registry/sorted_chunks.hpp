// lattice/registry/sorted_chunks.hpp: a sorted sequence kept in chunks that
// successive versions share, edited copy-on-write. The machinery under
// config_tree (a snapshot's config keys) and instance_list (a service
// view's providers and consumers); use those.
//
// Each publication of a snapshot makes a new version of a collection of
// which one write changed one entry. Copying the whole collection made a
// write cost O(entries). Here the collection is a vector of chunks, each a
// sorted vector of at most 2 x chunk_target entries held by shared_ptr; a
// new version copies the vector of chunk pointers and only the chunks its
// changed entries fall in, so a publication costs
// O(entries / chunk_target + changed entries x chunk size), and the chunks
// it did not touch are the same objects in both versions.
//
// `Entry` is the element; `KeyOf` a stateless function object returning an
// entry's key as a std::string_view. Keys are unique and ascending.
//
// Thread safety: immutable once published; an editor is used by the one
// thread that builds the next version.
#pragma once

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

namespace lattice::registry {

template <class Entry, class KeyOf>
class sorted_chunks {
 public:
  using value_type = Entry;
  /// Entries a chunk is split back to; a chunk holds at most twice that.
  static constexpr std::size_t chunk_target = 64;

  /// Iterates in key order; valid while the sequence lives.
  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Entry;
    using difference_type = std::ptrdiff_t;
    using pointer = const Entry*;
    using reference = const Entry&;

    const_iterator() = default;
    reference operator*() const { return (*seq_->chunks_[chunk_])[pos_]; }
    pointer operator->() const { return &**this; }
    const_iterator& operator++() {
      if (++pos_ == seq_->chunks_[chunk_]->size()) ++chunk_, pos_ = 0;
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
    friend class sorted_chunks;
    const_iterator(const sorted_chunks* seq, std::size_t chunk, std::size_t pos) : seq_(seq), chunk_(chunk), pos_(pos) {}
    const sorted_chunks* seq_ = nullptr;
    std::size_t chunk_ = 0;
    std::size_t pos_ = 0;
  };
  using iterator = const_iterator;

  sorted_chunks() = default;
  /// From entries in ascending key order, keys unique.
  static sorted_chunks from_sorted(std::vector<Entry> entries) {
    sorted_chunks seq;
    seq.size_ = entries.size();
    seq.chunks_.reserve((entries.size() + chunk_target - 1) / chunk_target);
    for (std::size_t first = 0; first < entries.size(); first += chunk_target) {
      const auto begin = entries.begin() + static_cast<std::ptrdiff_t>(first);
      const auto end = entries.begin() + static_cast<std::ptrdiff_t>(std::min(entries.size(), first + chunk_target));
      seq.chunks_.push_back(std::make_shared<const chunk>(std::make_move_iterator(begin), std::make_move_iterator(end)));
    }
    return seq;
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  const_iterator begin() const noexcept { return {this, 0, 0}; }
  const_iterator end() const noexcept { return {this, chunks_.size(), 0}; }
  /// The first entry whose key is not below `key`, or end(). O(log size).
  const_iterator lower_bound(std::string_view key) const {
    if (chunks_.empty()) return end();
    const std::size_t i = chunk_for(key);
    const chunk& c = *chunks_[i];
    const std::size_t pos = position_in(c, key);
    if (pos == c.size()) return end();  // only in the last chunk: the key is above all
    return {this, i, pos};
  }
  /// The entry of `key`, or nullptr. O(log size).
  const Entry* find(std::string_view key) const {
    const auto it = lower_bound(key);
    return it != end() && KeyOf{}(*it) == key ? &*it : nullptr;
  }

  /// How many chunks the sequence has.
  std::size_t chunk_count() const noexcept { return chunks_.size(); }
  /// How many of this sequence's chunks `other` holds too (the same
  /// objects): what a version shared with the one before it.
  std::size_t shared_chunks(const sorted_chunks& other) const {
    std::size_t shared = 0;
    for (const auto& c : chunks_) shared += std::find(other.chunks_.begin(), other.chunks_.end(), c) != other.chunks_.end();
    return shared;
  }
  /// Whether `a` and `b` hold equal entries by `same(entry_a, entry_b)` in
  /// the same order. Chunks the two share are equal by construction and
  /// skipped, so comparing a version with its successor costs
  /// O(chunks + changed chunks x chunk size).
  template <class Same>
  static bool equal(const sorted_chunks& a, const sorted_chunks& b, Same same) {
    if (a.size_ != b.size_) return false;
    std::size_t ac = 0, ap = 0, bc = 0, bp = 0;
    while (ac < a.chunks_.size() && bc < b.chunks_.size()) {
      if (ap == 0 && bp == 0 && a.chunks_[ac] == b.chunks_[bc]) {
        ++ac, ++bc;
        continue;
      }
      if (!same((*a.chunks_[ac])[ap], (*b.chunks_[bc])[bp])) return false;
      if (++ap == a.chunks_[ac]->size()) ++ac, ap = 0;
      if (++bp == b.chunks_[bc]->size()) ++bc, bp = 0;
    }
    return true;  // equal sizes: both ran out together
  }

  /// Edits a sequence in place, copying each shared chunk the first time it
  /// touches it. One editor per new version.
  class editor {
   public:
    explicit editor(sorted_chunks& seq) : seq_(seq), owned_(seq.chunks_.size(), false) {}

    /// Inserts `entry`, or replaces the entry with its key.
    void put(Entry entry) {
      auto& chunks = seq_.chunks_;
      if (chunks.empty()) {
        chunks.push_back(std::make_shared<const chunk>(chunk{std::move(entry)}));
        owned_.push_back(true);
        seq_.size_ = 1;
        return;
      }
      const std::size_t i = seq_.chunk_for(KeyOf{}(entry));
      const std::size_t at = position_in(*chunks[i], KeyOf{}(entry));
      if (at < chunks[i]->size() && KeyOf{}((*chunks[i])[at]) == KeyOf{}(entry)) {
        own(i)[at] = std::move(entry);
        return;
      }
      auto& c = own(i);
      c.insert(c.begin() + static_cast<std::ptrdiff_t>(at), std::move(entry));
      ++seq_.size_;
      if (c.size() > 2 * chunk_target) {  // split in two halves, both ours
        auto upper = std::make_shared<const chunk>(std::make_move_iterator(c.begin() + static_cast<std::ptrdiff_t>(chunk_target)),
                                                   std::make_move_iterator(c.end()));
        c.resize(chunk_target);
        chunks.insert(chunks.begin() + static_cast<std::ptrdiff_t>(i) + 1, std::move(upper));
        owned_.insert(owned_.begin() + static_cast<std::ptrdiff_t>(i) + 1, true);
      }
    }

    /// Removes the entry of `key`; returns whether there was one.
    bool erase(std::string_view key) {
      auto& chunks = seq_.chunks_;
      if (chunks.empty()) return false;
      const std::size_t i = seq_.chunk_for(key);
      const std::size_t at = position_in(*chunks[i], key);
      if (at == chunks[i]->size() || KeyOf{}((*chunks[i])[at]) != key) return false;
      --seq_.size_;
      if (chunks[i]->size() == 1) {  // never leave an empty chunk
        chunks.erase(chunks.begin() + static_cast<std::ptrdiff_t>(i));
        owned_.erase(owned_.begin() + static_cast<std::ptrdiff_t>(i));
        return true;
      }
      auto& c = own(i);
      c.erase(c.begin() + static_cast<std::ptrdiff_t>(at));
      return true;
    }

   private:
    // Chunk `i`, made ours (copied if it is shared) so that it may change.
    std::vector<Entry>& own(std::size_t i) {
      if (!owned_[i]) {
        seq_.chunks_[i] = std::make_shared<const chunk>(*seq_.chunks_[i]);
        owned_[i] = true;
      }
      // Ours alone: made by this editor, not yet in any published version.
      return const_cast<chunk&>(*seq_.chunks_[i]);
    }

    sorted_chunks& seq_;
    std::vector<bool> owned_;  // parallel to seq_.chunks_
  };

 private:
  using chunk = std::vector<Entry>;  // ascending key, never empty

  static std::size_t position_in(const chunk& c, std::string_view key) {
    const auto it = std::lower_bound(c.begin(), c.end(), key, [](const Entry& e, std::string_view k) { return KeyOf{}(e) < k; });
    return static_cast<std::size_t>(it - c.begin());
  }
  // The chunk `key` belongs in: the first whose last key is not below it
  // (the last chunk for a key above all). REQUIRES: chunks_ not empty.
  std::size_t chunk_for(std::string_view key) const {
    const auto it = std::lower_bound(chunks_.begin(), chunks_.end(), key,
                                     [](const std::shared_ptr<const chunk>& c, std::string_view k) { return KeyOf{}(c->back()) < k; });
    return it == chunks_.end() ? chunks_.size() - 1 : static_cast<std::size_t>(it - chunks_.begin());
  }

  std::vector<std::shared_ptr<const chunk>> chunks_;
  std::size_t size_ = 0;
};

}  // namespace lattice::registry
