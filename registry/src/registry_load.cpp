// registry_core's load counters: other replicas' counts as they merge in,
// caller lives that stop counting as in flight, and flushing our own.
#include <algorithm>
#include <utility>

#include "lattice/registry/registry_core.hpp"

namespace lattice::registry {

void registry_core::index_own_load(const load_key& key) {
  const bool held = state().load.find(key) != nullptr;
  auto mine = own_load_.find(key.instance_key);
  if (!held) {
    if (mine == own_load_.end()) return;
    std::erase(mine->second, key);
    if (mine->second.empty()) own_load_.erase(mine);
    return;
  }
  if (mine == own_load_.end()) mine = own_load_.emplace(key.instance_key, std::vector<load_key>{}).first;
  if (std::find(mine->second.begin(), mine->second.end(), key) == mine->second.end()) mine->second.push_back(key);
  // An entry of a registration that already ended (an earlier life's,
  // merged after the instance changed) is swept at the next flush; the
  // entries of the current registration, flushed every interval, cost no
  // sweep.
  const record_ptr* record = state().instances.find(key.instance_key);
  if (record == nullptr || (*record)->epoch() != key.epoch) sweep_load_.insert(key.instance_key);
}

void registry_core::on_load_key(const load_key& key) {
  if (key.origin == self()) index_own_load(key);
  // Our own current counts are the local cells; an earlier life's entries
  // count like anyone's.
  if (key.origin == self() && key.origin_incarnation == self_incarnation_) return;
  auto& load = loads_[key.instance_key];
  if (key.epoch < load.epoch) return;  // an earlier registration's counts
  if (load.epoch < key.epoch) load = remote_load{key.epoch, {}, {}};
  const std::pair caller{key.origin, key.origin_incarnation};
  load.heard = last_now_;
  if (const load_counts* counts = state().load.find(key)) {
    load.by_origin[caller] = *counts;
    callers_.emplace(caller, caller_live(key.origin, key.origin_incarnation, last_now_));
  } else {
    load.by_origin.erase(caller);
  }
  const auto [path, kind, id] = split_instance_key(key.instance_key);
  if (paths_.find(path) != paths_.end()) mark_dirty(path, kind, id);
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
        const auto path = paths_.find(path_of_key(key));
        if (path != paths_.end()) mark_dirty(path->first);
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

void registry_core::sweep_own_load(registry_document& delta) {
  // Only the origin erases its entries, so every entry has one writer, as
  // before; an entry is swept when the instance it counted no longer has
  // that registration (deregistered, reaped, or registered again).
  for (const auto& key : std::exchange(sweep_load_, {})) {
    const auto mine = own_load_.find(key);
    if (mine == own_load_.end()) continue;
    const record_ptr* record = state().instances.find(key);
    for (const auto& lk : mine->second)
      if (record == nullptr || (*record)->epoch() != lk.epoch)
        delta.load.merge(registry_document::load_map{}.erase(lk, stamp_for(state().load, lk)));
  }
}

void registry_core::sweep_orphaned_load(steady_time now) {
  // Entries of ended registrations whose caller life is over have no
  // writer left (sweep_own_load is the caller's). One replica sweeps them,
  // the one with the least id among those this one judges alive: every
  // replica applies the same rule, and when two views differ and both
  // sweep, they write the same tombstone, stamped just after the entry
  // under its caller's id (as reaps are, ADR 0006), so a later write by
  // that caller still wins. An entry is swept only on positive evidence
  // that its registration ended (a tombstone or a later record of the
  // instance), never because the instance has not reached us yet.
  for (replica_id id : members().reachable_peers(now))
    if (id < self()) return;
  registry_document delta;
  state().load.for_each([&](const load_key& key, const load_counts&, const hlc_timestamp& stamp) {
    if (key.origin == self() || caller_live(key.origin, key.origin_incarnation, now)) return;
    const auto* instance = state().instances.find_entry(key.instance_key);
    if (instance == nullptr) return;
    const bool ended = instance->live() ? key.epoch < (*instance->value)->epoch() : key.epoch < instance->stamp;
    if (!ended) return;
    delta.load.merge(registry_document::load_map{}.erase(key, crdt::hlc::successor(stamp, key.origin)));
  });
  if (!delta.empty()) protocol_.local_change(delta, last_now_);
}

void registry_core::flush_load(steady_time now) {
  registry_document delta;
  sweep_own_load(delta);
  // The budget is shared among the callers every replica can count: the
  // live caller lives in the document, and this replica.
  std::size_t callers = 1;
  replica_id last = 0;
  for (const auto& [life, live] : callers_)
    if (live && life.first != self() && life.first != last) {
      ++callers;
      last = life.first;
    }
  load_pacer_.refill(now, callers);

  struct change {
    double urgency;
    const std::string* path;
    tracked* entry;
    load_counts counts;
  };
  std::vector<change> due;
  std::size_t held = 0;
  steady_time oldest = now;
  for (auto& [path, ps] : paths_)
    for (auto& t : ps.entries) {
      if (!t.cell) continue;
      load_cell& cell = *t.cell;
      const load_counts counts{cell.started.load(std::memory_order_relaxed),
                               cell.finished.load(std::memory_order_relaxed)};
      const auto sum = static_cast<std::uint32_t>(counts.started + counts.finished);
      if (sum == cell.flushed_sum) continue;
      if (!cell.holding) {
        cell.holding = true;
        cell.held_since = now;
      }
      const auto in_flight = static_cast<std::int64_t>(counts.started - counts.finished);
      if (const auto urgency = load_pacer_.urgency(cell.written_in_flight, in_flight, cell.held_since, now)) {
        due.push_back(change{*urgency, &path, &t, counts});
      } else {
        ++held;
        oldest = std::min(oldest, cell.held_since);
      }
    }
  std::sort(due.begin(), due.end(), [](const change& a, const change& b) { return a.urgency > b.urgency; });
  bool paid_message = !delta.empty() || load_pacer_.unlimited();
  for (std::size_t i = 0; i < due.size(); ++i) {
    tracked& t = *due[i].entry;
    load_key lk{instance_key(*due[i].path, t.record->kind(), t.record->id()), t.record->epoch(), self(),
                self_incarnation_};
    const std::size_t cost = load_pacer::entry_bytes(lk.instance_key.size()) + (paid_message ? 0 : load_pacer::write_bytes);
    if (!load_pacer_.spend(cost)) {
      // Out of budget: this and the less urgent rest wait for the next flush.
      ++load_stats_.budget_deferrals;
      for (std::size_t k = i; k < due.size(); ++k) {
        ++held;
        oldest = std::min(oldest, due[k].entry->cell->held_since);
      }
      break;
    }
    paid_message = true;
    load_cell& cell = *t.cell;
    delta.load.merge(registry_document::load_map{}.put(lk, due[i].counts, stamp_for(state().load, lk)));
    cell.flushed_sum = static_cast<std::uint32_t>(due[i].counts.started + due[i].counts.finished);
    cell.written_in_flight = static_cast<std::int64_t>(due[i].counts.started - due[i].counts.finished);
    cell.holding = false;
    ++load_stats_.entries_written;
  }
  load_stats_.entries_held = held;
  load_stats_.oldest_held = std::chrono::duration_cast<std::chrono::milliseconds>(now - oldest);
  load_stats_.share_bytes_per_second = load_pacer_.share();
  load_stats_.callers = load_pacer_.callers();
  if (!delta.empty()) protocol_.local_change(delta, last_now_);
}

}  // namespace lattice::registry
