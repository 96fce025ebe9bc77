// Sessions (sessions.hpp): the native endpoints under /v1/lattice/sessions
// and Consul's /v1/session/*, over one table.
//
//   POST /v1/lattice/sessions {"ttl": "10s", "name": "..."}   -> {"id", ...}
//   PUT  /v1/lattice/sessions/ID/renew                       -> the session, 404 once ended
//   DELETE /v1/lattice/sessions/ID                           -> ends it now
//   GET  /v1/lattice/sessions[/ID]
//   GET  /v1/lattice/sessions/hold?name=...                  -> an SSE stream; the
//        session (first event: its id) lasts as long as the connection
//   PUT  /v1/lattice/instances/PATH?session=ID, PUT /v1/agent/service/register?session=ID
//
// Consul's sessions map onto the same table: create, renew, destroy, info,
// list and node. They bind nothing in KV (no ?acquire: Lattice has no
// locks), so Behavior is reported back and otherwise the same.
#include <atomic>
#include <chrono>
#include <future>

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api.hpp"
#include "consul_codec.hpp"
#include "duration.hpp"
#include "json_codec.hpp"

namespace lattice::daemon {

using nlohmann::json;
namespace reg = lattice::registry;

namespace {

const char* kind_name(reg::instance_kind kind) { return kind == reg::instance_kind::consumer ? "consumer" : "provider"; }

json native_json(const client_session& s, client_session::time_point now) {
  json bound = json::array();
  for (const auto& [path, kind, id] : s.bound) bound.push_back(json{{"path", path}, {"kind", kind_name(kind)}, {"id", id}});
  json out{{"id", s.id}, {"name", s.name}, {"ttl", format_duration(s.ttl)}, {"held", s.held},
           {"registrations", std::move(bound)}};
  if (s.ttl.count() > 0)
    out["expires_in_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(s.expires - now).count();
  return out;
}

json consul_json(const client_session& s, const std::string& node) {
  return json{{"ID", s.id}, {"Name", s.name}, {"Node", node}, {"LockDelay", 0}, {"Behavior", s.behavior},
              {"TTL", s.ttl.count() > 0 ? format_duration(s.ttl) : ""}, {"NodeChecks", json::array({"serfHealth"})},
              {"ServiceChecks", nullptr}, {"CreateIndex", s.create_index}, {"ModifyIndex", s.create_index}};
}

}  // namespace

void api::end_session(const client_session& s, std::function<void()> applied) {
  // One count per removal plus one for this loop, so that `applied` runs
  // once, after the last removal, however the callbacks interleave.
  struct countdown {
    std::atomic<std::size_t> left;
    std::function<void()> then;
  };
  const auto pending = std::make_shared<countdown>();
  pending->left = s.bound.size() + 1;
  pending->then = std::move(applied);
  const auto one_done = [pending] {
    if (pending->left.fetch_sub(1) == 1 && pending->then) pending->then();
  };
  for (const auto& [path, kind, id] : s.bound) {
    // One of this agent's Consul services: its checks stop too, or a
    // check result would write it back.
    if (const auto local = services_.find(id);
        kind == reg::instance_kind::provider && local != services_.end() && local->second.path == path) {
      deregister_local(id, one_done);
      continue;
    }
    replica_.deregister_instance_async(path, id, kind, [instance = id, session = s.id, one_done](result<bool> r) {
      if (!r) spdlog::warn("session {}: removing {} failed: {}", session, instance, r.error().message());
      one_done();
    });
  }
  one_done();
}

reply api::destroy_session_and_answer(const client_session& ended, std::function<response()> answer) {
  // A destroy answers once its removals are applied: the agent that said
  // "destroyed" no longer lists what the session held.
  return deferred_reply{[this, ended, answer = std::move(answer)](auto complete) {
    end_session(ended, [complete = std::move(complete), answer] { complete(answer); });
  }};
}

void api::drop_orphaned_registrations() {
  std::vector<bound_instance> orphans;
  replica_.current()->services.for_each([&](const std::shared_ptr<const reg::service_view>& view) {
    for (const auto* list : {&view->providers, &view->consumers})
      for (const auto& i : *list)
        if (i->owner() == replica_.id() && i->tags().contains(kSessionTag))
          orphans.emplace_back(view->path, i->kind(), std::string(i->id()));
  });
  if (orphans.empty()) return;
  spdlog::info("removing {} registrations of sessions that ended with the previous run", orphans.size());
  client_session ended;
  ended.id = "(previous run)";
  ended.bound.insert(orphans.begin(), orphans.end());
  // Wait for the removals before the daemon serves anything: otherwise
  // its first lookups still list what its dead sessions held (seen under
  // AddressSanitizer, where the commit took longer than the first
  // request). The completions run on the replica's thread, not ours, and
  // the HTTP server does not listen yet. Bounded: a replica that cannot
  // commit is reported, and the removals land when they can.
  auto applied = std::make_shared<std::promise<void>>();
  auto done = applied->get_future();
  end_session(ended, [applied] { applied->set_value(); });
  if (done.wait_for(std::chrono::seconds(30)) != std::future_status::ready)
    spdlog::warn("the removals of the previous run's session registrations were not applied within 30 s");
}

std::optional<reply> api::session_of_registration(const target& t, const std::string& path, reg::instance_kind kind,
                                                  std::vector<reg::instance*> insts, unsigned version) {
  const auto id_of = [](reg::instance& i) {
    reg::instance copy = i;
    (void)reg::validate(copy);  // fills in a default id; errors are the write's to report
    return copy.id;
  };
  const auto wanted = t.get("session");
  if (!wanted) {
    for (auto* i : insts) sessions_.unbind({path, kind, id_of(*i)});
    return std::nullopt;
  }
  if (sessions_.find(*wanted) == nullptr)
    return error_response(http::status::not_found, "no session \"" + *wanted + "\" (ended, or never on this daemon)",
                          version);
  for (auto* i : insts) {
    i->tags[kSessionTag] = *wanted;
    i->ephemeral = true;  // a session's registration never outlives its daemon either
    sessions_.bind(*wanted, {path, kind, id_of(*i)});
  }
  return std::nullopt;
}

std::optional<reply> api::session_endpoints(request& req, const target& t) {
  const std::string& path = t.path;
  const bool native = path == "/v1/lattice/sessions" || path.starts_with("/v1/lattice/sessions/");
  const bool consul = path.starts_with("/v1/session/");
  if (!native && !consul) return std::nullopt;
  const unsigned v = req.version();
  const auto method = req.method();
  const auto now = std::chrono::steady_clock::now();
  const auto wrong_method = [&] {
    return error_response(http::status::method_not_allowed,
                          std::string(req.method_string()) + " is not allowed on " + path, v);
  };
  const std::string node = consul::node_name(replica_.id());

  if (native) {
    const std::string rest = path.size() > 21 ? path.substr(21) : "";  // after "/v1/lattice/sessions/"
    if (path == "/v1/lattice/sessions") {
      if (method == http::verb::get) {
        json out = json::array();
        for (const auto& [id, s] : sessions_.all()) out.push_back(native_json(s, now));
        return json_response(out, v);
      }
      if (method != http::verb::post && method != http::verb::put) return wrong_method();
      const auto body = req.body().empty() ? json::object() : json::parse(req.body(), nullptr, false);
      if (body.is_discarded() || !body.is_object()) return error_response(http::status::bad_request, "malformed JSON body", v);
      std::chrono::milliseconds ttl{0};
      std::string name;
      for (const auto& [k, value] : body.items()) {
        if (k == "ttl" && value.is_string()) {
          const auto d = parse_duration(value.get<std::string>());
          if (!d || *d < std::chrono::seconds(1) || *d > std::chrono::hours(24))
            return error_response(http::status::bad_request, "ttl must be a duration from 1s to 24h", v);
          ttl = *d;
        } else if (k == "name" && value.is_string()) {
          name = value.get<std::string>();
        } else {
          return error_response(http::status::bad_request, "unknown or mistyped field \"" + k + "\" (ttl, name)", v);
        }
      }
      if (ttl.count() == 0)
        return error_response(http::status::bad_request,
                              "a session needs a ttl (or hold one open: GET /v1/lattice/sessions/hold)", v);
      const client_session& s = sessions_.create(name, ttl, "delete", false, now, replica_.current()->sequence);
      watch_deadline(s.expires);
      return json_response(native_json(s, now), v);
    }
    if (rest == "hold") {
      if (method != http::verb::get) return wrong_method();
      stream_reply s;
      s.head = response{http::status::ok, v};
      s.head.set(http::field::content_type, "text/event-stream");
      s.head.set(http::field::cache_control, "no-cache");
      const std::string name = t.get("name").value_or("");
      s.start = [this, name, weak = std::weak_ptr<api*>(alive_)](std::function<void(std::string)> send)
          -> std::shared_ptr<void> {
        const client_session& held = sessions_.create(name, std::chrono::milliseconds(0), "delete", true,
                                               std::chrono::steady_clock::now(), replica_.current()->sequence);
        send("event: session\ndata: " + dump_json(json{{"id", held.id}, {"name", held.name}}) + "\n\n");
        // Dropped when the client goes away (on the HTTP thread): the
        // session ends with the connection.
        return std::shared_ptr<void>(nullptr, [weak, id = held.id](void*) {
          const auto alive = weak.lock();
          if (!alive || *alive == nullptr) return;
          api& self = **alive;
          if (auto ended = self.sessions_.end(id)) {
            spdlog::info("session {} ({}): connection closed, removing its {} registrations", id, ended->name,
                         ended->bound.size());
            self.end_session(*ended);
          }
        });
      };
      return s;
    }
    if (rest.ends_with("/renew")) {
      if (method != http::verb::put && method != http::verb::post) return wrong_method();
      const auto* s = sessions_.renew(rest.substr(0, rest.size() - 6), now);
      if (s == nullptr) return error_response(http::status::not_found, "no session \"" + rest.substr(0, rest.size() - 6) + "\"", v);
      if (s->held) return json_response(native_json(*s, now), v);
      watch_deadline(s->expires);
      return json_response(native_json(*s, now), v);
    }
    if (method == http::verb::get) {
      const auto* s = sessions_.find(rest);
      if (s == nullptr) return error_response(http::status::not_found, "no session \"" + rest + "\"", v);
      return json_response(native_json(*s, now), v);
    }
    if (method == http::verb::delete_) {
      auto ended = sessions_.end(rest);
      if (!ended) return error_response(http::status::not_found, "no session \"" + rest + "\"", v);
      const json answer{{"destroyed", rest}, {"registrations", ended->bound.size()}};
      return destroy_session_and_answer(*ended, [answer, v] { return json_response(answer, v); });
    }
    return wrong_method();
  }

  // Consul's /v1/session/*.
  const auto after = [&](std::string_view prefix) { return path.substr(prefix.size()); };
  if (path == "/v1/session/create") {
    if (method != http::verb::put) return wrong_method();
    const auto body = req.body().empty() ? json::object() : json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object())
      return error_response(http::status::bad_request, "Request decode failed: malformed JSON", v);
    std::string name, behavior = "release";
    std::chrono::milliseconds ttl{0};
    for (const auto& [k, value] : body.items()) {
      const auto key = consul::lower(k);
      if (key == "name" && value.is_string()) {
        name = value.get<std::string>();
      } else if (key == "behavior" && value.is_string()) {
        behavior = value.get<std::string>();
        if (behavior != "release" && behavior != "delete")
          return error_response(http::status::bad_request, "Invalid Behavior setting '" + behavior + "'", v);
      } else if (key == "ttl" && value.is_string()) {
        if (value.get<std::string>().empty()) continue;
        const auto d = parse_duration(value.get<std::string>());
        if (!d || *d < std::chrono::seconds(10) || *d > std::chrono::hours(24))
          return error_response(http::status::bad_request, "Invalid Session TTL '" + value.get<std::string>() +
                                                               "', must be between [10s=24h0m0s]", v);
        ttl = *d;
      } else if (key == "lockdelay") {
        continue;  // no locks: nothing to delay
      } else if (key == "node" && value.is_string()) {
        if (!value.get<std::string>().empty() && value.get<std::string>() != node)
          return error_response(http::status::bad_request, "a session belongs to the agent that creates it: Node "
                                "must be " + node, v);
      } else if ((key == "checks" || key == "nodechecks") && value.is_array()) {
        for (const auto& c : value)
          if (c != "serfHealth")
            return error_response(http::status::bad_request, "sessions are bound to this agent's liveness "
                                  "(serfHealth) only; other checks are not supported", v);
      } else if (key == "servicechecks" && (value.is_null() || (value.is_array() && value.empty()))) {
        continue;
      } else {
        return error_response(http::status::bad_request, "Request decode failed: unsupported or mistyped field \"" +
                                                             k + "\"", v);
      }
    }
    const client_session& s = sessions_.create(name, ttl, behavior, false, now, replica_.current()->sequence);
    if (ttl.count() > 0) watch_deadline(s.expires);
    return json_response(json{{"ID", s.id}}, v);
  }
  if (path.starts_with("/v1/session/destroy/")) {
    if (method != http::verb::put) return wrong_method();
    if (auto ended = sessions_.end(after("/v1/session/destroy/")))
      return destroy_session_and_answer(*ended, [v] { return json_response(true, v); });
    return json_response(true, v);
  }
  if (path.starts_with("/v1/session/renew/")) {
    if (method != http::verb::put) return wrong_method();
    const std::string id = after("/v1/session/renew/");
    const auto* s = sessions_.renew(id, now);
    if (s == nullptr) return error_response(http::status::not_found, "Session id '" + id + "' not found", v);
    if (s->ttl.count() > 0) watch_deadline(s->expires);
    return json_response(json::array({consul_json(*s, node)}), v);
  }
  if (path.starts_with("/v1/session/info/")) {
    if (method != http::verb::get) return wrong_method();
    const auto* s = sessions_.find(after("/v1/session/info/"));
    return consul::with_index(json_response(s ? json::array({consul_json(*s, node)}) : json::array(), v),
                              replica_.current()->sequence);
  }
  if (path == "/v1/session/list" || path.starts_with("/v1/session/node/")) {
    if (method != http::verb::get) return wrong_method();
    json out = json::array();
    if (path == "/v1/session/list" || after("/v1/session/node/") == node)
      for (const auto& [id, s] : sessions_.all()) out.push_back(consul_json(s, node));
    return consul::with_index(json_response(out, v), replica_.current()->sequence);
  }
  return error_response(http::status::not_found, "no such endpoint: " + path, v);
}

}  // namespace lattice::daemon
