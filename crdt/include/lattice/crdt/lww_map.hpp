// lattice/crdt/lww_map.hpp: last-writer-wins map, stamped by a hybrid
// logical clock: an LWW-Element-Set whose elements carry a value (Shapiro et
// al. 2011, §3.3.3, with the value of the latest add kept beside it).
//
// Lattice: per key, an LWW register of optional<V>: a put writes a value, an
// erase writes a tombstone (nullopt). Join is per key, keeping the entry with
// the greater stamp. For equal stamps, which only a misbehaving replica can
// produce, a tombstone beats a value (removal bias: nothing deleted comes
// back), and between two values the greater one wins.
//
// This is the add-set/remove-set formulation with one simplification: per
// key we keep only the greater of the add stamp and the remove stamp, since
// that is all a lookup, and every later join, depends on. It saves a stamp
// per key and makes "present" a single comparison.
//
//   lww_map<std::string, std::string> config;
//   auto d1 = config.put("/db/url", "pg://a", clock.now(wall_us));
//   auto d2 = config.erase("/db/url", clock.now(wall_us));
//   config.find("/db/url");   // nullptr: erased, tombstone kept
//
// Tombstones and the grace rule. An erase leaves a tombstone so that a late
// merge of an older put cannot resurrect the key. compact(stable) drops
// tombstones stamped before `stable`, a point every live replica is known to
// have passed (causal stability, computed by the upper layers from what
// peers acknowledge, or "now minus the grace period"). It also raises the
// map's horizon to `stable`, and from then on an incoming entry for an
// unknown key stamped before the horizon is ignored: by stability we saw it
// long ago, so its absence means we erased it. That is what stops a stale
// peer from pushing a compacted-away key back into this map.
// What the horizon cannot fix is the stale peer's own copy: a replica that
// was away longer than the grace period may still hold puts of keys that
// everybody else erased and forgot, and no merge can tell it so. Such a
// replica must resynchronise from scratch (replace its state with a peer's)
// instead of merging; the registry enforces that rule. The horizon is
// bookkeeping, not content: operator== and digest() ignore it, merge()
// takes the max.
//
// digest() is the sum of stable_hash(key, entry) over all entries,
// tombstones included, kept up to date on every change: O(1) to read.
//
// REQUIRES of K and V: totally ordered, default constructible,
// cereal-serializable. Thread safety: a value type with no internal
// synchronisation.
#pragma once

#include <algorithm>
#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>

#include <cereal/types/optional.hpp>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/concepts.hpp"
#include "lattice/crdt/digest.hpp"
#include "lattice/crdt/hlc.hpp"

namespace lattice::crdt {

template <class K, class V>
class lww_map {
 public:
  /// The latest write of one key.
  struct entry {
    hlc_timestamp stamp;
    /// nullopt for a tombstone (the latest write was an erase).
    std::optional<V> value;

    bool live() const noexcept { return value.has_value(); }
    friend bool operator==(const entry&, const entry&) = default;
    template <class Archive>
    void serialize(Archive& archive) {
      archive(stamp, value);
    }
  };

  using delta_type = lww_map;
  /// A put (value set) or an erase (value empty) of one key.
  struct op_type {
    K key{};
    hlc_timestamp stamp;
    std::optional<V> value;
    friend bool operator==(const op_type&, const op_type&) = default;
    template <class Archive>
    void serialize(Archive& archive) {
      archive(key, stamp, value);
    }
  };

  /// Sets `key` to `value` at `stamp`. Returns the delta (that one entry).
  lww_map put(const K& key, V value, hlc_timestamp stamp) {
    return record(prepare_put(key, std::move(value), stamp));
  }
  /// Erases `key` at `stamp`, leaving a tombstone. Returns the delta.
  lww_map erase(const K& key, hlc_timestamp stamp) { return record(prepare_erase(key, stamp)); }

  op_type prepare_put(const K& key, V value, hlc_timestamp stamp) const {
    return op_type{key, stamp, std::move(value)};
  }
  op_type prepare_erase(const K& key, hlc_timestamp stamp) const {
    return op_type{key, stamp, std::nullopt};
  }

  /// applied if the op's write wins over what the key holds; duplicate if it
  /// loses (a repeat, an older write, or below the horizon).
  apply_status apply(const op_type& op) {
    const auto hint = entries_.lower_bound(op.key);
    return absorb(hint, op.key, entry{op.stamp, op.value}) ? apply_status::applied
                                                           : apply_status::duplicate;
  }

  /// Joins `other` into this map; returns whether anything changed.
  bool merge(const lww_map& other) {
    if (&other == this) return false;
    bool changed = false;
    if (other.horizon_ > horizon_) changed |= compact(other.horizon_) != 0;
    // A small delta into a large map: one lookup per key, O(m log n). Two
    // maps of similar size: one ordered walk over both, O(n + m), which is
    // what makes full-state anti-entropy cheap.
    if (other.entries_.size() * 32 < entries_.size()) {
      for (const auto& [key, theirs] : other.entries_)
        changed |= absorb(entries_.lower_bound(key), key, theirs);
      return changed;
    }
    auto mine = entries_.begin();
    for (const auto& [key, theirs] : other.entries_) {
      while (mine != entries_.end() && mine->first < key) ++mine;
      const auto next = mine;
      changed |= absorb(mine, key, theirs);
      // absorb() inserted before `next` or updated it in place; either way
      // the next key of `other` is past everything before `next`.
      mine = next;
    }
    return changed;
  }

  /// The value of `key`, or nullptr if it is absent or erased. The pointer
  /// is valid until this map is next changed.
  const V* find(const K& key) const {
    const auto it = entries_.find(key);
    return it == entries_.end() || !it->second.live() ? nullptr : &*it->second.value;
  }
  bool contains(const K& key) const { return find(key) != nullptr; }
  /// Number of live keys.
  std::size_t size() const noexcept { return live_; }
  /// Number of tombstones not yet compacted.
  std::size_t tombstones() const noexcept { return entries_.size() - live_; }
  /// No entries at all (live or tombstone).
  bool empty() const noexcept { return entries_.empty(); }
  /// All entries, tombstones included, in key order.
  const std::map<K, entry>& entries() const noexcept { return entries_; }

  /// Calls f(key, value, stamp) for each live key in key order.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [key, e] : entries_)
      if (e.live()) f(key, *e.value, e.stamp);
  }

  /// Drops tombstones stamped before `stable` and raises the horizon to it
  /// (see the file comment). Returns how many tombstones were dropped.
  /// REQUIRES: every live replica has seen every write stamped before `stable`.
  std::size_t compact(hlc_timestamp stable) {
    horizon_ = std::max(horizon_, stable);
    std::size_t dropped = 0;
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (!it->second.live() && it->second.stamp < horizon_) {
        digest_ -= stable_hash(it->first, it->second);
        it = entries_.erase(it);
        ++dropped;
      } else {
        ++it;
      }
    }
    return dropped;
  }
  hlc_timestamp horizon() const noexcept { return horizon_; }

  std::uint64_t digest() const noexcept { return digest_; }

  /// Equal entries; the horizon is not compared (see the file comment).
  friend bool operator==(const lww_map& a, const lww_map& b) { return a.entries_ == b.entries_; }

  template <class Archive>
  void save(Archive& archive) const {
    archive(horizon_);
    save_ordered_map(archive, entries_);
  }
  template <class Archive>
  void load(Archive& archive) {
    archive(horizon_);
    load_ordered_map(archive, entries_);
    digest_ = 0;
    live_ = 0;
    for (const auto& [key, e] : entries_) {
      // A compacted map holds no tombstone below its horizon.
      if (!e.live() && e.stamp < horizon_) throw_malformed();
      digest_ += stable_hash(key, e);
      if (e.live()) ++live_;
    }
  }

 private:
  // Whether `incoming` replaces `current` (see the tie rule in the file comment).
  static bool wins(const entry& incoming, const entry& current) {
    if (incoming.stamp != current.stamp) return incoming.stamp > current.stamp;
    if (!current.live()) return false;
    if (!incoming.live()) return true;
    return *current.value < *incoming.value;
  }

  // Merges one entry for `key`; `hint` is entries_.lower_bound(key).
  bool absorb(typename std::map<K, entry>::iterator hint, const K& key, const entry& incoming) {
    if (hint != entries_.end() && !(key < hint->first)) {
      entry& current = hint->second;
      if (!wins(incoming, current)) return false;
      digest_ -= stable_hash(key, current);
      if (current.live()) --live_;
      current = incoming;
    } else {
      // Unknown key below the horizon: already seen and compacted away.
      if (incoming.stamp < horizon_) return false;
      hint = entries_.emplace_hint(hint, key, incoming);
    }
    digest_ += stable_hash(key, hint->second);
    if (hint->second.live()) ++live_;
    return true;
  }

  // Applies `op` here and returns it as a delta.
  lww_map record(const op_type& op) {
    apply(op);
    lww_map delta;
    delta.apply(op);
    return delta;
  }

  std::map<K, entry> entries_;
  hlc_timestamp horizon_;
  std::uint64_t digest_ = 0;
  std::size_t live_ = 0;
};

}  // namespace lattice::crdt
