// latticed's cached answers (apps/latticed/api.hpp): a native lookup or a
// Consul health answer is built once per view and served again only while
// nothing it shows has moved, including this replica's live call counts,
// which change without a new view.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "api.hpp"
#include "lattice/registry/replica.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace answer_cache_test {

using namespace lattice;
namespace http = boost::beast::http;

namespace {

struct daemon_under_test {
  std::unique_ptr<registry::replica> replica;
  daemon::http_counters counters;
  const daemon::http_server* server = nullptr;
  boost::asio::io_context io;  // never run: nothing here waits on a check
  std::unique_ptr<daemon::api> api;

  daemon_under_test() {
    registry::replica_options o;
    o.listen_host = "127.0.0.1";
    o.listen_port = 0;
    replica = registry::replica::open(o).value();
    daemon::api_options a;
    a.http_address = "127.0.0.1:8500";
    api = std::make_unique<daemon::api>(*replica, a, counters, server, io);
  }

  // A GET answered at once (no ?index): its status and JSON body.
  std::pair<unsigned, nlohmann::json> get(const std::string& target) {
    daemon::request req{http::verb::get, target, 11};
    auto r = api->handle(req);
    auto* res = std::get_if<daemon::response>(&r);
    REQUIRE(res != nullptr);
    return {res->result_int(), nlohmann::json::parse(res->body())};
  }
};

registry::instance provider(std::uint16_t port) {
  registry::instance i;
  i.address = "127.0.0.1";
  i.port = port;
  return i;
}

}  // namespace

TEST_CASE("a cached native lookup follows this replica's call counts", "[daemon][cache]") {
  daemon_under_test d;
  REQUIRE(d.replica->register_instance("/s", provider(9001)));
  auto [status, body] = d.get("/v1/lattice/instances/s");
  REQUIRE(status == 200);
  CHECK(body["providers"][0]["in_flight"] == 0);
  CHECK(d.get("/v1/lattice/instances/s").second == body);  // served again, unchanged

  const auto list = d.replica->lookup("/s");
  REQUIRE(list.providers().size() == 1);
  {
    registry::call_guard call(list.providers().front());
    // Same view, same version: only the live count moved.
    const auto during = d.get("/v1/lattice/instances/s").second;
    CHECK(during["version"] == body["version"]);
    CHECK(during["providers"][0]["in_flight"] == 1);
  }
  const auto after = d.get("/v1/lattice/instances/s").second;
  CHECK(after["providers"][0]["in_flight"] == 0);
  CHECK(after["providers"][0]["served"] == 1);
}

TEST_CASE("a cached Consul health answer follows the service's version", "[daemon][cache]") {
  daemon_under_test d;
  REQUIRE(d.replica->register_instance("/web", provider(9001)));
  CHECK(d.get("/v1/health/service/web").second.size() == 1);
  CHECK(d.get("/v1/health/service/web").second.size() == 1);
  REQUIRE(d.replica->register_instance("/web", provider(9002)));
  CHECK(d.get("/v1/health/service/web").second.size() == 2);
  // Another question about the same service has its own entry.
  CHECK(d.get("/v1/health/service/web?tag=none").second.empty());
  CHECK(d.get("/v1/health/service/web").second.size() == 2);
}

}  // namespace answer_cache_test
