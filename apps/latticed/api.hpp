// apps/latticed/api.hpp: the daemon's HTTP API over one replica.
//
//  - native, under /v1/lattice/ (api_native.cpp);
//  - the Consul-compatible subset, under /v1/agent, /v1/catalog,
//    /v1/health, /v1/kv, /v1/status (api_consul.cpp);
//  - operations: /health and /metrics (api_ops.cpp).
//
// Every bad request gets a JSON error body {"error": ...} and the status
// the README documents, and changes nothing.
//
// Thread safety: handle() and tick() run on the HTTP thread only.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <type_traits>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "check_probe.hpp"
#include "consul_check.hpp"
#include "http_server.hpp"
#include "lattice/registry/replica.hpp"
#include "sessions.hpp"
#include "url.hpp"
#include "view_delta.hpp"

namespace lattice::daemon {

struct api_options {
  /// Needed by every write (register, deregister, checks, config, KV).
  /// Empty: writes are open.
  std::string write_token;
  /// Needed by every read but /health. Empty: reads are open. The write
  /// token also grants reads.
  std::string read_token;
  /// Consul's datacenter name, reported where Consul reports one.
  std::string datacenter = "dc1";
  /// "host:port" of the HTTP API (agent/self).
  std::string http_address;
  /// Longest blocking query wait (Consul's is 10 minutes).
  std::chrono::milliseconds max_wait{600'000};
  /// Serve /v1/lattice/test/partition (latticed --test-faults). Off, the
  /// endpoint answers 403 and changes nothing.
  bool test_faults = false;
  /// A check whose output changed but not its status is written to the
  /// replica at most this often (Consul's check_update_interval); a change
  /// of status is written at once.
  std::chrono::milliseconds check_update_interval{300'000};
  /// HTTP and TCP check probes running at once; the rest wait their turn.
  std::size_t max_concurrent_checks = 32;
  /// How long a user event is listed (user_events.hpp).
  std::chrono::milliseconds event_retention{3'600'000};
  /// How long a provider's report of the calls it serves
  /// (PUT /v1/lattice/load/{path}) stands without another: a provider that
  /// stops reporting (hung, or gone without its DELETE) stops counting its
  /// instance, and callers count their own calls of it again. 0: forever.
  std::chrono::milliseconds load_report_ttl{30'000};
};

/// HTTP requests by route and status, and their latency, for /metrics.
/// HTTP thread only.
struct http_counters {
  /// Upper bounds of the latency histogram's buckets, seconds (and +Inf).
  static constexpr std::array<double, 12> bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                 0.05,   0.1,   0.25,   0.5,   1.0,  5.0};
  struct route {
    std::map<unsigned, std::uint64_t> by_status;
    std::array<std::uint64_t, bounds.size() + 1> buckets{};  // not cumulative; the last is +Inf
    double seconds = 0;
    std::uint64_t count = 0;
  };
  std::map<std::string, route, std::less<>> by_route;
  /// One response: `elapsed` from the request read to its response (a
  /// blocking query's wait and a write's commit included).
  void record(std::string_view route_name, unsigned status, std::chrono::steady_clock::duration elapsed);
};

class api {
 public:
  /// `io` is the HTTP thread's: check probes and the completions of the
  /// writes checks make run on it.
  api(registry::replica& replica, api_options options, const http_counters& counters,
      const http_server*& server, boost::asio::io_context& io);
  ~api();
  api(const api&) = delete;
  api& operator=(const api&) = delete;
  reply handle(request& req);
  /// The route a request path belongs to, for metrics: a Consul route's
  /// pattern ("/v1/health/service/"), a native family
  /// ("/v1/lattice/instances/"), or "other": a bounded set.
  static std::string_view route_of(std::string_view path);
  using time_point = std::chrono::steady_clock::time_point;
  /// Expires TTL checks due by `now`, starts the HTTP and TCP probes due,
  /// writes check outputs held back, and deregisters services critical
  /// for their DeregisterCriticalServiceAfter. Returns when it must run
  /// next (nullopt: no check has a deadline).
  std::optional<time_point> tick(time_point now);
  /// Called with a check's new deadline whenever one is set, so that the
  /// caller runs tick() then (it may be earlier than tick() last said).
  void on_deadline(std::function<void(time_point)> wake) { wake_ = std::move(wake); }

  /// A check of one of this agent's services, and where it stands.
  struct agent_check {
    consul::check_definition def;
    std::string status;  // as judged here
    std::string output;
    std::string written_output;  // as last written to the replica
    time_point output_written{};
    time_point expires{};   // TTL checks: critical when it passes
    time_point next_run{};  // HTTP and TCP checks
    time_point critical_since{};
    bool running = false;
    unsigned successes = 0, failures = 0;  // in a row, for the thresholds
    std::uint64_t generation = 0;          // a probe's result applies to its own generation only
  };
  /// A service registered through this daemon: Consul's agent local state.
  /// Every write of its instance is built from this (the registration
  /// and each check's status), on the HTTP thread, so two writes in flight
  /// cannot undo each other's changes.
  struct local_service {
    std::string path;
    registry::instance base;  // without its check tags
    std::map<std::string, agent_check> checks;  // by CheckID
    unsigned writes_in_flight = 0;
  };

 private:
  enum class access { read, write };
  bool authorized(const request& req, const target& t, access needed) const;

  reply native(request& req, const target& t);
  // PUT/DELETE /v1/lattice/load/{service}?id=: a provider's own counts.
  reply report_serving(request& req, const target& t, const std::string& service);
  reply consul(request& req, const target& t);
  reply ops(request& req, const target& t);
  // The web console (api_ui.cpp): / redirects to /ui/, /ui/... are the
  // embedded files; no token needed (they carry no registry data).
  static bool is_console_path(std::string_view path);
  reply console(const request& req, const target& t);
  reply test_faults(request& req, const target& t);
  response metrics_text(unsigned version);

  struct consul_route;
  static std::span<const consul_route> consul_routes();
  static std::optional<std::string_view> consul_route_of(std::string_view path);

  // ---- The Consul API. api_consul.cpp routes each request by a table of
  // (method, path) to one member below; a path ending in '/' is a prefix
  // and the handler gets the rest of the path as `tail`.

  // Agent: services registered through this daemon, the agent itself and
  // the members (api_consul_agent.cpp).
  void restore_checks();
  reply consul_register(request& req, const target& t);
  reply consul_deregister(const std::string& service_id);
  // The path and record of the Consul service `service_id` registered
  // through this daemon (a provider it owns), if any.
  std::optional<std::pair<std::string, registry::record_ptr>> own_service(std::string_view service_id) const;
  // PUT /v1/agent/service/maintenance/:id?enable=&reason=
  reply consul_maintenance(const std::string& service_id, const target& t, unsigned version);
  reply consul_agent_service(request& req, const target& t, const std::string& service_id);
  reply consul_agent_services(request& req, const target& t);
  reply consul_agent_self(request& req);
  // /v1/agent/members, /v1/catalog/nodes and /v1/status/peers: one member table, three shapes.
  reply consul_members(request& req, const target& t);

  // Catalog and health of services (api_consul_catalog.cpp).
  reply consul_catalog_services(request& req, const target& t);
  // /v1/catalog/service/:name and /v1/health/service/:name.
  reply consul_service_instances(request& req, const target& t, const std::string& name, bool health);

  // Health, node and agent-health endpoints (api_consul_health.cpp).
  reply consul_node(request& req, const target& t, const std::string& node, bool health);
  reply consul_health_checks(request& req, const target& t, const std::string& name);
  reply consul_health_state(request& req, const target& t, const std::string& state);
  reply consul_agent_health(request& req, const target& t, const std::string& wanted, bool by_id);

  // User events (api_consul_events.cpp, user_events.hpp).
  reply consul_event_fire(request& req, const target& t, const std::string& name);
  reply consul_event_list(request& req, const target& t);
  // Erases the events past their time or beyond the bound (from tick()).
  void sweep_events(time_point now);

  // KV (api_consul_kv.cpp); `key` without its leading '/'.
  reply consul_kv_get(request& req, const target& t, const std::string& key);
  reply consul_kv_put(request& req, const target& t, const std::string& key);
  reply consul_kv_delete(request& req, const target& t, const std::string& key);

  // Sessions, native and Consul (api_sessions.cpp); nullopt for a path
  // that is none of theirs.
  std::optional<reply> session_endpoints(request& req, const target& t);
  // Removes every registration of a session that ended. `applied`
  // (optional) runs, on the replica's thread, once every removal is
  // applied, so that a destroy can answer after its effect is readable.
  void end_session(const client_session& s, std::function<void()> applied = {});
  // Ends `ended` and answers `answer()` once its removals are applied.
  reply destroy_session_and_answer(const client_session& ended, std::function<response()> answer);
  // At start: our registrations made under sessions of a previous run
  // (sessions end with the process) are removed.
  void drop_orphaned_registrations();
  // ?session=ID on a registration: nullopt and the instances tagged with
  // the session, or the error reply (an unknown session). Without it, the
  // instances are freed from any session they were bound to.
  std::optional<reply> session_of_registration(const target& t, const std::string& path, registry::instance_kind kind,
                                               std::vector<registry::instance*> insts, unsigned version);

  // Checks (api_consul_checks.cpp).
  // PUT /v1/agent/check/update/:id with {"Status", "Output"}.
  reply consul_check_update_body(request& req, const std::string& check_id);
  reply consul_check_update(const std::string& check_id, const std::string& status, const std::string& output,
                            unsigned version);
  reply consul_check_register(request& req);
  reply consul_check_deregister(const std::string& check_id, unsigned version);
  nlohmann::json agent_checks() const;
  // This agent's service `service_id`: from the local state, else adopted
  // from a provider this replica owns (registered natively, or before a
  // restart). nullptr if neither.
  local_service* local(const std::string& service_id);
  // A new agent_check for `def`, keeping the state of `before` (a check of
  // the same id and kind being replaced) so that re-registering does not
  // reset a passing check.
  agent_check make_check(consul::check_definition def, const agent_check* before, time_point now);
  // The instance to write for `s`: its registration and every check.
  registry::instance compose(local_service& s, time_point now);
  // Writes `service_id`'s instance; `done` (optional) runs on the HTTP
  // thread once the replica acknowledges it.
  void write_local(const std::string& service_id,
                   std::function<void(const result<registry::instance>&)> done = {});
  // Writes `service_id`'s instance and answers `ok()` once the replica
  // acknowledges it, or Consul's error for the failure (after running
  // `on_failure`, if any, on the HTTP thread).
  reply write_and_answer(const std::string& service_id, std::function<response()> ok, unsigned version,
                         std::function<void()> on_failure = {});
  // Starts service `service_id`'s deregistration; its checks stop now.
  // `applied` (optional) runs on the replica's thread once it is applied.
  void deregister_local(const std::string& service_id, std::function<void()> applied = {});
  // Records a check's new judgement; true if its status changed (a write
  // is due at once).
  bool judge(agent_check& c, const std::string& status, std::string output, time_point now);
  void on_probe(const std::string& service_id, const std::string& check_id, std::uint64_t generation,
                probe_result r);
  // Whether `s` was removed by someone else (natively, or it expired):
  // absent from the replica while none of our writes is in flight.
  bool removed_elsewhere(const local_service& s, const std::string& service_id) const;

  /// A blocking query: `produce` gives (index, response); answered at once
  /// without ?index, else when the index moves past it or ?wait passes.
  /// It is evaluated again when a change wakes one of `topics`
  /// (query_topics.hpp), so they must name everything the index follows.
  /// An `opaque` index (the event list's) answers when it differs, not
  /// only when it grows.
  reply blocking(const request& req, const target& t, std::vector<std::string> topics,
                 std::function<std::pair<std::uint64_t, response>()> produce, bool opaque = false);

  registry::replica& replica_;
  api_options options_;
  // The addresses /v1/lattice/test/partition drops gossip to (--test-faults).
  std::set<std::string> dropped_;
  const http_counters& counters_;
  const http_server*& server_;
  boost::asio::io_context& io_;
  /// This agent's services by Consul service id, and which service each
  /// CheckID belongs to.
  std::map<std::string, local_service> services_;
  std::map<std::string, std::string> check_owner_;
  check_prober prober_;
  // The next user-event sweep, and the event keys whose erasure is in flight.
  time_point next_event_sweep_{};
  std::set<std::string> events_erasing_;
  session_table sessions_;
  // Cleared when the api goes: what a held session's stream keeps checks
  // it before it touches the api (a connection may outlive it at exit).
  std::shared_ptr<api*> alive_ = std::make_shared<api*>(this);
  std::uint64_t next_generation_ = 1;
  std::function<void(time_point)> wake_;
  // Where `c` must be looked at next, if anywhere.
  std::optional<time_point> deadline_of(const agent_check& c) const;
  // Tells wake_ of `at`.
  void watch_deadline(std::optional<time_point> at);

  /// Encoded Consul catalog and health answers by question (endpoint,
  /// filters, service), valid while the service's version and the member
  /// table are the ones they were built from. Holding the table keeps its
  /// address from being reused by a later one. HTTP thread only.
  struct cached_answer {
    std::uint64_t version = 0;
    std::shared_ptr<const registry::replica_status> table;
    std::string body;
  };
  static constexpr std::size_t kMaxCachedAnswers = 4096;
  std::unordered_map<std::string, cached_answer> answers_;
  /// Encoded native lookups by path: valid for the same view and the same
  /// sum of this replica's call counts (api_native.cpp). HTTP thread only.
  struct cached_lookup {
    std::shared_ptr<const registry::service_view> view;
    std::uint64_t load = 0;
    std::string body;
  };
  std::unordered_map<std::string, cached_lookup> lookups_;
  /// Providers registered here that report the calls they serve, by
  /// (path, id), while they report: until DELETE of the counts or of the
  /// instance, or load_report_ttl after the last report. HTTP thread only.
  struct serving_report {
    std::shared_ptr<registry::serve_counter> counter;
    time_point expires = time_point::max();
  };
  std::map<std::pair<std::string, std::string>, serving_report> serving_;
  /// Drops the reports whose time is up; returns when the next one is.
  std::optional<time_point> expire_reports(time_point now);
  /// Encoded SSE view events, shared by every stream (view_delta.hpp).
  std::shared_ptr<event_cache> events_ = std::make_shared<event_cache>();
};

/// A JSON response with `status` (200 by default).
response json_response(const nlohmann::json& body, unsigned version, http::status status = http::status::ok);
/// A 200 response carrying `body` as it is.
response text_response(const std::string& body, const char* content_type, unsigned version);

/// The reply to a write that must not hold the HTTP thread: `start(done)`
/// begins it with one of the replica's *_async calls; once it is
/// acknowledged, the response is `ok(value)` (`ok()` for a result<void>)
/// or `fail(error)`, built on the HTTP thread.
template <class T, class Start, class Ok, class Fail>
deferred_reply deferred_write(Start start, Ok ok, Fail fail) {
  return deferred_reply{[start = std::move(start), ok = std::move(ok),
                         fail = std::move(fail)](std::function<void(std::function<response()>)> complete) mutable {
    start([complete = std::move(complete), ok, fail](result<T> r) {
      complete([r = std::move(r), ok, fail]() -> response {
        if (!r) return fail(r.error());
        if constexpr (std::is_void_v<T>)
          return ok();
        else
          return ok(r.value());
      });
    });
  }};
}

}  // namespace lattice::daemon
