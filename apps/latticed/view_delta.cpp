#include "view_delta.hpp"

#include "http_server.hpp"
#include "json_codec.hpp"

namespace lattice::daemon {

namespace {

std::vector<registry::record_ptr> records_of(const registry::instance_list& list) {
  std::vector<registry::record_ptr> out;
  out.reserve(list.size());
  for (const auto& i : list) out.push_back(i.record);
  return out;
}

}  // namespace

sent_list sent_list::of(const registry::service_view& view) {
  return {records_of(view.providers), records_of(view.consumers)};
}

nlohmann::json list_delta(const std::vector<registry::record_ptr>& before,
                          const registry::instance_list& after) {
  auto added = nlohmann::json::array(), updated = nlohmann::json::array(), removed = nlohmann::json::array();
  auto b = before.begin();
  auto a = after.begin();
  // A merge walk over two lists in id order.
  while (b != before.end() || a != after.end()) {
    if (a == after.end() || (b != before.end() && (*b)->id() < a->record->id())) {
      removed.push_back((*b)->id());
      ++b;
    } else if (b == before.end() || a->record->id() < (*b)->id()) {
      added.push_back(to_json(*a));
      ++a;
    } else {
      if (!(*b == a->record)) updated.push_back(to_json(*a));  // same pointer or equal fields: unchanged
      ++a;
      ++b;
    }
  }
  return {{"added", std::move(added)}, {"updated", std::move(updated)}, {"removed", std::move(removed)}};
}

nlohmann::json view_delta(const sent_list& before, const registry::service_view& after) {
  return {{"path", after.path},
          {"version", after.version},
          {"providers", list_delta(before.providers, after.providers)},
          {"consumers", list_delta(before.consumers, after.consumers)}};
}

std::string event_cache::full_view(const registry::service_view& view) {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mutex_);
    const auto it = by_path_.find(view.path);
    if (it != by_path_.end() && it->second.version == view.version && now - it->second.encoded <= max_age)
      return it->second.event;
  }
  // Encoded outside the lock: two threads may both encode one view, which
  // costs time, never correctness.
  std::string event = "event: service\nid: " + std::to_string(view.version) + "\ndata: " +
                      dump_json(to_json(view)) + "\n\n";
  std::lock_guard lock(mutex_);
  if (by_path_.size() >= max_paths) by_path_.clear();
  by_path_[view.path] = entry{view.version, now, event};
  return event;
}

}  // namespace lattice::daemon
