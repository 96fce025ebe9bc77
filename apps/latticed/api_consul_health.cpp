// Consul's health, node and agent-health endpoints: checks by service,
// node and state, a node's catalog entry, and this agent's own services and
// checks with their aggregated status.
//
// Every node (replica) has Consul's node check "serfHealth": passing while
// this daemon judges the replica alive or suspect, critical once dead or
// left. A service's checks are its maintenance check while in maintenance
// mode and its own checks (consul_check.hpp); Consul lists node checks
// before service checks, and so do these answers.
#include <algorithm>
#include <charconv>
#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "api.hpp"
#include "consul_codec.hpp"
#include "lattice/registry/path.hpp"
#include "query_topics.hpp"

namespace lattice::daemon {

using nlohmann::json;
using namespace consul;
namespace reg = lattice::registry;

namespace {

// The replica a Consul node name ("lattice-<16 hex digits>", node_name) names.
std::optional<reg::replica_id> node_id(std::string_view name) {
  constexpr std::string_view prefix = "lattice-";
  if (!name.starts_with(prefix) || name.size() != prefix.size() + 16) return std::nullopt;
  reg::replica_id id = 0;
  const auto digits = name.substr(prefix.size());
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id, 16);
  if (ec != std::errc{} || end != digits.data() + digits.size()) return std::nullopt;
  return id;
}

// Consul's agent health answers: 200 passing, 429 warning, 503 critical.
http::status status_code(const std::string& status) {
  return status == "passing" ? http::status::ok
         : status == "warning" ? http::status::too_many_requests
                               : http::status::service_unavailable;
}

}  // namespace

reply api::consul_node(request& req, const target& t, const std::string& name, bool health) {
  const unsigned v = req.version();
  const bool catalog = !health;
  const auto id = node_id(name);
  auto parsed_filter = filter_of(t, health ? check_selectors : agent_service_selectors, v);
  if (auto* refused = std::get_if<response>(&parsed_filter)) return std::move(*refused);
  const auto keep = std::get<std::shared_ptr<const filter>>(parsed_filter);
  return blocking(req, t, {any_service_topic()}, [=, this] {
    const auto snap = replica_.current();
    const auto table = replica_.status();
    const auto member = std::find_if(table->members.begin(), table->members.end(),
                                     [&](const reg::member_info& m) { return id && m.id == *id; });
    if (member == table->members.end())  // Consul: an unknown node is null, or no checks
      return std::pair{snap->sequence, with_index(json_response(catalog ? json(nullptr) : json::array(), v),
                                                  snap->sequence)};
    json services = json::object(), checks = json::array({serf_check(*id, live_nodes(*table).contains(*id))});
    snap->services.for_each([&](const std::shared_ptr<const reg::service_view>& view) {
      for (const auto& i : view->providers) {
        if (i->owner() != *id) continue;
        const std::string service = service_name_of(view->path);
        services[std::string(i->id())] = agent_service(*i, service, options_.datacenter);
        for (auto& c : service_checks(*i, service)) checks.push_back(std::move(c));
      }
    });
    if (keep) keep->apply(catalog ? services : checks);
    if (!catalog) return std::pair{snap->sequence, with_index(json_response(checks, v), snap->sequence)};
    const auto& m = *member;
    json node{{"ID", fmt::format("{:016x}", m.id)}, {"Node", node_name(m.id)}, {"Address", host_of(m.address)},
              {"Datacenter", options_.datacenter}, {"TaggedAddresses", json::object()}, {"Meta", json::object()}};
    return std::pair{snap->sequence, with_index(json_response(json{{"Node", node}, {"Services", services}}, v),
                                                snap->sequence)};
  });
}

reply api::consul_health_checks(request& req, const target& t, const std::string& name) {
  const unsigned v = req.version();
  const std::string service = service_path_of(name);
  if (auto p = reg::service_path::parse(service); !p)
    return error_response(http::status::bad_request, "invalid service name \"" + name + "\"", v);
  auto parsed_filter = filter_of(t, check_selectors, v);
  if (auto* refused = std::get_if<response>(&parsed_filter)) return std::move(*refused);
  const auto keep = std::get<std::shared_ptr<const filter>>(parsed_filter);
  return blocking(req, t, {service_topic(service)}, [=, this] {
    const auto list = replica_.lookup(service);
    json out = json::array();
    for (const auto& i : list.providers())
      for (auto& c : service_checks(*i, name)) out.push_back(std::move(c));
    if (keep) keep->apply(out);
    return std::pair{list.version(), with_index(json_response(out, v), list.version())};
  });
}

reply api::consul_health_state(request& req, const target& t, const std::string& state) {
  const unsigned v = req.version();
  if (state != "any" && state != "passing" && state != "warning" && state != "critical")
    return error_response(http::status::bad_request, "Invalid state \"" + state + "\" (any, passing, warning, "
                          "critical)", v);
  auto parsed_filter = filter_of(t, check_selectors, v);
  if (auto* refused = std::get_if<response>(&parsed_filter)) return std::move(*refused);
  const auto keep = std::get<std::shared_ptr<const filter>>(parsed_filter);
  return blocking(req, t, {any_service_topic()}, [=, this] {
    const auto snap = replica_.current();
    const auto table = replica_.status();
    const auto up = live_nodes(*table);
    json out = json::array();
    const auto add = [&](json c) {
      if (state == "any" || c["Status"] == state) out.push_back(std::move(c));
    };
    for (const auto& m : table->members) add(serf_check(m.id, up.contains(m.id)));
    snap->services.for_each([&](const std::shared_ptr<const reg::service_view>& view) {
      for (const auto& i : view->providers)
        for (auto& c : service_checks(*i, service_name_of(view->path))) add(std::move(c));
    });
    if (keep) keep->apply(out);
    return std::pair{snap->sequence, with_index(json_response(out, v), snap->sequence)};
  });
}

reply api::consul_agent_health(request& req, const target& t, const std::string& wanted, bool by_id) {
  const unsigned v = req.version();
  // This agent's own services: those registered through this daemon.
  struct own_instance {
    std::shared_ptr<const reg::service_view> view;
    const reg::instance_view* instance;
  };
  std::vector<own_instance> found;
  const auto snap = replica_.current();
  snap->services.for_each([&](const std::shared_ptr<const reg::service_view>& view) {
    for (const auto& i : view->providers)
      if (i->owner() == replica_.id() && (by_id ? i->id() == wanted : service_name_of(view->path) == wanted))
        found.push_back({view, &i});
  });
  if (found.empty())
    return error_response(http::status::not_found, std::string(by_id ? "ServiceId" : "ServiceName") + " " + wanted +
                                                       " not found", v);
  json out = json::array();
  std::string all = "passing";
  for (const auto& o : found) {
    const auto& i = **o.instance;
    const std::string name = service_name_of(o.view->path);
    json checks = service_checks(i, name);
    const std::string status = service_status(i);
    all = worse(all, status);
    out.push_back(json{{"AggregatedStatus", status}, {"Service", agent_service(i, name, options_.datacenter)},
                       {"Checks", std::move(checks)}});
  }
  if (t.get("format") == "text") {
    response res = text_response(all, "text/plain", v);
    res.result(status_code(all));
    return res;
  }
  response res = json_response(by_id ? out[0] : out, v);
  res.result(status_code(all));
  return res;
}

}  // namespace lattice::daemon
