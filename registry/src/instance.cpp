#include "lattice/registry/instance.hpp"

#include <algorithm>

namespace lattice::registry {
namespace {

bool printable(const std::string& s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

bool field_ok(const std::string& s, std::size_t limit) { return s.size() <= limit && printable(s); }

auto tie(const instance& i) {
  return std::tie(i.id, i.address, i.port, i.protocol, i.serialization, i.weight, i.zone, i.role,
                  i.tags, i.ephemeral, i.kind, i.owner, i.owner_incarnation, i.epoch);
}

}  // namespace

bool operator<(const instance& a, const instance& b) { return tie(a) < tie(b); }

result<void> validate(instance& inst) {
  if (inst.address.empty() || !field_ok(inst.address, max_address_length)) return errc::invalid_address;
  if (inst.id.empty()) inst.id = inst.address + ":" + std::to_string(inst.port);
  if (!field_ok(inst.id, max_id_length)) return errc::invalid_id;
  if (!field_ok(inst.protocol, max_field_length) || !field_ok(inst.serialization, max_field_length) ||
      !field_ok(inst.zone, max_field_length))
    return errc::invalid_field;
  if (inst.weight > max_weight) return errc::invalid_weight;
  if (inst.tags.size() > max_tags) return errc::invalid_tag;
  for (const auto& [key, value] : inst.tags)
    if (key.empty() || !field_ok(key, max_tag_key_length) || !field_ok(value, max_tag_value_length))
      return errc::invalid_tag;
  return success();
}

}  // namespace lattice::registry
