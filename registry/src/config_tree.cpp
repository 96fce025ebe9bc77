#include "lattice/registry/config_tree.hpp"

#include <stdexcept>

namespace lattice::registry {

const std::string& config_tree::at(std::string_view key) const {
  const auto* entry = find(key);
  if (entry == nullptr) throw std::out_of_range("config_tree::at: no key " + std::string(key));
  return entry->value;
}

void config_tree::editor::set(std::string_view key, const std::string* value, std::uint64_t modified_us,
                              std::uint64_t flags) {
  if (value == nullptr) {
    edit_.erase(key);
    return;
  }
  const auto* now = tree_.find(key);
  if (now != nullptr && now->value == *value && now->modified_us == modified_us && now->flags == flags)
    return;  // keep the chunk shared
  edit_.put({std::string(key), *value, modified_us, flags});
}

}  // namespace lattice::registry
