// The Consul-compatible subset (README, "latticed: the Consul-compatible
// API"): what service registries and Consul's client libraries use.
//
// Mapping. A Consul service named N is the Lattice path "/N"; its instances
// are the path's providers, registered ephemeral (bound to this daemon's
// liveness). Consul's Tags, health and TTL check live in reserved
// "consul:" tags of the instance, so they replicate with it and survive a
// restart; Meta entries are the instance's other tags. A KV key K is the
// config key "/K". There is no leader: status/leader names this replica.

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api.hpp"
#include "consul_check.hpp"
#include "consul_codec.hpp"
#include "version.hpp"
#include "duration.hpp"
#include "json_codec.hpp"
#include "lattice/registry/path.hpp"
#include "query_topics.hpp"

namespace lattice::daemon {

using nlohmann::json;
namespace reg = lattice::registry;

using namespace consul;

// ---- register ------------------------------------------------------------------------

reply api::consul_register(request& req, const target& t) {
  const unsigned v = req.version();
  const auto bad = [&](const std::string& message) { return error_response(http::status::bad_request, message, v); };
  const auto body = json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object()) return bad("Request decode failed: malformed JSON");

  static const std::set<std::string> known = {"id", "name", "tags", "address", "port", "meta", "weights",
                                              "check", "checks", "enabletagoverride", "taggedaddresses",
                                              "kind", "namespace", "partition", "locality"};
  for (const auto& [k, unused] : body.items())
    if (!known.contains(folded(k))) return bad("Request decode failed: unknown field \"" + k + "\"");

  const json* name = field(body, "Name");
  if (name == nullptr || !name->is_string() || name->get<std::string>().empty())
    return bad("Missing service name");
  const std::string path = service_path_of(name->get<std::string>());
  if (auto p = reg::service_path::parse(path); !p)
    return bad("invalid service name \"" + name->get<std::string>() + "\": " + p.error().message());
  if (const json* kind = field(body, "Kind"); kind && !(kind->is_string() && kind->get<std::string>().empty()))
    return bad("only typical services are supported (Kind must be empty)");

  reg::instance inst;
  inst.ephemeral = true;
  if (const json* id = field(body, "ID")) {
    if (!id->is_string()) return bad("ID must be a string");
    inst.id = id->get<std::string>();
  }
  if (inst.id.empty()) inst.id = name->get<std::string>();
  if (const json* address = field(body, "Address")) {
    if (!address->is_string()) return bad("Address must be a string");
    inst.address = address->get<std::string>();
  }
  if (inst.address.empty()) inst.address = host_of(replica_.address());
  if (const json* port = field(body, "Port")) {
    if (!port->is_number_unsigned() || port->get<std::uint64_t>() > 65535) return bad("Port must be in 0..65535");
    inst.port = port->get<std::uint16_t>();
  }
  if (const json* tags = field(body, "Tags"); tags && !tags->is_null()) {
    if (!tags->is_array()) return bad("Tags must be an array of strings");
    for (const auto& tag_value : *tags)
      if (!tag_value.is_string()) return bad("Tags must be an array of strings");
    inst.tags[kTags] = tags->dump();
  }
  if (const json* meta = field(body, "Meta"); meta && !meta->is_null()) {
    if (!meta->is_object()) return bad("Meta must be an object of strings");
    for (const auto& [k, val] : meta->items()) {
      if (!val.is_string()) return bad("Meta value for \"" + k + "\" must be a string");
      if (k.starts_with("consul:") || k.starts_with("lattice:"))
        return bad("Meta key \"" + k + "\" uses a reserved prefix (consul:, lattice:)");
      inst.tags[k] = val.get<std::string>();
    }
  }
  // Consul's default weights, {"Passing": 1, "Warning": 1}; native
  // registrations default to 100, so a service mixing both weighs them so.
  inst.weight = 1;
  if (const json* weights = field(body, "Weights"); weights && !weights->is_null()) {
    const json* passing = field(*weights, "Passing");
    const json* warning = field(*weights, "Warning");
    if (passing) {
      if (!passing->is_number_unsigned() || passing->get<std::uint64_t>() > reg::max_weight)
        return bad("Weights.Passing must be an integer in 0.." + std::to_string(reg::max_weight));
      inst.weight = passing->get<std::uint32_t>();
    }
    if (warning) {
      if (!warning->is_number_unsigned() || warning->get<std::uint64_t>() > reg::max_weight)
        return bad("Weights.Warning must be an integer in 0.." + std::to_string(reg::max_weight));
      inst.tags[kWarningWeight] = std::to_string(warning->get<std::uint64_t>());
    }
  }

  // Checks: TTL, HTTP and TCP, as many as the instance's tag limits hold.
  std::vector<json> given;
  if (const json* check = field(body, "Check"); check && !check->is_null()) given.push_back(*check);
  if (const json* list = field(body, "Checks"); list && !list->is_null()) {
    if (!list->is_array()) return bad("Checks must be an array");
    for (const auto& c : *list) given.push_back(c);
  }
  const std::string service_name = name->get<std::string>();
  std::vector<consul::check_definition> defs;
  for (std::size_t i = 0; i < given.size(); ++i) {
    // Consul's default ids: "service:<id>", numbered when there are several.
    const std::string default_id =
        given.size() == 1 ? "service:" + inst.id : "service:" + inst.id + ":" + std::to_string(i + 1);
    auto parsed = parse_check(given[i], inst.id, service_name, default_id);
    if (auto* error = std::get_if<std::string>(&parsed)) return bad("Check: " + *error);
    auto& def = std::get<consul::check_definition>(parsed);
    def.output.clear();  // a client does not set the output
    for (const auto& other : defs)
      if (other.id == def.id) return bad("duplicate CheckID \"" + def.id + "\"");
    if (const auto owner = check_owner_.find(def.id); owner != check_owner_.end() && owner->second != inst.id)
      return bad("CheckID \"" + def.id + "\" belongs to service \"" + owner->second + "\"");
    defs.push_back(std::move(def));
  }

  // The agent's local state takes the registration now, so that every
  // later write (a check result, maintenance) is built on it; a check of
  // the same id and kind keeps its status (re-registering is idempotent).
  const auto now = std::chrono::steady_clock::now();
  local_service next;
  next.path = path;
  next.base = std::move(inst);
  std::optional<local_service> before;
  if (const auto it = services_.find(next.base.id); it != services_.end()) {
    before = it->second;
    next.writes_in_flight = it->second.writes_in_flight;
    if (it->second.path != path) return bad("service ID \"" + next.base.id + "\" is registered under another name");
  }
  for (auto& d : defs) {
    const agent_check* old = nullptr;
    if (before)
      if (const auto c = before->checks.find(d.id); c != before->checks.end()) old = &c->second;
    const std::string id = d.id;
    next.checks[id] = make_check(std::move(d), old, now);
  }
  {
    local_service trial = next;
    reg::instance composed = compose(trial, now);
    if (auto valid = reg::validate(composed); !valid)
      return bad("invalid service: " + valid.error().message() + " (a check's definition and output count "
                 "against the instance's tag limits)");
  }
  const std::string service_id = next.base.id;
  if (auto refused = session_of_registration(t, path, reg::instance_kind::provider, {&next.base}, v))
    return std::move(*refused);
  if (before)
    for (const auto& [id, c] : before->checks) check_owner_.erase(id);
  for (const auto& [id, c] : next.checks) {
    check_owner_[id] = service_id;
    watch_deadline(deadline_of(c));
  }
  services_[service_id] = std::move(next);
  return write_and_answer(
      service_id, [v] { return json_response(true, v); }, v,
      [this, service_id, before] {
        // Not registered: the local state goes back to what the replica has.
        const auto it = services_.find(service_id);
        if (it == services_.end()) return;
        for (const auto& [id, c] : it->second.checks) check_owner_.erase(id);
        if (before) {
          it->second = *before;
          for (const auto& [id, c] : before->checks) check_owner_[id] = service_id;
        } else {
          services_.erase(it);
        }
      });
}

std::optional<std::pair<std::string, reg::record_ptr>> api::own_service(std::string_view service_id) const {
  // Every path is walked: an index of this agent's services by id would
  // make it O(1) (not kept yet).
  std::optional<std::pair<std::string, reg::record_ptr>> found;
  replica_.current()->services.for_each([&](const std::shared_ptr<const reg::service_view>& view) {
    if (found) return;
    if (const auto* i = view->providers.find(service_id); i && (*i)->owner() == replica_.id())
      found.emplace(view->path, i->record);
  });
  return found;
}

reply api::consul_deregister(const std::string& service_id) {
  // Ours only, like a Consul agent's. Its checks stop before the write, so
  // no check result can write it back.
  const auto own = own_service(service_id);
  if (!own) return error_response(http::status::not_found, "Unknown service ID \"" + service_id + "\"");
  if (auto it = services_.find(service_id); it != services_.end()) {
    for (const auto& [id, c] : it->second.checks) check_owner_.erase(id);
    services_.erase(it);
  }
  sessions_.unbind({own->first, reg::instance_kind::provider, service_id});
  return deferred_write<bool>(
      [this, path = own->first, service_id](auto done) {
        replica_.deregister_instance_async(path, service_id, reg::instance_kind::provider, std::move(done));
      },
      [](bool) { return json_response(true, 11); }, consul_write_error(11));
}

reply api::consul_maintenance(const std::string& service_id, const target& t, unsigned version) {
  const auto enable = t.get("enable");
  if (!enable || enable->empty()) return error_response(http::status::bad_request, "Missing value for enable", version);
  if (*enable != "true" && *enable != "false")
    return error_response(http::status::bad_request, "Invalid value for enable: \"" + *enable + "\"", version);
  // Ours only, as Consul's agent: the service must have been registered here.
  local_service* s = local(service_id);
  if (s == nullptr) return error_response(http::status::not_found, "Unknown service ID \"" + service_id + "\"", version);
  if (*enable == "true")
    s->base.tags[kMaintenance] = t.get("reason").value_or("").empty()
                                     ? "Maintenance mode is enabled for this service, but no reason was provided. "
                                       "This is a default message."
                                     : *t.get("reason");
  else
    s->base.tags.erase(kMaintenance);
  // Written like any change of the instance: every daemon lists it critical.
  return write_and_answer(service_id, [version] { return text_response("", "text/plain", version); }, version);
}

// ---- reads ---------------------------------------------------------------------------

reply api::consul(request& req, const target& t) {
  const unsigned v = req.version();
  const std::string& path = t.path;
  const auto method = req.method();
  const auto wrong_method = [&] {
    return error_response(http::status::method_not_allowed,
                          std::string(req.method_string()) + " is not allowed on " + path, v);
  };
  const auto is = [&](std::string_view p) { return path == p; };
  const auto under = [&](std::string_view p) { return path.size() > p.size() && path.starts_with(p); };

  // Parameters that would change the answer are never ignored: another
  // datacenter is answered as Consul does when it has no path to one, and
  // what latticed does not implement is refused by name. (?stale and
  // ?consistent are accepted: every read here is a local read.)
  if (const auto dc = t.get("dc"); dc && !dc->empty() && *dc != options_.datacenter)
    return error_response(http::status::internal_server_error, "No path to datacenter", v);
  for (const char* unsupported : {"filter", "node-meta", "near", "ns", "partition", "peer", "sampling-factor"})
    if (t.has(unsupported))
      return error_response(http::status::bad_request,
                            std::string("?") + unsupported + " is not supported by latticed (the README lists the "
                            "Consul API it speaks)", v);

  // Node names and addresses of the members, for catalog answers. The
  // member table is the replica thread's: read it once per answer, not
  // once per instance.
  using node_addresses = std::map<reg::replica_id, std::string>;
  const auto addresses_of = [](const std::vector<reg::member_info>& members) {
    node_addresses out;
    for (const auto& m : members) out.emplace(m.id, host_of(m.address));
    return out;
  };
  const auto node_of = [this](reg::replica_id owner, const node_addresses& addresses) {
    const auto it = addresses.find(owner);
    return json{{"ID", fmt::format("{:016x}", owner)},
                {"Node", node_name(owner)},
                {"Address", it == addresses.end() ? std::string() : it->second},
                {"Datacenter", options_.datacenter},
                {"TaggedAddresses", json::object()},
                {"Meta", json::object()}};
  };

  if (is("/v1/agent/service/register")) {
    if (method != http::verb::put) return wrong_method();
    return consul_register(req, t);
  }
  if (under("/v1/agent/service/deregister/")) {
    // GET too: Consul before 1.0 took it, and its older clients still send it.
    if (method != http::verb::put && method != http::verb::get) return wrong_method();
    // (The server sets every response's HTTP version to the request's.)
    return consul_deregister(path.substr(std::string_view("/v1/agent/service/deregister/").size()));
  }
  if (under("/v1/agent/service/maintenance/")) {
    if (method != http::verb::put) return wrong_method();
    return consul_maintenance(path.substr(std::string_view("/v1/agent/service/maintenance/").size()), t, v);
  }
  for (const auto& [prefix, status] : {std::pair{"/v1/agent/check/pass/", "passing"},
                                       std::pair{"/v1/agent/check/warn/", "warning"},
                                       std::pair{"/v1/agent/check/fail/", "critical"}}) {
    if (!under(prefix)) continue;
    if (method != http::verb::put && method != http::verb::get) return wrong_method();
    return consul_check_update(path.substr(std::string_view(prefix).size()), status, t.get("note").value_or(""), v);
  }
  if (under("/v1/agent/check/update/")) {
    if (method != http::verb::put) return wrong_method();
    const auto body = json::parse(req.body(), nullptr, false);
    const json* status = body.is_object() ? field(body, "Status") : nullptr;
    const json* output = body.is_object() ? field(body, "Output") : nullptr;
    if (status == nullptr || !status->is_string() ||
        (*status != "passing" && *status != "warning" && *status != "critical"))
      return error_response(http::status::bad_request, "Status must be passing, warning or critical", v);
    if (output != nullptr && !output->is_string())
      return error_response(http::status::bad_request, "Output must be a string", v);
    return consul_check_update(path.substr(std::string_view("/v1/agent/check/update/").size()),
                               status->get<std::string>(), output ? output->get<std::string>() : "", v);
  }
  if (is("/v1/agent/check/register")) {
    if (method != http::verb::put) return wrong_method();
    return consul_check_register(req);
  }
  if (under("/v1/agent/check/deregister/")) {
    // GET too, as for service deregistration (python-consul sends it).
    if (method != http::verb::put && method != http::verb::get) return wrong_method();
    return consul_check_deregister(path.substr(std::string_view("/v1/agent/check/deregister/").size()), v);
  }
  if (is("/v1/agent/checks")) {
    if (method != http::verb::get) return wrong_method();
    return json_response(agent_checks(), v);
  }
  if (auto answered = consul_health(req, t)) return std::move(*answered);
  if (is("/v1/agent/services")) {
    if (method != http::verb::get) return wrong_method();
    json out = json::object();
    replica_.current()->services.for_each([&](const std::shared_ptr<const reg::service_view>& view) {
      for (const auto& i : view->providers) {
        if (i->owner() != replica_.id()) continue;
        out[i->id()] = json{{"ID", i->id()}, {"Service", service_name_of(view->path)}, {"Tags", consul_tags(*i)},
                          {"Meta", consul_meta(*i)}, {"Port", i->port()}, {"Address", i->address()},
                          {"Weights", weights_of(*i)}, {"EnableTagOverride", false},
                          {"Datacenter", options_.datacenter}};
      }
    });
    return json_response(out, v);
  }
  if (is("/v1/agent/self")) {
    if (method != http::verb::get) return wrong_method();
    // The fields clients read: the node's name and datacenter, its member
    // entry, and where the leader is (there is none: this replica answers
    // for itself, as status/leader does).
    const auto table = replica_.status();
    std::size_t alive = 0;
    for (const auto& m : table->members)
      alive += m.state == transport::member_state::alive || m.state == transport::member_state::suspect;
    return json_response(
        json{{"Config", {{"Datacenter", options_.datacenter}, {"PrimaryDatacenter", options_.datacenter},
                         {"NodeName", node_name(replica_.id())}, {"NodeID", fmt::format("{:016x}", replica_.id())},
                         {"Server", false}, {"Version", "lattice-0.1"}, {"Revision", version_string()}}},
             {"Member", {{"Name", node_name(replica_.id())}, {"Addr", host_of(replica_.address())},
                         {"Port", std::stoul(replica_.address().substr(replica_.address().rfind(':') + 1))},
                         {"Status", 1}, {"Tags", json::object()}}},
             {"Stats", {{"consul", {{"leader", "false"}, {"leader_addr", replica_.address()},
                                    {"known_datacenters", "1"}, {"server", "false"}}},
                        {"serf_lan", {{"members", std::to_string(table->members.size())},
                                      {"alive", std::to_string(alive)}}}}},
             {"Meta", json::object()}},
        v);
  }
  if (is("/v1/agent/members") || is("/v1/catalog/nodes") || is("/v1/status/peers")) {
    if (method != http::verb::get) return wrong_method();
    json out = json::array();
    const auto table = replica_.status();  // as of the last tick: never waits for the replica thread
    const auto& members = table->members;
    const auto addresses = addresses_of(members);
    for (const auto& m : members) {
      // Serf's status codes: 1 alive, 3 left, 4 failed (suspect is alive).
      const int status = m.state == transport::member_state::left   ? 3
                         : m.state == transport::member_state::dead ? 4
                                                                    : 1;
      if (is("/v1/status/peers")) {
        if (status == 1) out.push_back(m.address);
      } else if (is("/v1/catalog/nodes")) {
        if (status == 1) out.push_back(node_of(m.id, addresses));
      } else {
        out.push_back(json{{"Name", node_name(m.id)}, {"Addr", host_of(m.address)},
                           {"Port", std::stoul(m.address.substr(m.address.rfind(':') + 1))},
                           {"Status", status}, {"Tags", json::object()}});
      }
    }
    return is("/v1/catalog/nodes") ? with_index(json_response(out, v), replica_.current()->sequence)
                                   : json_response(out, v);
  }
  if (is("/v1/status/leader")) {
    if (method != http::verb::get) return wrong_method();
    return json_response(replica_.address(), v);  // no leader: this replica answers for itself
  }
  if (is("/v1/catalog/services")) {
    if (method != http::verb::get) return wrong_method();
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
  const bool catalog = under("/v1/catalog/service/");
  const bool health = under("/v1/health/service/");
  if (catalog || health) {
    if (method != http::verb::get) return wrong_method();
    const std::string name = path.substr(catalog ? std::string_view("/v1/catalog/service/").size()
                                                 : std::string_view("/v1/health/service/").size());
    const std::string service = service_path_of(name);
    if (auto p = reg::service_path::parse(service); !p)
      return error_response(http::status::bad_request, "invalid service name \"" + name + "\"", v);
    const bool passing_only = t.has("passing") && t.get("passing") != "false" && t.get("passing") != "0";
    const auto wanted_tag = t.get("tag");
    std::string cache_key = fmt::format("{}{}{}{}/{}", catalog ? 'c' : 'h', passing_only ? 'p' : '-',
                                        wanted_tag ? '+' : '-', wanted_tag.value_or(""), name);
    return blocking(req, t, {service_topic(service)}, [=, this] {
      const auto list = replica_.lookup(service);
      auto table = replica_.status();
      // The same question about the same list and member table has the same
      // answer: build its JSON once (a popular service is asked thousands of
      // times between two changes).
      if (answers_.size() >= kMaxCachedAnswers && !answers_.contains(cache_key))
        answers_.clear();  // distinct questions beyond the bound: start over
      auto& cached = answers_[cache_key];
      if (cached.table == table && cached.version == list.version() && !cached.body.empty())
        return std::pair{list.version(), with_index(text_response(cached.body, "application/json", v),
                                                    list.version())};
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
        const json node = node_of(i->owner(), addresses);
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
          out.push_back(json{{"Node", node},
                             {"Service", {{"ID", i->id()}, {"Service", name}, {"Tags", consul_tags(*i)},
                                          {"Address", i->address()}, {"Meta", consul_meta(*i)},
                                          {"Port", i->port()}, {"Weights", weights_of(*i)}}},
                             {"Checks", std::move(checks)}});
        }
      }
      cached = cached_answer{list.version(), std::move(table), dump_json(out) + "\n"};
      return std::pair{list.version(), with_index(text_response(cached.body, "application/json", v),
                                                  list.version())};
    });
  }
  if (path == "/v1/kv" || path.starts_with("/v1/kv/")) {  // "/v1/kv/?recurse": the whole tree
    const std::string key = path.size() > 7 ? path.substr(7) : "";
    const std::string config_key = "/" + key;
    for (const char* unsupported : {"cas", "acquire", "release"})
      if (t.has(unsupported))
        return error_response(http::status::bad_request,
                              std::string("?") + unsupported + " is not supported: Lattice has no locks or "
                              "compare-and-set (it is AP; see the README)", v);
    if (method == http::verb::get) {
      const bool recurse = t.has("recurse"), keys = t.has("keys"), raw = t.has("raw");
      const auto separator = t.get("separator");
      auto topic = recurse || keys ? kv_prefix_topic(config_key) : kv_key_topic(config_key);
      if (key.empty() && !recurse && !keys) return error_response(http::status::bad_request, "Missing key name", v);
      return blocking(req, t, {std::move(topic)}, [=, this]() {
        const auto snap = replica_.current();
        const auto& config = *snap->config;
        const auto index = snap->sequence;
        if (!recurse && !keys) {
          const auto* it = config.find(config_key);
          if (it == nullptr)
            return std::pair{index, with_index(error_response(http::status::not_found, "", v), index)};
          if (raw) {
            response res{http::status::ok, v};
            res.set(http::field::content_type, "application/octet-stream");
            res.body() = it->second;
            res.prepare_payload();
            return std::pair{index, with_index(std::move(res), index)};
          }
          json entry{{"Key", key}, {"Value", kv_value(it->second)}, {"Flags", 0}, {"LockIndex", 0},
                     {"CreateIndex", index}, {"ModifyIndex", index}};
          return std::pair{index, with_index(json_response(json::array({entry}), v), index)};
        }
        json out = json::array();
        std::set<std::string> seen;
        for (auto it = config.lower_bound(config_key); it != config.end() && it->first.starts_with(config_key); ++it) {
          std::string k = it->first.substr(1);
          if (keys) {
            if (separator && !separator->empty()) {
              const auto at = k.find(*separator, key.size());
              if (at != std::string::npos) k = k.substr(0, at + separator->size());
            }
            if (seen.insert(k).second) out.push_back(k);
          } else {
            out.push_back(json{{"Key", k}, {"Value", kv_value(it->second)}, {"Flags", 0}, {"LockIndex", 0},
                               {"CreateIndex", index}, {"ModifyIndex", index}});
          }
        }
        if (out.empty()) return std::pair{index, with_index(error_response(http::status::not_found, "", v), index)};
        return std::pair{index, with_index(json_response(out, v), index)};
      });
    }
    if (method == http::verb::delete_ && t.has("recurse")) {
      // One prefix tombstone: it also covers keys under the prefix that
      // this daemon has not seen yet. A string prefix, as Consul's.
      return deferred_write<std::size_t>(
          [this, config_key](auto done) { replica_.erase_config_prefix_async(config_key, std::move(done)); },
          [v](std::size_t) { return json_response(true, v); },
          [v, key](std::error_code ec) {
            return error_response(static_cast<http::status>(status_of(ec)),
                                  "prefix \"" + key + "\": " + ec.message() +
                                      " (Lattice config keys are paths: segments of [A-Za-z0-9._~:@+-])",
                                  v);
          });
    }
    if (auto p = reg::service_path::parse(config_key); !p)
      return error_response(http::status::bad_request,
                            "invalid key \"" + key + "\": " + p.error().message() +
                                " (Lattice config keys are paths: segments of [A-Za-z0-9._~:@+-])", v);
    if (method == http::verb::put) {
      return deferred_write<void>(
          [this, config_key, value = req.body()](auto done) mutable {
            replica_.set_config_async(config_key, std::move(value), std::move(done));
          },
          [v] { return json_response(true, v); }, consul_write_error(v));
    }
    if (method == http::verb::delete_) {
      // A tombstone whether or not the key is known here.
      return deferred_write<bool>(
          [this, config_key](auto done) { replica_.erase_config_async(config_key, std::move(done)); },
          [v](bool) { return json_response(true, v); },  // Consul answers true for a missing key too
          consul_write_error(v));
    }
    return wrong_method();
  }
  return error_response(http::status::not_found, "no such endpoint: " + path + " (see the README for the subset "
                        "of Consul's API that latticed speaks)", v);
}

}  // namespace lattice::daemon
