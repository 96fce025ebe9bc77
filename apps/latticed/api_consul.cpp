// The Consul-compatible API (README, "latticed: the Consul-compatible
// API"): what service registries and Consul's client libraries use. This
// file routes each request; the endpoints live by subject in
// api_consul_agent.cpp, api_consul_catalog.cpp, api_consul_health.cpp,
// api_consul_checks.cpp, api_consul_kv.cpp, api_consul_events.cpp and
// api_sessions.cpp.
//
// Parameters that would change an answer are never ignored: another
// datacenter is answered as Consul does when it has no path to one, and
// what latticed does not implement is refused by name. (?stale and
// ?consistent are accepted: every read here is a local read.)
#include <optional>
#include <span>
#include <string_view>

#include "api.hpp"
#include "consul_codec.hpp"

namespace lattice::daemon {

using nlohmann::json;
using consul::check_selectors;
using consul::filter;
using consul::filter_of;

namespace {

bool matches(std::string_view pattern, std::string_view path) {
  return pattern.ends_with('/') ? path.starts_with(pattern) : path == pattern;
}

}  // namespace

// One endpoint: `path` is the whole path, or a prefix when it ends in
// '/' (the handler then gets the rest as `tail`).
struct api::consul_route {
  http::verb method;
  std::string_view path;
  reply (*handle)(api& self, request& req, const target& t, const std::string& tail);
  // Takes ?filter (consul_filter.hpp); elsewhere it is refused by name.
  bool filterable = false;
};

std::span<const api::consul_route> api::consul_routes() {
  using http::verb;
  using self = api;
  constexpr auto pass = [](self& a, request& r, const target& q, const std::string& id) {
    return a.consul_check_update(id, "passing", q.get("note").value_or(""), r.version());
  };
  constexpr auto warn = [](self& a, request& r, const target& q, const std::string& id) {
    return a.consul_check_update(id, "warning", q.get("note").value_or(""), r.version());
  };
  constexpr auto fail = [](self& a, request& r, const target& q, const std::string& id) {
    return a.consul_check_update(id, "critical", q.get("note").value_or(""), r.version());
  };
  // Older Consul clients deregister and update checks by GET (Consul
  // before 1.0 took it); those routes answer both.
  static const consul_route routes[] = {
      {verb::put, "/v1/agent/service/register",
       [](self& a, request& r, const target& q, const std::string&) { return a.consul_register(r, q); }},
      {verb::put, "/v1/agent/service/deregister/",
       [](self& a, request&, const target&, const std::string& id) { return a.consul_deregister(id); }},
      {verb::get, "/v1/agent/service/deregister/",
       [](self& a, request&, const target&, const std::string& id) { return a.consul_deregister(id); }},
      {verb::put, "/v1/agent/service/maintenance/",
       [](self& a, request& r, const target& q, const std::string& id) {
         return a.consul_maintenance(id, q, r.version());
       }},
      {verb::get, "/v1/agent/service/",
       [](self& a, request& r, const target& q, const std::string& id) { return a.consul_agent_service(r, q, id); }},
      {verb::get, "/v1/agent/services",
       [](self& a, request& r, const target& q, const std::string&) { return a.consul_agent_services(r, q); }, true},
      {verb::get, "/v1/agent/self",
       [](self& a, request& r, const target&, const std::string&) { return a.consul_agent_self(r); }},
      {verb::get, "/v1/agent/members",
       [](self& a, request& r, const target& q, const std::string&) { return a.consul_members(r, q); }},
      {verb::get, "/v1/agent/health/service/id/",
       [](self& a, request& r, const target& q, const std::string& id) {
         return a.consul_agent_health(r, q, id, true);
       }},
      {verb::get, "/v1/agent/health/service/name/",
       [](self& a, request& r, const target& q, const std::string& name) {
         return a.consul_agent_health(r, q, name, false);
       }},
      {verb::put, "/v1/agent/check/register",
       [](self& a, request& r, const target&, const std::string&) { return a.consul_check_register(r); }},
      {verb::put, "/v1/agent/check/deregister/",
       [](self& a, request& r, const target&, const std::string& id) {
         return a.consul_check_deregister(id, r.version());
       }},
      {verb::get, "/v1/agent/check/deregister/",
       [](self& a, request& r, const target&, const std::string& id) {
         return a.consul_check_deregister(id, r.version());
       }},
      {verb::put, "/v1/agent/check/update/",
       [](self& a, request& r, const target&, const std::string& id) { return a.consul_check_update_body(r, id); }},
      {verb::put, "/v1/agent/check/pass/", pass}, {verb::get, "/v1/agent/check/pass/", pass},
      {verb::put, "/v1/agent/check/warn/", warn}, {verb::get, "/v1/agent/check/warn/", warn},
      {verb::put, "/v1/agent/check/fail/", fail}, {verb::get, "/v1/agent/check/fail/", fail},
      {verb::get, "/v1/agent/checks",
       [](self& a, request& r, const target& q, const std::string&) {
         auto parsed = filter_of(q, check_selectors, r.version());
         if (auto* refused = std::get_if<response>(&parsed)) return reply(std::move(*refused));
         json checks = a.agent_checks();
         if (const auto& keep = std::get<std::shared_ptr<const filter>>(parsed)) keep->apply(checks);
         return reply(json_response(checks, r.version()));
       }, true},
      {verb::get, "/v1/catalog/datacenters",
       [](self& a, request& r, const target&, const std::string&) {
         return reply(json_response(json::array({a.options_.datacenter}), r.version()));
       }},
      {verb::get, "/v1/catalog/nodes",
       [](self& a, request& r, const target& q, const std::string&) { return a.consul_members(r, q); }, true},
      {verb::get, "/v1/catalog/node/",
       [](self& a, request& r, const target& q, const std::string& node) { return a.consul_node(r, q, node, false); }, true},
      {verb::get, "/v1/catalog/services",
       [](self& a, request& r, const target& q, const std::string&) { return a.consul_catalog_services(r, q); }},
      {verb::get, "/v1/catalog/service/",
       [](self& a, request& r, const target& q, const std::string& name) {
         return a.consul_service_instances(r, q, name, false);
       }, true},
      {verb::get, "/v1/health/service/",
       [](self& a, request& r, const target& q, const std::string& name) {
         return a.consul_service_instances(r, q, name, true);
       }, true},
      {verb::get, "/v1/health/checks/",
       [](self& a, request& r, const target& q, const std::string& name) {
         return a.consul_health_checks(r, q, name);
       }, true},
      {verb::get, "/v1/health/node/",
       [](self& a, request& r, const target& q, const std::string& node) { return a.consul_node(r, q, node, true); }, true},
      {verb::get, "/v1/health/state/",
       [](self& a, request& r, const target& q, const std::string& state) {
         return a.consul_health_state(r, q, state);
       }, true},
      // "/v1/kv/?recurse" asks for the whole tree; "/v1/kv" is the same key.
      {verb::get, "/v1/kv",
       [](self& a, request& r, const target& q, const std::string& key) { return a.consul_kv_get(r, q, key); }},
      {verb::get, "/v1/kv/",
       [](self& a, request& r, const target& q, const std::string& key) { return a.consul_kv_get(r, q, key); }},
      {verb::put, "/v1/kv/",
       [](self& a, request& r, const target& q, const std::string& key) { return a.consul_kv_put(r, q, key); }},
      {verb::delete_, "/v1/kv",
       [](self& a, request& r, const target& q, const std::string& key) { return a.consul_kv_delete(r, q, key); }},
      {verb::delete_, "/v1/kv/",
       [](self& a, request& r, const target& q, const std::string& key) { return a.consul_kv_delete(r, q, key); }},
      {verb::put, "/v1/event/fire/",
       [](self& a, request& r, const target& q, const std::string& name) { return a.consul_event_fire(r, q, name); }},
      {verb::get, "/v1/event/list",
       [](self& a, request& r, const target& q, const std::string&) { return a.consul_event_list(r, q); }},
      {verb::get, "/v1/status/leader",
       [](self& a, request& r, const target&, const std::string&) {
         return reply(json_response(a.replica_.address(), r.version()));  // no leader: this replica answers
       }},
      {verb::get, "/v1/status/peers",
       [](self& a, request& r, const target& q, const std::string&) { return a.consul_members(r, q); }},
  };
  return routes;
}

std::optional<std::string_view> api::consul_route_of(std::string_view path) {
  for (const auto& r : consul_routes())
    if (matches(r.path, path)) return r.path;
  return std::nullopt;
}

reply api::consul(request& req, const target& t) {
  const unsigned v = req.version();
  if (const auto dc = t.get("dc"); dc && !dc->empty() && *dc != options_.datacenter)
    return error_response(http::status::internal_server_error, "No path to datacenter", v);
  for (const char* unsupported : {"node-meta", "near", "ns", "partition", "peer", "sampling-factor"})
    if (t.has(unsupported))
      return error_response(http::status::bad_request,
                            std::string("?") + unsupported + " is not supported by latticed (the README lists the "
                            "Consul API it speaks)", v);

  // The first route whose path matches decides the endpoint; a method it
  // does not list is 405, never another endpoint's prefix.
  const consul_route* endpoint = nullptr;
  for (const auto& r : consul_routes()) {
    if (endpoint != nullptr && r.path != endpoint->path) continue;
    if (endpoint == nullptr && !matches(r.path, t.path)) continue;
    if (endpoint == nullptr) endpoint = &r;
    if (r.method == req.method()) {
      if (t.has("filter") && !r.filterable)
        return error_response(http::status::bad_request, "?filter is not supported on " + std::string(r.path) +
                                                              " (the README lists the endpoints that take it)", v);
      const std::string tail = r.path.ends_with('/') ? t.path.substr(r.path.size()) : std::string();
      return r.handle(*this, req, t, tail);
    }
  }
  if (endpoint != nullptr)
    return error_response(http::status::method_not_allowed,
                          std::string(req.method_string()) + " is not allowed on " + t.path, v);
  return error_response(http::status::not_found, "no such endpoint: " + t.path + " (see the README for the subset "
                        "of Consul's API that latticed speaks)", v);
}

}  // namespace lattice::daemon
