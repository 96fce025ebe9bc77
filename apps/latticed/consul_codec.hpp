// apps/latticed/consul_codec.hpp: how the Consul API's notions live in
// Lattice instances and how they are written back as Consul shapes them.
// Shared by the Consul endpoints (api_consul*.cpp).
//
// A Consul service named N is the Lattice path "/N"; its instances are the
// path's providers. Consul's Tags, health and TTL check live in reserved
// "consul:" tags of the instance, so they replicate with it and survive a
// restart; Meta entries are the instance's other tags.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "consul_filter.hpp"
#include "http_server.hpp"
#include "json_codec.hpp"
#include "lattice/registry/instance_record.hpp"
#include "lattice/registry/replica.hpp"
#include "url.hpp"

namespace lattice::daemon::consul {

using nlohmann::json;

constexpr const char* kTags = "consul:tags";            // JSON array of Consul tags
// Each check: "consul:check:<CheckID>" (consul_check.hpp). Before several
// checks per service, one TTL check lived in "consul:check-id",
// "consul:check-name", "consul:check-ttl", "consul:deregister-after",
// "consul:health" and "consul:output"; those still read back.
constexpr const char* kHealth = "consul:health";
constexpr const char* kOutput = "consul:output";
constexpr const char* kWarningWeight = "consul:weight-warning";
constexpr const char* kMaintenance = "consul:maintenance";  // the reason, while in maintenance mode

// A failed write's response, as Consul's agent words it: the status for
// the error, and its message.
inline auto consul_write_error(unsigned version) {
  return [version](std::error_code ec) {
    return error_response(static_cast<http::status>(status_of(ec)), ec.message(), version);
  };
}

/// The Lattice path of Consul service `name`: "/" and the name, each byte
/// outside the path-segment alphabet [A-Za-z0-9._:@+-] (and '~' itself)
/// written "~XX" (two upper-case hex digits), so that any name Consul
/// accepts ("app#127.0.0.1#3000" -> "/app~23127.0.0.1~233000") is one
/// segment. Empty for an empty name.
std::string service_path_of(std::string_view name);
/// The Consul name of a service path: the inverse of service_path_of. A
/// '~' not followed by two hex digits stands for itself, so names written
/// before this escaping read back unchanged.
std::string service_name_of(std::string_view path);
std::string base64(std::string_view in);
/// The bytes `in` (standard base64, padded) stands for; nullopt if it is not base64.
std::optional<std::string> unbase64(std::string_view in);
std::string lower(std::string_view s);
/// A JSON field name as Consul matches it: lower case, underscores
/// dropped ("Tls_Skip_Verify" -> "tlsskipverify").
std::string folded(std::string_view name);
/// Consul decodes JSON field names case-insensitively (Go) and takes
/// snake_case aliases, and clients rely on it (python-consul sends
/// "name", "check": {"ttl": ...}, "docker_container_id").
const json* field(const json& obj, std::string_view name);
/// The instance's tag `key`, or `fallback`.
std::string tag(const registry::instance_record& inst, const char* key, std::string fallback = {});
/// Its Consul tags (a JSON array).
json consul_tags(const registry::instance_record& inst);
/// Its Consul Meta: the tags outside the reserved "consul:" prefix.
json consul_meta(const registry::instance_record& inst);
json weights_of(const registry::instance_record& inst);
/// A KV entry's Value: base64, or null for an empty value, as Consul sends.
json kv_value(const std::string& value);
/// A replica as a Consul node: "lattice-<id in hex>".
std::string node_name(registry::replica_id id);
std::string host_of(const std::string& address);
bool has_tag(const registry::instance_record& inst, const std::string& wanted);
/// The worse of two statuses: critical > warning > passing.
const char* worse(const std::string& a, const std::string& b);
/// The replicas whose Consul node check (serfHealth) passes: those the
/// member table judges alive or suspect.
std::set<registry::replica_id> live_nodes(const registry::replica_status& table);
/// Consul's node check of a replica: passing while judged alive or suspect.
json serf_check(registry::replica_id node, bool alive);
/// The service checks of `inst` in service `name`: its maintenance check
/// while in maintenance mode, then its checks in CheckID order.
json service_checks(const registry::instance_record& inst, const std::string& name);
/// The worst of those checks' statuses (passing without any).
std::string service_status(const registry::instance_record& inst);
/// One of this agent's services, as /v1/agent/services shapes it.
json agent_service(const registry::instance_record& inst, const std::string& name, const std::string& datacenter);
/// Each member's host, by replica: read once per answer (the member table
/// is the replica thread's), not once per instance.
using node_addresses = std::map<registry::replica_id, std::string>;
node_addresses addresses_of(const std::vector<registry::member_info>& members);
/// A replica as a Consul catalog node.
json node_json(registry::replica_id node, const node_addresses& addresses, const std::string& datacenter);
/// The request's ?filter, parsed for an endpoint whose answers have
/// `selectors`: null without one, or the 400 to answer.
std::variant<std::shared_ptr<const filter>, response> filter_of(const target& t, const selector_schema& selectors,
                                                               unsigned version);
/// Consul's index headers (an index of at least 1, as Consul's).
response with_index(response res, std::uint64_t index);

}  // namespace lattice::daemon::consul
