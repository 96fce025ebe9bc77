// lattice/registry/document.hpp: the replicated registry document, one CRDT
// composed of three last-writer-wins maps:
//
//   instances  "path\0p<id>" / "path\0c<id>"  -> instance (provider/consumer)
//   config     "path"                          -> value
//   load       (instance key, epoch, origin)   -> calls started, finished
//
// Each map joins on its own, so the document is a join-semilattice: the
// product of three. Removals are tombstones (lww_map.hpp).
//
// Load counters. An instance's calls in flight are a PN-Counter and its
// calls served a G-Counter, both kept as per-origin entries: the entry of
// origin r in its incarnation i holds r's cumulative (started, finished)
// for that instance and registration epoch. That is the PN-Counter's own
// state (P_r = started, N_r = finished, in flight = sum of P - sum of N;
// served = sum of finished), stored in the LWW map because only r, in
// incarnation i, writes that entry and its totals only grow with r's
// clock, so "latest stamp wins" is "max wins". A new life of r counts from
// zero under its new incarnation and never overwrites an earlier life's
// totals. Readers count an entry's calls in flight only while r is alive in
// incarnation i (a crashed consumer's calls are not in flight), and its
// calls served always. A refutation moves r's entries to its new
// incarnation (the old ones are erased).
// A provider that counts the calls it serves itself (replica::
// count_serving, ADR 0021) has its owner write one entry for the instance
// under origin incarnation 0 (load_key::provider_incarnation; no life of a
// replica has incarnation 0): the totals over every caller. While it is in
// the document, readers take it instead of the callers' entries and the
// callers erase theirs, so the document holds one entry per instance, not
// one per caller and instance. Its calls in flight count while the owner
// is alive in any incarnation.
// Keeping them in the map gives counters the same range digests, slices and
// tombstone collection as the rest of the document (docs/adr/0003).
//
// The document satisfies transport::reconcilable: digest, range digests
// and slices are those of the three maps, combined range by range.
//
// Instances are held as shared immutable records (instance_record.hpp), so
// the snapshots that readers see share them with the document instead of
// copying.
//
// Thread safety: a value type; owned by the replica thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "lattice/crdt/lww_map.hpp"
#include "lattice/registry/instance.hpp"
#include "lattice/registry/instance_record.hpp"
#include "lattice/registry/path.hpp"

// A record pointer is never null as a value: the instance map stores
// tombstones as null pointers.
template <>
struct lattice::crdt::lww_null_is_tombstone<lattice::registry::record_ptr> : std::true_type {};

namespace lattice::registry {

/// Key of one origin life's load entry for one registration of an instance.
struct load_key {
  std::string instance_key;
  hlc_timestamp epoch;
  replica_id origin = 0;
  /// The origin's incarnation when it wrote the entry; provider_incarnation
  /// for a provider's own totals, written by the instance's owner.
  std::uint64_t origin_incarnation = 0;
  static constexpr std::uint64_t provider_incarnation = 0;
  friend auto operator<=>(const load_key&, const load_key&) = default;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(instance_key, epoch, origin, origin_incarnation);
  }
};

/// One origin's cumulative counts; in flight = started - finished.
struct load_counts {
  std::uint64_t started = 0;
  std::uint64_t finished = 0;
  friend auto operator<=>(const load_counts&, const load_counts&) = default;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(started, finished);
  }
};

/// "path\0" + 'p' or 'c' + id: unique per (path, kind, id), sorted by path
/// first, so one path's instances are adjacent in an ordered index.
std::string instance_key(std::string_view path, instance_kind kind, std::string_view id);
/// The path part of an instance key.
std::string_view path_of_key(std::string_view key) noexcept;
/// An instance key's three parts (views into the key).
struct instance_key_parts {
  std::string_view path;
  instance_kind kind = instance_kind::provider;
  std::string_view id;
};
instance_key_parts split_instance_key(std::string_view key) noexcept;

struct registry_document {
  /// A delta is a document too (crdt::delta_crdt).
  using delta_type = registry_document;
  using instance_map = crdt::lww_map<std::string, record_ptr>;
  using config_map = crdt::lww_map<std::string, std::string>;
  using load_map = crdt::lww_map<load_key, load_counts>;

  instance_map instances;
  config_map config;
  load_map load;
  /// Recursive config deletes: prefix -> a tombstone stamped at the delete
  /// (only tombstones; collected below the horizon like any other).
  config_map config_erasures;

  /// A delta that erases every config key starting with `prefix` stamped
  /// before `stamp`.
  static registry_document erase_config_prefix(std::string prefix, hlc_timestamp stamp);
  /// Calls f(stamp) for every entry of every map, tombstones included.
  template <class F>
  void for_each_stamp(F&& f) const {
    const auto each = [&](const auto&, const auto& entry) { f(entry.stamp); };
    instances.for_each_entry(each);
    config.for_each_entry(each);
    load.for_each_entry(each);
    config_erasures.for_each_entry(each);
  }
  /// The highest horizon of its maps: a write stamped below it would be
  /// read by this document as erased and collected.
  hlc_timestamp horizon() const noexcept {
    return std::max({instances.horizon(), config.horizon(), load.horizon(), config_erasures.horizon()});
  }
  /// The latest erasure covering config `key`, or null.
  const hlc_timestamp* erasure_covering(std::string_view key) const;

  /// Joins `other` in. With `removed`, the entries the join removed here
  /// (see lww_map::merge, and config entries an erasure covers) are added
  /// to it: with `other`, it names every key that changed.
  bool merge(const registry_document& other, registry_document* removed = nullptr);
  /// Joins in `part`, a peer's ranges `indices` at level `bits` with its
  /// horizons (anti-entropy's range push): as merge, with each map's
  /// absences read only within those ranges (lww_map::merge_ranges).
  bool merge_ranges(const registry_document& part, unsigned bits, std::span<const std::uint32_t> indices,
                    registry_document* removed = nullptr);
  /// Gives this document, a range part built from slices of `whole`,
  /// whole's horizons (lww_map::take_horizon_of).
  void take_horizon_of(const registry_document& whole) noexcept {
    instances.take_horizon_of(whole.instances);
    config.take_horizon_of(whole.config);
    load.take_horizon_of(whole.load);
    config_erasures.take_horizon_of(whole.config_erasures);
  }
  std::uint64_t digest() const noexcept {
    return combine(instances.digest(), config.digest(), load.digest(), config_erasures.digest());
  }
  std::uint64_t range_digest(unsigned bits, std::size_t index) const noexcept {
    return combine(instances.range_digest(bits, index), config.range_digest(bits, index),
                   load.range_digest(bits, index), config_erasures.range_digest(bits, index));
  }
  registry_document slice(unsigned bits, std::size_t index) const {
    return {instances.slice(bits, index), config.slice(bits, index), load.slice(bits, index),
            config_erasures.slice(bits, index)};
  }
  std::size_t size() const noexcept {
    return instances.size() + config.size() + load.size() + config_erasures.size();
  }
  std::size_t tombstones() const noexcept {
    return instances.tombstones() + config.tombstones() + load.tombstones() + config_erasures.tombstones();
  }
  bool empty() const noexcept {
    return instances.empty() && config.empty() && load.empty() && config_erasures.empty();
  }
  /// Drops tombstones (erasures included) stamped before `stable` in every
  /// map; with `removed`, adds them to it.
  std::size_t compact(hlc_timestamp stable, registry_document* removed = nullptr) {
    return instances.compact(stable, removed ? &removed->instances : nullptr) +
           config.compact(stable, removed ? &removed->config : nullptr) +
           load.compact(stable, removed ? &removed->load : nullptr) +
           config_erasures.compact(stable, removed ? &removed->config_erasures : nullptr);
  }

  /// Removes every live entry stamped before `point` from every map and returns
  /// them (see lww_map::forget_before).
  registry_document forget_before(hlc_timestamp point) {
    return {instances.forget_before(point), config.forget_before(point), load.forget_before(point),
            config_erasures.forget_before(point)};
  }

  friend bool operator==(const registry_document&, const registry_document&) = default;

  /// Every live instance's key names its record's kind and id (a valid
  /// path, the kind's letter, the id). Decoding rejects a document where
  /// one does not: such a record would be indexed under one id and erased
  /// under another, leaving a ghost.
  bool instance_keys_match() const;
  /// Holds only tombstones in config_erasures, and no config entry one of
  /// them covers (the normal form). Decoding rejects any other document.
  bool normal() const;

 private:
  // merge and merge_ranges: `join_map(ours, theirs, removed)` joins one map.
  template <class JoinMap>
  bool join(const registry_document& other, registry_document* removed, JoinMap&& join_map);

  // Distinct odd multipliers keep an entry moving between maps from
  // cancelling out in the sum.
  static std::uint64_t combine(std::uint64_t a, std::uint64_t b, std::uint64_t c, std::uint64_t d) noexcept {
    return a * 0x9e3779b97f4a7c15ULL + b * 0xc2b2ae3d27d4eb4fULL + c * 0x165667b19e3779f9ULL +
           d * 0x27d4eb2f165667c5ULL;
  }
};

// Free functions: the member name `load` is taken by the load map.
template <class Archive>
void save(Archive& archive, const registry_document& doc) {
  archive(doc.instances, doc.config, doc.load, doc.config_erasures);
}
template <class Archive>
void load(Archive& archive, registry_document& doc) {
  archive(doc.instances, doc.config, doc.load, doc.config_erasures);
  if (!doc.instance_keys_match() || !doc.normal()) crdt::throw_malformed();
}

}  // namespace lattice::registry
