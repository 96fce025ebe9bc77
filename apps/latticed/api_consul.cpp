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

// ---- checks ------------------------------------------------------------------------

void api::restore_checks() {
  // Our registrations came back from the data directory; so do their
  // checks, with a fresh TTL (a restart is not a missed heartbeat).
  const auto now = std::chrono::steady_clock::now();
  const auto snap = replica_.current();
  snap->services.for_each([&](const std::shared_ptr<const reg::service_view>& view) {
    for (const auto& i : view->providers) {
      if (i->owner() != replica_.id() || !i->tags().contains(kTtl)) continue;
      ttl_check c;
      c.path = view->path;
      c.instance_id = i->id();
      c.check_id = tag(*i, kCheckId, "service:" + c.instance_id);
      c.ttl = parse_duration(tag(*i, kTtl)).value_or(std::chrono::milliseconds(30'000));
      c.deregister_after = parse_duration(tag(*i, kDeregisterAfter, "0")).value_or(std::chrono::milliseconds(0));
      c.status = health_of(*i);
      c.expires = now + c.ttl;
      c.critical_since = now;
      watch_deadline(checks_[c.instance_id] = c);
    }
  });
}

std::optional<reg::instance> api::set_health(ttl_check& check, const std::string& status, const std::string& output) {
  const auto now = std::chrono::steady_clock::now();
  if (status == "critical" && check.status != "critical") check.critical_since = now;
  const bool changed = check.status != status || check.output != output;
  check.status = status;
  check.output = output;
  if (!changed) return std::nullopt;
  // The health lives in the instance's tags, so every replica sees it.
  const auto list = replica_.lookup(check.path);
  for (const auto& i : list.providers()) {
    if (i->id() != check.instance_id) continue;
    reg::instance updated = i->to_instance();
    updated.tags[kHealth] = status;
    if (output.empty()) updated.tags.erase(kOutput); else updated.tags[kOutput] = output.substr(0, 1024);
    return updated;
  }
  return std::nullopt;
}

std::optional<api::time_point> api::deadline_of(const ttl_check& c) {
  if (c.status != "critical") return c.expires;
  if (c.deregister_after.count() > 0) return c.critical_since + c.deregister_after;
  return std::nullopt;
}

void api::watch_deadline(const ttl_check& c) {
  if (const auto at = deadline_of(c); at && wake_) wake_(*at);
}

std::optional<api::time_point> api::tick(time_point now) {
  // Nobody waits for these writes: a failure is logged, and the next
  // expiry or check update writes the health again.
  const auto log_failure = [](const char* what) {
    return [what](const auto& r) {
      if (!r) spdlog::warn("consul check: {} failed: {}", what, r.error().message());
    };
  };
  for (auto it = checks_.begin(); it != checks_.end();) {
    auto& c = it->second;
    if (c.status != "critical" && now >= c.expires)
      if (auto write = set_health(c, "critical", "TTL expired"))
        replica_.register_instance_async(c.path, std::move(*write), reg::instance_kind::provider,
                                         log_failure("marking an expired TTL check critical"));
    if (c.status == "critical" && c.deregister_after.count() > 0 && now - c.critical_since >= c.deregister_after) {
      replica_.deregister_instance_async(c.path, c.instance_id, reg::instance_kind::provider,
                                         log_failure("deregistering a service critical too long"));
      it = checks_.erase(it);
      continue;
    }
    ++it;
  }
  std::optional<time_point> next;
  for (const auto& [id, c] : checks_)
    if (const auto at = deadline_of(c); at && (!next || *at < *next)) next = at;
  return next;
}

// ---- register ------------------------------------------------------------------------

reply api::consul_register(request& req) {
  const unsigned v = req.version();
  const auto bad = [&](const std::string& message) { return error_response(http::status::bad_request, message, v); };
  const auto body = json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object()) return bad("Request decode failed: malformed JSON");

  static const std::set<std::string> known = {"id", "name", "tags", "address", "port", "meta", "weights",
                                              "check", "checks", "enabletagoverride", "taggedaddresses",
                                              "kind", "namespace", "partition", "locality"};
  for (const auto& [k, unused] : body.items())
    if (!known.contains(lower(k))) return bad("Request decode failed: unknown field \"" + k + "\"");

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
    for (const auto& t : *tags)
      if (!t.is_string()) return bad("Tags must be an array of strings");
    inst.tags[kTags] = tags->dump();
  }
  if (const json* meta = field(body, "Meta"); meta && !meta->is_null()) {
    if (!meta->is_object()) return bad("Meta must be an object of strings");
    for (const auto& [k, val] : meta->items()) {
      if (!val.is_string()) return bad("Meta value for \"" + k + "\" must be a string");
      if (k.starts_with("consul:")) return bad("Meta key \"" + k + "\" uses the reserved prefix consul:");
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

  // Checks: TTL only (a TTL check is the instance's liveness as its client
  // reports it; the other kinds would have this daemon probe services).
  std::vector<json> checks;
  if (const json* check = field(body, "Check"); check && !check->is_null()) checks.push_back(*check);
  if (const json* list = field(body, "Checks"); list && !list->is_null()) {
    if (!list->is_array()) return bad("Checks must be an array");
    for (const auto& c : *list) checks.push_back(c);
  }
  if (checks.size() > 1) return bad("at most one (TTL) check per service is supported");
  std::optional<ttl_check> check;
  if (!checks.empty()) {
    const json& c = checks.front();
    if (!c.is_object()) return bad("Check must be an object");
    for (const char* unsupported : {"HTTP", "TCP", "Args", "Script", "GRPC", "DockerContainerID", "H2PING", "UDP",
                                    "OSService", "AliasService", "AliasNode"})
      if (field(c, unsupported)) return bad(std::string("only TTL checks are supported (got ") + unsupported + ")");
    const json* ttl = field(c, "TTL");
    if (!ttl || !ttl->is_string()) return bad("Check.TTL is required (only TTL checks are supported)");
    const auto ttl_value = parse_duration(ttl->get<std::string>());
    if (!ttl_value || ttl_value->count() <= 0) return bad("invalid Check.TTL \"" + ttl->get<std::string>() + "\"");
    ttl_check tc;
    tc.path = path;
    tc.instance_id = inst.id;
    tc.ttl = *ttl_value;
    if (const json* after = field(c, "DeregisterCriticalServiceAfter"); after && after->is_string()) {
      const auto d = parse_duration(after->get<std::string>());
      if (!d) return bad("invalid DeregisterCriticalServiceAfter \"" + after->get<std::string>() + "\"");
      tc.deregister_after = *d;
    }
    tc.status = "critical";  // Consul's default for a new TTL check
    if (const json* status = field(c, "Status"); status && status->is_string()) {
      const auto s = status->get<std::string>();
      if (s != "passing" && s != "warning" && s != "critical") return bad("invalid Check.Status \"" + s + "\"");
      tc.status = s;
    }
    std::string check_id = "service:" + inst.id;
    if (const json* cid = field(c, "CheckID"); cid && cid->is_string() && !cid->get<std::string>().empty())
      check_id = cid->get<std::string>();
    inst.tags[kCheckId] = check_id;
    tc.check_id = check_id;
    if (const json* cname = field(c, "Name"); cname && cname->is_string()) inst.tags[kCheckName] = cname->get<std::string>();
    inst.tags[kTtl] = format_duration(tc.ttl);
    if (tc.deregister_after.count() > 0) inst.tags[kDeregisterAfter] = format_duration(tc.deregister_after);
    inst.tags[kHealth] = tc.status;
    const auto now = std::chrono::steady_clock::now();
    tc.expires = now + tc.ttl;
    tc.critical_since = now;
    check = tc;
  }

  // The check table is the HTTP thread's: the response builder updates it.
  return deferred_write<reg::instance>(
      [this, path, inst = std::move(inst)](auto done) mutable {
        replica_.register_instance_async(path, std::move(inst), reg::instance_kind::provider, std::move(done));
      },
      [this, check, v](const reg::instance& stored) {
        if (check) watch_deadline(checks_[stored.id] = *check); else checks_.erase(stored.id);
        return json_response(true, v);
      },
      consul_write_error(v));
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
  // Ours only, like a Consul agent's.
  const auto own = own_service(service_id);
  if (!own) return error_response(http::status::not_found, "Unknown service ID \"" + service_id + "\"");
  return deferred_write<bool>(
      [this, path = own->first, service_id](auto done) {
        replica_.deregister_instance_async(path, service_id, reg::instance_kind::provider, std::move(done));
      },
      [this, service_id](bool) {
        checks_.erase(service_id);
        return json_response(true, 11);
      },
      consul_write_error(11));
}

reply api::consul_maintenance(const std::string& service_id, const target& t, unsigned version) {
  const auto enable = t.get("enable");
  if (!enable || enable->empty()) return error_response(http::status::bad_request, "Missing value for enable", version);
  if (*enable != "true" && *enable != "false")
    return error_response(http::status::bad_request, "Invalid value for enable: \"" + *enable + "\"", version);
  // Ours only, as Consul's agent: the service must have been registered here.
  const auto own = own_service(service_id);
  if (!own) return error_response(http::status::not_found, "Unknown service ID \"" + service_id + "\"", version);
  const std::string& path = own->first;
  reg::instance inst = own->second->to_instance();
  if (*enable == "true")
    inst.tags[kMaintenance] = t.get("reason").value_or("").empty()
                                  ? "Maintenance mode is enabled for this service, but no reason was provided. "
                                    "This is a default message."
                                  : *t.get("reason");
  else
    inst.tags.erase(kMaintenance);
  // Written like any change of the instance: every daemon lists it critical.
  return deferred_write<reg::instance>(
      [this, path = path, inst = std::move(inst)](auto done) mutable {
        replica_.register_instance_async(path, std::move(inst), reg::instance_kind::provider, std::move(done));
      },
      [version](const reg::instance&) { return text_response("", "text/plain", version); },
      consul_write_error(version));
}

reply api::consul_check_update(const std::string& check_id, const std::string& status, const target& t,
                               unsigned version) {
  for (auto& entry : checks_) {
    auto& c = entry.second;
    if (c.check_id != check_id) continue;
    c.expires = std::chrono::steady_clock::now() + c.ttl;
    auto write = set_health(c, status, t.get("note").value_or(""));
    watch_deadline(c);
    if (!write) return json_response(true, version);
    return deferred_write<reg::instance>(
        [this, path = c.path, inst = std::move(*write)](auto done) mutable {
          replica_.register_instance_async(path, std::move(inst), reg::instance_kind::provider, std::move(done));
        },
        [version](const reg::instance&) { return json_response(true, version); }, consul_write_error(version));
  }
  return error_response(http::status::not_found, "Unknown check ID \"" + check_id + "\"", version);
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
    return consul_register(req);
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
    return consul_check_update(path.substr(std::string_view(prefix).size()), status, t, v);
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
