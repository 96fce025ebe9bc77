// The native API: /v1/lattice/... (README, "latticed: native API").
#include <algorithm>

#include "api.hpp"
#include "json_codec.hpp"
#include "lattice/registry/path.hpp"

namespace lattice::daemon {

using nlohmann::json;
namespace reg = lattice::registry;

namespace {

response registry_error(std::error_code ec, unsigned version) {
  return error_response(static_cast<http::status>(status_of(ec)), ec.message(), version);
}

// "/v1/lattice/instances/a/b" with prefix "/v1/lattice/instances" -> "/a/b".
std::string rest_of(std::string_view path, std::string_view prefix) {
  std::string rest(path.substr(prefix.size()));
  return rest.empty() ? "/" : rest;
}

std::string member_state_name(transport::member_state s) { return transport::to_string(s); }

}  // namespace

reply api::native(request& req, const target& t) {
  const unsigned v = req.version();
  const std::string_view path = t.path;
  const auto method = req.method();
  const auto wrong_method = [&] {
    return error_response(http::status::method_not_allowed,
                          std::string(req.method_string()) + " is not allowed on " + t.path, v);
  };

  if (path == "/v1/lattice/services") {
    if (method != http::verb::get) return wrong_method();
    return blocking(req, t, [this, v] {
      const auto snap = replica_.current();
      json out = json::array();
      for (const auto& view : snap->services.starting_with("/"))
        if (!view->providers.empty() || !view->consumers.empty())
          out.push_back(json{{"path", view->path},
                             {"version", view->version},
                             {"providers", view->providers.size()},
                             {"consumers", view->consumers.size()}});
      auto res = json_response(out, v);
      res.set("X-Lattice-Index", std::to_string(snap->sequence));
      return std::pair{snap->sequence, std::move(res)};
    });
  }

  if (path == "/v1/lattice/members") {
    if (method != http::verb::get) return wrong_method();
    json out = json::array();
    for (const auto& m : replica_.members())
      out.push_back(json{{"id", m.id},
                         {"address", m.address},
                         {"incarnation", m.incarnation},
                         {"state", member_state_name(m.state)},
                         {"self", m.id == replica_.id()},
                         {"clock_offset_us", m.clock_offset_us ? json(*m.clock_offset_us) : json(nullptr)},
                         {"stamp_floor_us", m.stamp_floor_us}});
    return json_response(out, v);
  }

  if (path.starts_with("/v1/lattice/instances/")) {
    const std::string service = rest_of(path, "/v1/lattice/instances");
    if (auto p = reg::service_path::parse(service); !p) return registry_error(p.error(), v);
    if (method == http::verb::get) {
      return blocking(req, t, [this, service, v] {
        const auto list = replica_.lookup(service);
        if (!list) {
          // Never had instances: 404, and index 0 so a blocking query
          // waits for the first registration.
          return std::pair{std::uint64_t{0},
                           error_response(http::status::not_found, "unknown service " + service, v)};
        }
        auto res = json_response(to_json(*list), v);
        res.set("X-Lattice-Index", std::to_string(list.version()));
        return std::pair{list.version(), std::move(res)};
      });
    }
    if (method == http::verb::put || method == http::verb::post) {
      std::string error;
      const auto body = json::parse(req.body(), nullptr, /*allow_exceptions=*/false);
      if (body.is_discarded()) return error_response(http::status::bad_request, "malformed JSON body", v);
      auto parsed = instance_from_json(body, error);
      if (!parsed) return error_response(http::status::bad_request, error, v);
      auto stored = replica_.register_instance(service, std::move(parsed->inst), parsed->kind);
      if (!stored) return registry_error(stored.error(), v);
      return json_response(to_json(stored.value()), v);
    }
    if (method == http::verb::delete_) {
      const auto id = t.get("id");
      if (!id || id->empty()) return error_response(http::status::bad_request, "missing ?id=", v);
      auto kind = reg::instance_kind::provider;
      if (auto k = t.get("kind")) {
        if (*k != "provider" && *k != "consumer")
          return error_response(http::status::bad_request, "kind must be provider or consumer", v);
        if (*k == "consumer") kind = reg::instance_kind::consumer;
      }
      // Always a tombstone, known here or not (a delete is a write).
      auto r = replica_.deregister_instance(service, *id, kind);
      if (!r) return registry_error(r.error(), v);
      return json_response(json{{"deregistered", *id}, {"path", service}, {"known", r.value()}}, v);
    }
    return wrong_method();
  }

  if (path.starts_with("/v1/lattice/config/") || path == "/v1/lattice/config") {
    const std::string key = rest_of(path, "/v1/lattice/config");
    const auto parsed = reg::service_path::parse(key);
    if (!parsed) return registry_error(parsed.error(), v);
    if (method == http::verb::get) {
      const auto snap = replica_.current();
      if (t.has("recurse")) {
        json out = json::object();
        const reg::service_path& prefix = parsed.value();
        for (auto it = snap->config->lower_bound(key); it != snap->config->end() && it->first.starts_with(key); ++it)
          if (prefix.is_prefix_of(it->first)) out[it->first] = it->second;
        return json_response(out, v);
      }
      const auto it = snap->config->find(key);
      if (it == snap->config->end()) return error_response(http::status::not_found, "no config key " + key, v);
      return json_response(json{{"key", key}, {"value", it->second}}, v);
    }
    if (method == http::verb::put || method == http::verb::post) {
      if (!is_utf8(req.body()))
        return error_response(http::status::bad_request,
                              "config value is not UTF-8 text (store bytes through /v1/kv, which base64-encodes them)", v);
      if (auto r = replica_.set_config(key, req.body()); !r) return registry_error(r.error(), v);
      return json_response(json{{"key", key}, {"value", req.body()}}, v);
    }
    if (method == http::verb::delete_ && t.has("recurse")) {
      // The key and everything under it, seen here or not: a tombstone for
      // the key and one prefix tombstone for the subtree.
      const reg::service_path& prefix = parsed.value();
      std::size_t known = 0;
      if (!prefix.is_root()) {
        auto r = replica_.erase_config(key);
        if (!r) return registry_error(r.error(), v);
        if (r.value()) ++known;
      }
      auto r = replica_.erase_config_prefix(prefix.is_root() ? "/" : key + "/");
      if (!r) return registry_error(r.error(), v);
      known += r.value();
      return json_response(json{{"deleted", key}, {"recurse", true}, {"known", known}}, v);
    }
    if (method == http::verb::delete_) {
      auto r = replica_.erase_config(key);
      if (!r) return registry_error(r.error(), v);
      return json_response(json{{"deleted", key}, {"known", r.value()}}, v);
    }
    return wrong_method();
  }

  if (path.starts_with("/v1/lattice/watch/") || path == "/v1/lattice/watch") {
    if (method != http::verb::get) return wrong_method();
    const std::string prefix = rest_of(path, "/v1/lattice/watch");
    if (auto p = reg::service_path::parse(prefix); !p) return registry_error(p.error(), v);
    stream_reply s;
    s.head = response{http::status::ok, v};
    s.head.set(http::field::content_type, "text/event-stream");
    const bool config = t.has("config");
    s.start = [this, prefix, config](std::function<void(std::string)> send) -> std::shared_ptr<void> {
      // Tells the client the stream is live even when nothing matches yet.
      send(": watching " + prefix + "\n\n");
      // Each event is one line of JSON: a service's full view (event
      // "service") or one config key's value (event "config", value null
      // once deleted).
      result<reg::watch_handle> h = config
          ? replica_.watch_config(prefix, [send](const reg::config_change& c) {
              json data{{"key", c.key}, {"value", c.value ? json(*c.value) : json(nullptr)}};
              send("event: config\ndata: " + dump_json(data) + "\n\n");
            })
          : replica_.watch(prefix, [send](const reg::service_view& view) {
              send("event: service\nid: " + std::to_string(view.version) + "\ndata: " + dump_json(to_json(view)) +
                   "\n\n");
            });
      if (!h) {
        send("event: error\ndata: " + dump_json(json{{"error", h.error().message()}}) + "\n\n");
        return nullptr;
      }
      return std::make_shared<reg::watch_handle>(std::move(h).value());
    };
    return s;
  }

  return error_response(http::status::not_found, "no such endpoint: " + t.path, v);
}

}  // namespace lattice::daemon
