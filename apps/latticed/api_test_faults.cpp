// Fault injection for process-level tests: /v1/lattice/test/partition.
//
// Served only when latticed runs with --test-faults; otherwise a 403 that
// says so, and nothing changes. It lets a test cut daemons apart without
// root (no iptables, no network namespaces): each side drops its gossip to
// the other (registry::replica::set_send_filter).
//
//   PUT    {"drop": ["127.0.0.1:7001", ...]}  gossip to these addresses is dropped
//   GET                                       the addresses dropped now
//   DELETE                                    heal: gossip to everyone again
//
// Writes need the write token like every other write.
#include <memory>
#include <set>
#include <string>

#include "api.hpp"

namespace lattice::daemon {

using nlohmann::json;

reply api::test_faults(request& req, const target& t) {
  (void)t;
  const unsigned v = req.version();
  if (!options_.test_faults)
    return error_response(http::status::forbidden,
                          "fault injection is off: it exists only when latticed is started with --test-faults", v);
  if (req.method() == http::verb::get) return json_response(json{{"drop", dropped_}}, v);
  if (req.method() == http::verb::delete_) {
    replica_.set_send_filter(nullptr);
    dropped_.clear();
    return json_response(json{{"drop", dropped_}}, v);
  }
  if (req.method() != http::verb::put)
    return error_response(http::status::method_not_allowed, "use GET, PUT or DELETE", v);
  const auto body = json::parse(req.body(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object())
    return error_response(http::status::bad_request, "expected a JSON object {\"drop\": [\"host:port\", ...]}", v);
  for (const auto& [key, value] : body.items())
    if (key != "drop") return error_response(http::status::bad_request, "unknown field \"" + key + "\"", v);
  const auto drop = body.find("drop");
  if (drop == body.end() || !drop->is_array())
    return error_response(http::status::bad_request, "\"drop\" must be an array of \"host:port\" strings", v);
  std::set<std::string> addresses;
  for (const auto& a : *drop) {
    if (!a.is_string() || a.get<std::string>().empty())
      return error_response(http::status::bad_request, "\"drop\" must be an array of \"host:port\" strings", v);
    addresses.insert(a.get<std::string>());
  }
  dropped_ = addresses;
  auto shared = std::make_shared<const std::set<std::string>>(std::move(addresses));
  replica_.set_send_filter([shared](const std::string& peer) { return !shared->contains(peer); });
  return json_response(json{{"drop", dropped_}}, v);
}

}  // namespace lattice::daemon
