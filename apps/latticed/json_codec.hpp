// apps/latticed/json_codec.hpp: registry values as the native API's JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "lattice/registry/replica.hpp"

namespace lattice::daemon {

/// {"id", "address", "port", "protocol", "serialization", "weight", "zone",
///  "role", "tags", "ephemeral", "kind", "owner", "owner_incarnation",
///  "epoch_us"}
nlohmann::json to_json(const registry::instance_record& inst);
nlohmann::json to_json(const registry::instance& inst);
/// The same, with "checks" (checks_json) and "in_flight" and "served" from
/// the load counters, and "load_age_ms" once another replica's counts came.
nlohmann::json to_json(const registry::instance_view& view);
/// How old the newest load figure from another replica is, in ms
/// (instance_view::remote_load_heard); nullopt if none has come.
std::optional<std::int64_t> load_age_ms(const registry::instance_view& view);
/// The Consul checks stored in an instance's tags: [{id, name, type,
/// status, output}], empty when it has none.
nlohmann::json checks_json(const registry::instance_record& inst);
/// {"path", "version", "providers": [...], "consumers": [...]}
nlohmann::json to_json(const registry::service_view& view);

/// The provider's fields of an instance, and its kind. Every field is
/// optional but "address"; an unknown field or a value of the wrong type
/// is an error whose message names it.
struct parsed_instance {
  registry::instance inst;
  registry::instance_kind kind = registry::instance_kind::provider;
};
std::optional<parsed_instance> instance_from_json(const nlohmann::json& body, std::string& error);

/// Whether `text` is valid UTF-8 (what a JSON string can carry unchanged).
bool is_utf8(const std::string& text);

/// The HTTP status for a registry error, and its message.
unsigned status_of(std::error_code ec);

}  // namespace lattice::daemon
