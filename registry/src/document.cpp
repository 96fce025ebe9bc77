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

instance_key_parts split_instance_key(std::string_view key) noexcept {
  const std::string_view path = path_of_key(key);
  if (key.size() < path.size() + 2) return {path, instance_kind::provider, {}};
  return {path, key[path.size() + 1] == 'c' ? instance_kind::consumer : instance_kind::provider,
          key.substr(path.size() + 2)};
}

bool registry_document::instance_keys_match() const {
  bool match = true;
  instances.for_each([&](const std::string& key, const record_ptr& record, const hlc_timestamp&) {
    if (!match) return;
    const auto parts = split_instance_key(key);
    // Rebuilding the key from the record's fields catches a missing
    // separator or kind letter as well as a different kind or id.
    const auto path = service_path::parse(parts.path);
    match = path && path.value().str() == parts.path && !path.value().is_root() &&
            instance_key(parts.path, record->kind(), record->id()) == key;
  });
  return match;
}

}  // namespace lattice::registry
