#include "lattice/registry/instance_record.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <memory>
#include <new>
#include <tuple>

namespace lattice::registry {
namespace {

static_assert(sizeof(instance_record) == 64, "the header is packed by hand; keep it at 64 bytes");

template <class Length>
Length length_within(const std::string& s, std::size_t limit) {
  assert(s.size() <= limit);
  return static_cast<Length>(std::min(s.size(), limit));
}

// Every field in instance's order (instance.cpp), in three parts around
// the tags (which have == and < but no <=>).
auto head(const instance_record& r) {
  return std::tuple{r.id(), r.address(), r.port(), r.protocol(), r.serialization(), r.weight(), r.zone(), r.role()};
}
auto tail(const instance_record& r) {
  return std::tuple{r.ephemeral(), r.kind(), r.owner(), r.owner_incarnation(), r.epoch()};
}

}  // namespace

record_ptr instance_record::make(const instance& fields) {
  const auto id_length = length_within<std::uint16_t>(fields.id, max_id_length);
  const auto address_length = length_within<std::uint8_t>(fields.address, max_address_length);
  const auto protocol_length = length_within<std::uint8_t>(fields.protocol, max_field_length);
  const auto serialization_length = length_within<std::uint8_t>(fields.serialization, max_field_length);
  const auto zone_length = length_within<std::uint8_t>(fields.zone, max_field_length);
  const std::size_t text = std::size_t{id_length} + address_length + protocol_length + serialization_length +
                           zone_length;

  std::unique_ptr<const tag_map> tags;
  if (!fields.tags.empty()) tags = std::make_unique<const tag_map>(fields.tags);
  void* memory = ::operator new(sizeof(instance_record) + text);
  auto* r = new (memory) instance_record;
  r->weight_ = fields.weight;
  r->owner_ = fields.owner;
  r->owner_incarnation_ = fields.owner_incarnation;
  r->epoch_physical_us_ = fields.epoch.physical_us;
  r->epoch_replica_ = fields.epoch.replica;
  r->epoch_logical_ = fields.epoch.logical;
  r->port_ = fields.port;
  r->id_length_ = id_length;
  r->tags_ = tags.release();
  r->address_length_ = address_length;
  r->protocol_length_ = protocol_length;
  r->serialization_length_ = serialization_length;
  r->zone_length_ = zone_length;
  r->role_ = fields.role;
  r->kind_ = fields.kind;
  r->ephemeral_ = fields.ephemeral;
  char* out = r->chars();
  for (const auto& [s, n] : {std::pair{&fields.id, std::size_t{id_length}}, {&fields.address, address_length},
                             {&fields.protocol, protocol_length}, {&fields.serialization, serialization_length},
                             {&fields.zone, zone_length}}) {
    std::memcpy(out, s->data(), n);
    out += n;
  }
  return record_ptr(r);
}

instance_record::~instance_record() { delete tags_; }

void instance_record::destroy(const instance_record* r) noexcept {
  r->~instance_record();
  ::operator delete(const_cast<instance_record*>(r));
}

const tag_map& instance_record::tags() const noexcept {
  static const tag_map none;
  return tags_ ? *tags_ : none;
}

instance instance_record::to_instance() const {
  instance out;
  out.id = id();
  out.address = address();
  out.port = port_;
  out.protocol = protocol();
  out.serialization = serialization();
  out.weight = weight_;
  out.zone = zone();
  out.role = role_;
  out.tags = tags();
  out.ephemeral = ephemeral_;
  out.kind = kind_;
  out.owner = owner_;
  out.owner_incarnation = owner_incarnation_;
  out.epoch = epoch();
  return out;
}

bool instance_record::same_provider_fields(const instance& f) const {
  return std::tie(f.id, f.address, f.port, f.protocol, f.serialization, f.weight, f.zone, f.role, f.tags,
                  f.ephemeral) == std::tuple{id(), address(), port_, protocol(), serialization(), weight_,
                                             zone(), role_, tags(), ephemeral_};
}

bool operator==(const instance_record& a, const instance_record& b) noexcept {
  return &a == &b || (head(a) == head(b) && tail(a) == tail(b) && a.tags() == b.tags());
}

std::strong_ordering operator<=>(const instance_record& a, const instance_record& b) noexcept {
  if (&a == &b) return std::strong_ordering::equal;
  if (const auto order = head(a) <=> head(b); order != 0) return order;
  if (a.tags() != b.tags()) return a.tags() < b.tags() ? std::strong_ordering::less : std::strong_ordering::greater;
  return tail(a) <=> tail(b);
}

void record_ptr::check_decoded(const instance& f) {
  if (f.id.size() > max_id_length || f.address.size() > max_address_length ||
      f.protocol.size() > max_field_length || f.serialization.size() > max_field_length ||
      f.zone.size() > max_field_length || f.tags.size() > max_tags)
    crdt::throw_malformed();
}

}  // namespace lattice::registry
