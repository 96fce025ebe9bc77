#include "lattice/registry/service_index.hpp"

#include "lattice/registry/snapshot.hpp"

#include "lattice/crdt/detail/insert_compactly.hpp"

namespace lattice::registry {

static_assert(service_index::shard_count == 256, "shard_of takes the top 8 bits");

std::vector<std::shared_ptr<const service_view>> service_index::starting_with(std::string_view text) const {
  std::vector<std::shared_ptr<const service_view>> out;
  for_each([&](const std::shared_ptr<const service_view>& view) {
    if (std::string_view(view->path).starts_with(text)) out.push_back(view);
  });
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->path < b->path; });
  return out;
}

void service_index::editor::put(std::shared_ptr<const service_view> view) {
  const auto hash = hash_of(view->path);
  const auto index = shard_of(hash);
  auto& slot = index_.shards_[index];
  if (!owned_[index]) {
    // Exact capacity plus room for this put: copies are what a snapshot
    // keeps, so slack would stay in every one.
    auto copy = std::make_shared<shard>();
    copy->reserve((slot ? slot->size() : 0) + 1);
    if (slot) copy->assign(slot->begin(), slot->end());
    slot = std::move(copy);
    owned_[index] = true;
  }
  // Ours alone now (copied above, not yet published).
  auto& entries = const_cast<shard&>(*slot);
  auto it = entries.begin() + (first_at(entries, hash) - entries.cbegin());
  for (; it != entries.end() && it->hash == hash; ++it)
    if (it->view->path == view->path) {
      it->view = std::move(view);
      return;
    }
  crdt::detail::insert_compactly(entries, it, entry{hash, std::move(view)});
  ++index_.size_;
}

}  // namespace lattice::registry
