// Consul's agent endpoints: services registered through this daemon
// (register, deregister, maintenance, read back), the agent itself, and
// the member list in its three shapes.
//
// Mapping. A Consul service named N is the Lattice path "/N" (escaped by
// consul::service_path_of); its instances are the path's providers,
// registered ephemeral (bound to this daemon's liveness). Consul's Tags,
// weights and checks live in reserved "consul:" tags of the instance, so
// they replicate with it and survive a restart; Meta entries are the
// instance's other tags. There is no leader: status/leader names this
// replica.
#include <set>

#include <fmt/format.h>

#include "api.hpp"
#include "consul_check.hpp"
#include "consul_codec.hpp"
#include "lattice/registry/path.hpp"
#include "version.hpp"

namespace lattice::daemon {

using nlohmann::json;
namespace reg = lattice::registry;

using namespace consul;

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

reply api::consul_agent_service(request& req, const target&, const std::string& service_id) {
  const auto found = own_service(service_id);
  if (!found) return error_response(http::status::not_found, "unknown service ID: " + service_id, req.version());
  return json_response(agent_service(*found->second, service_name_of(found->first), options_.datacenter),
                       req.version());
}

reply api::consul_agent_services(request& req, const target& t) {
  const unsigned v = req.version();
  auto parsed_filter = filter_of(t, agent_service_selectors, v);
  if (auto* refused = std::get_if<response>(&parsed_filter)) return std::move(*refused);
  const auto keep = std::get<std::shared_ptr<const filter>>(parsed_filter);
  json out = json::object();
  replica_.current()->services.for_each([&](const std::shared_ptr<const reg::service_view>& view) {
    for (const auto& i : view->providers)
      if (i->owner() == replica_.id())
        out[std::string(i->id())] = agent_service(*i, service_name_of(view->path), options_.datacenter);
  });
  if (keep) keep->apply(out);
  return json_response(out, v);
}

reply api::consul_agent_self(request& req) {
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
      req.version());
}

reply api::consul_members(request& req, const target& t) {
  const unsigned v = req.version();
  const bool peers = t.path == "/v1/status/peers", nodes = t.path == "/v1/catalog/nodes";
  auto parsed_filter = filter_of(t, node_selectors, v);
  if (auto* refused = std::get_if<response>(&parsed_filter)) return std::move(*refused);
  const auto keep = std::get<std::shared_ptr<const filter>>(parsed_filter);
  json out = json::array();
  const auto table = replica_.status();  // as of the last tick: never waits for the replica thread
  const auto addresses = addresses_of(table->members);
  for (const auto& m : table->members) {
    // Serf's status codes: 1 alive, 3 left, 4 failed (suspect is alive).
    const int status = m.state == transport::member_state::left   ? 3
                       : m.state == transport::member_state::dead ? 4
                                                                  : 1;
    if (peers) {
      if (status == 1) out.push_back(m.address);
    } else if (nodes) {
      if (status == 1) out.push_back(node_json(m.id, addresses, options_.datacenter));
    } else {
      out.push_back(json{{"Name", node_name(m.id)}, {"Addr", host_of(m.address)},
                         {"Port", std::stoul(m.address.substr(m.address.rfind(':') + 1))},
                         {"Status", status}, {"Tags", json::object()}});
    }
  }
  if (keep) keep->apply(out);
  return nodes ? with_index(json_response(out, v), replica_.current()->sequence) : json_response(out, v);
}

}  // namespace lattice::daemon
