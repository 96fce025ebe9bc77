#include "http_server.hpp"

#include <deque>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace lattice::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

response error_response(http::status status, const std::string& message, unsigned version) {
  response res{status, version};
  res.set(http::field::content_type, "application/json");
  // The message may quote a request target as the client sent it.
  res.body() = dump_json(nlohmann::json{{"error", message}}) + "\n";
  res.prepare_payload();
  return res;
}

// What the server and the blocking-query index need of a connection,
// whatever its stream (plain TCP or TLS).
class session_base : public std::enable_shared_from_this<session_base> {
 public:
  virtual ~session_base() = default;
  virtual void close() = 0;
  // A wake for one of this session's topics.
  virtual void on_wake() = 0;
};

struct http_server::shared {
  server_options options;
  handler handle;
  std::set<session_base*> sessions;  // io thread only
  std::size_t streams = 0;
  std::size_t waits = 0;  // blocking queries evaluated once and still waiting
  // Blocking queries by the topics they read (io thread only).
  std::unordered_map<std::string, std::unordered_set<session_base*>> waiting;
  std::uint64_t wakeups = 0;
  std::uint64_t idle_wakeups = 0;
  std::uint64_t overflows = 0;  // streams cut off for reading too slowly
  bool stopped = false;
};

// One connection. Stream: beast::tcp_stream, or beast::ssl_stream over one
// (HTTPS: the handshake comes first, then the same exchange).
template <class Stream>
class session final : public session_base {
 public:
  session(Stream stream, std::shared_ptr<http_server::shared> shared)
      : stream_(std::move(stream)), shared_(std::move(shared)), timer_(stream_.get_executor()) {}

  void start() {
    shared_->sessions.insert(this);
    if constexpr (kTls) {
      // A client that connects and says nothing is dropped like one that
      // sends half a request.
      lowest().expires_after(shared_->options.read_timeout);
      stream_.async_handshake(asio::ssl::stream_base::server, [self = self()](beast::error_code ec) {
        if (ec) return self->close();  // not TLS, or a certificate refused: nothing to answer
        self->read();
      });
    } else {
      read();
    }
  }
  void close() override {
    beast::error_code ec;
    timer_.cancel();
    lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    lowest().close();
  }
  ~session() override {
    shared_->sessions.erase(this);
    if (streaming_) --shared_->streams;
    stop_waiting();
  }

  void on_wake() override {
    if (!waiting_) return;
    ++shared_->wakeups;
    poll();
    if (waiting_) ++shared_->idle_wakeups;
  }

 private:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  std::shared_ptr<session> self() { return std::static_pointer_cast<session>(shared_from_this()); }
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  void read() {
    parser_.emplace();
    parser_->header_limit(16 * 1024);
    parser_->body_limit(shared_->options.body_limit);
    lowest().expires_after(shared_->options.read_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = self()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec) {  // answered below, if at all, as a request of no target
      target_.clear();
      started_ = std::chrono::steady_clock::now();
    }
    if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted ||
        ec == beast::error::timeout || ec == asio::error::connection_reset || ec == asio::error::eof ||
        ec == asio::ssl::error::stream_truncated)
      return close();
    if (ec == http::error::body_limit)
      return respond(error_response(http::status::payload_too_large, "request body exceeds the limit"), true);
    if (ec == http::error::header_limit)
      return respond(error_response(http::status::request_header_fields_too_large, "request headers too large"),
                     true);
    if (ec) return respond(error_response(http::status::bad_request, "malformed request: " + ec.message()), true);
    lowest().expires_never();
    request req = parser_->release();
    target_.assign(req.target().data(), req.target().size());
    started_ = std::chrono::steady_clock::now();
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();
    reply r = [&]() -> reply {
      try {
        return shared_->handle(req);
      } catch (const std::exception& e) {
        spdlog::error("http: {} {}: {}", std::string(req.method_string()), std::string(req.target()), e.what());
        return error_response(http::status::internal_server_error, "internal error");
      }
    }();
    if (auto* res = std::get_if<response>(&r)) {
      res->version(version);
      res->keep_alive(keep_alive);
      return respond(std::move(*res), !keep_alive);
    }
    if (auto* w = std::get_if<wait_reply>(&r)) {
      wait_ = std::move(*w);
      keep_alive_ = keep_alive;
      version_ = version;
      return poll();
    }
    if (auto* d = std::get_if<deferred_reply>(&r)) return defer(std::move(*d), keep_alive, version);
    start_stream(std::move(std::get<stream_reply>(r)), version);
  }

  // The connection waits for the work (no read is pending: pipelined
  // requests wait in the socket); the server serves every other one.
  //
  // The completion is called, and dropped, on another thread (the
  // replica's): it must never hold the last reference to this session, whose
  // destructor edits the server's table. So it hands its reference over to
  // the handler it posts here on its (only) call, and one dropped uncalled
  // posts its reference here to be released.
  void defer(deferred_reply d, bool keep_alive, unsigned version) {
    using executor_type = decltype(stream_.get_executor());
    struct handover {
      handover(std::shared_ptr<session> s, executor_type e) : self(std::move(s)), executor(std::move(e)) {}
      handover(const handover&) = delete;
      handover& operator=(const handover&) = delete;
      ~handover() {
        if (self) asio::post(executor, [last = std::move(self)] {});
      }
      std::shared_ptr<session> take() {
        std::lock_guard lock(mutex);
        return std::move(self);
      }
      std::mutex mutex;
      std::shared_ptr<session> self;
      executor_type executor;
    };
    auto held = std::make_shared<handover>(self(), stream_.get_executor());
    d.start([held, keep_alive, version](std::function<response()> build) {
      auto self = held->take();
      if (!self) return;  // called twice: the first call answered
      asio::post(held->executor, [self = std::move(self), build = std::move(build), keep_alive, version]() mutable {
        if (self->shared_->stopped) return self->close();
        response res = [&] {
          try {
            return build();
          } catch (const std::exception& e) {
            spdlog::error("http: building a deferred response: {}", e.what());
            return error_response(http::status::internal_server_error, "internal error");
          }
        }();
        res.version(version);
        res.keep_alive(keep_alive);
        self->respond(std::move(res), !keep_alive);
      });
    });
  }

  void poll() {
    const bool final = std::chrono::steady_clock::now() >= wait_.deadline;
    if (auto res = wait_.poll(final); res || final) {
      if (!res) res = error_response(http::status::internal_server_error, "blocking query produced nothing");
      res->version(version_);
      res->keep_alive(keep_alive_);
      stop_waiting();
      timer_.cancel();
      wait_ = {};
      return respond(std::move(*res), !keep_alive_);
    }
    if (waiting_) return;  // woken for nothing new: the deadline timer runs
    waiting_ = true;
    ++shared_->waits;
    for (const auto& topic : wait_.topics) shared_->waiting[topic].insert(this);
    timer_.expires_at(wait_.deadline);
    timer_.async_wait([self = self()](beast::error_code ec) {
      if (!ec && !self->shared_->stopped && self->waiting_) self->poll();
    });
  }

  void stop_waiting() {
    if (!waiting_) return;
    waiting_ = false;
    --shared_->waits;
    for (const auto& topic : wait_.topics) {
      const auto it = shared_->waiting.find(topic);
      if (it == shared_->waiting.end()) continue;
      it->second.erase(this);
      if (it->second.empty()) shared_->waiting.erase(it);
    }
  }

  void respond(response res, bool close_after) {
    if (shared_->options.on_response)
      shared_->options.on_response(target_, res.result_int(), std::chrono::steady_clock::now() - started_);
    auto owned = std::make_shared<response>(std::move(res));
    http::async_write(stream_, *owned,
                      [self = self(), owned, close_after](beast::error_code ec, std::size_t) {
                        if (ec || close_after || self->shared_->stopped) return self->close();
                        self->read();
                      });
  }

  // ---- Server-Sent Events ------------------------------------------------------

  void start_stream(stream_reply s, unsigned version) {
    if (shared_->options.on_response)
      shared_->options.on_response(target_, 200, std::chrono::steady_clock::now() - started_);
    streaming_ = true;
    ++shared_->streams;
    s.head.version(version);
    s.head.keep_alive(false);
    s.head.set(http::field::cache_control, "no-cache");
    std::string head;
    {
      // The header block alone: the body is the stream that follows.
      std::ostringstream out;
      out << s.head.base();
      head = out.str();
    }
    enqueue(std::move(head));
    std::weak_ptr<session> weak = self();
    auto executor = stream_.get_executor();
    keep_ = s.start([weak, executor](std::string chunk) {
      asio::post(executor, [weak, chunk = std::move(chunk)]() mutable {
        if (auto self = weak.lock()) self->enqueue(std::move(chunk));
      });
    });
    // Reading tells us when the client goes away; anything it sends is
    // ignored.
    watch_for_close();
  }

  void watch_for_close() {
    // Through the stream (TLS records are read whole), not the socket.
    stream_.async_read_some(asio::buffer(discard_), [self = self()](beast::error_code ec, std::size_t) {
      if (ec) return self->end_stream();
      self->watch_for_close();
    });
  }

  void end_stream() {
    keep_.reset();  // cancels the watch
    close();
  }

  void enqueue(std::string chunk) {
    if (!lowest().socket().is_open() || overflowed_) return;
    // A client that stops reading must not grow our memory without bound:
    // past the limit, what is queued and not yet being written is dropped,
    // the client gets one last event saying why, and the stream ends once
    // that is written (or after a grace period, if the client reads nothing).
    if (queued_bytes_ + chunk.size() > shared_->options.stream_buffer_limit && !outbox_.empty()) {
      overflowed_ = true;
      ++shared_->overflows;
      keep_.reset();  // no more events
      while (outbox_.size() > 1) {
        queued_bytes_ -= outbox_.back().size();
        outbox_.pop_back();
      }
      outbox_.push_back("event: overflow\ndata: {\"error\": \"the client read too slowly: the stream was cut off; "
                        "reconnect to get the current state\"}\n\n");
      // Not the stream's own expiry: with a write and the close watch's
      // read both pending, tcp_stream has no operation to apply it to (a
      // Beast assertion, and in release builds no grace period at all).
      timer_.expires_after(shared_->options.stream_overflow_grace);
      timer_.async_wait([self = self()](beast::error_code ec) {
        if (!ec) self->end_stream();
      });
      return;
    }
    queued_bytes_ += chunk.size();
    outbox_.push_back(std::move(chunk));
    if (outbox_.size() == 1) write_next();
  }

  void write_next() {
    asio::async_write(stream_, asio::buffer(outbox_.front()),
                      [self = self()](beast::error_code ec, std::size_t) {
                        if (ec) return self->end_stream();
                        self->queued_bytes_ -= self->outbox_.front().size();
                        self->outbox_.pop_front();
                        if (!self->outbox_.empty()) return self->write_next();
                        if (self->overflowed_) self->end_stream();
                      });
  }

  Stream stream_;
  std::shared_ptr<http_server::shared> shared_;
  std::string target_;  // of the request being answered (metrics)
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  asio::steady_timer timer_;
  wait_reply wait_;
  bool waiting_ = false;  // counted in shared_->waits
  bool keep_alive_ = false;
  unsigned version_ = 11;
  bool streaming_ = false;
  std::shared_ptr<void> keep_;
  std::deque<std::string> outbox_;
  std::size_t queued_bytes_ = 0;
  bool overflowed_ = false;
  std::array<char, 512> discard_{};
};

std::variant<std::shared_ptr<asio::ssl::context>, std::string> make_https_context(const std::string& cert_file,
                                                                                   const std::string& key_file,
                                                                                   const std::string& client_ca_file) {
  namespace ssl = asio::ssl;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  beast::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) return "--https-cert " + cert_file + ": " + ec.message();
  ctx->use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) return "--https-key " + key_file + ": " + ec.message();
  if (!client_ca_file.empty()) {
    ctx->load_verify_file(client_ca_file, ec);
    if (ec) return "--https-ca " + client_ca_file + ": " + ec.message();
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  }
  return ctx;
}

http_server::http_server(asio::io_context& io, server_options options, handler h)
    : io_(io), acceptor_(io), accept_retry_(io), shared_(std::make_shared<shared>()) {
  shared_->options = std::move(options);
  shared_->handle = std::move(h);
}

http_server::~http_server() = default;

result<void> http_server::listen() {
  beast::error_code ec;
  const auto address = asio::ip::make_address(shared_->options.host, ec);
  if (ec) return ec;
  const tcp::endpoint endpoint(address, shared_->options.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return ec;
  port_ = acceptor_.local_endpoint().port();
  accept();
  return success();
}

void http_server::accept() {
  acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || shared_->stopped) return;
    if (ec) {
      // Out of file descriptors (EMFILE) or memory: accepting again at once
      // would fail again and spin. Wait for connections to close.
      spdlog::warn("http: accept failed: {}; retrying in 50 ms", ec.message());
      accept_retry_.expires_after(std::chrono::milliseconds(50));
      accept_retry_.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec && !shared_->stopped) accept();
      });
      return;
    }
    if (!ec) {
      // Responses and TLS handshake messages are written whole: Nagle would
      // only hold the last segment of a flight back for the peer's ACK.
      beast::error_code no_delay_ec;  // a socket without it still works
      socket.set_option(tcp::no_delay(true), no_delay_ec);
      if (shared_->sessions.size() >= shared_->options.max_connections && shared_->options.tls) {
        // Over the limit over TLS: no handshake, so no answer either.
        beast::error_code ignored;
        socket.close(ignored);
      } else if (shared_->sessions.size() >= shared_->options.max_connections) {
        // Over the limit: a clear answer, then the door.
        auto res = std::make_shared<response>(error_response(http::status::service_unavailable, "too many connections"));
        res->keep_alive(false);
        auto sock = std::make_shared<tcp::socket>(std::move(socket));
        http::async_write(*sock, *res, [sock, res](beast::error_code, std::size_t) {
          beast::error_code ignored;
          sock->shutdown(tcp::socket::shutdown_both, ignored);
        });
      } else {
        if (shared_->options.tls)
          std::make_shared<session<beast::ssl_stream<beast::tcp_stream>>>(
              beast::ssl_stream<beast::tcp_stream>(std::move(socket), *shared_->options.tls), shared_)
              ->start();
        else
          std::make_shared<session<beast::tcp_stream>>(beast::tcp_stream(std::move(socket)), shared_)->start();
      }
    }
    accept();
  });
}

void http_server::stop() {
  shared_->stopped = true;
  beast::error_code ec;
  acceptor_.close(ec);
  accept_retry_.cancel();
  // close() may end a session (and erase it from the set): iterate a copy.
  const auto sessions = shared_->sessions;
  for (auto* s : sessions) s->close();
}

std::size_t http_server::streams() const noexcept { return shared_->streams; }

std::size_t http_server::waiting_queries() const noexcept { return shared_->waits; }

std::uint64_t http_server::wakeups() const noexcept { return shared_->wakeups; }

std::uint64_t http_server::idle_wakeups() const noexcept { return shared_->idle_wakeups; }

std::uint64_t http_server::stream_overflows() const noexcept { return shared_->overflows; }

void http_server::wake(std::string_view topic) {
  const auto it = shared_->waiting.find(std::string(topic));
  if (it == shared_->waiting.end()) return;
  // A poll that answers leaves the set: poll a copy, each session kept
  // alive while it is polled.
  std::vector<std::shared_ptr<session_base>> woken;
  woken.reserve(it->second.size());
  for (auto* s : it->second) woken.push_back(s->shared_from_this());
  for (const auto& s : woken) s->on_wake();
}

}  // namespace lattice::daemon
