#include "api.hpp"

#include <openssl/crypto.h>

#include "duration.hpp"
#include "query_topics.hpp"

namespace lattice::daemon {

response json_response(const nlohmann::json& body, unsigned version, http::status status) {
  response res{status, version};
  res.set(http::field::content_type, "application/json");
  res.body() = dump_json(body) + "\n";
  res.prepare_payload();
  return res;
}

response text_response(const std::string& body, const char* content_type, unsigned version) {
  response res{http::status::ok, version};
  res.set(http::field::content_type, content_type);
  res.body() = body;
  res.prepare_payload();
  return res;
}

api::api(registry::replica& replica, api_options options, const http_counters& counters,
         const http_server*& server, boost::asio::io_context& io)
    : replica_(replica),
      options_(std::move(options)),
      counters_(counters),
      server_(server),
      io_(io),
      prober_(io, options_.max_concurrent_checks) {
  restore_checks();
  drop_orphaned_registrations();
}

api::~api() { *alive_ = nullptr; }

namespace {

bool same_secret(const std::string& given, const std::string& expected) {
  return given.size() == expected.size() && CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
}

}  // namespace

bool api::authorized(const request& req, const target& t, access needed) const {
  const bool writes_open = options_.write_token.empty();
  const bool reads_open = options_.read_token.empty() || writes_open;
  if (needed == access::write ? writes_open : reads_open) return true;
  std::string token;
  if (auto it = req.find("X-Consul-Token"); it != req.end()) {
    token = std::string(it->value());
  } else if (auto auth = req.find(http::field::authorization); auth != req.end()) {
    const std::string_view value = sv(auth->value());
    if (value.starts_with("Bearer ")) token = std::string(value.substr(7));
  } else if (auto q = t.get("token")) {
    token = *q;
  }
  if (token.empty()) return false;
  if (same_secret(token, options_.write_token)) return true;
  return needed == access::read && !options_.read_token.empty() && same_secret(token, options_.read_token);
}

void http_counters::record(std::string_view route_name, unsigned status, std::chrono::steady_clock::duration elapsed) {
  auto it = by_route.find(route_name);
  if (it == by_route.end()) it = by_route.emplace(std::string(route_name), route{}).first;
  auto& r = it->second;
  ++r.by_status[status];
  const double seconds = std::chrono::duration<double>(elapsed).count();
  r.seconds += seconds;
  ++r.count;
  std::size_t bucket = 0;
  while (bucket < bounds.size() && seconds > bounds[bucket]) ++bucket;
  ++r.buckets[bucket];
}

std::string_view api::route_of(std::string_view path) {
  if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  if (path == "/health") return "/health";
  if (path == "/metrics") return "/metrics";
  if (is_console_path(path)) return "/ui/";
  if (auto consul_route = consul_route_of(path)) return *consul_route;
  static constexpr std::string_view native[] = {
      "/v1/lattice/services", "/v1/lattice/members", "/v1/lattice/instances/", "/v1/lattice/config",
      "/v1/lattice/load",
      "/v1/lattice/watch",    "/v1/lattice/sessions", "/v1/lattice/test/partition", "/v1/session/create",
      "/v1/session/renew/",   "/v1/session/destroy/", "/v1/session/info/",         "/v1/session/list",
      "/v1/session/node/"};
  for (const std::string_view prefix : native)
    if (path.starts_with(prefix)) return prefix;
  return "other";
}

reply api::handle(request& req) {
  const auto t = parse_target(sv(req.target()));
  if (!t) return error_response(http::status::bad_request, "malformed request target", req.version());
  const std::string_view path = t->path;
  if (path == "/health" || path == "/metrics") return ops(req, *t);
  if (is_console_path(path)) return console(req, *t);
  // Check updates and deregistrations are writes even by GET (older
  // Consul clients send GET).
  const bool write = (req.method() != http::verb::get && req.method() != http::verb::head) ||
                     path.starts_with("/v1/agent/check/") || path.starts_with("/v1/agent/service/deregister/");
  if (!authorized(req, *t, write ? access::write : access::read))
    return error_response(http::status::forbidden, "permission denied: a valid token is required", req.version());
  if (path == "/v1/lattice/test/partition") return test_faults(req, *t);
  if (auto answered = session_endpoints(req, *t)) return std::move(*answered);
  if (path.starts_with("/v1/lattice/")) return native(req, *t);
  if (path.starts_with("/v1/")) return consul(req, *t);
  return error_response(http::status::not_found, "no such endpoint: " + t->path, req.version());
}

reply api::blocking(const request& req, const target& t, std::vector<std::string> topics,
                    std::function<std::pair<std::uint64_t, response>()> produce, bool opaque) {
  const auto index_text = t.get("index");
  if (!index_text) return produce().second;
  std::uint64_t index = 0;
  try {
    std::size_t used = 0;
    index = std::stoull(*index_text, &used);
    if (used != index_text->size()) throw std::invalid_argument("index");
  } catch (const std::exception&) {
    return error_response(http::status::bad_request, "invalid index: " + *index_text, req.version());
  }
  auto wait = std::chrono::milliseconds(300'000);  // Consul's default: 5 minutes
  if (auto w = t.get("wait")) {
    auto parsed = parse_duration(*w);
    if (!parsed) return error_response(http::status::bad_request, "invalid wait: " + *w, req.version());
    wait = *parsed;
  }
  wait = std::min(wait, options_.max_wait);
  // Consul adds up to wait/16 of jitter so that waiters do not all return
  // at once; a fixed deadline is enough here.
  return wait_reply{std::chrono::steady_clock::now() + wait, std::move(topics),
                    [index, opaque, produce = std::move(produce)](bool final) -> std::optional<response> {
                      auto [now_index, res] = produce();
                      if (now_index > index || (opaque && now_index != index) || final) return std::move(res);
                      return std::nullopt;
                    }};
}

}  // namespace lattice::daemon
