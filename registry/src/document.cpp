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

registry_document registry_document::erase_config_prefix(std::string prefix, hlc_timestamp stamp) {
  registry_document delta;
  delta.config_erasures.erase(std::move(prefix), stamp);
  return delta;
}

const hlc_timestamp* registry_document::erasure_covering(std::string_view key) const {
  // Erasures are few (recursive deletes, until collected): a walk over them
  // is cheaper than an index kept up to date on every merge.
  const hlc_timestamp* latest = nullptr;
  config_erasures.for_each_entry([&](const std::string& prefix, const auto& entry) {
    if (key.starts_with(prefix) && (latest == nullptr || *latest < entry.stamp)) latest = &entry.stamp;
  });
  return latest;
}

bool registry_document::merge(const registry_document& other, registry_document* removed) {
  return join(other, removed, [](auto& ours, const auto& theirs, auto* gone) { return ours.merge(theirs, gone); });
}

bool registry_document::merge_ranges(const registry_document& part, unsigned bits,
                                     std::span<const std::uint32_t> indices, registry_document* removed) {
  return join(part, removed, [&](auto& ours, const auto& theirs, auto* gone) {
    return ours.merge_ranges(theirs, bits, indices, gone);
  });
}

template <class JoinMap>
bool registry_document::join(const registry_document& other, registry_document* removed, JoinMap&& join_map) {
  bool changed = join_map(instances, other.instances, removed ? &removed->instances : nullptr);
  changed |= join_map(load, other.load, removed ? &removed->load : nullptr);
  // Erasures first: our entries they cover go, and incoming entries they
  // cover are never absorbed (absorbing then dropping one would report a
  // change that is none, and a rumour would be forwarded forever).
  const bool erased = join_map(config_erasures, other.config_erasures, removed ? &removed->config_erasures : nullptr);
  changed |= erased;
  config_map* config_removed = removed ? &removed->config : nullptr;
  if (config_erasures.empty()) return join_map(config, other.config, config_removed) || changed;
  const auto covered = [&](const std::string& key, const auto& entry) {
    const hlc_timestamp* erasure = erasure_covering(key);
    return erasure != nullptr && entry.stamp < *erasure;
  };
  if (erased) changed |= config.drop_if(covered, config_removed) != 0;
  bool any_covered = false;
  other.config.for_each_entry([&](const std::string& key, const auto& entry) {
    any_covered = any_covered || covered(key, entry);
  });
  if (!any_covered) return join_map(config, other.config, config_removed) || changed;
  config_map uncovered = other.config;
  uncovered.drop_if(covered);
  return join_map(config, uncovered, config_removed) || changed;
}

bool registry_document::normal() const {
  bool ok = true;
  config_erasures.for_each_entry([&](const std::string&, const auto& entry) { ok = ok && !entry.live(); });
  if (!ok || config_erasures.empty()) return ok;
  config.for_each_entry([&](const std::string& key, const auto& entry) {
    const hlc_timestamp* erasure = ok ? erasure_covering(key) : nullptr;
    ok = ok && (erasure == nullptr || !(entry.stamp < *erasure));
  });
  return ok;
}

}  // namespace lattice::registry
