// registry_core: construction, writes, the protocol plumbing and the
// ordered index of what merges changed. Liveness and the grace rule, load
// counters, publication and time live in registry_{liveness,load,publish,
// clock}.cpp.
#include "lattice/registry/registry_core.hpp"

#include "config_value.hpp"

#include <algorithm>

#include "lattice/crdt/detail/insert_compactly.hpp"

namespace lattice::registry {
namespace {

// Entries of one path are kept sorted by (kind, id); `record_of` gives an
// element's record.
template <class Entries, class RecordOf>
auto position(Entries& entries, instance_kind kind, std::string_view id, RecordOf record_of) {
  return std::lower_bound(entries.begin(), entries.end(), std::pair{kind, id},
                          [&](const auto& e, const std::pair<instance_kind, std::string_view>& k) {
                            const instance_record& r = *record_of(e);
                            return std::pair{r.kind(), r.id()} < k;
                          });
}
template <class Entries>
auto entry_position(Entries& entries, instance_kind kind, std::string_view id) {
  return position(entries, kind, id, [](const auto& e) -> const record_ptr& { return e.record; });
}
auto own_position(std::vector<record_ptr>& own, instance_kind kind, std::string_view id) {
  return position(own, kind, id, [](const record_ptr& r) -> const record_ptr& { return r; });
}

// The protocol reads our wall clock (op ages, envelopes) and reports our
// HLC as the stamp floor, must forget ops well before their deletes'
// tombstones are collected (op_log.hpp), and holds peers' horizons while
// the grace rule is pending.
transport::protocol_options with_clocks(transport::protocol_options protocol, const registry_core::wall_clock& wall,
                                        std::function<std::uint64_t()> stamp_floor,
                                        std::function<bool()> hold_horizon, std::chrono::milliseconds gc_grace) {
  protocol.wall_clock = wall;
  protocol.stamp_floor = std::move(stamp_floor);
  protocol.hold_horizon = std::move(hold_horizon);
  protocol.op_limits.max_age = std::chrono::duration_cast<std::chrono::microseconds>(gc_grace) / 2;
  protocol.record_refresh_interval = record_refresh_for(protocol, gc_grace);
  // Peers' copies of our floor only hold their compaction back (a floor
  // is a lower bound), so the cycle may stretch far: at gc_grace / 2 a
  // tombstone outlives gc_grace by about one gc_grace at most, and 10,000
  // members cost each about 0.8 KB/s of refreshes (README).
  protocol.record_refresh_ceiling = std::max(protocol.record_refresh_interval, gc_grace / 2);
  return protocol;
}

}  // namespace

std::chrono::milliseconds record_refresh_for(const transport::protocol_options& protocol,
                                             std::chrono::milliseconds gc_grace) {
  return std::max(protocol.heartbeat_interval, std::min(protocol.record_refresh_interval, gc_grace / 8));
}

registry_core::registry_core(core_options options, steady_time now, wall_clock wall)
    : options_(std::move(options)),
      wall_(std::move(wall)),
      clock_(options_.protocol.self),
      // Our next stamp is after the clock's reading now, whatever the wall
      // clock does next.
      protocol_(with_clocks(
                    options_.protocol, wall_, [this] { return advertised_floor(); },
                    [this] { return grace_rule_pending(); }, options_.gc_grace),
                now),
      self_incarnation_(options_.protocol.incarnation),
      next_load_flush_(now + options_.load_publish_interval),
      load_pacer_(options_.load_gossip, options_.protocol.fanout, now),
      // Nothing is collected in a replica's first gc_grace: until it has
      // heard its peers for that long it cannot know what they have not
      // seen, and peers returning to it rely on that (apply_grace_rule).
      next_compaction_(now + std::max(options_.compaction_interval, options_.gc_grace)) {
  last_now_ = now;
  protocol_.set_change_listener([this](const registry_document& merged, const registry_document& removed) {
    observe_stamps(merged);
    on_merged(merged);
    if (!removed.empty()) {
      report_erasures(merged, removed);
      on_merged(removed, /*removals=*/true);
    }
  });
}

std::uint64_t registry_core::advertised_floor() {
  // The stamp floor our member record gossips: peers collect only below
  // the least of them (minus gc_grace), so it must be below every write of
  // ours they may lack. A restart holds it at our last contact until
  // gc_grace after we are back in contact: writes acknowledged before the
  // kill may never have left this replica (the chaos soak: four writes
  // acknowledged while cut off, then a kill 10 ms after the heal; peers saw
  // the new life's floor at once, collected past them before it pushed
  // them, and then read them as erased).
  std::uint64_t floor = clock_.now(wall_()).physical_us;
  if (const auto own = floor_holds_.find(self()); own != floor_holds_.end())
    floor = std::min(floor, own->second.floor_us);
  // Cut off, it stays where peers may last have seen it: the grace rule
  // relies on their horizons being below it by gc_grace.
  if (isolated_since_ && isolated_floor_us_ != 0) floor = std::min(floor, isolated_floor_us_);
  // Never above what the data directory holds (cap_floor).
  if (floor_ceiling_us_) floor = std::min(floor, *floor_ceiling_us_);
  return floor;
}

// ---- writes -----------------------------------------------------------------

hlc_timestamp registry_core::stamp_after(const hlc_timestamp* existing) {
  const auto wall = wall_();
  // Never below a horizon we hold or have seen: a compacted replica reads
  // a key it lacks, stamped below its horizon, as erased and collected,
  // and drops it (a replica whose clock lags the cluster's would lose its
  // writes).
  hlc_timestamp floor = highest_horizon();
  if (existing != nullptr) floor = std::max(floor, *existing);
  const auto stamp = clock_.now(wall);
  if (floor < stamp) return stamp;
  // Beyond the drift bound the clock stays put but the write still comes
  // after the key's stamp (or the horizon), or it would be acknowledged
  // and lose.
  return clock_.after(floor, wall);
}

void registry_core::write(registry_document delta) {
  protocol_.local_change(delta, last_now_);
  reassert_pending();
}

result<instance> registry_core::register_instance(const service_path& path, instance inst,
                                                  instance_kind kind) {
  if (path.is_root()) return errc::root_path_not_allowed;
  if (auto ok = validate(inst); !ok) return ok.error();
  const std::string key = instance_key(path.str(), kind, inst.id);
  const auto* current = state().instances.find_entry(key);
  auto ps = paths_.find(path.str());
  if (ps == paths_.end()) ps = paths_.emplace(path.str(), path_state{}).first;
  record_ptr* own = find_own(ps->second, kind, inst.id);
  inst.kind = kind;
  inst.owner = self();
  inst.owner_incarnation = self_incarnation_;
  // An update of our live registration keeps its epoch (and load counts);
  // anything else is a new registration.
  const bool ours_live = own != nullptr && current && current->live() &&
                         (*current->value)->epoch() == (*own)->epoch();
  if (ours_live) {
    if ((*own)->same_provider_fields(inst) && (*own)->owner_incarnation() == self_incarnation_)
      return (*own)->to_instance();  // idempotent: nothing to write
    inst.epoch = (*own)->epoch();
  }
  const auto stamp = stamp_after(current ? &current->stamp : nullptr);
  if (!ours_live) inst.epoch = stamp;
  record_ptr record = instance_record::make(inst);
  if (own != nullptr)
    *own = record;
  else
    put_own(ps->second, record);
  registry_document delta;
  delta.instances = registry_document::instance_map{}.put(key, std::move(record), stamp);
  write(std::move(delta));
  return inst;
}

result<bool> registry_core::deregister_instance(const service_path& path, std::string_view id,
                                                instance_kind kind) {
  const std::string key = instance_key(path.str(), kind, id);
  const auto* current = state().instances.find_entry(key);
  const auto ps = paths_.find(path.str());
  const bool was_ours = ps != paths_.end() && erase_own(ps->second, kind, id);
  const bool known = was_ours || (current != nullptr && current->live());
  // A delete is a write: stamped now even if this replica never saw the
  // instance (it may be registered on the other side of a partition, or
  // before we restarted), or the registration comes back when they meet.
  registry_document delta;
  delta.instances = registry_document::instance_map{}.erase(key, stamp_for(state().instances, key));
  write(std::move(delta));
  return known;
}

result<void> registry_core::set_config(const service_path& key, std::string value, std::uint64_t flags) {
  if (key.is_root()) return errc::root_path_not_allowed;
  if (value.size() > options_.max_config_value) return errc::value_too_large;
  value = detail::encode_config_value(std::move(value), flags);  // config_value.hpp
  const auto* current = state().config.find_entry(key.str());
  if (current && current->live() && *current->value == value) return success();
  registry_document delta;
  delta.config = registry_document::config_map{}.put(key.str(), std::move(value),
                                                     stamp_after(current ? &current->stamp : nullptr));
  write(std::move(delta));
  return success();
}

result<bool> registry_core::erase_config(const service_path& key) {
  const auto* current = state().config.find_entry(key.str());
  const bool known = current != nullptr && current->live();
  // Tombstoned whether or not we know the key (see deregister_instance).
  registry_document delta;
  delta.config = registry_document::config_map{}.erase(key.str(), stamp_for(state().config, key.str()));
  write(std::move(delta));
  return known;
}

result<std::size_t> registry_core::erase_config_prefix(std::string prefix) {
  // After every stamp under the prefix held here, so everything this
  // replica has seen is covered, even if a skewed peer stamped it ahead of
  // our clock.
  const hlc_timestamp* latest = nullptr;
  std::size_t known = 0;
  state().config.for_each_entry([&](const std::string& key, const auto& entry) {
    if (!key.starts_with(prefix)) return;
    if (entry.live()) ++known;
    if (latest == nullptr || *latest < entry.stamp) latest = &entry.stamp;
  });
  if (const auto* erased = state().config_erasures.find_entry(prefix); erased && (!latest || *latest < erased->stamp))
    latest = &erased->stamp;
  const auto stamp = stamp_after(latest);
  write(registry_document::erase_config_prefix(std::move(prefix), stamp));
  return known;
}

// ---- protocol ---------------------------------------------------------------

void registry_core::on_message(transport::message_type type, std::span<const std::byte> payload,
                               steady_time now) {
  last_now_ = now;
  protocol_.on_message(type, payload, now);
  reassert_pending();
}

void registry_core::on_tick(steady_time now) {
  last_now_ = now;
  protocol_.on_tick(now);
  const auto incarnation = members().self_record().incarnation;
  const bool refuted_now = incarnation != self_incarnation_;
  if (refuted_now) {
    // Refuted a stale record of ourselves: our registrations must carry the
    // new incarnation or peers would hide them.
    const auto refuted = std::exchange(self_incarnation_, incarnation);
    for_each_own([&](const std::string& path, const record_ptr& record) {
      reassert_.insert(instance_key(path, record->kind(), record->id()));
    });
    rekey_own_load(refuted);
  }
  // Reachability once per tick: the grace rule, owner visibility and the
  // next snapshot's peer counts all read it. With probes, members' states
  // move only with membership::generation(), so the passes over every
  // member (O(N) each, 100 times a second) run only when it moved: at
  // 1,000 members they were most of a quiet replica's CPU.
  const bool by_probes = options_.protocol.liveness.source == transport::liveness_source::probes;
  const bool members_moved = !by_probes || refuted_now || members().generation() != members_seen_;
  members_seen_ = members().generation();
  if (members_moved) {
    known_peers_ = members().table().size() - 1;
    reachable_peers_ = members().reachable_peers(now).size();
  }
  const bool reaches_none = known_peers_ > 0 && reachable_peers_ == 0;
  note_contact(now);
  apply_grace_rule(now, reaches_none);
  // Owners and callers are judged when first tracked, and after that
  // change only with members' states: at 1,000 replicas each calling
  // 10 providers, judging every caller each tick was 75 % of the
  // simulator's time.
  if (members_moved) {
    refresh_owners(now, reaches_none);
    refresh_callers(now);
  }
  refresh_floor_holds(now, members_moved);
  report_stream_acks(now);
  reap(now);
  reassert_pending();
  if (now >= next_load_flush_) {
    flush_load(now);
    next_load_flush_ = now + options_.load_publish_interval;
  }
  if (now >= next_load_sweep_) {
    sweep_orphaned_load(now);
    next_load_sweep_ = now + options_.compaction_interval;
  }
  if (now >= next_compaction_) {
    compact(now);
    next_compaction_ = now + options_.compaction_interval;
  }
}

void registry_core::note_contact(steady_time now) {
  // Contact is hearing from a peer (its record grew here), not judging one
  // reachable: a peer stays alive, then suspect, for a while after its last
  // message, and writes we acknowledge in that while reach nobody. The
  // grace rule keeps what was written after our last contact and forgets
  // the rest; counted up to the kill, the 30-minute soak's restarted
  // daemon forgot two acknowledged writes that nobody else held.
  const std::optional<steady_time> heard = members().last_peer_progress();
  if (!heard) return;
  const auto ago = std::chrono::duration_cast<std::chrono::microseconds>(now - *heard).count();
  const std::uint64_t wall = wall_();
  const std::uint64_t at = ago > 0 && static_cast<std::uint64_t>(ago) < wall ? wall - static_cast<std::uint64_t>(ago) : wall;
  last_heard_ = *heard;
  last_contact_us_ = std::max(last_contact_us_, at);
}

void registry_core::leave(steady_time now) {
  registry_document delta;
  for_each_own([&](const std::string& path, const record_ptr& record) {
    if (!record->ephemeral()) return;
    const std::string key = instance_key(path, record->kind(), record->id());
    delta.instances.merge(registry_document::instance_map{}.erase(key, stamp_for(state().instances, key)));
  });
  for (auto& [path, ps] : paths_) ps.own.clear();
  reassert_.clear();
  if (!delta.empty()) protocol_.local_change(delta, now);
  protocol_.leave(now);
}

std::vector<transport::outgoing_message> registry_core::take_outgoing() {
  return protocol_.take_outgoing();
}

// ---- what changed -------------------------------------------------------------

void registry_core::restore(const registry_document& saved, const saved_progress& progress) {
  protocol_.maintain([&](registry_document& state) { state.merge(saved); });
  on_merged(saved);
  // A store last in contact with peers more than gc_grace ago is treated
  // as a replica cut off since then: the grace rule decides, when peers are
  // reached, whether its older entries must be taken from them again.
  const auto wall = wall_();
  const auto grace_us = static_cast<std::uint64_t>(std::chrono::microseconds(options_.gc_grace).count());
  std::uint64_t contact = progress.last_contact_us.value_or(0);
  std::uint64_t cut_off = contact;
  if (!progress.last_contact_us) {
    // Unknown: the store was surely in contact no later than its newest
    // write, and forgetting that write too (cut-off just past it) costs at
    // most a refetch from peers that kept running.
    saved.for_each_stamp([&](const hlc_timestamp& stamp) { contact = std::max(contact, stamp.physical_us); });
    cut_off = contact + 1;
  }
  restored_floor_bound_us_ = progress.floor_bound_us.value_or(0);
  if (contact != 0 && contact < wall && wall - contact > grace_us) {
    isolated_since_ = last_now_ - std::chrono::microseconds(wall - contact);
    isolated_since_wall_ = cut_off;
    isolated_floor_us_ = restored_floor_bound_us_;
  }
  // Our own downtime is a partition like any other: peers wrote while we
  // were away, and we have not got those writes yet. Our horizon stays
  // below our last contact until gc_grace after we are back in contact
  // (refresh_floor_holds), the time a returning peer gets too. Without it a
  // restarted replica collected past writes it had not fetched yet, and
  // its range pushes then erased them everywhere (the chaos test).
  if (contact != 0) floor_holds_[self()] = floor_hold{contact, std::nullopt};
  // A resync a kill cut short goes on: the data directory lacks what it
  // had forgotten and not yet fetched back.
  resync_at_contact_ = progress.resyncing;
}

void registry_core::on_merged(const registry_document& merged, bool removals) {
  if (options_.observer) options_.observer(merged);
  merged.instances.for_each_entry(
      [&](const std::string& key, const auto& entry) { on_instance_key(key, !removals && !entry.live()); });
  merged.config.for_each_entry([&](const std::string& key, const auto&) {
    dirty_config_.insert(key);
  });
  merged.load.for_each_entry([&](const load_key& key, const auto&) { on_load_key(key); });
}

void registry_core::on_instance_key(const std::string& key, bool delete_arrived) {
  if (own_load_.contains(key)) sweep_load_.insert(key);  // our counts of it may have ended
  const auto [path, kind, id] = split_instance_key(key);
  const record_ptr* now_live = state().instances.find(key);
  auto ps = paths_.find(path);
  if (ps == paths_.end()) {
    if (now_live == nullptr) return;
    ps = paths_.emplace(std::string(path), path_state{}).first;
  }
  auto& entries = ps->second.entries;
  auto at = entry_position(entries, kind, id);
  const bool present = at != entries.end() && at->record->kind() == kind && at->record->id() == id;
  if (present && now_live && at->record == *now_live) return;
  if (present) {
    track_owner(*at->record, ps->first, -1);
    if (!now_live) {
      entries.erase(at);
    } else {
      // A new registration of the id starts counting from zero.
      if ((*now_live)->epoch() != at->record->epoch()) *at = tracked{};
      at->record = *now_live;
    }
  } else if (now_live) {
    crdt::detail::insert_compactly(entries, at, tracked{*now_live, nullptr});
  }
  if (now_live) track_owner(**now_live, ps->first, +1);
  mark_dirty(ps->first, kind, id);

  // Our own registrations: write back what someone else removed or
  // overwrote; remove the ephemeral ones an earlier life of ours left
  // behind (persistent ones outlive us by definition).
  if (record_ptr* own = find_own(ps->second, kind, id)) {
    if (now_live == nullptr || !(*now_live == *own)) {
      // Ephemeral: it lives while we do, so a removal (a reap while we
      // were wrongly judged dead) is undone. Persistent: a removal or
      // overwrite by anyone stands, and it is no longer ours; except
      //  - one by an earlier life of ours, which is older than this
      //    registration whatever its stamp says (a clock stepped back
      //    across a restart stamps the new life's writes below the old
      //    life's). A tombstone under our own id that outranks the
      //    registration is such a one: this life stamps every write to a
      //    key after what it holds for the key (or the horizon that
      //    collected it), and removing the registration here would have
      //    dropped it from `own` first. Peers' reaps of our ephemeral
      //    records are stamped under our id too (reap): a reap removes
      //    only ephemeral records, and one that outranks a registration
      //    of this life removed an earlier life's;
      //  - a registration collected without a delete: a peer's horizon,
      //    computed while we were cut off, passed its stamp before the
      //    peer saw it, or the grace rule forgot it here. Nobody deleted
      //    it, and it is written again above the horizon.
      const auto* entry = state().instances.find_entry(key);
      const bool not_deleted =
          now_live != nullptr ? (*now_live)->owner() == self() && (*now_live)->owner_incarnation() < self_incarnation_
          : entry != nullptr  ? entry->stamp.replica == self()
                              : !delete_arrived;
      if ((*own)->ephemeral() || not_deleted)
        reassert_.insert(key);
      else
        erase_own(ps->second, kind, id);
    }
  } else if (now_live && (*now_live)->ephemeral() && (*now_live)->owner() == self() &&
             (*now_live)->owner_incarnation() < self_incarnation_) {
    registry_document delta;
    delta.instances = registry_document::instance_map{}.erase(key, stamp_for(state().instances, key));
    protocol_.local_change(delta, last_now_);  // re-enters on_instance_key, which drops it
  }
}

void registry_core::track_owner(const instance_record& inst, const std::string& path_key, int delta) {
  if (!inst.ephemeral()) return;
  auto [judged, fresh] = owners_.try_emplace(inst.owner());
  auto& owner = judged->second;
  if (delta > 0 && (fresh || inst.owner_incarnation() != owner.incarnation)) judge_owner(inst.owner(), owner, last_now_);
  auto it = owner.paths.find(&path_key);
  if (delta > 0) {
    if (it == owner.paths.end()) it = owner.paths.emplace(&path_key, 0).first;
    ++it->second;
  } else if (it != owner.paths.end() && --it->second == 0) {
    owner.paths.erase(it);
  }
}

registry_core::tracked* registry_core::find_entry(path_state& ps, instance_kind kind, std::string_view id) {
  const auto at = entry_position(ps.entries, kind, id);
  return at != ps.entries.end() && at->record->kind() == kind && at->record->id() == id ? &*at : nullptr;
}

void registry_core::mark_dirty(const std::string& path) {
  auto& dirt = dirty_paths_[path];
  dirt.whole = true;
  dirt.instances.clear();
}

void registry_core::mark_dirty(std::string_view path, instance_kind kind, std::string_view id) {
  // Past a few thousand changes before a publication (a sync bringing a
  // whole service in), rebuilding the path beats editing it.
  constexpr std::size_t most_instances = 4096;
  auto it = dirty_paths_.find(path);
  if (it == dirty_paths_.end()) it = dirty_paths_.emplace(std::string(path), path_dirt{}).first;
  auto& dirt = it->second;
  if (dirt.whole) return;
  if (dirt.instances.size() == most_instances) {
    mark_dirty(it->first);
    return;
  }
  dirt.instances.emplace_back(kind, std::string(id));
}

record_ptr* registry_core::find_own(path_state& ps, instance_kind kind, std::string_view id) {
  const auto at = own_position(ps.own, kind, id);
  return at != ps.own.end() && (*at)->kind() == kind && (*at)->id() == id ? &*at : nullptr;
}

void registry_core::put_own(path_state& ps, record_ptr record) {
  const auto at = own_position(ps.own, record->kind(), record->id());
  crdt::detail::insert_compactly(ps.own, at, std::move(record));
}

bool registry_core::erase_own(path_state& ps, instance_kind kind, std::string_view id) {
  record_ptr* own = find_own(ps, kind, id);
  if (own == nullptr) return false;
  ps.own.erase(ps.own.begin() + (own - ps.own.data()));
  return true;
}

void registry_core::reassert_pending() {
  while (!reassert_.empty()) {
    registry_document delta;
    for (const auto& key : std::exchange(reassert_, {})) {
      const auto [path, kind, id] = split_instance_key(key);
      const auto ps = paths_.find(path);
      record_ptr* own = ps == paths_.end() ? nullptr : find_own(ps->second, kind, id);
      if (own == nullptr) continue;
      const auto* current = state().instances.find_entry(key);
      if (current && current->live() && *current->value == *own &&
          (*own)->owner_incarnation() == self_incarnation_)
        continue;
      if ((*own)->owner_incarnation() != self_incarnation_) {
        instance renewed = (*own)->to_instance();
        renewed.owner_incarnation = self_incarnation_;
        *own = instance_record::make(renewed);
      }
      delta.instances.merge(registry_document::instance_map{}.put(
          key, *own, stamp_after(current ? &current->stamp : nullptr)));
    }
    if (!delta.empty()) protocol_.local_change(delta, last_now_);
  }
}

}  // namespace lattice::registry
