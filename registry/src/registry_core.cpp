#include "lattice/registry/registry_core.hpp"

#include <algorithm>

#include "lattice/crdt/detail/insert_compactly.hpp"

namespace lattice::registry {
namespace {

using transport::member_state;

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

bool same_list(const std::vector<instance_view>& a, const std::vector<instance_view>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const instance_view& x, const instance_view& y) { return x.record == y.record; });
}

// The protocol reads our wall clock (op ages, envelopes) and reports our
// HLC as the stamp floor, and must forget ops well before their deletes'
// tombstones are collected (op_log.hpp).
transport::protocol_options with_clocks(transport::protocol_options protocol, const registry_core::wall_clock& wall,
                                        std::function<std::uint64_t()> stamp_floor,
                                        std::chrono::milliseconds gc_grace) {
  protocol.wall_clock = wall;
  protocol.stamp_floor = std::move(stamp_floor);
  protocol.op_limits.max_age = std::chrono::duration_cast<std::chrono::microseconds>(gc_grace) / 2;
  return protocol;
}

}  // namespace

registry_core::registry_core(core_options options, steady_time now, wall_clock wall)
    : options_(std::move(options)),
      wall_(std::move(wall)),
      clock_(options_.protocol.self),
      // Our next stamp is after the clock's reading now, whatever the wall
      // clock does next.
      protocol_(with_clocks(options_.protocol, wall_, [this] { return clock_.now(wall_()).physical_us; },
                            options_.gc_grace),
                now),
      self_incarnation_(options_.protocol.incarnation),
      next_load_flush_(now + options_.load_publish_interval),
      // Nothing is collected in a replica's first gc_grace: until it has
      // heard its peers for that long it cannot know what they have not
      // seen, and peers returning to it rely on that (apply_grace_rule).
      next_compaction_(now + std::max(options_.compaction_interval, options_.gc_grace)) {
  last_now_ = now;
  protocol_.set_change_listener([this](const registry_document& merged, const registry_document& removed) {
    observe_stamps(merged);
    on_merged(merged);
    if (!removed.empty()) on_merged(removed);
  });
}

// ---- writes -----------------------------------------------------------------

hlc_timestamp registry_core::stamp_after(const hlc_timestamp* existing) {
  const auto wall = wall_();
  if (existing == nullptr) return clock_.now(wall);
  // Beyond the drift bound the clock stays put but the write still comes
  // after the key's stamp, or it would be acknowledged and lose.
  return clock_.after(*existing, wall);
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

result<void> registry_core::set_config(const service_path& key, std::string value) {
  if (key.is_root()) return errc::root_path_not_allowed;
  if (value.size() > options_.max_config_value) return errc::value_too_large;
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
  if (incarnation != self_incarnation_) {
    // Refuted a stale record of ourselves: our registrations must carry the
    // new incarnation or peers would hide them.
    const auto refuted = std::exchange(self_incarnation_, incarnation);
    for_each_own([&](const std::string& path, const record_ptr& record) {
      reassert_.insert(instance_key(path, record->kind(), record->id()));
    });
    rekey_own_load(refuted);
  }
  // Reachability once per tick: the grace rule, owner visibility and the
  // next snapshot's peer counts all read it.
  known_peers_ = members().table().size() - 1;
  reachable_peers_ = members().reachable_peers(now).size();
  const bool reaches_none = known_peers_ > 0 && reachable_peers_ == 0;
  apply_grace_rule(now, reaches_none);
  if (reachable_peers_ > 0) last_contact_us_ = wall_();
  refresh_owners(now, reaches_none);
  refresh_callers(now);
  reap(now);
  reassert_pending();
  if (now >= next_load_flush_) {
    flush_load();
    next_load_flush_ = now + options_.load_publish_interval;
  }
  if (now >= next_compaction_) {
    compact(now);
    next_compaction_ = now + options_.compaction_interval;
  }
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

void registry_core::restore(const registry_document& saved, std::optional<std::uint64_t> last_contact_us) {
  protocol_.maintain([&](registry_document& state) { state.merge(saved); });
  on_merged(saved);
  // A store last in contact with peers more than gc_grace ago is treated
  // as a replica cut off since then: the grace rule decides, when peers are
  // reached, whether its older entries must be taken from them again.
  const auto wall = wall_();
  const auto grace_us = static_cast<std::uint64_t>(std::chrono::microseconds(options_.gc_grace).count());
  if (last_contact_us && *last_contact_us < wall && wall - *last_contact_us > grace_us) {
    isolated_since_ = last_now_ - std::chrono::microseconds(wall - *last_contact_us);
    isolated_since_wall_ = *last_contact_us;
  }
}

void registry_core::on_merged(const registry_document& merged) {
  if (options_.observer) options_.observer(merged);
  merged.instances.for_each_entry([&](const std::string& key, const auto&) { on_instance_key(key); });
  merged.config.for_each_entry([&](const std::string& key, const auto&) {
    dirty_config_.insert(key);
  });
  merged.load.for_each_entry([&](const load_key& key, const auto&) { on_load_key(key); });
}

void registry_core::on_instance_key(const std::string& key) {
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
  dirty_paths_.insert(ps->first);

  // Our own registrations: write back what someone else removed or
  // overwrote; remove the ephemeral ones an earlier life of ours left
  // behind (persistent ones outlive us by definition).
  if (record_ptr* own = find_own(ps->second, kind, id)) {
    if (now_live == nullptr || !(*now_live == *own)) {
      // Ephemeral: it lives while we do, so a removal (a reap while we
      // were wrongly judged dead) is undone. Persistent: a removal or
      // overwrite by anyone stands, and it is no longer ours.
      if ((*own)->ephemeral())
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

void registry_core::on_load_key(const load_key& key) {
  // Our own current counts are the local cells; an earlier life's entries
  // count like anyone's.
  if (key.origin == self() && key.origin_incarnation == self_incarnation_) return;
  auto& load = loads_[key.instance_key];
  if (key.epoch < load.epoch) return;  // an earlier registration's counts
  if (load.epoch < key.epoch) load = remote_load{key.epoch, {}};
  const std::pair caller{key.origin, key.origin_incarnation};
  if (const load_counts* counts = state().load.find(key)) {
    load.by_origin[caller] = *counts;
    callers_.emplace(caller, caller_live(key.origin, key.origin_incarnation, last_now_));
  } else {
    load.by_origin.erase(caller);
  }
  const std::string_view path = path_of_key(key.instance_key);
  if (paths_.find(path) != paths_.end()) dirty_paths_.insert(std::string(path));
}

void registry_core::track_owner(const instance_record& inst, const std::string& path_key, int delta) {
  if (!inst.ephemeral()) return;
  auto& owner = owners_[inst.owner()];
  auto it = owner.paths.find(&path_key);
  if (delta > 0) {
    if (it == owner.paths.end()) it = owner.paths.emplace(&path_key, 0).first;
    ++it->second;
  } else if (it != owner.paths.end() && --it->second == 0) {
    owner.paths.erase(it);
  }
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

// ---- liveness -------------------------------------------------------------------

bool registry_core::owner_visible(replica_id owner, std::uint64_t incarnation,
                                  steady_time now) const {
  if (owner == self()) return incarnation == self_incarnation_;
  const auto* record = members().table().find(owner);
  if (record == nullptr || record->incarnation != incarnation) return false;
  const auto state = members().state_of(owner, now);
  if (state == member_state::left) return false;
  return isolated_ || state != member_state::dead;
}

bool registry_core::caller_live(replica_id origin, std::uint64_t incarnation, steady_time now) const {
  // Exactly that incarnation: a new life counts its own calls, and a
  // refuting replica moves its entries to its new incarnation.
  if (origin == self()) return incarnation == self_incarnation_;
  const auto* record = members().table().find(origin);
  if (record == nullptr || record->incarnation != incarnation) return false;
  const auto state = members().state_of(origin, now);
  return state == member_state::alive || state == member_state::suspect;
}

bool registry_core::visible(const instance_record& inst, steady_time now) const {
  return !inst.ephemeral() || owner_visible(inst.owner(), inst.owner_incarnation(), now);
}

void registry_core::refresh_owners(steady_time now, bool isolated) {
  const bool isolation_changed = isolated != isolated_;
  isolated_ = isolated;
  for (auto it = owners_.begin(); it != owners_.end();) {
    auto& [id, owner] = *it;
    if (owner.paths.empty()) {
      it = owners_.erase(it);
      continue;
    }
    const auto* record = members().table().find(id);
    const std::uint64_t incarnation = record ? record->incarnation : 0;
    const auto state = members().state_of(id, now);
    const bool alive = id == self() ||
                       (record && (isolated_ || state == member_state::alive || state == member_state::suspect));
    if (alive != owner.visible || incarnation != owner.incarnation || isolation_changed) {
      if (owner.visible && !alive) owner.hidden_since = now;
      owner.visible = alive;
      owner.incarnation = incarnation;
      for (const auto& [path, count] : owner.paths) dirty_paths_.insert(*path);
    }
    ++it;
  }
}

void registry_core::reap(steady_time now) {
  if (isolated_) return;
  registry_document delta;
  for (const auto& [id, owner] : owners_) {
    // Only owners hidden for reap_after: a visible owner's paths are not
    // walked at all, so this costs nothing per tick in a healthy cluster.
    // (An owner back in a newer incarnation removes its earlier life's
    // instances itself, in on_instance_key.)
    if (id == self() || owner.visible || now - owner.hidden_since < options_.reap_after) continue;
    for (const auto& [path, count] : owner.paths) {
      const auto ps = paths_.find(*path);
      if (ps == paths_.end()) continue;
      for (const auto& t : ps->second.entries) {
        const instance_record& e = *t.record;
        if (!e.ephemeral() || e.owner() != id) continue;
        const std::string key = instance_key(*path, e.kind(), e.id());
        delta.instances.merge(registry_document::instance_map{}.erase(key, stamp_for(state().instances, key)));
        ++reaped_;
      }
    }
  }
  if (!delta.empty()) protocol_.local_change(delta, now);
}

void registry_core::apply_grace_rule(steady_time now, bool reaches_none) {
  if (reachable_peers_ == 0) {
    if (reaches_none && !isolated_since_) {
      isolated_since_ = now;
      isolated_since_wall_ = wall_();
    }
    return;
  }
  if (!isolated_since_) return;
  const bool too_long = now - *isolated_since_ > options_.gc_grace;
  const hlc_timestamp cut_off_at{isolated_since_wall_, 0, 0};
  isolated_since_.reset();
  if (!too_long) return;
  // We were cut off longer than peers keep tombstones. That alone does not
  // make us stale: if every peer we reach now has run for less than
  // gc_grace, none of them can have collected a tombstone we missed (a
  // replica collects nothing in its first gc_grace), and they are the ones
  // catching up, not us. This is the case of the replica that stayed up
  // while the others were down: it kept serving and keeps its state.
  // Uptime in heartbeats: every replica of a cluster beats at the same
  // interval, and the count is in the record we already have.
  const auto uptime_limit = static_cast<std::uint64_t>(
      options_.gc_grace.count() / std::max<std::chrono::milliseconds::rep>(1, options_.protocol.heartbeat_interval.count()));
  bool peer_collected = false;
  for (replica_id peer : members().reachable_peers(now))
    if (const auto* record = members().table().find(peer);
        record && record->heartbeat > uptime_limit)
      peer_collected = true;
  if (!peer_collected) return;
  // A peer kept running while we were away and may have erased and
  // forgotten keys we still hold. Forget what is older than our cut-off
  // (peers give back whatever of it still exists); keep what was written
  // since, which no peer can have deleted without seeing it, and our own
  // registrations, which are written again.
  ++resyncs_;
  registry_document forgotten;
  protocol_.maintain([&](registry_document& doc) { forgotten = doc.forget_before(cut_off_at); });
  on_merged(forgotten);  // drops them from the index and from disk
  for_each_own([&](const std::string& path, const record_ptr& record) {
    reassert_.insert(instance_key(path, record->kind(), record->id()));
  });
}

// ---- load ---------------------------------------------------------------------------

void registry_core::refresh_callers(steady_time now) {
  // Callers are few (the replicas that called something) and change state
  // rarely; only a change walks the loads to republish what they called.
  for (auto it = callers_.begin(); it != callers_.end();) {
    const bool live = caller_live(it->first.first, it->first.second, now);
    if (live == it->second) {
      ++it;
      continue;
    }
    bool still_held = false;
    for (const auto& [key, load] : loads_)
      if (load.by_origin.contains(it->first)) {
        still_held = true;
        const std::string_view path = path_of_key(key);
        if (paths_.find(path) != paths_.end()) dirty_paths_.insert(std::string(path));
      }
    if (!still_held) {
      it = callers_.erase(it);
      continue;
    }
    it->second = live;
    ++it;
  }
}

void registry_core::rekey_own_load(std::uint64_t refuted) {
  // Our entries of the refuted incarnation would read as a dead life's:
  // carry their totals over to the new one and erase them. (An earlier
  // life's entries stay as they are: its calls ended with it.)
  registry_document delta;
  state().load.for_each([&](const load_key& key, const load_counts& counts, const auto&) {
    if (key.origin != self() || key.origin_incarnation != refuted) return;
    load_key moved = key;
    moved.origin_incarnation = self_incarnation_;
    delta.load.merge(registry_document::load_map{}.put(moved, counts, stamp_for(state().load, moved)));
    delta.load.merge(registry_document::load_map{}.erase(key, stamp_for(state().load, key)));
  });
  if (!delta.empty()) protocol_.local_change(delta, last_now_);
}

void registry_core::flush_load() {
  registry_document delta;
  for (auto& [path, ps] : paths_)
    for (auto& t : ps.entries) {
      if (!t.cell) continue;
      const load_counts counts{t.cell->started.load(std::memory_order_relaxed),
                               t.cell->finished.load(std::memory_order_relaxed)};
      const auto sum = static_cast<std::uint32_t>(counts.started + counts.finished);
      if (sum == t.cell->flushed_sum) continue;
      const load_key lk{instance_key(path, t.record->kind(), t.record->id()), t.record->epoch(), self(),
                        self_incarnation_};
      delta.load.merge(registry_document::load_map{}.put(lk, counts, stamp_for(state().load, lk)));
      t.cell->flushed_sum = sum;
    }
  if (!delta.empty()) protocol_.local_change(delta, last_now_);
}

// ---- publication --------------------------------------------------------------------

std::shared_ptr<const service_view> registry_core::build_view(const std::string& path,
                                                              path_state& ps,
                                                              std::uint64_t version,
                                                              steady_time now) {
  auto view = std::make_shared<service_view>();
  view->path = path;
  view->version = version;
  // Exact capacity: a snapshot holds a view per path, so growth slack
  // would cost every instance.
  std::size_t providers = 0;
  for (const auto& t : ps.entries) providers += t.record->kind() == instance_kind::provider;
  view->providers.reserve(providers);
  view->consumers.reserve(ps.entries.size() - providers);
  for (auto& t : ps.entries) {
    const record_ptr& e = t.record;
    if (!visible(*e, now)) continue;
    instance_view v{e, nullptr, 0, 0};
    if (e->kind() == instance_kind::provider) {
      if (!t.cell) t.cell = load_cell_ptr(new load_cell);
      v.local = t.cell;
      if (!loads_.empty()) {  // else skip building the key: nobody has called anyone
        const auto load = loads_.find(instance_key(path, e->kind(), e->id()));
        if (load != loads_.end() && load->second.epoch == e->epoch())
          for (const auto& [caller, counts] : load->second.by_origin) {
            if (caller_live(caller.first, caller.second, now))
              v.remote_in_flight += static_cast<std::int64_t>(counts.started - counts.finished);
            v.remote_served += counts.finished;
          }
      }
      view->providers.push_back(std::move(v));
    } else {
      view->consumers.push_back(std::move(v));
    }
  }
  return view;
}

publication registry_core::publish(steady_time now) {
  const bool membership_moved = !published_ || published_->known_peers != known_peers_ ||
                                published_->reachable_peers != reachable_peers_ ||
                                published_->isolated != isolated_;
  if (dirty_paths_.empty() && dirty_config_.empty() && !config_dirty_ && !membership_moved) return {};

  publication out;
  const std::uint64_t sequence = published_ ? published_->sequence + 1 : 1;
  auto next = std::make_shared<snapshot>();
  next->sequence = sequence;
  if (published_) next->services = published_->services;
  service_index::editor services(next->services);
  for (const auto& path : std::exchange(dirty_paths_, {})) {
    const auto ps = paths_.find(path);
    if (ps == paths_.end()) continue;
    const auto& old = ps->second.view;
    auto view = build_view(path, ps->second, sequence, now);
    if (old && same_list(old->providers, view->providers) && same_list(old->consumers, view->consumers)) {
      // Only load figures moved: no new version, no notification.
      std::const_pointer_cast<service_view>(view)->version = old->version;
    } else {
      out.changed_paths.push_back(path);
    }
    ps->second.view = view;
    services.put(std::move(view));
  }

  if (config_dirty_ || !dirty_config_.empty() || !published_) {
    auto config = std::make_shared<std::map<std::string, std::string, std::less<>>>();
    state().config.for_each([&](const std::string& key, const std::string& value, const auto&) {
      config->emplace(key, value);
    });
    // Both maps are sorted: one merge-walk finds the keys that changed.
    static const std::map<std::string, std::string, std::less<>> none;
    const auto& before = published_ ? *published_->config : none;
    auto a = before.begin();
    auto b = config->begin();
    while (a != before.end() || b != config->end()) {
      if (b == config->end() || (a != before.end() && a->first < b->first)) {
        out.changed_config.push_back((a++)->first);
      } else if (a == before.end() || b->first < a->first) {
        out.changed_config.push_back((b++)->first);
      } else {
        if (a->second != b->second) out.changed_config.push_back(a->first);
        ++a, ++b;
      }
    }
    dirty_config_.clear();
    config_dirty_ = false;
    next->config = std::move(config);
  } else {
    next->config = published_->config;
  }
  next->known_peers = known_peers_;
  next->reachable_peers = reachable_peers_;
  next->isolated = isolated_;
  published_ = next;
  out.snap = std::move(next);
  return out;
}

}  // namespace lattice::registry
