// registry_core's publication: the next immutable snapshot, built from
// what changed since the last one.
#include "lattice/registry/registry_core.hpp"

#include "config_value.hpp"

#include <algorithm>
#include <optional>

namespace lattice::registry {

// ---- publication --------------------------------------------------------------------

std::optional<instance_view> registry_core::view_of(const std::string& path, tracked& t) {
  const record_ptr& e = t.record;
  if (!visible(*e)) return std::nullopt;
  instance_view v{e, nullptr, 0, 0, {}};
  if (e->kind() != instance_kind::provider) return v;
  if (!serving_.empty() && e->owner() == self()) {
    // We count what it serves: our serve guards' figures are the totals, live.
    const auto s = serving_.find(instance_key(path, e->kind(), e->id()));
    if (s != serving_.end() && s->second.epoch == e->epoch()) {
      v.local = s->second.cell;
      v.provider_counted = true;
      v.local_started_counted = v.local_finished_counted = s->second.base;
      return v;
    }
  }
  if (!t.cell) t.cell = load_cell_ptr(new load_cell);
  v.local = t.cell;
  if (loads_.empty()) return v;  // skip building the key: nobody has called anyone
  const auto load = loads_.find(instance_key(path, e->kind(), e->id()));
  if (load == loads_.end() || load->second.epoch != e->epoch()) return v;
  const remote_load& l = load->second;
  v.remote_load_heard = l.heard;
  // The judgements kept at the last tick (refresh_callers), as for owners.
  const auto live = [&](const caller_life& caller) {
    const auto c = callers_.find(caller);
    return c != callers_.end() && c->second.live;
  };
  if (l.provider) {
    // A cell made after the totals came (a new registration's) starts at
    // zero, as own_then says; it writes nothing while they stand.
    t.cell->provider_counts = true;
    v.provider_counted = true;
    if (live({l.provider_origin, load_key::provider_incarnation}))
      v.remote_in_flight = static_cast<std::int64_t>(l.provider->started - l.provider->finished);
    v.remote_served = l.provider->finished;
    v.local_started_counted = l.own_then.started;
    v.local_finished_counted = l.own_then.finished;
    return v;
  }
  for (const auto& [caller, counts] : l.by_origin) {
    if (live(caller)) v.remote_in_flight += static_cast<std::int64_t>(counts.started - counts.finished);
    v.remote_served += counts.finished;
  }
  return v;
}

std::shared_ptr<service_view> registry_core::build_view(const std::string& path, path_state& ps) {
  auto view = std::make_shared<service_view>();
  view->path = path;
  std::vector<instance_view> providers, consumers;
  for (auto& t : ps.entries)
    if (auto v = view_of(path, t))
      (t.record->kind() == instance_kind::provider ? providers : consumers).push_back(std::move(*v));
  view->providers = instance_list::from_sorted(std::move(providers));
  view->consumers = instance_list::from_sorted(std::move(consumers));
  return view;
}

std::shared_ptr<const service_view> registry_core::view_from_scratch(const std::string& path) {
  const auto ps = paths_.find(path);
  return ps == paths_.end() ? nullptr : build_view(path, ps->second);
}

publication registry_core::publish(steady_time /*now*/) {
  const bool membership_moved = !published_ || published_->known_peers != known_peers_ ||
                                published_->reachable_peers != reachable_peers_ ||
                                published_->isolated != isolated_;
  if (dirty_paths_.empty() && dirty_config_.empty() && !membership_moved) return {};

  publication out;
  const std::uint64_t sequence = published_ ? published_->sequence + 1 : 1;
  auto next = std::make_shared<snapshot>();
  next->sequence = sequence;
  if (published_) next->services = published_->services;
  service_index::editor services(next->services);
  for (auto& [path, dirt] : std::exchange(dirty_paths_, {})) {
    const auto ps = paths_.find(path);
    if (ps == paths_.end()) continue;
    const auto& old = ps->second.view;
    std::shared_ptr<service_view> view;
    bool changed = false;
    // Editing costs a chunk copy per instance named: past a quarter of a
    // large path, building it afresh is cheaper.
    const bool most_changed = dirt.instances.size() > instance_list::chunk_target &&
                              dirt.instances.size() > ps->second.entries.size() / 4;
    if (!old || dirt.whole || most_changed) {
      view = build_view(path, ps->second);
      changed = !old || !instance_list::same_records(old->providers, view->providers) ||
                !instance_list::same_records(old->consumers, view->consumers);
    } else {
      // Only the named instances, each in its chunk: the rest of the
      // lists is shared with the view before.
      view = std::make_shared<service_view>(*old);
      instance_list::editor providers(view->providers), consumers(view->consumers);
      auto& named = dirt.instances;
      std::sort(named.begin(), named.end());
      named.erase(std::unique(named.begin(), named.end()), named.end());
      for (const auto& [kind, id] : named) {
        tracked* t = find_entry(ps->second, kind, id);
        const auto v = t ? view_of(path, *t) : std::nullopt;
        changed |= (kind == instance_kind::provider ? providers : consumers).set(id, v ? &*v : nullptr);
      }
    }
    // Only load figures moved: no new version, no notification.
    view->version = changed ? sequence : old->version;
    if (changed) out.changed_paths.push_back(path);
    ps->second.view = view;
    services.put(std::move(view));
  }

  if (!published_) {
    // The first publication: everything, sorted once.
    std::vector<config_tree::value_type> entries;
    entries.reserve(state().config.size());
    state().config.for_each([&](const std::string& key, const std::string& stored, const auto& stamp) {
      const auto decoded = detail::decode_config_value(stored);  // config_value.hpp
      entries.push_back({key, std::string(decoded.value), stamp.physical_us, decoded.flags});
    });
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.key < b.key; });
    for (const auto& e : entries) out.changed_config.push_back(e.key);
    state().config.for_each_entry([&](const std::string&, const auto& entry) {
      config_clock_us_ = std::max(config_clock_us_, entry.stamp.physical_us);
    });
    state().config_erasures.for_each_entry([&](const std::string&, const auto& entry) {
      config_clock_us_ = std::max(config_clock_us_, entry.stamp.physical_us);
    });
    next->config = std::make_shared<const config_tree>(config_tree::from_sorted(std::move(entries)));
    dirty_config_.clear();
  } else if (!dirty_config_.empty()) {
    // Only the keys a merge touched: the rest of the tree is shared.
    auto config = std::make_shared<config_tree>(*published_->config);
    config_tree::editor edit(*config);
    for (const auto& key : dirty_config_) {
      const auto* now_entry = state().config.find_entry(key);
      const bool live = now_entry && now_entry->live();
      const auto decoded = live ? detail::decode_config_value(*now_entry->value) : detail::decoded_config_value{};
      const std::string now_text(decoded.value);
      const std::string* now_value = live ? &now_text : nullptr;
      // What moved the key last: its write or tombstone, or an erasure of a prefix of it.
      if (now_entry != nullptr) config_clock_us_ = std::max(config_clock_us_, now_entry->stamp.physical_us);
      if (const auto* erased = state().erasure_covering(key))
        config_clock_us_ = std::max(config_clock_us_, erased->physical_us);
      const std::uint64_t modified_us = now_value ? now_entry->stamp.physical_us : 0;
      const auto* before = published_->config->find(key);
      const bool had = before != nullptr;
      if (!had && now_value == nullptr) continue;
      if (had && now_value != nullptr && before->value == *now_value && before->flags == decoded.flags) {
        // The same value written again: a new stamp, nothing to tell watchers.
        if (before->modified_us != modified_us) edit.set(key, now_value, modified_us, decoded.flags);
        continue;
      }
      edit.set(key, now_value, modified_us, decoded.flags);
      out.changed_config.push_back(key);  // dirty_config_ is sorted, so these are too
    }
    dirty_config_.clear();
    next->config = std::move(config);
  } else {
    next->config = published_->config;
  }
  next->config_clock_us = config_clock_us_;
  next->known_peers = known_peers_;
  next->reachable_peers = reachable_peers_;
  next->isolated = isolated_;
  published_ = next;
  out.snap = std::move(next);
  return out;
}

}  // namespace lattice::registry
