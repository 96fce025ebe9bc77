// Consul's catalog and health answers about services: the service list,
// and one service's instances as /v1/catalog/service and
// /v1/health/service shape them.
//
// A popular service is asked thousands of times between two changes, so
// an instance answer is encoded once per (question, service version,
// member table) and kept in answers_.
#include <set>

#include <fmt/format.h>

#include "api.hpp"
#include "consul_codec.hpp"
#include "lattice/registry/path.hpp"
#include "query_topics.hpp"

namespace lattice::daemon {

using nlohmann::json;
namespace reg = lattice::registry;

using namespace consul;

reply api::consul_catalog_services(request& req, const target& t) {
  const unsigned v = req.version();
  return blocking(req, t, {any_service_topic()}, [this, v] {
    const auto snap = replica_.current();
    json out = json::object();
    for (const auto& view : snap->services.starting_with("/")) {
      if (view->providers.empty()) continue;
      std::set<std::string> tags;
      for (const auto& i : view->providers)
        for (const auto& tg : consul_tags(*i))
          if (tg.is_string()) tags.insert(tg.get<std::string>());
      out[service_name_of(view->path)] = tags;
    }
    return std::pair{snap->sequence, with_index(json_response(out, v), snap->sequence)};
  });
}

reply api::consul_service_instances(request& req, const target& t, const std::string& name, bool health) {
  const unsigned v = req.version();
  const bool catalog = !health;
  const std::string service = service_path_of(name);
  if (auto p = reg::service_path::parse(service); !p)
    return error_response(http::status::bad_request, "invalid service name \"" + name + "\"", v);
  const bool passing_only = t.has("passing") && t.get("passing") != "false" && t.get("passing") != "0";
  const auto wanted_tag = t.get("tag");
  auto parsed_filter = filter_of(t, health ? health_service_selectors : catalog_service_selectors, v);
  if (auto* refused = std::get_if<response>(&parsed_filter)) return std::move(*refused);
  const auto keep = std::get<std::shared_ptr<const filter>>(parsed_filter);
  // The name last: it may hold any byte, the rest are delimited.
  std::string cache_key = fmt::format("{}{}{}{}/{}{}/{}", catalog ? 'c' : 'h', passing_only ? 'p' : '-',
                                      wanted_tag ? '+' : '-', wanted_tag.value_or(""), t.get("filter").value_or(""),
                                      t.get("filter").value_or("").size(), name);
  return blocking(req, t, {service_topic(service)}, [=, this] {
    const auto list = replica_.lookup(service);
    auto table = replica_.status();
    // The same question about the same list and member table has the same
    // answer: build its JSON once.
    if (answers_.size() >= kMaxCachedAnswers && !answers_.contains(cache_key))
      answers_.clear();  // distinct questions beyond the bound: start over
    auto& cached = answers_[cache_key];
    if (cached.table == table && cached.version == list.version() && !cached.body.empty())
      return std::pair{list.version(),
                       with_index(text_response(cached.body, "application/json", v), list.version())};
    const auto addresses = addresses_of(table->members);
    const auto up = live_nodes(*table);
    json out = json::array();
    for (const auto& i : list.providers()) {
      if (wanted_tag && !has_tag(*i, *wanted_tag)) continue;
      // As Consul: the node's check counts too (a persistent instance of
      // a dead replica is listed, and critical).
      const bool node_up = up.contains(i->owner());
      const std::string status = worse(service_status(*i), node_up ? "passing" : "critical");
      if (health && passing_only && status != "passing") continue;
      json node = node_json(i->owner(), addresses, options_.datacenter);
      if (catalog) {
        out.push_back(json{{"ID", node["ID"]}, {"Node", node["Node"]}, {"Address", node["Address"]},
                           {"Datacenter", options_.datacenter}, {"TaggedAddresses", json::object()},
                           {"NodeMeta", json::object()}, {"ServiceKind", ""}, {"ServiceID", i->id()},
                           {"ServiceName", name}, {"ServiceTags", consul_tags(*i)},
                           {"ServiceAddress", i->address()}, {"ServiceWeights", weights_of(*i)},
                           {"ServiceMeta", consul_meta(*i)}, {"ServicePort", i->port()},
                           {"ServiceEnableTagOverride", false}, {"CreateIndex", list.version()},
                           {"ModifyIndex", list.version()}});
      } else {
        json checks = json::array({serf_check(i->owner(), node_up)});
        for (auto& c : service_checks(*i, name)) checks.push_back(std::move(c));
        out.push_back(json{{"Node", std::move(node)},
                           {"Service", {{"ID", i->id()}, {"Service", name}, {"Tags", consul_tags(*i)},
                                        {"Address", i->address()}, {"Meta", consul_meta(*i)},
                                        {"Port", i->port()}, {"Weights", weights_of(*i)}}},
                           {"Checks", std::move(checks)}});
      }
    }
    if (keep) keep->apply(out);
    cached = cached_answer{list.version(), std::move(table), dump_json(out) + "\n"};
    return std::pair{list.version(), with_index(text_response(cached.body, "application/json", v), list.version())};
  });
}

}  // namespace lattice::daemon
