#include "lattice/registry/instance_list.hpp"

#include <algorithm>

namespace lattice::registry {
namespace {

bool id_below(const instance_view& v, std::string_view id) { return v.record->id() < id; }

bool same_figures(const instance_view& a, const instance_view& b) {
  return a.local == b.local && a.remote_in_flight == b.remote_in_flight && a.remote_served == b.remote_served;
}

}  // namespace

instance_list instance_list::from_sorted(std::vector<instance_view> views) {
  instance_list list;
  list.size_ = views.size();
  list.chunks_.reserve((views.size() + chunk_target - 1) / chunk_target);
  for (std::size_t first = 0; first < views.size(); first += chunk_target) {
    const std::size_t last = std::min(views.size(), first + chunk_target);
    const auto begin = views.begin();
    list.chunks_.push_back(
        std::make_shared<const chunk>(std::make_move_iterator(begin + static_cast<std::ptrdiff_t>(first)),
                                      std::make_move_iterator(begin + static_cast<std::ptrdiff_t>(last))));
  }
  return list;
}

std::size_t instance_list::chunk_for(std::string_view id) const {
  const auto it = std::lower_bound(chunks_.begin(), chunks_.end(), id,
                                   [](const std::shared_ptr<const chunk>& c, std::string_view k) {
                                     return c->back().record->id() < k;
                                   });
  return it == chunks_.end() ? chunks_.size() - 1 : static_cast<std::size_t>(it - chunks_.begin());
}

const instance_view* instance_list::find(std::string_view id) const {
  if (chunks_.empty()) return nullptr;
  const chunk& c = *chunks_[chunk_for(id)];
  const auto it = std::lower_bound(c.begin(), c.end(), id, id_below);
  return it != c.end() && it->record->id() == id ? &*it : nullptr;
}

bool instance_list::same_records(const instance_list& a, const instance_list& b) {
  if (a.size_ != b.size_) return false;
  std::size_t ac = 0, ap = 0, bc = 0, bp = 0;
  while (ac < a.chunks_.size() && bc < b.chunks_.size()) {
    if (ap == 0 && bp == 0 && a.chunks_[ac] == b.chunks_[bc]) {  // shared: equal by construction
      ++ac, ++bc;
      continue;
    }
    if ((*a.chunks_[ac])[ap].record != (*b.chunks_[bc])[bp].record) return false;
    if (++ap == a.chunks_[ac]->size()) ++ac, ap = 0;
    if (++bp == b.chunks_[bc]->size()) ++bc, bp = 0;
  }
  return true;  // equal sizes: both ran out together
}

std::size_t instance_list::shared_chunks(const instance_list& other) const {
  std::size_t shared = 0;
  for (const auto& c : chunks_)
    shared += std::find(other.chunks_.begin(), other.chunks_.end(), c) != other.chunks_.end();
  return shared;
}

std::vector<instance_view>& instance_list::editor::own(std::size_t i) {
  if (!owned_[i]) {
    list_.chunks_[i] = std::make_shared<const chunk>(*list_.chunks_[i]);
    owned_[i] = true;
  }
  // Ours alone: made by this editor, not yet in any published view.
  return const_cast<chunk&>(*list_.chunks_[i]);
}

bool instance_list::editor::set(std::string_view id, const instance_view* view) {
  auto& chunks = list_.chunks_;
  if (chunks.empty()) {
    if (view == nullptr) return false;
    chunks.push_back(std::make_shared<const chunk>(chunk{*view}));
    owned_.push_back(true);
    list_.size_ = 1;
    return true;
  }
  const std::size_t i = list_.chunk_for(id);
  const chunk& shared = *chunks[i];
  const auto at = static_cast<std::size_t>(std::lower_bound(shared.begin(), shared.end(), id, id_below) - shared.begin());
  const bool present = at < shared.size() && shared[at].record->id() == id;
  if (view == nullptr) {
    if (!present) return false;
    --list_.size_;
    if (shared.size() == 1) {
      chunks.erase(chunks.begin() + static_cast<std::ptrdiff_t>(i));
      owned_.erase(owned_.begin() + static_cast<std::ptrdiff_t>(i));
      return true;
    }
    auto& c = own(i);
    c.erase(c.begin() + static_cast<std::ptrdiff_t>(at));
    return true;
  }
  if (present) {
    const bool record_changed = shared[at].record != view->record;
    if (!record_changed && same_figures(shared[at], *view)) return false;
    own(i)[at] = *view;
    return record_changed;
  }
  auto& c = own(i);
  c.insert(c.begin() + static_cast<std::ptrdiff_t>(at), *view);
  ++list_.size_;
  if (c.size() > 2 * chunk_target) {
    // Split in two halves, both ours.
    auto upper = std::make_shared<const chunk>(std::make_move_iterator(c.begin() + static_cast<std::ptrdiff_t>(chunk_target)),
                                               std::make_move_iterator(c.end()));
    c.resize(chunk_target);
    chunks.insert(chunks.begin() + static_cast<std::ptrdiff_t>(i) + 1, std::move(upper));
    owned_.insert(owned_.begin() + static_cast<std::ptrdiff_t>(i) + 1, true);
  }
  return true;
}

}  // namespace lattice::registry
