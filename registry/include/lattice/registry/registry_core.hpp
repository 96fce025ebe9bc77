// lattice/registry/registry_core.hpp: the registry's logic, sans-IO and
// single-threaded. The replica facade (replica.hpp) runs one on its own
// io_context thread; tests run several in the deterministic simulator.
//
// It owns a transport::protocol<registry_document> and adds what a
// registry needs on top of replication:
//
//  - writes: register / deregister instances, set / erase config, each
//    stamped by this replica's HLC after any stamp already on that key (so a
//    deregistration always beats the registration it saw);
//  - an ordered index from paths to their instances (the document's maps
//    iterate in hash order);
//  - visibility: an ephemeral instance is listed while its owner is judged
//    alive or suspect in the incarnation that registered it. A replica that
//    knows peers but reaches none is more likely cut off than alone in the
//    world, so it keeps listing them (Eureka's self-preservation, without
//    a tuning knob);
//  - reaping: an owner hidden for `reap_after` has its ephemeral instances
//    tombstoned by whichever replica notices first;
//  - re-assertion: an owner that finds one of its ephemeral registrations
//    tombstoned or outdated (it was wrongly judged dead and reaped, or its
//    incarnation moved on refutation) writes it again with a newer stamp;
//  - load counters: flushes this replica's call counts every
//    `load_publish_interval`, paced by the rules of load_gossip.hpp, and
//    the totals of the providers registered here that count what they
//    serve (count_serving), which replace every caller's counts of them;
//  - the HLC receive rule on every merged stamp: a stamp within the drift
//    bound moves our clock past it; one beyond is merged, but our clock
//    does not follow it, and it is counted and logged (once per issuer per
//    minute);
//  - tombstone collection below the cluster-stable point minus `gc_grace`
//    (the least stamp floor the live members report in their member
//    records, so no member's skewed clock sets the horizon; never in a
//    replica's first gc_grace), and the grace rule: a replica that reached no peer for
//    longer than `gc_grace`, and reconnects to a peer that kept running for
//    longer than that, forgets its entries older than its cut-off and takes
//    them from its peers again, keeping what was written since and
//    re-asserting its own registrations (docs/adr/0006);
//  - publication: publish() builds the next immutable snapshot from what
//    changed, and says which paths and config keys changed (for watches).
//
// Thread safety: not thread-safe; one thread owns a core.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "lattice/crdt/hlc.hpp"
#include "lattice/registry/document.hpp"
#include "lattice/registry/load_gossip.hpp"
#include "lattice/registry/load_pacer.hpp"
#include "lattice/registry/serve_counter.hpp"
#include "lattice/registry/path.hpp"
#include "lattice/registry/snapshot.hpp"
#include "lattice/transport/protocol.hpp"

namespace lattice::registry {

using transport::steady_time;

struct core_options {
  /// Replica id, address, seeds, dissemination, timeouts: see
  /// transport/protocol.hpp.
  transport::protocol_options protocol;
  /// How long an owner must stay hidden (dead, left, or restarted) before
  /// its ephemeral instances are tombstoned. Until then they are only
  /// hidden, so a replica that was wrongly judged dead gets them back as is.
  std::chrono::milliseconds reap_after{30'000};
  /// How often this replica's call counts are written to the document.
  std::chrono::milliseconds load_publish_interval{100};
  /// How much of the gossip those counts may take (load_gossip.hpp).
  load_gossip_options load_gossip;
  /// Tombstones older than this are collected; a replica cut off from all
  /// peers for longer starts over from its peers' state (the grace rule).
  std::chrono::milliseconds gc_grace{3'600'000};
  /// How often tombstones are collected.
  std::chrono::milliseconds compaction_interval{60'000};
  /// How long a dead (not departed) member still holds back compaction
  /// (see replica_options::reconnect_timeout).
  std::chrono::milliseconds reconnect_timeout{72 * 3'600'000};
  /// Largest config value accepted.
  std::size_t max_config_value = 512 * 1024;
  /// Called on the core's thread with documents that name every key whose
  /// entry changed: each delta merged into the document (local writes and
  /// peers' alike), the entries a merge removed (a peer's horizon erased
  /// them), and the tombstones compaction collected. The replica persists
  /// from it, reading each key's entry back from state() (none: delete).
  std::function<void(const registry_document& merged)> observer;
};

/// Probes (protocol_options::liveness.source): how often a replica's own
/// member record (its stamp floor and uptime) moves, and the shortest
/// refresh cycle. Compaction needs floors only to within gc_grace, so
/// gc_grace / 8 is enough; the protocol's own setting if that is shorter;
/// never below the heartbeat. The cycle may stretch to gc_grace / 2 in a
/// large cluster (protocol_options::record_refresh_budget).
std::chrono::milliseconds record_refresh_for(const transport::protocol_options& protocol,
                                             std::chrono::milliseconds gc_grace);

/// What one publish() produced.
struct publication {
  std::shared_ptr<const snapshot> snap;
  /// Paths whose version moved, ascending.
  std::vector<std::string> changed_paths;
  /// Config keys whose value changed, ascending.
  std::vector<std::string> changed_config;
};

/// How far an earlier life of this replica got, as its data directory
/// recorded it (registry_core::restore).
struct saved_progress {
  /// When that life last heard from a peer (wall µs; 0: never, so nobody
  /// can have collected a delete it missed). nullopt: not known (a caller
  /// with no record of it); the newest stamp in the saved document stands
  /// in for it, and past gc_grace the store keeps only what is newer and
  /// the own registrations.
  std::optional<std::uint64_t> last_contact_us;
  /// At or above every stamp floor that life advertised (wall µs;
  /// registry_core::advertised_floor_bound). Peers that still count us
  /// collect only below it minus gc_grace, so when the grace rule applies
  /// the replica keeps what is newer than that too: writes of its own that
  /// reached no peer before the kill among them. nullopt: not known; the
  /// rule keeps only what is newer than the last contact.
  std::optional<std::uint64_t> floor_bound_us;
  /// The data directory was saved during a resync (see
  /// registry_core::resyncing()), which then goes on from our first contact.
  bool resyncing = false;
};

class registry_core final : public transport::protocol_core {
 public:
  using wall_clock = std::function<std::uint64_t()>;

  /// `wall` gives µs since the epoch for HLC stamps (the simulator passes
  /// virtual time).
  registry_core(core_options options, steady_time now,
                wall_clock wall = crdt::system_wall_clock_us);

  // ---- writes (each spreads at once) ------------------------------------

  /// Registers `inst` under `path`, or updates it if this id is already
  /// registered there. Returns the stored record. Registering the same
  /// fields again writes nothing. Errors: errc::root_path_not_allowed, and
  /// those of validate() (instance.hpp).
  result<instance> register_instance(const service_path& path, instance inst,
                                     instance_kind kind = instance_kind::provider);
  /// Removes instance `id` from `path` by writing a tombstone stamped after
  /// anything this replica holds for it, whether or not it knows the
  /// instance: a delete is a write, and one that wrote nothing for an
  /// instance registered elsewhere (across a partition, or before a
  /// restart) would be undone when the replicas meet. Returns whether the
  /// instance was registered here (live, or this replica's own). Any
  /// replica may remove a persistent instance. An ephemeral one lives as
  /// long as its owner: removed elsewhere, the owner writes it back; remove
  /// it at its owner (or stop the owner). Never fails.
  result<bool> deregister_instance(const service_path& path, std::string_view id,
                                   instance_kind kind = instance_kind::provider);
  /// Sets `key` to `value` and its `flags` (an opaque number kept with the
  /// value, written and replaced with it: Consul's KV Flags). Errors:
  /// errc::root_path_not_allowed, errc::value_too_large.
  result<void> set_config(const service_path& key, std::string value, std::uint64_t flags = 0);
  /// Erases config `key` with a tombstone, whether or not this replica
  /// knows it (see deregister_instance). Returns whether it was set here.
  /// Never fails.
  result<bool> erase_config(const service_path& key);
  /// Erases every config key starting with `prefix` with one prefix
  /// tombstone stamped after every entry under it held here, covering keys
  /// not seen yet too (registry_document::config_erasures). Returns how
  /// many live keys it covered here. REQUIRES: a valid prefix (the replica
  /// checks). Never fails.
  result<std::size_t> erase_config_prefix(std::string prefix);

  /// The counter serve guards count instance `id`'s calls in, for a
  /// provider of `path` registered here that counts the calls it serves
  /// (serve_counter.hpp, ADR 0021): while a copy is held, this replica writes the
  /// instance's totals (one load entry, under the load_gossip budget, its
  /// first write at once) and every other replica reads them instead of
  /// writing its own calls. The same counter while held; it outlives a
  /// re-registration (each registration's served count starts at zero,
  /// calls in flight carry over). Drop every copy and the totals are
  /// erased at the next flush, and callers count again. Errors:
  /// errc::not_found (no provider `id` at `path` was registered here).
  result<std::shared_ptr<serve_counter>> count_serving(const service_path& path, std::string_view id);

  /// Merges a document saved by an earlier life of this replica, without
  /// spreading it (anti-entropy reconciles it with peers). Instances that
  /// life registered are removed unless registered again. `progress` says
  /// how far that life got (see saved_progress): past gc_grace since its
  /// last contact, the replica counts as cut off since then, and the grace
  /// rule applies when it reaches a peer that kept running.
  void restore(const registry_document& saved, const saved_progress& progress = {});
  /// True while we take back from peers what the grace rule made us
  /// forget: we then do not compact, since our horizon would read the keys
  /// we have not fetched back yet as erased, here and, through our range
  /// pushes, at every peer. (A peer's horizon reaches us only with its
  /// whole state, which holds what we lack.) Persisted, so a restart goes
  /// on with it.
  bool resyncing() const { return resync_at_contact_ || (resync_until_ && last_now_ < *resync_until_); }
  /// Wall µs when we last heard from a peer (its member record grew here;
  /// 0 before any): what the replica persists as its last contact. Not
  /// when a peer was last judged reachable: that outlasts the link by the
  /// suspicion timeouts, and what we wrote in between reached nobody.
  std::uint64_t last_contact_us() const noexcept { return last_contact_us_; }
  /// No member record of this replica, in this life or an earlier one
  /// restored, has carried a stamp floor above this (wall µs): peers'
  /// horizons stay below it by gc_grace while they count us (see
  /// saved_progress::floor_bound_us). What the replica persists.
  std::uint64_t advertised_floor_bound() const noexcept {
    return std::max(members().self_record().clock_us, restored_floor_bound_us_);
  }
  /// The stamp floor our member record carries never passes `ceiling_us`
  /// until it is raised: a replica with a data directory raises it only
  /// once the directory holds it, so advertised_floor_bound() survives a
  /// kill. Until the first call: no ceiling.
  void cap_floor(std::uint64_t ceiling_us) noexcept { floor_ceiling_us_ = ceiling_us; }
  /// What our stamp floor would read now without holds or ceiling (wall
  /// µs, at or above the advertised floor): where a ceiling must go.
  std::uint64_t floor_reading_us() const { return std::max(wall_(), clock_.last().physical_us); }

  // ---- transport::protocol_core ----------------------------------------

  void on_message(transport::message_type type, std::span<const std::byte> payload,
                  steady_time now) override;
  void on_tick(steady_time now) override;
  /// Tombstones this replica's ephemeral instances, then announces the leave.
  void leave(steady_time now) override;
  std::vector<transport::outgoing_message> take_outgoing() override;

  // ---- reads -------------------------------------------------------------

  /// The next snapshot, or a publication with a null `snap` if nothing a
  /// reader can see changed since the last one. Views read the judgements
  /// of owners and callers made at the last tick (or when an instance of a
  /// new owner or incarnation arrived), not the time: `now` is unused.
  publication publish(steady_time now);
  /// The last snapshot publish() produced (null before the first).
  const std::shared_ptr<const snapshot>& published() const noexcept { return published_; }
  /// For checks: `path`'s view built from scratch, as a publication would
  /// build it if it did not edit the one before (version 0; null for a
  /// path never held). Publishes nothing.
  std::shared_ptr<const service_view> view_from_scratch(const std::string& path);
  const registry_document& state() const noexcept { return protocol_.state(); }
  const transport::membership& members() const noexcept { return protocol_.members(); }
  /// See transport::protocol::adopt_formed_table: for simulators only.
  void adopt_formed_table(const transport::member_table& table, steady_time now) {
    protocol_.adopt_formed_table(table, now);
  }
  const transport::protocol_stats& stats() const noexcept { return protocol_.stats(); }
  /// Probes: the failure detector (swim.hpp); null with heartbeats.
  const transport::swim::detector* detector() const noexcept { return protocol_.detector(); }
  replica_id self() const noexcept { return protocol_.self(); }
  /// Instances whose owner was hidden long enough and that this replica
  /// tombstoned.
  std::uint64_t reaped() const noexcept { return reaped_; }
  /// Times the grace rule made this replica start over.
  std::uint64_t resyncs() const noexcept { return resyncs_; }
  /// Merged stamps of other replicas that were beyond the HLC's drift
  /// bound (lattice_clock_drift_total).
  std::uint64_t clock_drift() const noexcept { return clock_drift_; }
  /// Live entries removed here because a peer's horizon said it had erased
  /// and forgotten them (lattice_horizon_erasures_total).
  std::uint64_t horizon_erasures() const noexcept { return horizon_erasures_; }
  /// How this replica's load writes were paced, as of the last flush.
  const load_gossip_stats& load_stats() const noexcept { return load_stats_; }
  /// Per peer heard from: its wall clock minus ours in µs (see
  /// transport::protocol::clock_offsets).
  const boost::container::flat_map<replica_id, std::int64_t>& clock_offsets() const noexcept {
    return protocol_.clock_offsets();
  }
  /// Per peer: its state's root digest as it last told us, and whether it
  /// equalled ours then (see transport::protocol::peer_digests).
  const auto& peer_digests() const noexcept { return protocol_.peer_digests(); }
  /// The point below which compaction may collect at `now`: the least
  /// stamp floor reported by the members that may still write (ourselves,
  /// those alive or suspect, and those dead for less than
  /// reconnect_timeout), minus gc_grace. A member back from the dead counts
  /// with the floor it had when it died for gc_grace more, so the two
  /// sides of a healed partition have that long to exchange what they
  /// wrote apart before either collects below it. nullopt while one of
  /// them has reported no floor.
  std::optional<hlc_timestamp> compaction_horizon(steady_time now) const;

 private:
  // One live instance of a path, with this replica's call counts for it.
  struct tracked {
    record_ptr record;
    // Providers: created when first published, replaced with the epoch.
    load_cell_ptr cell;
  };
  struct path_state {
    std::vector<tracked> entries;  // live in the document, by (kind, id)
    // What this replica registered here, by (kind, id): re-asserted while
    // ours (ephemeral) or until someone else overwrites it (persistent).
    // Per path rather than one map by key, so a held path pays one empty
    // vector, not a key per instance.
    std::vector<record_ptr> own;
    std::shared_ptr<const service_view> view;
  };
  struct owner_state {
    // Ephemeral entries per path; keyed by the address of the path's key
    // in paths_ (whose nodes never move and are never erased).
    std::map<const std::string*, std::size_t> paths;
    bool visible = true;
    std::uint64_t incarnation = 0;
    steady_time hidden_since{};
  };
  using caller_life = std::pair<replica_id, std::uint64_t>;
  struct remote_load {
    hlc_timestamp epoch;
    // By (origin, its incarnation): one entry per life of each caller.
    std::map<caller_life, load_counts> by_origin;
    // When another replica's counts for this registration last merged here.
    std::optional<steady_time> heard;
    // The provider's own totals (load_key::provider_incarnation), written
    // by `provider_origin`: they replace the callers' entries. `own_then`:
    // this replica's call counts when they merged (instance_view's
    // local_*_counted).
    std::optional<load_counts> provider;
    replica_id provider_origin = 0;
    load_counts own_then;
  };
  // A caller life seen in loads_: whether it counted as live at the last
  // tick, and how many entries of it loads_ holds (at none it is dropped).
  struct caller_state {
    bool live = false;
    std::size_t entries = 0;
  };
  // An instance registered here whose provider counts its calls
  // (count_serving), by instance key.
  struct serving_count {
    std::weak_ptr<serve_counter> holder;
    load_cell_ptr cell;
    // The registration last written for, and the cell's finished count when
    // it began: its counts are the cell's less that.
    hlc_timestamp epoch = hlc_timestamp::zero();
    std::uint64_t base = 0;
    // What was last written for it (nullopt: nothing yet, written unpaced).
    // (Its pacing state is the cell's, as for call cells.)
    std::optional<load_counts> written;
  };
  // Whether a caller life's calls count as in flight: it is alive (or
  // suspect) in that incarnation (in any, for a provider's totals).
  bool caller_live(replica_id origin, std::uint64_t incarnation, steady_time now) const;
  void add_caller_entry(const caller_life& caller, steady_time now);
  void drop_caller_entry(const caller_life& caller);
  // This replica's call cell for registration `epoch` of the instance of
  // `key`, or null (none yet, or the record here is of another epoch).
  load_cell* own_call_cell(std::string_view key, const hlc_timestamp& epoch);
  // Makes the next flush write `cell`'s counts (the provider's totals that
  // replaced them are gone).
  static void rewrite_own_calls(load_cell& cell);
  // Whether the provider counts the calls of registration `epoch` of the
  // instance of `key` itself, so callers write none.
  bool provider_counts(const std::string& key, const hlc_timestamp& epoch) const;
  // Forgets the serving counts nobody holds any more (their totals are
  // erased by sweep_own_load).
  void release_serving();
  void refresh_callers(steady_time now);
  void rekey_own_load(std::uint64_t refuted);

  // `merged`: what a change brought in; or, with `removals`, what it took
  // out (entries collected or forgotten, not overwritten).
  void on_merged(const registry_document& merged, bool removals = false);
  // The HLC receive rule over everything a merge brought in.
  void observe_stamps(const registry_document& merged);
  void report_drift(const hlc_timestamp& stamp, std::uint64_t wall);
  // The stamp floor our member record gossips (see registry_core.cpp).
  std::uint64_t advertised_floor();
  // Moves last_contact_us_ to when we last heard from a peer.
  void note_contact(steady_time now);
  // Logs, at most once a minute, when many probes only their TCP fallback saved.
  void report_stream_acks(steady_time now);
  // Cut off (or restored from a store) longer than gc_grace, and not yet
  // judged by apply_grace_rule: it may yet forget (see
  // transport::protocol_options::hold_horizon).
  bool grace_rule_pending() const {
    return isolated_since_ && last_now_ - *isolated_since_ > options_.gc_grace;
  }
  // The highest compaction horizon we hold or a merge has shown us: every
  // write we make is stamped above it.
  hlc_timestamp highest_horizon() const noexcept { return std::max(state().horizon(), seen_horizon_); }
  void report_erasures(const registry_document& merged, const registry_document& removed);
  // `members_moved`: membership::generation() moved since the last tick
  // (always true with heartbeats); otherwise only expiries are checked.
  void refresh_floor_holds(steady_time now, bool members_moved = true);
  void compact(steady_time now);
  // `delete_arrived`: the change brought a tombstone for the key (and it
  // may be gone already, collected on arrival below our horizon).
  void on_instance_key(const std::string& key, bool delete_arrived);
  void on_load_key(const load_key& key);
  void track_owner(const instance_record& inst, const std::string& path_key, int delta);
  // This replica's registration of (kind, id) at `ps`, or null.
  static record_ptr* find_own(path_state& ps, instance_kind kind, std::string_view id);
  static void put_own(path_state& ps, record_ptr record);
  static bool erase_own(path_state& ps, instance_kind kind, std::string_view id);
  // Calls f(path, record) for every registration of this replica.
  template <class F>
  void for_each_own(F&& f) const {
    for (const auto& [path, ps] : paths_)
      for (const auto& record : ps.own) f(path, record);
  }
  void judge_owner(replica_id id, owner_state& owner, steady_time now);
  // Whether `inst` is listed, by its owner's kept judgement.
  bool visible(const instance_record& inst) const;
  void refresh_owners(steady_time now, bool isolated);
  void reap(steady_time now);
  void reassert_pending();
  void flush_load(steady_time now);
  void index_own_load(const load_key& key);
  void sweep_own_load(registry_document& delta);
  void sweep_orphaned_load(steady_time now);
  void apply_grace_rule(steady_time now, bool reaches_none);
  // Wall µs: what is older than this the grace rule forgets, after `away`
  // cut off (apply_grace_rule).
  std::uint64_t grace_cut_off(steady_time::duration away) const;
  void write(registry_document delta);
  hlc_timestamp stamp_after(const hlc_timestamp* existing);
  /// A stamp after whatever `map` holds for `key` (tombstones included).
  template <class Map, class Key>
  hlc_timestamp stamp_for(const Map& map, const Key& key) {
    const auto* current = map.find_entry(key);
    return stamp_after(current ? &current->stamp : nullptr);
  }
  // The entry of (kind, id) at `ps`, or null.
  static tracked* find_entry(path_state& ps, instance_kind kind, std::string_view id);
  // How `t` reads in a view, or nullopt while its owner is hidden.
  std::optional<instance_view> view_of(const std::string& path, tracked& t);
  // `path` from scratch.
  std::shared_ptr<service_view> build_view(const std::string& path, path_state& ps);
  // What the next publication rebuilds of a path: all of it (an owner's
  // visibility or a caller's liveness moved), or the instances named,
  // each in the chunk of the published view it falls in (instance_list).
  struct path_dirt {
    bool whole = false;
    std::vector<std::pair<instance_kind, std::string>> instances;
  };
  void mark_dirty(const std::string& path);
  void mark_dirty(std::string_view path, instance_kind kind, std::string_view id);

  core_options options_;
  wall_clock wall_;
  crdt::hlc clock_;
  transport::protocol<registry_document> protocol_;

  std::map<std::string, path_state, std::less<>> paths_;
  std::map<replica_id, owner_state> owners_;
  std::unordered_map<std::string, remote_load> loads_;
  // Caller lives seen in loads_, and whether they counted as live at the
  // last tick: when that moves, the paths they called are republished.
  std::map<caller_life, caller_state> callers_;
  std::unordered_map<std::string, serving_count> serving_;
  std::set<std::string> reassert_;              // own keys to write again
  // Our own load entries (any life of ours) by instance key, and the
  // instance keys that changed since: flush_load erases our entries of an
  // instance whose record is gone or has a later epoch, so the document
  // keeps no counts of registrations that ended (issue #14).
  std::unordered_map<std::string, std::vector<load_key>> own_load_;
  std::set<std::string> sweep_load_;

  std::map<std::string, path_dirt, std::less<>> dirty_paths_;
  std::set<std::string, std::less<>> dirty_config_;
  // The latest config change published (snapshot::config_clock_us).
  std::uint64_t config_clock_us_ = 0;
  std::shared_ptr<const snapshot> published_;
  std::uint64_t self_incarnation_ = 0;
  bool isolated_ = false;
  // As of the last tick.
  std::size_t known_peers_ = 0;
  std::size_t reachable_peers_ = 0;
  std::uint64_t members_seen_ = ~std::uint64_t{0};  // membership::generation() at the last tick
  steady_time last_now_;  // the latest time we were told, for rumour peer picks
  std::optional<steady_time> isolated_since_;
  std::uint64_t isolated_since_wall_ = 0;  // wall µs when isolation began
  // While isolated: the highest stamp floor peers may have of us. Our
  // advertised floor stays there (a message of ours may still get through
  // a half-broken link), so the grace rule knows what peers can have
  // collected (see apply_grace_rule). 0: unknown.
  std::uint64_t isolated_floor_us_ = 0;
  std::uint64_t restored_floor_bound_us_ = 0;
  std::optional<std::uint64_t> floor_ceiling_us_;
  // After a restart from a data directory or the grace rule's forgetting:
  // until then we do not compact (see apply_grace_rule). Set from our
  // first contact when `resync_at_contact_`.
  std::optional<steady_time> resync_until_;
  bool resync_at_contact_ = false;

  std::uint64_t last_contact_us_ = 0;
  std::optional<steady_time> last_heard_;  // when a peer's record last grew here (note_contact)
  steady_time next_load_flush_;
  load_pacer load_pacer_;
  load_gossip_stats load_stats_;
  steady_time next_load_sweep_{};  // sweep_orphaned_load, every compaction_interval
  steady_time next_compaction_;
  std::uint64_t reaped_ = 0;
  std::uint64_t resyncs_ = 0;
  std::uint64_t clock_drift_ = 0;
  std::uint64_t horizon_erasures_ = 0;
  hlc_timestamp seen_horizon_ = hlc_timestamp::zero();
  std::map<replica_id, steady_time> drift_logged_;  // issuer -> last log line
  // report_stream_acks: the detector's counters when its window began.
  std::optional<steady_time> stream_window_start_;
  std::uint64_t stream_window_acks_ = 0;
  std::uint64_t stream_window_probes_ = 0;
  // Members judged dead, or back from the dead for less than gc_grace: the
  // floor they had when they died (until: nullopt while still dead).
  struct floor_hold {
    std::uint64_t floor_us = 0;
    std::optional<steady_time> until;
  };
  std::map<replica_id, floor_hold> floor_holds_;
};

}  // namespace lattice::registry
