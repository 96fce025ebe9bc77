// registry_core's publication: the next immutable snapshot, built from
// what changed since the last one.
#include "lattice/registry/registry_core.hpp"

#include <algorithm>

namespace lattice::registry {
namespace {

bool same_list(const std::vector<instance_view>& a, const std::vector<instance_view>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const instance_view& x, const instance_view& y) { return x.record == y.record; });
}

}  // namespace

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
  if (dirty_paths_.empty() && dirty_config_.empty() && !membership_moved) return {};

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

  if (!published_) {
    // The first publication: everything, sorted once.
    std::vector<config_tree::value_type> entries;
    entries.reserve(state().config.size());
    state().config.for_each([&](const std::string& key, const std::string& value, const auto&) {
      entries.emplace_back(key, value);
    });
    std::sort(entries.begin(), entries.end());
    for (const auto& [key, value] : entries) out.changed_config.push_back(key);
    next->config = std::make_shared<const config_tree>(config_tree::from_sorted(std::move(entries)));
    dirty_config_.clear();
  } else if (!dirty_config_.empty()) {
    // Only the keys a merge touched: the rest of the tree is shared.
    auto config = std::make_shared<config_tree>(*published_->config);
    config_tree::editor edit(*config);
    for (const auto& key : dirty_config_) {
      const std::string* now_value = state().config.find(key);
      const auto before = published_->config->find(key);
      const bool had = before != published_->config->end();
      if (!had && now_value == nullptr) continue;
      if (had && now_value != nullptr && before->second == *now_value) continue;
      edit.set(key, now_value);
      out.changed_config.push_back(key);  // dirty_config_ is sorted, so these are too
    }
    dirty_config_.clear();
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
