#include "lattice/registry/config_tree.hpp"

#include <algorithm>
#include <stdexcept>

namespace lattice::registry {
namespace {

bool key_below(const config_tree::value_type& entry, std::string_view key) { return entry.first < key; }

}  // namespace

config_tree config_tree::from_sorted(std::vector<value_type> entries) {
  config_tree tree;
  tree.size_ = entries.size();
  for (std::size_t first = 0; first < entries.size(); first += chunk_target) {
    const std::size_t last = std::min(entries.size(), first + chunk_target);
    const auto begin = entries.begin();
    tree.chunks_.push_back(
        std::make_shared<const chunk>(std::make_move_iterator(begin + static_cast<std::ptrdiff_t>(first)),
                                      std::make_move_iterator(begin + static_cast<std::ptrdiff_t>(last))));
  }
  return tree;
}

std::size_t config_tree::chunk_for(std::string_view key) const {
  const auto it = std::lower_bound(chunks_.begin(), chunks_.end(), key,
                                   [](const std::shared_ptr<const chunk>& c, std::string_view k) { return c->back().first < k; });
  return it == chunks_.end() ? chunks_.size() - 1 : static_cast<std::size_t>(it - chunks_.begin());
}

config_tree::const_iterator config_tree::lower_bound(std::string_view key) const {
  if (chunks_.empty()) return end();
  const std::size_t i = chunk_for(key);
  const chunk& c = *chunks_[i];
  const auto pos = static_cast<std::size_t>(std::lower_bound(c.begin(), c.end(), key, key_below) - c.begin());
  if (pos == c.size()) return end();  // only in the last chunk: the key is above all
  return {this, i, pos};
}

config_tree::const_iterator config_tree::find(std::string_view key) const {
  const auto it = lower_bound(key);
  return it != end() && it->first == key ? it : end();
}

const std::string& config_tree::at(std::string_view key) const {
  const auto it = find(key);
  if (it == end()) throw std::out_of_range("config_tree::at: no key " + std::string(key));
  return it->second;
}

std::vector<config_tree::value_type>& config_tree::editor::own(std::size_t i) {
  if (!owned_[i]) {
    tree_.chunks_[i] = std::make_shared<const chunk>(*tree_.chunks_[i]);
    owned_[i] = true;
  }
  // Ours alone: made by this editor, not yet in any published snapshot.
  return const_cast<chunk&>(*tree_.chunks_[i]);
}

void config_tree::editor::set(std::string_view key, const std::string* value) {
  auto& chunks = tree_.chunks_;
  if (chunks.empty()) {
    if (value == nullptr) return;
    chunks.push_back(std::make_shared<const chunk>(chunk{{std::string(key), *value}}));
    owned_.push_back(true);
    tree_.size_ = 1;
    return;
  }
  const std::size_t i = tree_.chunk_for(key);
  const chunk& shared = *chunks[i];
  const auto at = static_cast<std::size_t>(std::lower_bound(shared.begin(), shared.end(), key, key_below) - shared.begin());
  const bool present = at < shared.size() && shared[at].first == key;
  if (value == nullptr) {
    if (!present) return;
    --tree_.size_;
    if (shared.size() == 1) {
      chunks.erase(chunks.begin() + static_cast<std::ptrdiff_t>(i));
      owned_.erase(owned_.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
    auto& c = own(i);
    c.erase(c.begin() + static_cast<std::ptrdiff_t>(at));
    return;
  }
  if (present) {
    if (shared[at].second == *value) return;
    own(i)[at].second = *value;
    return;
  }
  auto& c = own(i);
  c.insert(c.begin() + static_cast<std::ptrdiff_t>(at), value_type{std::string(key), *value});
  ++tree_.size_;
  if (c.size() > 2 * chunk_target) {
    // Split in two halves, both ours.
    auto upper = std::make_shared<const chunk>(
        std::make_move_iterator(c.begin() + static_cast<std::ptrdiff_t>(chunk_target)), std::make_move_iterator(c.end()));
    c.resize(chunk_target);
    chunks.insert(chunks.begin() + static_cast<std::ptrdiff_t>(i) + 1, std::move(upper));
    owned_.insert(owned_.begin() + static_cast<std::ptrdiff_t>(i) + 1, true);
  }
}

}  // namespace lattice::registry
