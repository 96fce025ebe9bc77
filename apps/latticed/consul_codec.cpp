#include "consul_codec.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "consul_check.hpp"

namespace lattice::daemon::consul {

namespace reg = lattice::registry;

std::string service_path_of(std::string_view name) {
  if (name.empty()) return {};
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out = "/";
  for (const char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || std::string_view("._:@+-").find(ch) != std::string_view::npos) {
      out += ch;
    } else {
      out += '~';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string service_name_of(std::string_view path) {
  if (path.starts_with('/')) path.remove_prefix(1);
  const auto digit = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
  };
  std::string out;
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '~' && i + 2 < path.size() && digit(path[i + 1]) >= 0 && digit(path[i + 2]) >= 0) {
      out += static_cast<char>(digit(path[i + 1]) * 16 + digit(path[i + 2]));
      i += 2;
    } else {
      out += path[i];
    }
  }
  return out;
}

std::string base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> unbase64(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out(in.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the bytes the padding stands for.
  std::size_t size = static_cast<std::size_t>(n);
  for (auto it = in.rbegin(); it != in.rend() && *it == '=' && size > 0; ++it) --size;
  out.resize(size);
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string folded(std::string_view name) {
  std::string out;
  for (const char ch : name)
    if (ch != '_') out += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

const json* field(const json& obj, std::string_view name) {
  const auto wanted = folded(name);
  for (const auto& [k, v] : obj.items())
    if (folded(k) == wanted) return &v;
  return nullptr;
}

std::string tag(const reg::instance_record& inst, const char* key, std::string fallback) {
  const auto it = inst.tags().find(key);
  return it == inst.tags().end() ? std::move(fallback) : it->second;
}

json consul_tags(const reg::instance_record& inst) {
  const auto text = tag(inst, kTags, "[]");
  auto parsed = json::parse(text, nullptr, false);
  return parsed.is_array() ? parsed : json::array();
}

json consul_meta(const reg::instance_record& inst) {
  json meta = json::object();
  for (const auto& [k, v] : inst.tags())
    if (!k.starts_with("consul:") && !k.starts_with("lattice:")) meta[k] = v;
  return meta;
}


json weights_of(const reg::instance_record& inst) {
  const auto warning = tag(inst, kWarningWeight, "1");
  return json{{"Passing", inst.weight()}, {"Warning", std::stoul(warning)}};
}

// A KV entry's Value: base64, or null for an empty value, as Consul sends.
json kv_value(const std::string& value) { return value.empty() ? json(nullptr) : json(base64(value)); }

std::string node_name(reg::replica_id id) { return fmt::format("lattice-{:016x}", id); }

std::string host_of(const std::string& address) {
  const auto colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

bool has_tag(const reg::instance_record& inst, const std::string& wanted) {
  for (const auto& t : consul_tags(inst))
    if (t.is_string() && t.get<std::string>() == wanted) return true;
  return false;
}

response with_index(response res, std::uint64_t index) {
  res.set("X-Consul-Index", std::to_string(std::max<std::uint64_t>(index, 1)));
  res.set("X-Consul-KnownLeader", "true");
  res.set("X-Consul-LastContact", "0");
  return res;
}

// Worse of two statuses: critical > warning > passing.
const char* worse(const std::string& a, const std::string& b) {
  const auto rank = [](const std::string& s) { return s == "critical" ? 2 : s == "warning" ? 1 : 0; };
  const int r = std::max(rank(a), rank(b));
  return r == 2 ? "critical" : r == 1 ? "warning" : "passing";
}

std::set<reg::replica_id> live_nodes(const reg::replica_status& table) {
  std::set<reg::replica_id> out;
  for (const auto& m : table.members)
    if (m.state == transport::member_state::alive || m.state == transport::member_state::suspect) out.insert(m.id);
  return out;
}

json serf_check(reg::replica_id node, bool alive) {
  return json{{"Node", node_name(node)}, {"CheckID", "serfHealth"}, {"Name", "Serf Health Status"},
              {"Status", alive ? "passing" : "critical"}, {"Notes", ""},
              {"Output", alive ? "Agent alive and reachable" : "Agent not live or unreachable"},
              {"ServiceID", ""}, {"ServiceName", ""}, {"ServiceTags", json::array()}, {"Type", ""}};
}

json service_checks(const reg::instance_record& inst, const std::string& name) {
  json out = json::array();
  const auto base = [&](std::string id, std::string check_name, std::string status, std::string notes,
                        std::string output, const char* type) {
    return json{{"Node", node_name(inst.owner())}, {"CheckID", std::move(id)}, {"Name", std::move(check_name)},
                {"Status", std::move(status)}, {"Notes", std::move(notes)}, {"Output", std::move(output)},
                {"ServiceID", inst.id()}, {"ServiceName", name}, {"ServiceTags", consul_tags(inst)}, {"Type", type}};
  };
  if (inst.tags().contains(kMaintenance))
    out.push_back(base("_service_maintenance:" + std::string(inst.id()), "Service Maintenance Mode", "critical",
                       tag(inst, kMaintenance), "", "maintenance"));
  for (const auto& c : stored_checks(inst)) {
    json check = base(c.id, c.name, c.status, c.notes, c.output, type_name(c.kind));
    check["Definition"] = definition_json(c);
    out.push_back(std::move(check));
  }
  return out;
}

std::string service_status(const reg::instance_record& inst) {
  std::string status = inst.tags().contains(kMaintenance) ? "critical" : "passing";
  for (const auto& c : stored_checks(inst)) status = worse(status, c.status);
  return status;
}

// This agent's view of one of its services, as /v1/agent/services shapes it.
json agent_service(const reg::instance_record& inst, const std::string& name, const std::string& datacenter) {
  return json{{"ID", inst.id()}, {"Service", name}, {"Tags", consul_tags(inst)}, {"Meta", consul_meta(inst)},
              {"Port", inst.port()}, {"Address", inst.address()}, {"Weights", weights_of(inst)},
              {"EnableTagOverride", false}, {"Datacenter", datacenter}};
}

std::variant<std::shared_ptr<const filter>, response> filter_of(const target& t, const selector_schema& selectors,
                                                               unsigned version) {
  const auto text = t.get("filter");
  if (!text || text->empty()) return std::shared_ptr<const filter>();  // ?filter= filters nothing
  auto parsed = filter::parse(*text, selectors);
  if (auto* error = std::get_if<std::string>(&parsed))
    return error_response(http::status::bad_request, *error, version);
  return std::make_shared<const filter>(std::move(std::get<filter>(parsed)));
}

node_addresses addresses_of(const std::vector<reg::member_info>& members) {
  node_addresses out;
  for (const auto& m : members) out.emplace(m.id, host_of(m.address));
  return out;
}

json node_json(reg::replica_id node, const node_addresses& addresses, const std::string& datacenter) {
  const auto it = addresses.find(node);
  return json{{"ID", fmt::format("{:016x}", node)},
              {"Node", node_name(node)},
              {"Address", it == addresses.end() ? std::string() : it->second},
              {"Datacenter", datacenter},
              {"TaggedAddresses", json::object()},
              {"Meta", json::object()}};
}

}  // namespace lattice::daemon::consul
