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
  // sweep. So are totals nobody here counts any more (an earlier life's),
  // and call counts the provider's totals replace.
  const record_ptr* record = state().instances.find(key.instance_key);
  const bool totals = key.origin_incarnation == load_key::provider_incarnation;
  if (record == nullptr || (*record)->epoch() != key.epoch ||
      (totals ? !serving_.contains(key.instance_key) : provider_counts(key.instance_key, key.epoch)))
    sweep_load_.insert(key.instance_key);
}

void registry_core::add_caller_entry(const caller_life& caller, steady_time now) {
  auto [it, added] = callers_.try_emplace(caller);
  if (added) it->second.live = caller_live(caller.first, caller.second, now);
  ++it->second.entries;
}

void registry_core::drop_caller_entry(const caller_life& caller) {
  const auto it = callers_.find(caller);
  if (it != callers_.end() && --it->second.entries == 0) callers_.erase(it);
}

load_cell* registry_core::own_call_cell(std::string_view key, const hlc_timestamp& epoch) {
  const auto [path, kind, id] = split_instance_key(key);
  const auto ps = paths_.find(path);
  if (ps == paths_.end()) return nullptr;
  tracked* t = find_entry(ps->second, kind, id);
  return t != nullptr && t->record->epoch() == epoch ? t->cell.get() : nullptr;
}

void registry_core::rewrite_own_calls(load_cell& cell) {
  // Callers count again: write ours at the next flush, whether or not it
  // moved since (we erased it when the provider's totals replaced it).
  const auto sum = static_cast<std::uint32_t>(cell.started.load(std::memory_order_relaxed) +
                                              cell.finished.load(std::memory_order_relaxed));
  if (sum != 0) cell.flushed_sum = ~sum;
}

bool registry_core::provider_counts(const std::string& key, const hlc_timestamp& epoch) const {
  if (const auto s = serving_.find(key); s != serving_.end() && s->second.written && s->second.epoch == epoch)
    return true;  // ours: our serve guards count its calls
  const auto load = loads_.find(key);
  return load != loads_.end() && load->second.epoch == epoch && load->second.provider.has_value();
}

void registry_core::on_load_key(const load_key& key) {
  if (key.origin == self()) index_own_load(key);
  // Our own current counts are the local cells, and our totals our serve
  // guards'; an earlier life's call entries count like anyone's.
  if (key.origin == self() && (key.origin_incarnation == self_incarnation_ ||
                               key.origin_incarnation == load_key::provider_incarnation))
    return;
  auto& load = loads_[key.instance_key];
  if (key.epoch < load.epoch) return;  // an earlier registration's counts
  if (load.epoch < key.epoch) {
    for (const auto& entry : load.by_origin) drop_caller_entry(entry.first);
    if (load.provider) drop_caller_entry({load.provider_origin, load_key::provider_incarnation});
    load = remote_load{};
    load.epoch = key.epoch;
  }
  load.heard = last_now_;
  const caller_life caller{key.origin, key.origin_incarnation};
  const load_counts* counts = state().load.find(key);
  if (key.origin_incarnation == load_key::provider_incarnation) {
    // The provider's totals: our own calls are in them as they stand now,
    // and from here on we write none for this registration.
    load_cell* own = own_call_cell(key.instance_key, key.epoch);
    if (counts != nullptr) {
      if (!load.provider) add_caller_entry(caller, last_now_);
      load.provider = *counts;
      load.provider_origin = key.origin;
      load.own_then = {};
      if (own != nullptr) {
        load.own_then.finished = own->finished.load(std::memory_order_relaxed);
        load.own_then.started = own->started.load(std::memory_order_relaxed);
        own->provider_counts = true;
      }
      if (own_load_.contains(key.instance_key)) sweep_load_.insert(key.instance_key);
    } else if (load.provider) {
      drop_caller_entry(caller);
      load.provider.reset();
      if (own != nullptr && own->provider_counts) {
        own->provider_counts = false;
        rewrite_own_calls(*own);
      }
    }
  } else if (counts != nullptr) {
    if (load.by_origin.insert_or_assign(caller, *counts).second) add_caller_entry(caller, last_now_);
  } else if (load.by_origin.erase(caller) != 0) {
    drop_caller_entry(caller);
  }
  const auto [path, kind, id] = split_instance_key(key.instance_key);
  if (paths_.find(path) != paths_.end()) mark_dirty(path, kind, id);
}

result<std::shared_ptr<serve_counter>> registry_core::count_serving(const service_path& path,
                                                                    std::string_view id) {
  const auto ps = paths_.find(path.str());
  const record_ptr* own = ps == paths_.end() ? nullptr : find_own(ps->second, instance_kind::provider, id);
  if (own == nullptr) return errc::not_found;
  auto& s = serving_[instance_key(path.str(), instance_kind::provider, id)];
  if (auto held = s.holder.lock()) return held;
  if (!s.cell) {
    s.cell = load_cell_ptr(new load_cell(true));
    s.epoch = (*own)->epoch();
  }
  auto counter = std::make_shared<serve_counter>(s.cell);
  s.holder = counter;
  mark_dirty(path.str(), instance_kind::provider, id);  // our view reads the counter from now on
  return counter;
}

void registry_core::release_serving() {
  for (auto it = serving_.begin(); it != serving_.end();) {
    if (!it->second.holder.expired()) {
      ++it;
      continue;
    }
    const std::string key = it->first;
    const hlc_timestamp epoch = it->second.epoch;
    it = serving_.erase(it);
    if (own_load_.contains(key)) sweep_load_.insert(key);
    // Our own calls to it were erased as superseded: write them again.
    if (load_cell* own = own_call_cell(key, epoch)) rewrite_own_calls(*own);
    const auto [path, kind, id] = split_instance_key(key);
    if (paths_.find(path) != paths_.end()) mark_dirty(path, kind, id);
  }
}


// ---- load ---------------------------------------------------------------------------

void registry_core::refresh_callers(steady_time now) {
  // Callers are few (the replicas that called something, and providers
  // that count their own) and change state rarely; only a change walks
  // the loads to republish what they called.
  for (auto& [caller, state] : callers_) {
    const bool live = caller_live(caller.first, caller.second, now);
    if (live == state.live) continue;
    state.live = live;
    const bool totals = caller.second == load_key::provider_incarnation;
    for (const auto& [key, load] : loads_)
      if (totals ? load.provider && load.provider_origin == caller.first : load.by_origin.contains(caller)) {
        const auto path = paths_.find(path_of_key(key));
        if (path != paths_.end()) mark_dirty(path->first);
      }
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
    for (const auto& lk : mine->second) {
      const bool ended = record == nullptr || (*record)->epoch() != lk.epoch;
      // Our totals stand while someone holds our serve counter; our call
      // counts give way to the provider's totals.
      const bool superseded = lk.origin_incarnation == load_key::provider_incarnation
                                  ? !serving_.contains(key)
                                  : provider_counts(key, lk.epoch);
      if (ended || superseded)
        delta.load.merge(registry_document::load_map{}.erase(lk, stamp_for(state().load, lk)));
    }
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
  release_serving();
  sweep_own_load(delta);
  // The budget is shared among the writers every replica can count: the
  // live lives that have entries in the document (callers, and providers
  // writing their totals), and this replica.
  std::size_t callers = 1;
  replica_id last = 0;
  for (const auto& [life, caller] : callers_)
    if (caller.live && life.first != self() && life.first != last) {
      ++callers;
      last = life.first;
    }
  load_pacer_.refill(now, callers);

  // A change to write: a call cell of an instance (path, entry), or our
  // totals of one we serve (serving). Either way `cell` keeps its pacing
  // state (holding, held_since).
  struct change {
    double urgency;
    load_counts counts;
    load_cell* cell;
    const std::string* path = nullptr;
    tracked* entry = nullptr;
    std::pair<const std::string, serving_count>* serving = nullptr;
  };
  std::vector<change> due;
  std::size_t held = 0;
  steady_time oldest = now;
  const auto consider = [&](change c, std::int64_t written_in_flight) {
    load_cell& cell = *c.cell;
    if (!cell.holding) {
      cell.holding = true;
      cell.held_since = now;
    }
    const auto in_flight = static_cast<std::int64_t>(c.counts.started - c.counts.finished);
    if (const auto urgency = load_pacer_.urgency(written_in_flight, in_flight, cell.held_since, now)) {
      c.urgency = *urgency;
      due.push_back(c);
    } else {
      ++held;
      oldest = std::min(oldest, cell.held_since);
    }
  };
  for (auto& [path, ps] : paths_)
    for (auto& t : ps.entries) {
      if (!t.cell || t.cell->provider_counts) continue;
      load_cell& cell = *t.cell;
      // Finished first: the pair read never shows more finished than started.
      const auto finished = cell.finished.load(std::memory_order_relaxed);
      const load_counts counts{cell.started.load(std::memory_order_relaxed), finished};
      const auto sum = static_cast<std::uint32_t>(counts.started + counts.finished);
      if (sum == cell.flushed_sum) continue;
      consider(change{0, counts, &cell, &path, &t, nullptr}, cell.written_in_flight);
    }
  for (auto& entry : serving_) {
    serving_count& s = entry.second;
    const record_ptr* record = state().instances.find(entry.first);
    if (record == nullptr || (*record)->owner() != self()) continue;  // not registered by us now
    if ((*record)->epoch() != s.epoch) {
      // A new registration: its served count starts here; calls in flight
      // carry over.
      s.epoch = (*record)->epoch();
      s.base = s.cell->finished.load(std::memory_order_relaxed);
      s.written.reset();
      const auto [path, kind, id] = split_instance_key(entry.first);
      mark_dirty(path, kind, id);
    }
    const auto finished = s.cell->finished.load(std::memory_order_relaxed);
    const auto started = s.cell->started.load(std::memory_order_relaxed);
    if (finished > started || finished < s.base) continue;  // a torn serve_counter::set: read again next time
    const load_counts counts{started - s.base, finished - s.base};
    if (!s.written) {
      // The first write is not paced: it is what stops every caller from
      // writing its own counts of the instance.
      const load_key lk{entry.first, s.epoch, self(), load_key::provider_incarnation};
      delta.load.merge(registry_document::load_map{}.put(lk, counts, stamp_for(state().load, lk)));
      s.written = counts;
      s.cell->holding = false;
      ++load_stats_.entries_written;
      if (own_load_.contains(entry.first)) sweep_load_.insert(entry.first);  // our call counts give way
      continue;
    }
    if (counts == *s.written) continue;
    consider(change{0, counts, s.cell.get(), nullptr, nullptr, &entry},
             static_cast<std::int64_t>(s.written->started - s.written->finished));
  }
  std::sort(due.begin(), due.end(), [](const change& a, const change& b) { return a.urgency > b.urgency; });
  bool paid_message = !delta.empty() || load_pacer_.unlimited();
  for (std::size_t i = 0; i < due.size(); ++i) {
    change& c = due[i];
    load_key lk = c.serving != nullptr
                      ? load_key{c.serving->first, c.serving->second.epoch, self(), load_key::provider_incarnation}
                      : load_key{instance_key(*c.path, c.entry->record->kind(), c.entry->record->id()),
                                 c.entry->record->epoch(), self(), self_incarnation_};
    const std::size_t cost = load_pacer::entry_bytes(lk.instance_key.size()) + (paid_message ? 0 : load_pacer::write_bytes);
    if (!load_pacer_.spend(cost)) {
      // Out of budget: this and the less urgent rest wait for the next flush.
      ++load_stats_.budget_deferrals;
      for (std::size_t k = i; k < due.size(); ++k) {
        ++held;
        oldest = std::min(oldest, due[k].cell->held_since);
      }
      break;
    }
    paid_message = true;
    auto stamp = stamp_for(state().load, lk);
    delta.load.merge(registry_document::load_map{}.put(std::move(lk), c.counts, stamp));
    c.cell->holding = false;
    if (c.serving != nullptr) {
      c.serving->second.written = c.counts;
    } else {
      c.cell->flushed_sum = static_cast<std::uint32_t>(c.counts.started + c.counts.finished);
      c.cell->written_in_flight = static_cast<std::int64_t>(c.counts.started - c.counts.finished);
    }
    ++load_stats_.entries_written;
  }
  load_stats_.entries_held = held;
  load_stats_.provider_counted =
      static_cast<std::size_t>(std::count_if(serving_.begin(), serving_.end(), [&](const auto& e) {
        const record_ptr* record = state().instances.find(e.first);
        return e.second.written.has_value() && record != nullptr && (*record)->owner() == self();
      }));
  load_stats_.oldest_held = std::chrono::duration_cast<std::chrono::milliseconds>(now - oldest);
  load_stats_.share_bytes_per_second = load_pacer_.share();
  load_stats_.callers = load_pacer_.callers();
  if (!delta.empty()) protocol_.local_change(delta, last_now_);
}

}  // namespace lattice::registry
