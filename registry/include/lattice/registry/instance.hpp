// lattice/registry/instance.hpp: one registered instance of a service.
//
// A provider fills in the first group of fields and registers the instance
// under a service path; the replica fills in the second group. The id is
// stable and chosen by the provider (default "address:port"): registering
// the same id again is idempotent and updates the record, which is what
// ZooKeeper users got from "protected" nodes.
//
//   lattice::registry::instance hello;
//   hello.address = "10.0.0.7";
//   hello.port = 20880;
//   hello.protocol = "dubbo";
//   hello.serialization = "hessian2";
//   hello.tags = {{"region", "eu"}};
//   replica.register_instance(path, hello);   // id defaults to 10.0.0.7:20880
//
// Ephemeral instances (the default) live as long as the replica that
// registered them: when that replica is judged dead they vanish from every
// replica's lookups, and after a reap delay they are tombstoned. Persistent
// instances stay until deregistered.
//
// This is the value type providers fill in (and register_instance
// returns). What replicas keep, and lookups, watches and balancers read, is
// its compact immutable form, instance_record (instance_record.hpp):
// the same fields, read through calls.
//
// Thread safety: a value type.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

#include <boost/container/flat_map.hpp>
#include <cereal/types/string.hpp>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/hlc.hpp"
#include "lattice/registry/error.hpp"

namespace lattice::registry {

using crdt::hlc_timestamp;
using crdt::replica_id;

/// Limits checked by validate(); generous, and documented so nobody meets
/// a cliff by surprise.
inline constexpr std::size_t max_id_length = 256;
inline constexpr std::size_t max_address_length = 255;
inline constexpr std::size_t max_field_length = 64;  // protocol, serialization, zone
inline constexpr std::size_t max_tags = 128;
inline constexpr std::size_t max_tag_key_length = 128;
inline constexpr std::size_t max_tag_value_length = 8192;
inline constexpr std::uint32_t max_weight = 1'000'000;

enum class instance_role : std::uint8_t {
  /// Preferred by the primary-first balancer.
  primary = 0,
  /// Used by the primary-first balancer only when no primary is listed.
  secondary = 1,
};

/// Providers serve a path; consumers register under it so that providers
/// can count them (Dubbo's `/consumers`).
enum class instance_kind : std::uint8_t { provider = 0, consumer = 1 };

using tag_map = boost::container::flat_map<std::string, std::string>;

struct instance {
  // ---- set by the provider -------------------------------------------
  /// Stable id, unique under its path. Empty: "address:port".
  std::string id;
  /// Host name or IP address consumers connect to. Required.
  std::string address;
  std::uint16_t port = 0;
  /// "http", "grpc", "dubbo"...: free text for consumers to filter on.
  std::string protocol;
  /// "json", "protobuf", "hessian2"...: free text.
  std::string serialization;
  /// Relative share for weighted balancing; 0 drains the instance (no
  /// weighted or round-robin pick chooses it). At most max_weight.
  std::uint32_t weight = 100;
  /// Failure domain ("eu-west-1a"); free text.
  std::string zone;
  instance_role role = instance_role::primary;
  /// Free-form metadata, at most max_tags entries.
  tag_map tags;
  /// Bound to the registering replica's liveness (true), or kept until
  /// deregistered (false).
  bool ephemeral = true;

  // ---- set by the replica on registration; ignored on input ------------
  instance_kind kind = instance_kind::provider;
  /// The replica that registered it, and that replica's incarnation then.
  replica_id owner = 0;
  std::uint64_t owner_incarnation = 0;
  /// When this registration began: its load counters are scoped to it, so
  /// an instance registered anew starts from zero.
  hlc_timestamp epoch;

  friend bool operator==(const instance&, const instance&) = default;
  /// A total order (LWW ties between equal stamps need one).
  friend bool operator<(const instance& a, const instance& b);

  template <class Archive>
  void save(Archive& archive) const {
    archive(id, address, port, protocol, serialization, weight, zone, role, ephemeral, kind,
            owner, owner_incarnation, epoch);
    crdt::save_ordered_map(archive, tags);
  }
  template <class Archive>
  void load(Archive& archive) {
    archive(id, address, port, protocol, serialization, weight, zone, role, ephemeral, kind,
            owner, owner_incarnation, epoch);
    crdt::load_ordered_map(archive, tags);
    if (static_cast<unsigned>(role) > 1 || static_cast<unsigned>(kind) > 1) crdt::throw_malformed();
  }
};

/// Checks the provider's fields against the limits above and fills in a
/// default id. Errors: errc::invalid_id, invalid_address, invalid_field,
/// invalid_tag, invalid_weight.
result<void> validate(instance& inst);

}  // namespace lattice::registry
