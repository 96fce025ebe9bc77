#include "lattice/registry/document.hpp"

namespace lattice::registry {

std::string instance_key(std::string_view path, instance_kind kind, std::string_view id) {
  std::string key;
  key.reserve(path.size() + 2 + id.size());
  key.append(path);
  key.push_back('\0');
  key.push_back(kind == instance_kind::provider ? 'p' : 'c');
  key.append(id);
  return key;
}

std::string_view path_of_key(std::string_view key) noexcept {
  return key.substr(0, key.find('\0'));
}

}  // namespace lattice::registry
