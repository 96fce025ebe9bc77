#include "lattice/registry/instance_list.hpp"

namespace lattice::registry {
namespace {

bool same_figures(const instance_view& a, const instance_view& b) {
  return a.local == b.local && a.remote_in_flight == b.remote_in_flight && a.remote_served == b.remote_served &&
         a.remote_load_heard == b.remote_load_heard && a.provider_counted == b.provider_counted &&
         a.local_started_counted == b.local_started_counted && a.local_finished_counted == b.local_finished_counted;
}

}  // namespace

bool instance_list::editor::set(std::string_view id, const instance_view* view) {
  if (view == nullptr) return edit_.erase(id);
  const instance_view* now = list_.find(id);
  const bool records_changed = now == nullptr || now->record != view->record;
  if (!records_changed && same_figures(*now, *view)) return false;  // keep the chunk shared
  edit_.put(*view);
  return records_changed;
}

}  // namespace lattice::registry
