#include "check_probe.hpp"

#include <uriparser/Uri.h>

#include <optional>
#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/rfc2818_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <openssl/ssl.h>

namespace lattice::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using consul::check_definition;
using consul::check_kind;

namespace {

struct endpoint_parts {
  bool tls = false;
  std::string host, port, target;
};

std::string range_text(const UriTextRangeA& r) {
  return r.first == nullptr ? std::string() : std::string(r.first, static_cast<std::size_t>(r.afterLast - r.first));
}

// "https://[::1]:8443/health?x=1" -> tls, "::1", "8443", "/health?x=1".
std::optional<endpoint_parts> split_url(const std::string& url) {
  UriUriA uri;
  const char* error = nullptr;
  if (uriParseSingleUriA(&uri, url.c_str(), &error) != URI_SUCCESS) return std::nullopt;
  endpoint_parts out;
  const std::string scheme = range_text(uri.scheme);
  out.tls = scheme == "https" || scheme == "HTTPS";
  out.host = range_text(uri.hostText);
  out.port = range_text(uri.portText);
  // The target is what follows the authority, less any fragment.
  const char* from = uri.portText.afterLast != nullptr ? uri.portText.afterLast : uri.hostText.afterLast;
  if (from != nullptr && *from == ']') ++from;  // IPv6 literal's closing bracket
  const char* to = uri.fragment.first != nullptr ? uri.fragment.first - 1 : url.c_str() + url.size();
  uriFreeUriMembersA(&uri);
  if (out.host.empty() || from == nullptr || from > to) return std::nullopt;
  out.target.assign(from, to);
  if (out.target.empty() || out.target.front() != '/') out.target.insert(0, "/");
  if (out.port.empty()) out.port = out.tls ? "443" : "80";
  return out;
}

// One probe: resolve, connect, and for HTTP the exchange, all under one
// deadline (the check's Timeout) that closes the socket when it passes.
class probe : public std::enable_shared_from_this<probe> {
 public:
  probe(asio::io_context& io, ssl::context* tls, check_definition check, std::function<void(probe_result)> done)
      : check_(std::move(check)), done_(std::move(done)), timer_(io), resolver_(io), plain_(io) {
    if (tls != nullptr) secure_.emplace(beast::tcp_stream(io), *tls);
  }

  void start(const endpoint_parts& at) {
    at_ = at;
    timer_.expires_after(check_.timeout);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->finished_) return;
      self->timed_out_ = true;
      self->resolver_.cancel();
      beast::error_code ignored;
      self->socket().close(ignored);
    });
    resolver_.async_resolve(at_.host, at_.port, [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type r) {
      if (ec) return self->fail(ec);
      self->stream().async_connect(r, [self](beast::error_code ec2, const tcp::endpoint&) { self->on_connect(ec2); });
    });
  }

 private:
  beast::tcp_stream& stream() { return secure_ ? beast::get_lowest_layer(*secure_) : plain_; }
  tcp::socket& socket() { return stream().socket(); }

  std::string what() const {
    return check_.kind == check_kind::tcp ? "dial tcp " + check_.tcp : check_.method + " \"" + check_.http + "\"";
  }

  void fail(beast::error_code ec) {
    finish({"critical", what() + ": " + (timed_out_ ? std::string("i/o timeout") : ec.message())});
  }

  void finish(probe_result r) {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    beast::error_code ignored;
    socket().shutdown(tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
    done_(std::move(r));
  }

  void on_connect(beast::error_code ec) {
    if (ec) return fail(ec);
    if (check_.kind == check_kind::tcp) return finish({"passing", "TCP connect " + check_.tcp + ": Success"});
    request_.method_string(check_.method);
    request_.target(at_.target);
    request_.version(11);
    request_.set(http::field::host, at_.host);
    request_.set(http::field::user_agent, "Consul Health Check");
    request_.set(http::field::accept, "text/plain, text/*, */*");
    for (const auto& [name, values] : check_.header)
      for (const auto& value : values) request_.insert(name, value);
    request_.set(http::field::connection, "close");
    request_.body() = check_.body;
    request_.prepare_payload();
    parser_.body_limit(64 * 1024);
    if (!secure_) return send(plain_);
    const std::string& sni = check_.tls_server_name.empty() ? at_.host : check_.tls_server_name;
    if (!check_.tls_skip_verify) {
      secure_->set_verify_callback(ssl::rfc2818_verification(sni));
    }
    SSL_set_tlsext_host_name(secure_->native_handle(), sni.c_str());
    secure_->async_handshake(ssl::stream_base::client, [self = shared_from_this()](beast::error_code ec2) {
      if (ec2) return self->fail(ec2);
      self->send(*self->secure_);
    });
  }

  template <class Stream>
  void send(Stream& s) {
    http::async_write(s, request_, [self = shared_from_this(), &s](beast::error_code ec, std::size_t) {
      if (ec) return self->fail(ec);
      http::async_read(s, self->buffer_, self->parser_, [self](beast::error_code ec2, std::size_t) { self->on_read(ec2); });
    });
  }

  void on_read(beast::error_code ec) {
    // A body past the limit still has its status: judge by that.
    if (ec && !(ec == http::error::body_limit && parser_.is_header_done())) return fail(ec);
    const auto& res = parser_.get();
    const unsigned code = res.result_int();
    const std::string status = code >= 200 && code < 300 ? "passing" : code == 429 ? "warning" : "critical";
    std::string output = "HTTP " + check_.method + " " + check_.http + ": " + std::to_string(code) + " " +
                         std::string(res.reason()) + " Output: " + res.body();
    finish({status, std::move(output)});
  }

  check_definition check_;
  std::function<void(probe_result)> done_;
  asio::steady_timer timer_;
  tcp::resolver resolver_;
  beast::tcp_stream plain_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure_;
  endpoint_parts at_;
  http::request<http::string_body> request_;
  http::response_parser<http::string_body> parser_;
  beast::flat_buffer buffer_;
  bool timed_out_ = false;
  bool finished_ = false;
};

}  // namespace

check_prober::check_prober(asio::io_context& io, std::size_t max_in_flight)
    : io_(io),
      verify_(ssl::context::tls_client),
      no_verify_(ssl::context::tls_client),
      max_in_flight_(max_in_flight),
      self_(std::make_shared<check_prober*>(this)) {
  verify_.set_default_verify_paths();
  verify_.set_verify_mode(ssl::verify_peer);
  no_verify_.set_verify_mode(ssl::verify_none);
}

check_prober::~check_prober() { *self_ = nullptr; }

void check_prober::run(const check_definition& check, std::function<void(probe_result)> done) {
  job j{check, std::move(done)};
  if (running_ >= max_in_flight_) {
    waiting_.push_back(std::move(j));
    return;
  }
  start(std::move(j));
}

void check_prober::start(job j) {
  ++running_;
  std::weak_ptr<check_prober*> self = self_;
  auto done = [self, done = std::move(j.done)](probe_result r) {
    const auto alive = self.lock();
    if (!alive || *alive == nullptr) return;
    check_prober& prober = **alive;
    done(std::move(r));
    prober.finish();
  };
  endpoint_parts at;
  if (j.check.kind == check_kind::tcp) {
    const auto colon = j.check.tcp.rfind(':');
    at.host = j.check.tcp.substr(0, colon);
    if (at.host.size() >= 2 && at.host.front() == '[' && at.host.back() == ']') at.host = at.host.substr(1, at.host.size() - 2);
    at.port = j.check.tcp.substr(colon + 1);
  } else if (auto parts = split_url(j.check.http)) {
    at = std::move(*parts);
  } else {
    // Answered on a later turn, never from inside run().
    asio::post(io_, [done = std::move(done), url = j.check.http]() mutable {
      done({"critical", "invalid URL \"" + url + "\""});
    });
    return;
  }
  ssl::context* tls = !at.tls ? nullptr : j.check.tls_skip_verify ? &no_verify_ : &verify_;
  std::make_shared<probe>(io_, tls, std::move(j.check), std::move(done))->start(at);
}

void check_prober::finish() {
  --running_;
  if (waiting_.empty() || running_ >= max_in_flight_) return;
  job next = std::move(waiting_.front());
  waiting_.pop_front();
  start(std::move(next));
}

}  // namespace lattice::daemon
