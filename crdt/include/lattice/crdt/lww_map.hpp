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
// Layout and cost (docs/adr/0001-hash-bucketed-lww-map.md). Entries live in
// 2^k buckets chosen by the top k bits of stable_hash(key); each bucket keeps
// its entries sorted by (key hash, key) and the sum of their entry hashes.
// A point write or lookup hashes the key once and searches one small bucket.
// merge() compares bucket digests first and only visits buckets that differ,
// so joining two large, mostly equal states costs little more than reading
// their digests. Iteration follows (key hash, key): deterministic and the
// same on every replica, but not key order; callers that need key order
// (prefix scans) keep their own index.
//
// Digests. digest() is the sum (mod 2^64) of stable_hash(key, entry) over
// all entries, tombstones included, kept current on every change.
// range_digest(bits, i) is the same sum over the keys whose hash starts with
// the bits of i, and slice(bits, i) is the sub-map of those keys: what an
// anti-entropy round compares and ships. Sums compose, so two replicas with
// different bucket counts can still compare ranges at the coarser level.
//
// Tombstones and the horizon. An erase leaves a tombstone so that a late
// merge of an older put cannot resurrect the key. compact(stable) drops
// tombstones stamped before `stable`, a point every live replica is known to
// have passed (causal stability; the registry uses the least stamp floor
// its live members report, minus a grace period: ADR 0006). It also
// raises the map's horizon to `stable`. A full state with horizon H says:
// "every key I lack that was written before H, I saw and deleted". So:
//  - an incoming entry for a key we lack, stamped before our horizon, is
//    ignored (we erased it and forgot the tombstone);
//  - merge(other) drops our entries that `other` lacks and that are stamped
//    before other's horizon (it erased them and forgot the tombstone).
// Both rules together make merge a join on every state replicas can reach
// (those where a horizon is only raised past writes every replica has
// seen): commutative, associative and idempotent, and decode(encode(x))
// accepts every result. On arbitrary states (a live key below one side's
// horizon that another side has never seen) no rule can be both a join and
// keep the horizon's protection; the law tests generate reachable states.
// Deltas, ops and slices carry the zero horizon, so their absences mean
// nothing. The horizon is bookkeeping, not content: operator== and
// digest() ignore it; merge() takes the max.
//
// REQUIRES of K and V: totally ordered, default constructible,
// cereal-serializable. Thread safety: a value type with no internal
// synchronisation.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <cereal/types/optional.hpp>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/concepts.hpp"
#include "lattice/crdt/detail/insert_compactly.hpp"
#include "lattice/crdt/digest.hpp"
#include "lattice/crdt/hlc.hpp"

namespace lattice::crdt {

/// Opt-in for pointer-like value types whose null is never a value: an
/// lww_map then stores a tombstone as a null V instead of an empty
/// std::optional<V>, saving the optional's flag and its padding (8 bytes
/// per entry for a smart pointer; docs/adr/0005). Specialize to true_type.
template <class V>
struct lww_null_is_tombstone : std::false_type {};

/// std::optional's interface, as lww_map uses it, over a nullable V: empty
/// exactly when the V is null. Encodes as std::optional<V> does, so the two
/// storages are indistinguishable on the wire.
template <class V>
class null_or_value {
 public:
  null_or_value() = default;
  null_or_value(std::nullopt_t) noexcept {}
  null_or_value(V value) : value_(std::move(value)) {}
  null_or_value(const std::optional<V>& value) : value_(value ? *value : V{}) {}

  bool has_value() const noexcept { return static_cast<bool>(value_); }
  explicit operator bool() const noexcept { return has_value(); }
  const V& operator*() const noexcept { return value_; }
  V& operator*() noexcept { return value_; }
  const V* operator->() const noexcept { return &value_; }

  friend bool operator==(const null_or_value& a, const null_or_value& b) {
    return a.has_value() == b.has_value() && (!a.has_value() || a.value_ == b.value_);
  }
  template <class Archive>
  void save(Archive& archive) const {
    archive(!has_value());
    if (has_value()) archive(value_);
  }
  template <class Archive>
  void load(Archive& archive) {
    bool empty = true;
    archive(empty);
    value_ = V{};
    if (empty) return;
    archive(value_);
    if (!value_) throw_malformed();
  }

 private:
  V value_{};
};

template <class K, class V>
class lww_map {
 public:
  /// The latest write of one key.
  struct entry {
    hlc_timestamp stamp;
    /// Empty for a tombstone (the latest write was an erase): a
    /// std::optional<V>, or null_or_value<V> if V opts in above.
    std::conditional_t<lww_null_is_tombstone<V>::value, null_or_value<V>, std::optional<V>> value;

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
    const entry incoming{op.stamp, op.value};
    const bool changed = absorb(stable_hash(op.key), op.key, incoming,
                                [&] { return stable_hash(op.key, incoming); });
    grow_if_needed();
    return changed ? apply_status::applied : apply_status::duplicate;
  }

  /// Joins `other` into this map; returns whether anything changed.
  ///
  /// With horizons (see the file comment) the join reads an absence as a
  /// deletion below the absent side's horizon: an entry one side holds and
  /// the other lacks survives only if it is stamped at or after the other
  /// side's horizon. That rule is applied to both sides alike, before
  /// either horizon moves, and then the result's tombstones below the new
  /// horizon (the max of the two) are collected. So merge order never
  /// matters, a live key below a horizon reaches a replica that lacks it
  /// (a new or restarted one, whose horizon is lower), and a key that the
  /// other side erased and compacted does not survive here.
  /// Deltas and slices carry no horizon: their absences mean nothing.
  ///
  /// Every key whose entry changed is then either in `other` (its entry
  /// won here) or was removed here: a live entry `other` erased and
  /// forgot, or a tombstone below the new horizon. If `removed` is given,
  /// the removed entries are added to it as they were (so a caller that
  /// indexes or persists keys can drop them too).
  bool merge(const lww_map& other, lww_map* removed = nullptr) {
    if (&other == this) return false;
    bool changed = false;
    const auto take = [&](const slot& s) {
      changed |= absorb(s.key_hash, s.key, s.value, [&] { return s.entry_hash; });
    };
    const bool other_compacted = other.horizon_ != hlc_timestamp::zero();
    if (buckets_.empty() || bits_ > other.bits_ + 2) {
      // `other` is much smaller (a delta): summing our digests over its
      // coarse ranges would cost more than looking up its few entries.
      if (other_compacted) changed |= drop_absent_from(other, 0, 0, removed);
      other.for_each_slot(take);
    } else {
      // Similar sizes (anti-entropy, full-state gossip): compare at the
      // coarser bucket level and only visit ranges whose digests differ.
      const unsigned bits = std::min(bits_, other.bits_);
      const std::size_t ranges = std::size_t{1} << bits;
      for (std::size_t r = 0; r < ranges; ++r)
        if (range_digest(bits, r) != other.range_digest(bits, r)) {
          if (other_compacted) changed |= drop_absent_from(other, bits, r, removed);
          other.for_each_slot_in_range(bits, r, take);
        }
    }
    if (other.horizon_ > horizon_) changed |= compact(other.horizon_, removed) != 0;
    grow_if_needed();
    if (removed != nullptr) removed->grow_if_needed();
    return changed;
  }

  /// The value of `key`, or nullptr if it is absent or erased. The pointer
  /// is valid until this map is next changed.
  const V* find(const K& key) const {
    const entry* e = find_entry(key);
    return e == nullptr || !e->live() ? nullptr : &*e->value;
  }
  /// The latest write of `key`, tombstone included; nullptr if none is kept.
  const entry* find_entry(const K& key) const {
    const slot* s = find_slot(stable_hash(key), key);
    return s == nullptr ? nullptr : &s->value;
  }
  bool contains(const K& key) const { return find(key) != nullptr; }
  /// Number of live keys.
  std::size_t size() const noexcept { return live_; }
  /// Number of tombstones not yet compacted.
  std::size_t tombstones() const noexcept { return size_ - live_; }
  /// Tombstones a range push showed collected elsewhere, kept aside until
  /// our horizon passes them (see merge_ranges). Not part of the state.
  std::size_t shadows() const noexcept { return shadows_.size(); }
  /// No entries at all (live or tombstone).
  bool empty() const noexcept { return size_ == 0; }

  /// Calls f(key, value, stamp) for each live key, in (key hash, key) order.
  template <class F>
  void for_each(F&& f) const {
    for_each_slot([&](const slot& s) {
      if (s.value.live()) f(s.key, *s.value.value, s.value.stamp);
    });
  }
  /// Calls f(key, entry) for every entry, tombstones included.
  template <class F>
  void for_each_entry(F&& f) const {
    for_each_slot([&](const slot& s) { f(s.key, s.value); });
  }

  /// Drops tombstones stamped before `stable` and raises the horizon to it
  /// (see the file comment). Returns how many tombstones were dropped;
  /// with `removed`, also adds them to it (a store deletes their rows).
  /// REQUIRES: every live replica has seen every write stamped before `stable`.
  std::size_t compact(hlc_timestamp stable, lww_map* removed = nullptr) {
    horizon_ = std::max(horizon_, stable);
    std::size_t dropped = 0;
    for (auto& b : buckets_)
      dropped += erase_slots_if(
          b, [&](const slot& s) { return !s.value.live() && s.value.stamp < horizon_; }, keep_in(removed));
    collect_shadows(removed);
    if (removed != nullptr) removed->grow_if_needed();
    return dropped;
  }
  hlc_timestamp horizon() const noexcept { return horizon_; }

  /// Removes every entry, live or tombstone, for which pred(key, entry)
  /// holds, leaving no tombstone; with `removed`, adds them to it. Returns
  /// how many. Not a CRDT operation on its own: for a composite state whose
  /// other parts already say those keys are deleted (the registry
  /// document's prefix erasures), which keeps it in one normal form.
  template <class Pred>
  std::size_t drop_if(Pred&& pred, lww_map* removed = nullptr) {
    std::size_t dropped = 0;
    for (auto& b : buckets_)
      dropped += erase_slots_if(b, [&](const slot& s) { return pred(s.key, s.value); }, keep_in(removed));
    if (removed != nullptr) removed->grow_if_needed();
    return dropped;
  }

  /// Removes every live entry stamped before `point`, and returns them as
  /// a map of their own (zero horizon). Not a CRDT operation: for a replica
  /// that learns its copy of everything older than `point` may be stale
  /// (the registry's grace rule) and must take those keys from its peers
  /// again. Tombstones stay: a delete is never stale, and a peer that comes
  /// back from as long an absence with the deleted value must not bring it
  /// back here. The horizon drops to zero: having forgotten, this map can
  /// no longer say that a key it lacks was erased (its pushes would erase
  /// the forgotten keys at every peer), and it must accept its peers' old
  /// keys again.
  lww_map forget_before(hlc_timestamp point) {
    horizon_ = hlc_timestamp::zero();
    lww_map forgotten;
    for (auto& b : buckets_)
      erase_slots_if(b, [&](const slot& s) { return s.value.live() && s.value.stamp < point; }, keep_in(&forgotten));
    forgotten.grow_if_needed();
    return forgotten;
  }

  std::uint64_t digest() const noexcept { return digest_; }
  /// log2 of the bucket count; grows with the number of entries.
  unsigned bucket_bits() const noexcept { return bits_; }
  /// The digest of the keys whose hash begins with the `bits`-bit prefix
  /// `index`. REQUIRES: bits <= 64, index < 2^bits.
  std::uint64_t range_digest(unsigned bits, std::size_t index) const noexcept {
    if (buckets_.empty()) return 0;
    if (bits <= bits_) {
      const auto [first, last] = bucket_span(bits, index);
      std::uint64_t sum = 0;
      for (std::size_t b = first; b < last; ++b) sum += buckets_[b].digest;
      return sum;
    }
    std::uint64_t sum = 0;
    for_each_slot_in_range(bits, index, [&](const slot& s) { sum += s.entry_hash; });
    return sum;
  }
  /// The entries of range_digest(bits, index) as a map of their own, to ship
  /// to a peer whose digest for that range differs.
  lww_map slice(unsigned bits, std::size_t index) const {
    lww_map part;
    for_each_slot_in_range(bits, index, [&](const slot& s) {
      part.absorb(s.key_hash, s.key, s.value, [&] { return s.entry_hash; });
    });
    part.grow_if_needed();
    return part;
  }

  /// Gives this map, a range part being built from slices of `whole`,
  /// whole's horizon, so that merge_ranges can read its absences.
  void take_horizon_of(const lww_map& whole) noexcept { horizon_ = std::max(horizon_, whole.horizon_); }

  /// Merges `part`: every entry a peer holds in the ranges `indices` at
  /// level `bits`, carrying the peer's horizon (take_horizon_of). Within
  /// those ranges its absences mean what a full state's do: a key we hold,
  /// stamped before the part's horizon and missing from it, was erased and
  /// forgotten there, so it goes here too. Outside them they mean nothing.
  /// Anti-entropy in delta and op modes, which never ships a whole state,
  /// agrees this way on what compaction removed; without it a key below
  /// one side's horizon that the other side still holds would differ
  /// between them for ever. Our tombstones there leave the state too, but
  /// are kept aside as shadows (below) until our own horizon passes them,
  /// and are not reported in `removed`. Indices at or beyond 2^bits are
  /// ignored. `removed` as for merge.
  ///
  /// Our horizon does not move. A horizon is a claim about the whole map
  /// that holds it ("every key I lack below it was erased"); after a part
  /// it would be true only in the ranges the part covered. A replica that
  /// lacked a key elsewhere (not fetched yet after a restart, forgotten by
  /// the grace rule) would then, through its own pushes, have that key
  /// erased at every peer: the chaos soak lost thousands of acknowledged
  /// writes that way. Our horizon rises by our own compaction or by a
  /// full state's (merge).
  bool merge_ranges(const lww_map& part, unsigned bits, std::span<const std::uint32_t> indices,
                    lww_map* removed = nullptr) {
    if (&part == this) return false;
    bool changed = false;
    if (part.horizon_ != hlc_timestamp::zero() && bits < 64)
      for (const std::uint32_t index : indices)
        if (index < (std::uint64_t{1} << bits))
          changed |= drop_absent_from(part, bits, index, removed, /*shadow_tombstones=*/true);
    part.for_each_slot([&](const slot& s) {
      changed |= absorb(s.key_hash, s.key, s.value, [&] { return s.entry_hash; });
    });
    grow_if_needed();
    if (removed != nullptr) removed->grow_if_needed();
    return changed;
  }

  /// Equal entries; the horizon is not compared (see the file comment).
  friend bool operator==(const lww_map& a, const lww_map& b) {
    if (a.size_ != b.size_ || a.digest_ != b.digest_) return false;
    // Both iterate in the same global (key hash, key) order whatever their
    // bucket counts, so walk them side by side.
    std::size_t bucket = 0;
    std::size_t position = 0;
    bool equal = true;
    a.for_each_slot([&](const slot& mine) {
      if (!equal) return;
      while (b.buckets_[bucket].slots.size() == position) {
        ++bucket;
        position = 0;
      }
      const slot& theirs = b.buckets_[bucket].slots[position++];
      equal = mine.key == theirs.key && mine.value == theirs.value;
    });
    return equal;
  }

  template <class Archive>
  void save(Archive& archive) const {
    archive(horizon_, cereal::make_size_tag(static_cast<cereal::size_type>(size_)));
    for_each_slot([&](const slot& s) { archive(s.key, s.value); });
  }
  template <class Archive>
  void load(Archive& archive) {
    *this = lww_map{};
    cereal::size_type count = 0;
    archive(horizon_, cereal::make_size_tag(count));
    std::vector<slot> slots;
    // `count` is only known to be <= the remaining bytes, and a slot is far
    // larger than a byte, so reserving `count` would let a hostile header
    // allocate ~100x the input. Reserve a little; real entries grow it.
    slots.reserve(std::min<std::size_t>(static_cast<std::size_t>(count), 1024));
    for (cereal::size_type i = 0; i < count; ++i) {
      slot s;
      archive(s.key, s.value);
      s.key_hash = stable_hash(s.key);
      // Canonical order is strictly ascending (key hash, key).
      if (!slots.empty() && !slot_less(slots.back(), s.key_hash, s.key)) throw_malformed();
      // A compacted map holds no tombstone below its horizon.
      if (!s.value.live() && s.value.stamp < horizon_) throw_malformed();
      s.entry_hash = stable_hash(s.key, s.value);
      slots.push_back(std::move(s));
    }
    adopt_sorted(std::move(slots));
  }

 private:
  struct slot {
    std::uint64_t key_hash = 0;
    K key{};
    entry value;
    std::uint64_t entry_hash = 0;  // stable_hash(key, value), cached
  };
  struct bucket {
    std::uint64_t digest = 0;  // sum of entry_hash
    std::vector<slot> slots;   // ascending (key_hash, key)
  };

  // Average entries per bucket above which the table doubles. Memory, not
  // speed, sets it: each bucket costs a header and an allocation, which at
  // 2 per bucket was ~28 bytes per entry of a 100k-entry map and at 8 is
  // ~8, while a search or insert within a bucket of 8 stays a few
  // comparisons of key hashes. Anti-entropy ranges hold ~8 entries
  // (anti_entropy.hpp), so range digests still sum whole buckets.
  static constexpr std::size_t max_load = 8;

  static bool slot_less(const slot& s, std::uint64_t key_hash, const K& key) {
    return s.key_hash < key_hash || (s.key_hash == key_hash && s.key < key);
  }
  template <class Slots>  // const or mutable std::vector<slot>
  static auto lower_bound(Slots& slots, std::uint64_t key_hash, const K& key) {
    return std::lower_bound(slots.begin(), slots.end(), key_hash,
                            [&](const slot& s, std::uint64_t) { return slot_less(s, key_hash, key); });
  }
  static std::size_t prefix(std::uint64_t hash, unsigned bits) noexcept {
    return bits == 0 ? 0 : static_cast<std::size_t>(hash >> (64 - bits));
  }
  std::size_t bucket_of(std::uint64_t key_hash) const noexcept { return prefix(key_hash, bits_); }
  // Our buckets [first, last) that make up the `bits`-bit range `index`.
  std::pair<std::size_t, std::size_t> bucket_span(unsigned bits, std::size_t index) const noexcept {
    const unsigned shift = bits_ - bits;
    return {index << shift, (index + 1) << shift};
  }

  template <class F>
  void for_each_slot(F&& f) const {
    for (const auto& b : buckets_)
      for (const auto& s : b.slots) f(s);
  }
  template <class F>
  void for_each_slot_in_range(unsigned bits, std::size_t index, F&& f) const {
    if (buckets_.empty()) return;
    if (bits <= bits_) {
      const auto [first, last] = bucket_span(bits, index);
      for (std::size_t b = first; b < last; ++b)
        for (const auto& s : buckets_[b].slots) f(s);
      return;
    }
    for (const auto& s : buckets_[index >> (bits - bits_)].slots)
      if (prefix(s.key_hash, bits) == index) f(s);
  }

  // Wins rule: see the file comment.
  static bool wins(const entry& incoming, const entry& current) {
    if (incoming.stamp != current.stamp) return incoming.stamp > current.stamp;
    if (!current.live()) return false;
    if (!incoming.live()) return true;
    return *current.value < *incoming.value;
  }

  // Merges one entry. `entry_hash()` gives stable_hash(key, incoming); it is
  // called only if the entry wins, so a duplicate costs one lookup and no
  // hashing. Does not grow the table.
  template <class EntryHash>
  bool absorb(std::uint64_t key_hash, const K& key, const entry& incoming,
              EntryHash&& entry_hash_of) {
    if (buckets_.empty()) buckets_.resize(1);
    bucket& b = buckets_[bucket_of(key_hash)];
    auto it = lower_bound(b.slots, key_hash, key);
    std::uint64_t entry_hash = 0;
    if (it != b.slots.end() && it->key_hash == key_hash && it->key == key) {
      if (!wins(incoming, it->value)) return false;
      if (it->value.live()) --live_;
      b.digest -= it->entry_hash;
      digest_ -= it->entry_hash;
      if (!incoming.live() && incoming.stamp < horizon_) {
        // A tombstone below the horizon would be collected at once: the
        // key goes, and the map stays in its one normal form (decode
        // rejects a tombstone below the horizon). A replica whose clock
        // lags the horizon (a new one, before it has heard from anyone)
        // can issue such an erase.
        b.slots.erase(it);
        --size_;
        return true;
      }
      entry_hash = entry_hash_of();
      it->value = incoming;
      it->entry_hash = entry_hash;
    } else {
      // Unknown key below the horizon: already seen and compacted away.
      if (incoming.stamp < horizon_) return false;
      // A shadow (a tombstone collected while a peer may still hold what
      // it deleted) comes back into the state. A newer write, or the
      // tombstone itself, simply goes in. An older write brings the
      // tombstone it missed back in instead, so that anti-entropy takes the
      // delete to whoever sent it. Refused in silence, the write stayed
      // live there while we lacked it, until our horizon passed the shadow:
      // an hour and more when the delete was stamped by a clock far ahead
      // (the invariant sweep, seeds 12097 and 15659).
      std::optional<entry> revived;
      if (!shadows_.empty())
        if (const auto sh = find_shadow(key_hash, key); sh != shadows_.end()) {
          entry tombstone{sh->stamp, std::nullopt};
          shadows_.erase(sh);
          if (!wins(incoming, tombstone)) revived = std::move(tombstone);
        }
      entry_hash = revived ? stable_hash(key, *revived) : entry_hash_of();
      it = detail::insert_compactly(b.slots, it, slot{key_hash, key, revived ? *revived : incoming, entry_hash});
      ++size_;
    }
    if (it->value.live()) ++live_;
    b.digest += entry_hash;
    digest_ += entry_hash;
    return true;
  }

  // Doubles the bucket count while the load is too high. Each bucket splits
  // into two contiguous halves, because slots are sorted by key hash.
  void grow_if_needed() {
    while (size_ > max_load * buckets_.size() && bits_ < 32) {
      std::vector<bucket> grown(buckets_.size() * 2);
      for (std::size_t i = 0; i < buckets_.size(); ++i) {
        auto& slots = buckets_[i].slots;
        const auto middle = std::partition_point(slots.begin(), slots.end(), [&](const slot& s) {
          return prefix(s.key_hash, bits_ + 1) == 2 * i;
        });
        for (auto [target, first, last] : {std::tuple{2 * i, slots.begin(), middle},
                                           std::tuple{2 * i + 1, middle, slots.end()}}) {
          auto& out = grown[target];
          out.slots.assign(std::make_move_iterator(first), std::make_move_iterator(last));
          for (const auto& s : out.slots) out.digest += s.entry_hash;
        }
      }
      buckets_ = std::move(grown);
      ++bits_;
    }
  }

  // Builds the table from slots already in canonical order (decode).
  void adopt_sorted(std::vector<slot> slots) {
    bits_ = 0;
    while ((std::size_t{1} << bits_) * max_load < slots.size() && bits_ < 32) ++bits_;
    buckets_.assign(std::size_t{1} << bits_, bucket{});
    for (auto& s : slots) {
      bucket& b = buckets_[bucket_of(s.key_hash)];
      b.digest += s.entry_hash;
      digest_ += s.entry_hash;
      if (s.value.live()) ++live_;
      b.slots.push_back(std::move(s));
    }
    size_ = slots.size();
    if (size_ == 0) buckets_.clear();
  }

  // A `removed` callback for erase_slots_if that copies each removed slot
  // into `sink` (if any); the caller grows `sink` once at the end.
  static auto keep_in(lww_map* sink) {
    return [sink](const slot& s) {
      if (sink != nullptr) sink->absorb(s.key_hash, s.key, s.value, [&] { return s.entry_hash; });
    };
  }

  // Removes our entries in the `bits`-bit range `index` (all of them when
  // bits is 0) that `other` lacks and that are stamped below its horizon:
  // `other` saw them and compacted their deletion away. With
  // `shadow_tombstones` (merge_ranges, which leaves our horizon where it
  // is) our tombstones become shadows rather than going into `removed`.
  bool drop_absent_from(const lww_map& other, unsigned bits, std::size_t index, lww_map* removed,
                        bool shadow_tombstones = false) {
    if (buckets_.empty()) return false;
    const auto [first, last] = bits <= bits_ ? bucket_span(bits, index)
                                             : std::pair{index >> (bits - bits_), (index >> (bits - bits_)) + 1};
    std::size_t dropped = 0;
    for (std::size_t i = first; i < last; ++i)
      dropped += erase_slots_if(buckets_[i], [&](const slot& s) {
        return s.value.stamp < other.horizon_ && (bits <= bits_ || prefix(s.key_hash, bits) == index) &&
               other.find_slot(s.key_hash, s.key) == nullptr;
      }, [&](const slot& s) {
        if (shadow_tombstones && !s.value.live()) add_shadow(s);
        else keep_in(removed)(s);
      });
    return dropped != 0;
  }

  // Shadows. A range push (merge_ranges) says which tombstones its sender
  // has collected, but not that our other ranges are as complete as its,
  // so we cannot take its horizon. Dropping such a tombstone without a
  // horizon above it would let an older write of its key, from a replica
  // that missed the delete, come back here; keeping it would leave the
  // range differing from the sender's until our own compaction. A shadow
  // is neither: out of the state (digest, size, encoding, equality), it
  // still beats older writes of its key until our horizon passes it, and
  // compact() then reports it in `removed` as the tombstone it was. An
  // older write that arrives brings the tombstone back into the state (see
  // absorb), so the delete reaches the replica that still held the write.
  struct shadow {
    std::uint64_t key_hash = 0;
    K key{};
    hlc_timestamp stamp;
  };
  void add_shadow(const slot& s) {
    auto it = std::lower_bound(shadows_.begin(), shadows_.end(), s, [](const shadow& a, const slot& b) {
      return a.key_hash < b.key_hash || (a.key_hash == b.key_hash && a.key < b.key);
    });
    if (it != shadows_.end() && it->key_hash == s.key_hash && it->key == s.key) it->stamp = std::max(it->stamp, s.value.stamp);
    else shadows_.insert(it, shadow{s.key_hash, s.key, s.value.stamp});
  }
  // The shadow of `key`, or end().
  typename std::vector<shadow>::iterator find_shadow(std::uint64_t key_hash, const K& key) {
    auto it = std::lower_bound(shadows_.begin(), shadows_.end(), key_hash, [&](const shadow& a, std::uint64_t) {
      return a.key_hash < key_hash || (a.key_hash == key_hash && a.key < key);
    });
    return it != shadows_.end() && it->key_hash == key_hash && it->key == key ? it : shadows_.end();
  }
  // Drops the shadows below our horizon, into `removed` as tombstones.
  void collect_shadows(lww_map* removed) {
    std::erase_if(shadows_, [&](const shadow& sh) {
      if (!(sh.stamp < horizon_)) return false;
      if (removed != nullptr) {
        const entry tombstone{sh.stamp, std::nullopt};
        removed->absorb(sh.key_hash, sh.key, tombstone, [&] { return stable_hash(sh.key, tombstone); });
      }
      return true;
    });
  }

  // Removes the slots of `b` that `remove` selects, keeping their order,
  // the digests and the counts; `removed` sees each slot before it goes.
  // Returns how many were removed. One pass, no allocation.
  template <class Remove, class Removed = void (*)(const slot&)>
  std::size_t erase_slots_if(bucket& b, Remove&& remove, Removed&& removed = [](const slot&) {}) {
    auto kept = b.slots.begin();
    for (auto it = b.slots.begin(); it != b.slots.end(); ++it) {
      if (!remove(*it)) {
        if (kept != it) *kept = std::move(*it);
        ++kept;
        continue;
      }
      b.digest -= it->entry_hash;
      digest_ -= it->entry_hash;
      if (it->value.live()) --live_;
      removed(*it);
    }
    const auto count = static_cast<std::size_t>(b.slots.end() - kept);
    b.slots.erase(kept, b.slots.end());
    size_ -= count;
    return count;
  }

  const slot* find_slot(std::uint64_t key_hash, const K& key) const {
    if (buckets_.empty()) return nullptr;
    const auto& slots = buckets_[bucket_of(key_hash)].slots;
    const auto it = lower_bound(slots, key_hash, key);
    return it != slots.end() && it->key_hash == key_hash && it->key == key ? &*it : nullptr;
  }

  // Applies `op` here and returns it as a delta.
  lww_map record(const op_type& op) {
    const std::uint64_t key_hash = stable_hash(op.key);
    const entry incoming{op.stamp, op.value};
    const std::uint64_t entry_hash = stable_hash(op.key, incoming);
    const auto known = [&] { return entry_hash; };
    absorb(key_hash, op.key, incoming, known);
    grow_if_needed();
    lww_map delta;
    delta.absorb(key_hash, op.key, incoming, known);
    return delta;
  }

  std::vector<bucket> buckets_;  // empty, or 2^bits_ buckets
  unsigned bits_ = 0;
  std::size_t size_ = 0;  // entries, tombstones included
  std::size_t live_ = 0;
  hlc_timestamp horizon_;
  std::uint64_t digest_ = 0;
  std::vector<shadow> shadows_;  // ascending (key_hash, key); see add_shadow
};

}  // namespace lattice::crdt
