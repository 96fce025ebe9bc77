// The native API: /v1/lattice/... (README, "latticed: native API").
#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "api.hpp"
#include "user_events.hpp"
#include "json_codec.hpp"
#include "lattice/registry/path.hpp"
#include "query_topics.hpp"
#include "view_delta.hpp"

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

// This replica's calls to the view's providers, started plus finished.
std::uint64_t local_call_counts(const reg::service_view& view) {
  std::uint64_t sum = 0;
  for (const auto& i : view.providers)
    if (i.local)
      sum += i.local->started.load(std::memory_order_relaxed) + i.local->finished.load(std::memory_order_relaxed);
  return sum;
}

}  // namespace

reply api::report_serving(request& req, const target& t, const std::string& service) {
  // A provider registered through this daemon reports the calls it serves
  // (ADR 0021): its totals replace every caller's counts of it.
  const unsigned v = req.version();
  const auto id = t.get("id");
  if (!id || id->empty()) return error_response(http::status::bad_request, "missing ?id=", v);
  const std::pair key{service, std::string(*id)};
  if (req.method() == http::verb::delete_) {
    const bool was = serving_.erase(key) != 0;
    return json_response(json{{"path", service}, {"id", *id}, {"counted", was}}, v);
  }
  const auto body = json::parse(req.body(), nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) return error_response(http::status::bad_request, "the body must be a JSON object", v);
  std::uint64_t figures[2] = {0, 0};
  const char* names[2] = {"in_flight", "served"};
  for (const auto& item : body.items()) {
    // (Not a structured binding: clang 15 cannot capture one in a lambda.)
    const std::string& name = item.key();
    const json& value = item.value();
    const auto at = std::find_if(std::begin(names), std::end(names), [&](const char* n) { return name == n; });
    if (at == std::end(names)) return error_response(http::status::bad_request, "unknown field " + name, v);
    if (!value.is_number_unsigned())
      return error_response(http::status::bad_request, name + " must be a non-negative integer", v);
    figures[at - std::begin(names)] = value.get<std::uint64_t>();
  }
  if (!body.contains("in_flight")) return error_response(http::status::bad_request, "missing in_flight", v);
  auto report = serving_.find(key);
  if (report == serving_.end()) {
    // Once per instance: waits for the replica thread (microseconds).
    auto counted = replica_.count_serving(service, *id);
    if (!counted) return registry_error(counted.error(), v);
    report = serving_.emplace(key, serving_report{std::move(counted).value()}).first;
  }
  report->second.counter->set(figures[0], figures[1]);
  const auto ttl = options_.load_report_ttl;
  report->second.expires = ttl.count() > 0 ? std::chrono::steady_clock::now() + ttl : time_point::max();
  json out{{"path", service}, {"id", *id}, {"in_flight", figures[0]}, {"served", figures[1]}};
  if (ttl.count() > 0) out["expires_in_seconds"] = std::chrono::duration<double>(ttl).count();
  return json_response(out, v);
}

std::optional<api::time_point> api::expire_reports(time_point now) {
  std::optional<time_point> next;
  for (auto it = serving_.begin(); it != serving_.end();) {
    if (it->second.expires <= now) {
      // As a DELETE: the replica stops writing the totals once the
      // counter is dropped, and erases them.
      spdlog::info("load report of {} {} not renewed within {} s: no longer counted", it->first.first,
                   it->first.second, std::chrono::duration<double>(options_.load_report_ttl).count());
      it = serving_.erase(it);
      continue;
    }
    if (it->second.expires != time_point::max() && (!next || it->second.expires < *next)) next = it->second.expires;
    ++it;
  }
  return next;
}

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
    return blocking(req, t, {any_service_topic()}, [this, v] {
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

  if (path == "/v1/lattice/load" || path.starts_with("/v1/lattice/load/")) {
    // Every instance's call counts under a prefix, in one answer: watches
    // send a view when its instances change, not on every call, so a
    // reader of live load (the console's counters and sparklines) reads
    // this once a second instead of a lookup per path.
    const std::string prefix = rest_of(path, "/v1/lattice/load");
    const auto parsed = reg::service_path::parse(prefix);
    if (!parsed) return registry_error(parsed.error(), v);
    if (method == http::verb::put || method == http::verb::delete_) return report_serving(req, t, prefix);
    if (method != http::verb::get) return wrong_method();
    const auto snap = replica_.current();
    json out = json::array();
    for (const auto& view : snap->services.starting_with(prefix)) {
      if (!parsed.value().is_prefix_of(view->path)) continue;  // "/a" covers "/a/b", not "/ab"
      const auto add = [&](const reg::instance_view& i, const char* kind) {
        json entry{{"path", view->path}, {"kind", kind},          {"id", i->id()},
                   {"in_flight", i.in_flight()}, {"served", i.served()}};
        if (const auto age = load_age_ms(i)) entry["load_age_ms"] = *age;
        out.push_back(std::move(entry));
      };
      for (const auto& i : view->providers) add(i, "provider");
      for (const auto& i : view->consumers) add(i, "consumer");
    }
    return json_response(out, v);
  }

  if (path == "/v1/lattice/members") {
    if (method != http::verb::get) return wrong_method();
    json out = json::array();
    const auto table = replica_.status();  // as of the last tick: never waits for the replica thread
    const auto now = std::chrono::steady_clock::now();
    const auto ms_since = [now](std::chrono::steady_clock::time_point then) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(now - then).count();
    };
    for (const auto& m : table->members) {
      const bool self = m.id == replica_.id();
      out.push_back(json{{"id", std::to_string(m.id)},  // 64 bits: beyond a JSON number's 2^53
                         {"address", m.address},
                         {"incarnation", m.incarnation},
                         {"state", member_state_name(m.state)},
                         {"state_age_ms", ms_since(m.state_since)},
                         {"self", self},
                         {"clock_offset_us", m.clock_offset_us ? json(*m.clock_offset_us) : json(nullptr)},
                         {"stamp_floor_us", m.stamp_floor_us},
                         // Whether its registry digest, as it last sent it, equalled ours then.
                         {"digest", self ? json("self") : !m.digest_agreed ? json(nullptr)
                                          : json(*m.digest_agreed ? "same" : "differs")},
                         {"digest_age_ms", m.digest_agreed ? json(ms_since(m.digest_seen)) : json(nullptr)}});
    }
    return json_response(out, v);
  }

  if (path.starts_with("/v1/lattice/instances/")) {
    const std::string service = rest_of(path, "/v1/lattice/instances");
    if (auto p = reg::service_path::parse(service); !p) return registry_error(p.error(), v);
    if (method == http::verb::get) {
      return blocking(req, t, {service_topic(service)}, [this, service, v] {
        auto view = replica_.current()->services.find_shared(service);
        if (!view) {
          // Never had instances: 404, and index 0 so a blocking query
          // waits for the first registration.
          auto res = error_response(http::status::not_found, "unknown service " + service, v);
          res.set("X-Lattice-Index", "0");
          return std::pair{std::uint64_t{0}, std::move(res)};
        }
        // The answer changes with the view (a new one per publication that
        // touches the path) and with this replica's own call counts, which
        // only grow: the same view and the same sum of counts mean the same
        // answer, so its JSON is built once. The sum is read before the
        // JSON: counts that move meanwhile make the entry older, never newer,
        // than what it holds.
        const auto load = local_call_counts(*view);
        if (lookups_.size() >= kMaxCachedAnswers && !lookups_.contains(service))
          lookups_.clear();  // distinct paths beyond the bound: start over
        auto& cached = lookups_[service];
        if (cached.view != view || cached.load != load || cached.body.empty())
          cached = cached_lookup{view, load, dump_json(to_json(*view)) + "\n"};
        auto res = text_response(cached.body, "application/json", v);
        res.set("X-Lattice-Index", std::to_string(view->version));
        return std::pair{view->version, std::move(res)};
      });
    }
    if (method == http::verb::put || method == http::verb::post) {
      std::string error;
      const auto body = json::parse(req.body(), nullptr, /*allow_exceptions=*/false);
      if (body.is_discarded()) return error_response(http::status::bad_request, "malformed JSON body", v);
      const auto fail = [v](std::error_code ec) { return registry_error(ec, v); };
      if (body.is_array()) {
        // Bulk: all of one kind, all validated first, one commit; all are
        // registered or none is.
        if (body.empty()) return error_response(http::status::bad_request, "an empty array registers nothing", v);
        std::vector<reg::instance> insts;
        insts.reserve(body.size());
        std::optional<reg::instance_kind> kind;
        for (std::size_t i = 0; i < body.size(); ++i) {
          auto parsed = instance_from_json(body[i], error);
          if (!parsed) return error_response(http::status::bad_request, "instance " + std::to_string(i) + ": " + error, v);
          if (kind && *kind != parsed->kind)
            return error_response(http::status::bad_request, "a bulk registration is of one kind", v);
          kind = parsed->kind;
          insts.push_back(std::move(parsed->inst));
        }
        std::vector<reg::instance*> bound;
        for (auto& i : insts) bound.push_back(&i);
        if (auto refused = session_of_registration(t, service, *kind, std::move(bound), v)) return std::move(*refused);
        return deferred_write<std::vector<reg::instance>>(
            [this, service, insts = std::move(insts), kind = *kind](auto done) mutable {
              replica_.register_instances_async(service, std::move(insts), kind, std::move(done));
            },
            [v](const std::vector<reg::instance>& stored) {
              json out = json::array();
              for (const auto& inst : stored) out.push_back(to_json(inst));
              return json_response(out, v);
            },
            fail);
      }
      auto parsed = instance_from_json(body, error);
      if (!parsed) return error_response(http::status::bad_request, error, v);
      if (auto refused = session_of_registration(t, service, parsed->kind, {&parsed->inst}, v))
        return std::move(*refused);
      return deferred_write<reg::instance>(
          [this, service, inst = std::move(parsed->inst), kind = parsed->kind](auto done) mutable {
            replica_.register_instance_async(service, std::move(inst), kind, std::move(done));
          },
          [v](const reg::instance& stored) { return json_response(to_json(stored), v); }, fail);
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
      sessions_.unbind({service, kind, *id});
      serving_.erase({service, *id});
      // Always a tombstone, known here or not (a delete is a write).
      return deferred_write<bool>(
          [this, service, id = *id, kind](auto done) {
            replica_.deregister_instance_async(service, id, kind, std::move(done));
          },
          [v, service, id = *id](bool known) {
            return json_response(json{{"deregistered", id}, {"path", service}, {"known", known}}, v);
          },
          [v](std::error_code ec) { return registry_error(ec, v); });
    }
    return wrong_method();
  }

  if (path.starts_with("/v1/lattice/config/") || path == "/v1/lattice/config") {
    const std::string key = rest_of(path, "/v1/lattice/config");
    const auto parsed = reg::service_path::parse(key);
    if (!parsed) return registry_error(parsed.error(), v);
    // Keys under /~lattice/ are latticed's own (user events): not listed,
    // not readable or writable here.
    const bool reserved = key.starts_with(consul::kReservedPrefix) || key + "/" == consul::kReservedPrefix;
    if (method == http::verb::get) {
      const auto snap = replica_.current();
      if (t.has("recurse")) {
        // {key: value}; with ?detail, [{key, value, modified_us, flags}]
        // in key order (modified_us: the physical time of the write's stamp).
        const bool detail = t.has("detail");
        json out = detail ? json::array() : json::object();
        const reg::service_path& prefix = parsed.value();
        for (auto it = snap->config->lower_bound(key); it != snap->config->end() && it->key.starts_with(key); ++it) {
          if (!prefix.is_prefix_of(it->key) || it->key.starts_with(consul::kReservedPrefix)) continue;
          if (detail)
            out.push_back(json{{"key", it->key}, {"value", it->value}, {"modified_us", it->modified_us},
                               {"flags", it->flags}});
          else
            out[it->key] = it->value;
        }
        return json_response(out, v);
      }
      const auto* entry = reserved ? nullptr : snap->config->find(key);
      if (entry == nullptr) return error_response(http::status::not_found, "no config key " + key, v);
      return json_response(json{{"key", key}, {"value", entry->value}}, v);
    }
    if (reserved)
      return error_response(http::status::bad_request, "config keys under /~lattice/ are reserved for latticed", v);
    if (method == http::verb::put || method == http::verb::post) {
      if (!is_utf8(req.body()))
        return error_response(http::status::bad_request,
                              "config value is not UTF-8 text (store bytes through /v1/kv, which base64-encodes them)", v);
      return deferred_write<void>(
          [this, key, value = req.body()](auto done) mutable {
            replica_.set_config_async(key, std::move(value), std::move(done));
          },
          [v, key, value = req.body()] { return json_response(json{{"key", key}, {"value", value}}, v); },
          [v](std::error_code ec) { return registry_error(ec, v); });
    }
    if (method == http::verb::delete_ && t.has("recurse")) {
      // The key and everything under it, seen here or not: a tombstone for
      // the key and one prefix tombstone for the subtree.
      // Both tombstones are queued at once, the prefix's right behind the
      // key's, so they share a commit as a rule; acknowledgements come in
      // order, so the key's result is in when the prefix's arrives.
      const bool root = parsed.value().is_root();
      return deferred_write<std::size_t>(
          [this, key, root](auto done) {
            if (root) return replica_.erase_config_prefix_async("/", std::move(done));
            auto key_result = std::make_shared<std::optional<result<bool>>>();
            replica_.erase_config_async(key, [key_result](result<bool> r) { *key_result = std::move(r); });
            replica_.erase_config_prefix_async(
                key + "/", [key_result, done = std::move(done)](result<std::size_t> n) {
                  if (!n) return done(n.error());
                  if (!*key_result || !**key_result)
                    return done(*key_result ? (**key_result).error() : make_error_code(reg::errc::stopped));
                  done(n.value() + ((**key_result).value() ? 1 : 0));
                });
          },
          [v, key](std::size_t known) {
            return json_response(json{{"deleted", key}, {"recurse", true}, {"known", known}}, v);
          },
          [v](std::error_code ec) { return registry_error(ec, v); });
    }
    if (method == http::verb::delete_) {
      return deferred_write<bool>(
          [this, key](auto done) { replica_.erase_config_async(key, std::move(done)); },
          [v, key](bool known) { return json_response(json{{"deleted", key}, {"known", known}}, v); },
          [v](std::error_code ec) { return registry_error(ec, v); });
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
    const bool delta = t.has("delta");
    if (config && delta)
      return error_response(http::status::bad_request, "?delta applies to service watches, not ?config", v);
    s.start = [this, prefix, config, delta](std::function<void(std::string)> send) -> std::shared_ptr<void> {
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
          : delta
          ? replica_.watch(prefix,
                           [send, sent = std::make_shared<std::map<std::string, sent_list>>()](
                               const reg::service_view& view) {
                             // The hub runs one watch's callbacks one at a time: `sent`
                             // needs no lock.
                             auto [it, first] = sent->try_emplace(view.path);
                             const std::string id = "id: " + std::to_string(view.version) + "\n";
                             if (first)
                               send("event: service\n" + id + "data: " + dump_json(to_json(view)) + "\n\n");
                             else
                               send("event: delta\n" + id + "data: " + dump_json(view_delta(it->second, view)) +
                                    "\n\n");
                             it->second = sent_list::of(view);
                           })
          : replica_.watch(prefix, [send, events = events_](const reg::service_view& view) {
              send(events->full_view(view));
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
