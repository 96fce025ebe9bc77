// lattice/registry/instance_record.hpp: an instance as the registry keeps
// it, immutable and compact; what lookups, watches and balancers read.
//
//   for (const auto& p : replica.lookup("/api/user/1.0.0").providers())
//     connect(p->address(), p->port());          // p->: instance_record
//
// `instance` (instance.hpp) is what a provider fills in; an
// instance_record is what every replica holds for it, once per instance
// and shared by the document, the snapshots and the watch notifications.
// A registry holds every instance of the cluster, so the record is packed:
// a 64-byte header and the five strings back to back in the same
// allocation (no std::string, no control block). Tags, which most
// instances lack, cost a pointer until there are some. At 100k instances
// this was the largest part of what took the registry from 723 to 376
// heap bytes per instance (docs/adr/0005).
//
// Fields read like instance's, as calls: r.id(), r.port(), r.tags().
// to_instance() copies it back into the value type.
//
// Thread safety: immutable; record_ptr copies are atomic reference counts,
// so records may be shared and read from any thread.
#pragma once

#include <atomic>
#include <compare>
#include <cstdint>
#include <string_view>

#include <boost/smart_ptr/intrusive_ptr.hpp>

#include "lattice/registry/instance.hpp"

namespace lattice::registry {

class record_ptr;

class instance_record {
 public:
  /// A record of `fields` as they are (kind, owner and epoch included).
  /// The strings must be within instance.hpp's limits, which validate()
  /// and decoding check; longer ones are a programming error (asserted,
  /// and cut to the limit).
  static record_ptr make(const instance& fields);

  instance_record(const instance_record&) = delete;
  instance_record& operator=(const instance_record&) = delete;

  // ---- what the provider set (see instance.hpp for each) ----------------
  std::string_view id() const noexcept { return {chars(), id_length_}; }
  std::string_view address() const noexcept { return {chars() + id_length_, address_length_}; }
  std::uint16_t port() const noexcept { return port_; }
  std::string_view protocol() const noexcept {
    return {chars() + id_length_ + address_length_, protocol_length_};
  }
  std::string_view serialization() const noexcept {
    return {chars() + id_length_ + address_length_ + protocol_length_, serialization_length_};
  }
  std::uint32_t weight() const noexcept { return weight_; }
  std::string_view zone() const noexcept {
    return {chars() + id_length_ + address_length_ + protocol_length_ + serialization_length_, zone_length_};
  }
  instance_role role() const noexcept { return role_; }
  /// Empty for most instances.
  const tag_map& tags() const noexcept;
  bool ephemeral() const noexcept { return ephemeral_; }

  // ---- what the registering replica set --------------------------------
  instance_kind kind() const noexcept { return kind_; }
  replica_id owner() const noexcept { return owner_; }
  std::uint64_t owner_incarnation() const noexcept { return owner_incarnation_; }
  hlc_timestamp epoch() const noexcept { return {epoch_physical_us_, epoch_logical_, epoch_replica_}; }

  /// A copy as the value type (to edit and register again, or to keep).
  instance to_instance() const;
  /// Equal in everything the provider sets (a re-registration of these
  /// fields changes nothing).
  bool same_provider_fields(const instance& fields) const;

  /// Equal in every field.
  friend bool operator==(const instance_record& a, const instance_record& b) noexcept;
  /// A total order over every field, as instance's (LWW ties need one).
  friend std::strong_ordering operator<=>(const instance_record& a, const instance_record& b) noexcept;

 private:
  instance_record() = default;
  ~instance_record();

  const char* chars() const noexcept { return reinterpret_cast<const char*>(this + 1); }
  char* chars() noexcept { return reinterpret_cast<char*>(this + 1); }

  friend void intrusive_ptr_add_ref(const instance_record* r) noexcept {
    r->references_.fetch_add(1, std::memory_order_relaxed);
  }
  friend void intrusive_ptr_release(const instance_record* r) noexcept {
    if (r->references_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy(r);
  }
  static void destroy(const instance_record* r) noexcept;

  // Laid out by hand to pack into 64 bytes; the strings follow.
  mutable std::atomic<std::uint32_t> references_{0};
  std::uint32_t weight_ = 0;
  replica_id owner_ = 0;
  std::uint64_t owner_incarnation_ = 0;
  std::uint64_t epoch_physical_us_ = 0;
  replica_id epoch_replica_ = 0;
  std::uint32_t epoch_logical_ = 0;
  std::uint16_t port_ = 0;
  std::uint16_t id_length_ = 0;
  const tag_map* tags_ = nullptr;  // owned; null when there are none
  std::uint8_t address_length_ = 0;
  std::uint8_t protocol_length_ = 0;
  std::uint8_t serialization_length_ = 0;
  std::uint8_t zone_length_ = 0;
  instance_role role_ = instance_role::primary;
  instance_kind kind_ = instance_kind::provider;
  bool ephemeral_ = true;
};

static_assert(max_id_length <= UINT16_MAX && max_address_length <= UINT8_MAX && max_field_length <= UINT8_MAX,
              "instance_record's length fields must hold instance.hpp's limits");

/// A shared, immutable record: compared and encoded by value (the
/// document orders records by value), copied by reference count.
class record_ptr {
 public:
  record_ptr() = default;

  const instance_record& operator*() const noexcept { return *ptr_; }
  const instance_record* operator->() const noexcept { return ptr_.get(); }
  const instance_record* get() const noexcept { return ptr_.get(); }
  explicit operator bool() const noexcept { return ptr_ != nullptr; }

  /// The same record or equal ones.
  friend bool operator==(const record_ptr& a, const record_ptr& b) noexcept {
    return a.ptr_ == b.ptr_ || (a.ptr_ && b.ptr_ && *a.ptr_ == *b.ptr_);
  }
  /// By value; null first.
  friend bool operator<(const record_ptr& a, const record_ptr& b) noexcept {
    if (!a.ptr_ || !b.ptr_) return !a.ptr_ && b.ptr_;
    return (*a.ptr_ <=> *b.ptr_) < 0;
  }

  /// The wire form is instance's (instance.hpp), so a record decodes to
  /// the same bytes it was encoded from. Decoding rejects strings beyond
  /// instance.hpp's limits as malformed.
  template <class Archive>
  void save(Archive& archive) const {
    const instance_record& r = *ptr_;
    text(archive, r.id());
    text(archive, r.address());
    archive(r.port());
    text(archive, r.protocol());
    text(archive, r.serialization());
    archive(r.weight());
    text(archive, r.zone());
    archive(r.role(), r.ephemeral(), r.kind(), r.owner(), r.owner_incarnation(), r.epoch());
    crdt::save_ordered_map(archive, r.tags());
  }
  template <class Archive>
  void load(Archive& archive) {
    instance fields;
    fields.load(archive);
    check_decoded(fields);
    *this = instance_record::make(fields);
  }

 private:
  friend class instance_record;
  explicit record_ptr(instance_record* fresh) noexcept : ptr_(fresh) {}
  static void check_decoded(const instance& fields);
  // As cereal writes a std::string, without making one.
  template <class Archive>
  static void text(Archive& archive, std::string_view s) {
    archive(cereal::make_size_tag(static_cast<cereal::size_type>(s.size())),
            cereal::binary_data(s.data(), s.size()));
  }

  boost::intrusive_ptr<const instance_record> ptr_;
};

}  // namespace lattice::registry
