#include "lattice/registry/config_tree.hpp"

#include <stdexcept>

namespace lattice::registry {

const std::string& config_tree::at(std::string_view key) const {
  const auto* entry = find(key);
  if (entry == nullptr) throw std::out_of_range("config_tree::at: no key " + std::string(key));
  return entry->second;
}

void config_tree::editor::set(std::string_view key, const std::string* value) {
  if (value == nullptr) {
    edit_.erase(key);
    return;
  }
  const auto* now = tree_.find(key);
  if (now != nullptr && now->second == *value) return;  // keep the chunk shared
  edit_.put({std::string(key), *value});
}

}  // namespace lattice::registry
