#include "lattice/registry/service_index.hpp"

#include "lattice/registry/snapshot.hpp"

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
  const std::string_view path = view->path;
  const auto index = shard_of(hash_of(path));
  auto& slot = index_.shards_[index];
  if (!owned_[index]) {
    slot = slot ? std::make_shared<const shard>(*slot) : std::make_shared<const shard>();
    owned_[index] = true;
  }
  // Ours alone now (copied above, not yet published).
  auto& map = const_cast<shard&>(*slot);
  const auto it = map.find(path);
  if (it == map.end()) {
    map.emplace(path, std::move(view));
    ++index_.size_;
  } else {
    // The old key views the old view's path: replace both.
    map.erase(it);
    map.emplace(path, std::move(view));
  }
}

}  // namespace lattice::registry
