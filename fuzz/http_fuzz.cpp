// Fuzz target: latticed's HTTP request handling in-process: Beast's parser
// with the server's limits, then routing, the native and Consul JSON
// bodies, tokens and query strings (api::handle) over a real replica on
// loopback. A request the parser accepts is handled; a blocking query is
// polled once as at its deadline; a stream is started and dropped. Nothing
// may crash, and no request may make the replica's state undecodable.
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include "api.hpp"
#include "http_server.hpp"
#include "lattice/registry/replica.hpp"

namespace http = boost::beast::http;
using namespace lattice;

namespace {

struct daemon_under_test {
  std::unique_ptr<registry::replica> replica;
  daemon::http_counters counters;
  const daemon::http_server* server = nullptr;
  boost::asio::io_context io;  // run while a write waits for its acknowledgement
  std::unique_ptr<daemon::api> api;

  daemon_under_test() {
    spdlog::set_level(spdlog::level::off);
    registry::replica_options o;
    o.listen_host = "127.0.0.1";
    o.listen_port = 0;
    replica = registry::replica::open(o).value();
    daemon::api_options a;
    a.http_address = "127.0.0.1:8500";
    a.max_wait = std::chrono::milliseconds(1);
    api = std::make_unique<daemon::api>(*replica, a, counters, server, io);
  }
};

daemon_under_test& the_daemon() {
  static daemon_under_test d;  // lives for the whole run, as a daemon does
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& d = the_daemon();
  http::request_parser<http::string_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(64 * 1024);
  parser.eager(true);
  boost::beast::error_code ec;
  auto rest = boost::asio::buffer(data, size);
  while (!parser.is_done() && rest.size() > 0) {
    const auto used = parser.put(rest, ec);
    rest += used;
    // need_more means "call again with these bytes and more": with no
    // more to give, calling again breaks Beast's contract (it asserts in
    // parse_chunk_header), so this input is complete as it is.
    if (ec == http::error::need_more) break;
    if (ec) return 0;
    if (used == 0) break;
  }
  if (!parser.is_done()) {
    if (!parser.got_some()) return 0;  // put_eof() requires some input
    parser.put_eof(ec);
    if (ec || !parser.is_done()) return 0;
  }
  daemon::request req = parser.release();
  daemon::reply r = d.api->handle(req);
  if (auto* w = std::get_if<daemon::wait_reply>(&r)) {
    (void)w->poll(true);
  } else if (auto* s = std::get_if<daemon::stream_reply>(&r)) {
    auto keep = s->start([](std::string) {});
    keep.reset();
  } else if (auto* deferred = std::get_if<daemon::deferred_reply>(&r)) {
    // A write: wait for its acknowledgement (one that never comes is a
    // hang, which libFuzzer's -timeout reports), then build the response
    // here, as the HTTP thread would.
    std::promise<std::function<daemon::response()>> built;
    auto ready = built.get_future();
    deferred->start([&built](std::function<daemon::response()> build) { built.set_value(std::move(build)); });
    // Writes of the agent's own services complete through the HTTP
    // thread's io_context: run it, as the HTTP thread would.
    while (ready.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
      d.io.restart();
      d.io.run_for(std::chrono::milliseconds(1));
    }
    (void)ready.get()();
  }
  return 0;
}
