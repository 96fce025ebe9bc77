#include "consul_check.hpp"

#include <algorithm>
#include <cctype>

#include "consul_codec.hpp"
#include "duration.hpp"

namespace lattice::daemon::consul {

using nlohmann::json;
namespace reg = lattice::registry;

namespace {

// The check kinds Consul has that latticed does not run, by the field that
// makes one.
constexpr std::pair<const char*, const char*> kUnsupported[] = {
    {"args", "script"},        {"scriptargs", "script"}, {"script", "script"},   {"dockercontainerid", "Docker"},
    {"shell", "Docker"},       {"grpc", "gRPC"},         {"grpcusetls", "gRPC"}, {"h2ping", "H2PING"},
    {"h2pingusetls", "H2PING"}, {"udp", "UDP"},          {"osservice", "OS service"},
    {"aliasservice", "alias"}, {"aliasnode", "alias"}};

const std::string kKnown[] = {"checkid", "id", "name", "notes", "serviceid", "ttl", "http", "method", "header",
                              "body", "tlsskipverify", "tlsservername", "tcp", "interval", "timeout",
                              "deregistercriticalserviceafter", "successbeforepassing", "failuresbeforecritical",
                              "status", "output", "type"};

std::string clean_output(std::string_view output) {
  std::string out(output.substr(0, max_check_output));
  // Tags are printable (instance.hpp); JSON escapes the rest but not DEL.
  std::replace(out.begin(), out.end(), '\x7f', '?');
  return out;
}

}  // namespace

const char* type_name(check_kind kind) {
  switch (kind) {
    case check_kind::http: return "http";
    case check_kind::tcp: return "tcp";
    case check_kind::ttl: break;
  }
  return "ttl";
}

std::variant<check_definition, std::string> parse_check(const json& c, const std::string& service_id,
                                                        const std::string& service_name,
                                                        const std::string& default_id) {
  if (!c.is_object()) return std::string("a check must be an object");
  for (const auto& [k, unused] : c.items()) {
    const auto f = folded(k);
    for (const auto& [field, kind] : kUnsupported)
      if (f == field)
        return std::string(kind) + " checks are not supported by latticed (TTL, HTTP and TCP are; got \"" + k + "\")";
    if (std::find(std::begin(kKnown), std::end(kKnown), f) == std::end(kKnown))
      return "unknown check field \"" + k + "\"";
  }
  check_definition d;
  d.service_id = service_id;
  const auto text = [&](const char* name, std::string& out) -> std::optional<std::string> {
    const json* v = field(c, name);
    if (v == nullptr || v->is_null()) return std::nullopt;
    if (!v->is_string()) return std::string(name) + " must be a string";
    out = v->get<std::string>();
    return std::nullopt;
  };
  const auto duration = [&](const char* name, std::chrono::milliseconds& out) -> std::optional<std::string> {
    std::string s;
    if (auto e = text(name, s)) return e;
    if (s.empty()) return std::nullopt;
    const auto parsed = parse_duration(s);
    if (!parsed || parsed->count() < 0) return "invalid " + std::string(name) + " \"" + s + "\"";
    out = *parsed;
    return std::nullopt;
  };
  const auto count = [&](const char* name, unsigned& out) -> std::optional<std::string> {
    const json* v = field(c, name);
    if (v == nullptr || v->is_null()) return std::nullopt;
    if (!v->is_number_unsigned() || v->get<std::uint64_t>() > 1000) return std::string(name) + " must be in 0..1000";
    out = v->get<unsigned>();
    return std::nullopt;
  };
  std::string check_id, id;
  for (auto e : {text("CheckID", check_id), text("ID", id), text("Name", d.name), text("Notes", d.notes),
                 text("HTTP", d.http), text("Method", d.method), text("Body", d.body),
                 text("TLSServerName", d.tls_server_name), text("TCP", d.tcp), text("Status", d.status),
                 text("Output", d.output), duration("TTL", d.ttl), duration("Interval", d.interval),
                 duration("Timeout", d.timeout), duration("DeregisterCriticalServiceAfter", d.deregister_after),
                 count("SuccessBeforePassing", d.success_before_passing),
                 count("FailuresBeforeCritical", d.failures_before_critical)})
    if (e) return *e;
  if (const json* v = field(c, "TLSSkipVerify"); v && !v->is_null()) {
    if (!v->is_boolean()) return std::string("TLSSkipVerify must be true or false");
    d.tls_skip_verify = v->get<bool>();
  }
  if (const json* v = field(c, "Header"); v && !v->is_null()) {
    if (!v->is_object()) return std::string("Header must be an object of string arrays");
    for (const auto& [k, values] : v->items()) {
      if (!values.is_array()) return "Header \"" + k + "\" must be an array of strings";
      for (const auto& value : values) {
        if (!value.is_string()) return "Header \"" + k + "\" must be an array of strings";
        d.header[k].push_back(value.get<std::string>());
      }
    }
  }

  d.id = !check_id.empty() ? check_id : !id.empty() ? id : default_id;
  if (d.id.empty()) return std::string("a check needs a CheckID or a Name");
  if (d.id.size() > max_check_id)
    return "CheckID \"" + d.id + "\" is longer than " + std::to_string(max_check_id) + " bytes";
  if (d.name.empty()) d.name = service_name.empty() ? d.id : "Service '" + service_name + "' check";
  if (d.status.empty()) d.status = "critical";
  if (d.status != "passing" && d.status != "warning" && d.status != "critical")
    return "invalid Status \"" + d.status + "\" (passing, warning or critical)";

  const int kinds = (d.ttl.count() > 0) + !d.http.empty() + !d.tcp.empty();
  if (kinds == 0) return std::string("a check needs one of TTL, HTTP or TCP");
  if (kinds > 1) return std::string("a check has exactly one of TTL, HTTP or TCP");
  if (d.ttl.count() > 0) {
    d.kind = check_kind::ttl;
    return d;
  }
  d.kind = d.http.empty() ? check_kind::tcp : check_kind::http;
  if (d.interval.count() == 0) return std::string("an HTTP or TCP check needs an Interval");
  if (d.timeout.count() == 0) d.timeout = std::chrono::milliseconds(10'000);
  if (d.kind == check_kind::http) {
    if (!d.http.starts_with("http://") && !d.http.starts_with("https://"))
      return "HTTP \"" + d.http + "\" must be an http:// or https:// URL";
    if (d.method.empty()) d.method = "GET";
  } else if (d.tcp.rfind(':') == std::string::npos || d.tcp.back() == ':') {
    return "TCP \"" + d.tcp + "\" must be host:port";
  }
  return d;
}

std::pair<std::string, std::string> check_tag(const check_definition& c, const std::string& status,
                                              std::string_view output) {
  json stored = definition_json(c);
  stored["CheckID"] = c.id;
  stored["Name"] = c.name;
  if (!c.notes.empty()) stored["Notes"] = c.notes;
  if (!c.service_id.empty()) stored["ServiceID"] = c.service_id;
  stored["Status"] = status;
  // Within the tag value limit: an output that escapes to more (control
  // bytes are six in JSON) is cut further. Invalid UTF-8 (a binary body)
  // is replaced, not refused.
  for (std::size_t keep = max_check_output;; keep /= 2) {
    stored["Output"] = clean_output(output.substr(0, std::min(keep, output.size())));
    auto value = stored.dump(-1, ' ', false, json::error_handler_t::replace);
    if (value.size() <= reg::max_tag_value_length || keep == 0) return {std::string(kCheckTagPrefix) + c.id, std::move(value)};
  }
}

json definition_json(const check_definition& c) {
  json d = json::object();
  switch (c.kind) {
    case check_kind::ttl:
      d["TTL"] = format_duration(c.ttl);
      break;
    case check_kind::http:
      d["HTTP"] = c.http;
      d["Method"] = c.method;
      if (!c.header.empty()) d["Header"] = c.header;
      if (!c.body.empty()) d["Body"] = c.body;
      d["TLSSkipVerify"] = c.tls_skip_verify;
      if (!c.tls_server_name.empty()) d["TLSServerName"] = c.tls_server_name;
      [[fallthrough]];
    case check_kind::tcp:
      if (c.kind == check_kind::tcp) d["TCP"] = c.tcp;
      d["Interval"] = format_duration(c.interval);
      d["Timeout"] = format_duration(c.timeout);
      break;
  }
  if (c.deregister_after.count() > 0) d["DeregisterCriticalServiceAfter"] = format_duration(c.deregister_after);
  if (c.success_before_passing > 0) d["SuccessBeforePassing"] = c.success_before_passing;
  if (c.failures_before_critical > 0) d["FailuresBeforeCritical"] = c.failures_before_critical;
  return d;
}

std::vector<check_definition> stored_checks(const reg::instance_record& inst) {
  std::vector<check_definition> out;
  const auto& tags = inst.tags();
  for (auto it = tags.lower_bound(std::string(kCheckTagPrefix)); it != tags.end() && it->first.starts_with(kCheckTagPrefix);
       ++it) {
    const auto stored = json::parse(it->second, nullptr, false);
    if (stored.is_discarded()) continue;
    auto parsed = parse_check(stored, std::string(inst.id()), "", it->first.substr(kCheckTagPrefix.size()));
    if (auto* d = std::get_if<check_definition>(&parsed)) out.push_back(std::move(*d));
  }
  // Written before several checks per service: one TTL check in tags.
  if (const auto legacy = tags.find("consul:check-id"); legacy != tags.end() && out.empty()) {
    check_definition d;
    d.id = legacy->second;
    d.service_id = inst.id();
    const auto get = [&](const char* key, std::string fallback) {
      const auto t = tags.find(key);
      return t == tags.end() ? fallback : t->second;
    };
    d.name = get("consul:check-name", d.id);
    d.ttl = parse_duration(get("consul:check-ttl", "30s")).value_or(std::chrono::milliseconds(30'000));
    d.deregister_after = parse_duration(get("consul:deregister-after", "0")).value_or(std::chrono::milliseconds(0));
    d.status = get("consul:health", "critical");
    d.output = get("consul:output", "");
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace lattice::daemon::consul
