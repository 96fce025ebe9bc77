// apps/latticed/http_server.hpp: the daemon's HTTP/1.1 server (Boost.Beast).
//
// One io_context thread runs every connection. A handler turns a request
// into one of four replies:
//  - a response, written at once;
//  - a deferred response (a write): the handler starts the work and the
//    response is written when it completes, from whatever thread, while
//    the server goes on serving every other connection;
//  - a wait (a blocking query): `poll` is called at once, then each time
//    wake() names one of the topics the query reads, until it returns a
//    response, and at the deadline with final = true, when it must. There
//    is no polling: whoever changes what a query reads must wake its topic;
//  - a stream (Server-Sent Events): headers are written, then every string
//    the source sends, until the client goes away or the server stops.
//
// With options.tls the same exchange runs over TLS (HTTPS); a client that
// does not complete the handshake within read_timeout is dropped.
//
// Limits: request headers of 16 KiB, bodies of body_limit (413 beyond),
// read_timeout for a whole request (408-free: the connection is closed),
// max_connections at once (503 beyond). A request Beast cannot parse gets
// 400 and the connection is closed.
//
// Thread safety: construct, listen() and stop() on the io_context's thread
// or before it runs. A stream's send function may be called from any
// thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json_fwd.hpp>

#include "lattice/crdt/error.hpp"

namespace lattice::daemon {

namespace http = boost::beast::http;
using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

struct wait_reply {
  std::chrono::steady_clock::time_point deadline;
  /// What the query reads, as names the handler chose ("service:/a/b",
  /// "kv:/k"...): wake(topic) re-polls every query waiting on it.
  std::vector<std::string> topics;
  /// Cheap when nothing changed (compare an index): it runs on every wake.
  std::function<std::optional<response>(bool final)> poll;
};

struct stream_reply {
  /// Headers of the stream's response (status 200, Content-Type set).
  response head;
  /// Called once the headers are out, with the sink. Returns what must be
  /// kept alive while the stream lasts (a watch handle); dropped when the
  /// client goes away. The sink may be called from any thread.
  std::function<std::shared_ptr<void>(std::function<void(std::string)> send)> start;
};

struct deferred_reply {
  /// Called at once with the completion, which must be called exactly
  /// once, from any thread, with what builds the response: the builder
  /// runs on the server's thread, so it may touch what handlers own.
  std::function<void(std::function<void(std::function<response()> build)> complete)> start;
};

using reply = std::variant<response, wait_reply, stream_reply, deferred_reply>;
using handler = std::function<reply(request&)>;

struct server_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8500;
  std::size_t body_limit = 1024 * 1024;
  std::chrono::milliseconds read_timeout{30'000};
  std::size_t max_connections = 4096;
  /// Bytes a stream may have queued for a client that reads too slowly;
  /// beyond, the stream is cut off with an `overflow` event.
  std::size_t stream_buffer_limit = 1024 * 1024;
  /// After an overflow, how long the client has to read what is queued
  /// (the overflow event last) before the connection is closed anyway.
  std::chrono::milliseconds stream_overflow_grace{10'000};
  /// Called on every response (for an SSE stream: its head) with the
  /// request's target (empty if it could not be parsed), the status, and
  /// the time since the request was read (metrics).
  std::function<void(std::string_view target, unsigned status, std::chrono::steady_clock::duration elapsed)>
      on_response;
  /// Serve HTTPS with this context (make_https_context); null: plain HTTP.
  std::shared_ptr<boost::asio::ssl::context> tls;
};

/// A TLS server context from PEM files: the certificate chain and key the
/// API presents, and, if `client_ca_file` is not empty, the CA every
/// client must present a certificate from (mutual TLS). TLS 1.2 and 1.3
/// only. The error, if any, names the file at fault.
std::variant<std::shared_ptr<boost::asio::ssl::context>, std::string> make_https_context(
    const std::string& cert_file, const std::string& key_file, const std::string& client_ca_file);

class http_server {
 public:
  http_server(boost::asio::io_context& io, server_options options, handler h);
  ~http_server();
  /// Binds and starts accepting. Errors: the bind's.
  result<void> listen();
  std::uint16_t port() const noexcept { return port_; }
  /// Stops accepting and closes every connection (streams included).
  void stop();
  /// Open Server-Sent Events streams.
  std::size_t streams() const noexcept;
  /// Blocking queries that found nothing new and are waiting for a change.
  /// Tests wait on it to know a query is blocked before they change what it
  /// reads.
  std::size_t waiting_queries() const noexcept;
  /// Re-polls the blocking queries waiting on `topic` (those that now have
  /// an answer get it). Call on the io_context's thread, after the change
  /// is visible to the queries' poll functions.
  void wake(std::string_view topic);
  /// Times wake() found a query to poll, and polls that found nothing new
  /// (the query went on waiting): /metrics, and tests that check a change
  /// wakes only what it concerns.
  std::uint64_t wakeups() const noexcept;
  std::uint64_t idle_wakeups() const noexcept;
  /// Streams cut off because their client read too slowly.
  std::uint64_t stream_overflows() const noexcept;

  struct shared;  // state the connections share with the server

 private:
  void accept();

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_retry_;
  std::shared_ptr<shared> shared_;
  std::uint16_t port_ = 0;
};

/// Beast's string_view (boost's) as a std::string_view.
inline std::string_view sv(boost::beast::string_view s) noexcept { return {s.data(), s.size()}; }

/// `j` as compact JSON text. Strings that are not valid UTF-8 (a config
/// value written as bytes through /v1/kv, an error message quoting a bad
/// request target) are written with U+FFFD in place of the bad bytes rather
/// than failing the response.
std::string dump_json(const nlohmann::json& j);

/// A JSON error body {"error": message} with `status`.
response error_response(http::status status, const std::string& message, unsigned version = 11);

}  // namespace lattice::daemon
