// apps/latticed/consul_check.hpp: a Consul health check as latticed keeps
// it: its definition (TTL, HTTP or TCP), parsed from what clients send to
// agent/service/register (Check, Checks) and agent/check/register, and its
// stored form, one reserved instance tag per check,
//
//   consul:check:<CheckID> = {"CheckID": ..., "Name": ..., "HTTP": ...,
//                             "Interval": "10s", ..., "Status": "passing",
//                             "Output": "HTTP GET ...: 200 OK ..."}
//
// so a check's definition and its last result replicate with the instance
// (every daemon answers /v1/health alike) and survive a restart of the
// daemon that runs it. The stored form is a registration object plus
// Status and Output, read back by the same parser.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "lattice/registry/instance_record.hpp"

namespace lattice::daemon::consul {

enum class check_kind { ttl, http, tcp };

struct check_definition {
  std::string id;  // CheckID, unique on this agent
  std::string name;
  std::string notes;
  std::string service_id;
  check_kind kind = check_kind::ttl;
  std::chrono::milliseconds ttl{0};
  /// HTTP and TCP: how often, and how long one probe may take.
  std::chrono::milliseconds interval{0};
  std::chrono::milliseconds timeout{10'000};
  std::string http;  // URL, http:// or https://
  std::string method = "GET";
  std::map<std::string, std::vector<std::string>> header;
  std::string body;
  bool tls_skip_verify = false;
  std::string tls_server_name;
  std::string tcp;  // host:port
  /// Deregister the service after this long critical (0: never).
  std::chrono::milliseconds deregister_after{0};
  /// Consecutive results needed before the status flips (0 or 1: at once).
  unsigned success_before_passing = 0;
  unsigned failures_before_critical = 0;
  /// The status a new check starts in: Status if given, else critical.
  std::string status = "critical";
  /// Stored form only: the last output.
  std::string output;
};

/// Consul's floor for HTTP and TCP intervals: shorter ones run at this.
inline constexpr std::chrono::milliseconds min_check_interval{1000};
/// Consul's default check_output_max_size: outputs are cut to this.
inline constexpr std::size_t max_check_output = 4096;
/// Tag keys are at most 128 bytes (instance.hpp), less the prefix.
inline constexpr std::size_t max_check_id = 128 - 13;

constexpr std::string_view kCheckTagPrefix = "consul:check:";

/// What a client wrote, as a definition, or the 400 message saying why it
/// is refused. `service_id`/`service_name` are the service it belongs to
/// (for agent/check/register, from its ServiceID); `default_id` is used
/// when the object names no CheckID/ID. Script, Docker, gRPC, H2PING, UDP,
/// OS-service and alias checks are refused by name.
std::variant<check_definition, std::string> parse_check(const nlohmann::json& check, const std::string& service_id,
                                                        const std::string& service_name,
                                                        const std::string& default_id);

/// The tag that stores `c` with `status` and `output` (cut to
/// max_check_output bytes, control bytes replaced).
std::pair<std::string, std::string> check_tag(const check_definition& c, const std::string& status,
                                              std::string_view output);

/// The checks stored in an instance's tags, in CheckID order; a TTL check
/// written by a latticed before several checks per service (single
/// "consul:check-id" tags) reads as one. Tags that fail to parse are left
/// out.
std::vector<check_definition> stored_checks(const registry::instance_record& inst);

/// Consul's Definition object of a check (what /v1/health answers show).
nlohmann::json definition_json(const check_definition& c);
/// "ttl", "http" or "tcp", as Consul's Type.
const char* type_name(check_kind kind);

}  // namespace lattice::daemon::consul
