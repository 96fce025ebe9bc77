#include "json_codec.hpp"

#include <chrono>
#include <set>

#include "consul_check.hpp"

namespace lattice::daemon {

using nlohmann::json;
namespace reg = lattice::registry;

json to_json(const reg::instance_record& inst) {
  json tags = json::object();
  for (const auto& [k, v] : inst.tags()) tags[k] = v;
  return json{{"id", inst.id()},
              {"address", inst.address()},
              {"port", inst.port()},
              {"protocol", inst.protocol()},
              {"serialization", inst.serialization()},
              {"weight", inst.weight()},
              {"zone", inst.zone()},
              {"role", inst.role() == reg::instance_role::primary ? "primary" : "secondary"},
              {"tags", std::move(tags)},
              {"ephemeral", inst.ephemeral()},
              {"kind", inst.kind() == reg::instance_kind::provider ? "provider" : "consumer"},
              {"owner", std::to_string(inst.owner())},  // 64 bits: beyond a JSON number's 2^53
              {"owner_incarnation", inst.owner_incarnation()},
              // When this registration began (its HLC stamp's physical part, µs since the Unix epoch).
              {"epoch_us", inst.epoch().physical_us}};
}

json checks_json(const reg::instance_record& inst) {
  json out = json::array();
  for (const auto& c : consul::stored_checks(inst))
    out.push_back(json{{"id", c.id}, {"name", c.name}, {"type", consul::type_name(c.kind)},
                       {"status", c.status}, {"output", c.output}});
  return out;
}

json to_json(const reg::instance& inst) { return to_json(*reg::instance_record::make(inst)); }

std::optional<std::int64_t> load_age_ms(const reg::instance_view& view) {
  if (!view.remote_load_heard) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               *view.remote_load_heard)
      .count();
}

json to_json(const reg::instance_view& view) {
  json out = to_json(*view);
  // Consul checks run by the owning daemon, as its latest writes report
  // them (empty for instances registered natively: their health is their
  // owner's liveness).
  out["checks"] = checks_json(*view);
  out["in_flight"] = view.in_flight();
  out["served"] = view.served();
  if (const auto age = load_age_ms(view)) out["load_age_ms"] = *age;
  return out;
}

json to_json(const reg::service_view& view) {
  json providers = json::array(), consumers = json::array();
  for (const auto& i : view.providers) providers.push_back(to_json(i));
  for (const auto& i : view.consumers) consumers.push_back(to_json(i));
  return json{{"path", view.path}, {"version", view.version}, {"providers", std::move(providers)},
              {"consumers", std::move(consumers)}};
}

std::optional<parsed_instance> instance_from_json(const json& body, std::string& error) {
  if (!body.is_object()) {
    error = "the body must be a JSON object";
    return std::nullopt;
  }
  parsed_instance out;
  auto& inst = out.inst;
  const auto string_field = [&](const json& v, const std::string& key, std::string& into) {
    if (!v.is_string()) {
      error = "field \"" + key + "\" must be a string";
      return false;
    }
    into = v.get<std::string>();
    return true;
  };
  for (const auto& [key, v] : body.items()) {
    bool ok = true;
    if (key == "id") ok = string_field(v, key, inst.id);
    else if (key == "address") ok = string_field(v, key, inst.address);
    else if (key == "protocol") ok = string_field(v, key, inst.protocol);
    else if (key == "serialization") ok = string_field(v, key, inst.serialization);
    else if (key == "zone") ok = string_field(v, key, inst.zone);
    else if (key == "port") {
      ok = v.is_number_unsigned() && v.get<std::uint64_t>() <= 65535;
      if (ok) inst.port = v.get<std::uint16_t>(); else error = "field \"port\" must be an integer in 0..65535";
    } else if (key == "weight") {
      ok = v.is_number_unsigned() && v.get<std::uint64_t>() <= reg::max_weight;
      if (ok) inst.weight = v.get<std::uint32_t>();
      else error = "field \"weight\" must be an integer in 0.." + std::to_string(reg::max_weight);
    } else if (key == "role") {
      ok = v == "primary" || v == "secondary";
      if (ok) inst.role = v == "primary" ? reg::instance_role::primary : reg::instance_role::secondary;
      else error = "field \"role\" must be \"primary\" or \"secondary\"";
    } else if (key == "kind") {
      ok = v == "provider" || v == "consumer";
      if (ok) out.kind = v == "provider" ? reg::instance_kind::provider : reg::instance_kind::consumer;
      else error = "field \"kind\" must be \"provider\" or \"consumer\"";
    } else if (key == "ephemeral") {
      ok = v.is_boolean();
      if (ok) inst.ephemeral = v.get<bool>(); else error = "field \"ephemeral\" must be true or false";
    } else if (key == "tags") {
      ok = v.is_object();
      if (!ok) error = "field \"tags\" must be an object of strings";
      if (ok)
        for (auto it = v.begin(); it != v.end(); ++it) {
          if (!it->is_string()) {
            error = "tag \"" + it.key() + "\" must be a string";
            ok = false;
            break;
          }
          inst.tags[it.key()] = it->get<std::string>();
        }
    } else {
      error = "unknown field \"" + key + "\"";
      ok = false;
    }
    if (!ok) return std::nullopt;
  }
  return out;
}

unsigned status_of(std::error_code ec) {
  if (ec.category() == reg::error_category()) {
    switch (static_cast<reg::errc>(ec.value())) {
      case reg::errc::not_found: return 404;
      case reg::errc::value_too_large: return 413;
      case reg::errc::stopped:
      case reg::errc::timed_out: return 503;
      case reg::errc::storage_failed: return 500;
      default: return 400;
    }
  }
  return 500;
}

bool is_utf8(const std::string& text) {
  // nlohmann's strict serializer is the UTF-8 validator at hand: it
  // throws type_error 316 on the first invalid byte.
  try {
    (void)nlohmann::json(text).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

}  // namespace lattice::daemon
