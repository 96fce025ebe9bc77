#include "lattice/transport/asio_driver.hpp"

#include <charconv>
#include <deque>
#include <optional>

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "byte_stream.hpp"

namespace lattice::transport {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;
using clock_type = std::chrono::steady_clock;

// ---- inbound: reads frames from a peer that connected to us ---------------
class asio_driver::inbound : public std::enable_shared_from_this<inbound> {
 public:
  inbound(asio_driver& driver, tcp::socket socket)
      : driver_(driver),
        stream_(driver.options_.tls ? byte_stream(std::move(socket), *driver.options_.tls)
                                    : byte_stream(std::move(socket))),
        idle_(driver.io_),
        decoder_(driver.options_.frames) {
    boost::system::error_code ignored;
    const auto endpoint = stream_.socket().remote_endpoint(ignored);
    peer_ = endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
  }

  void start() {
    // The handshake shares the idle timeout: a peer that connects and
    // says nothing is closed either way.
    idle_.expires_after(driver_.options_.idle_timeout);
    idle_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->close();
    });
    stream_.async_handshake(asio::ssl::stream_base::server,
                            [self = shared_from_this()](boost::system::error_code ec) {
                              if (ec) {
                                ++self->driver_.stats_.tls_handshake_failures;
                                spdlog::warn("lattice: TLS handshake with {} failed: {}", self->peer_, ec.message());
                                return self->finish();
                              }
                              self->do_read();
                            });
  }

  void close() {
    stream_.close();
    idle_.cancel();
  }

 private:
  void do_read() {
    idle_.expires_after(driver_.options_.idle_timeout);
    idle_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->close();  // silent too long
    });
    stream_.async_read_some(asio::buffer(buffer_),
                            [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                              self->on_read(ec, n);
                            });
  }

  void on_read(boost::system::error_code ec, std::size_t n) {
    if (ec) return finish();
    decoder_.feed(std::span(buffer_).first(n));
    while (true) {
      auto next = decoder_.next();
      if (!next) {
        driver_.on_rejected(static_cast<errc>(next.error().value()), peer_);
        return finish();
      }
      if (!next.value()) break;
      ++driver_.stats_.frames_received;
      driver_.deliver(static_cast<message_type>(next.value()->type), next.value()->payload);
    }
    if (driver_.stopping_) return finish();
    do_read();
  }

  void finish() {
    close();
    driver_.inbound_.erase(this);
  }

  asio_driver& driver_;
  byte_stream stream_;
  asio::steady_timer idle_;
  frame_decoder decoder_;
  std::array<std::byte, 64 * 1024> buffer_{};
  std::string peer_;
};

// ---- outbound: one connection to a peer's gossip address, writes only ----
class asio_driver::outbound : public std::enable_shared_from_this<outbound> {
 public:
  outbound(asio_driver& driver, std::string address)
      : driver_(driver),
        address_(std::move(address)),
        resolver_(driver.io_),
        timer_(driver.io_),
        backoff_(driver.options_.reconnect_initial) {}

  void enqueue(std::vector<std::byte> frame) {
    if (queued_bytes_ + frame.size() > driver_.options_.max_queued_bytes) {
      ++driver_.stats_.dropped_queue_full;
      return;
    }
    queued_bytes_ += frame.size();
    queue_.push_back(std::move(frame));
    if (state_ == state::connected && !writing_) do_write();
    if (state_ == state::idle) do_connect();
  }

  bool flushed() const noexcept { return queue_.empty() || state_ != state::connected; }

  void close() {
    if (stream_) stream_->close();
    resolver_.cancel();
    timer_.cancel();
    state_ = state::closed;
  }

 private:
  enum class state { idle, connecting, connected, backoff, closed };

  // Called before each connection attempt (the socket is closed then):
  // leave from the address we listen on, so peers and firewalls see the
  // gossip address, not whatever the routing table picks (127.0.0.1 for
  // every loopback peer). A wildcard listen address, or one of the other
  // IP version than `to`, leaves the choice to the kernel. Returns whether
  // to try `to`.
  bool bind_source(const tcp::endpoint& to) {
    const auto& source = driver_.listen_address_;
    if (source.is_unspecified() || source.is_v4() != to.address().is_v4()) return true;
    auto& socket = stream_->socket();
    boost::system::error_code ec;
    socket.open(to.protocol(), ec);
    if (!ec) socket.bind(tcp::endpoint(source, 0), ec);
    if (ec) {
      spdlog::warn("lattice: cannot send to {} from {}: {}", address_, source.to_string(), ec.message());
      boost::system::error_code ignored;
      socket.close(ignored);
      return false;
    }
    return true;
  }

  void do_connect() {
    const auto colon = address_.rfind(':');
    if (colon == std::string::npos) {
      spdlog::warn("lattice: peer address '{}' has no port; messages to it are dropped", address_);
      queue_.clear();
      queued_bytes_ = 0;
      return;
    }
    state_ = state::connecting;
    // A fresh stream per attempt: a TLS stream cannot be reused once closed.
    tcp::socket socket(driver_.io_);
    stream_.emplace(driver_.options_.tls ? byte_stream(std::move(socket), *driver_.options_.tls)
                                         : byte_stream(std::move(socket)));
    // The timeout covers resolve, connect and the TLS handshake.
    timer_.expires_after(driver_.options_.connect_timeout);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec && self->state_ == state::connecting) {
        self->stream_->close();
        self->resolver_.cancel();
      }
    });
    resolver_.async_resolve(
        address_.substr(0, colon), address_.substr(colon + 1),
        [self = shared_from_this()](boost::system::error_code ec, tcp::resolver::results_type results) {
          if (ec) return self->on_failure();
          self->endpoints_.clear();
          for (const auto& entry : results) self->endpoints_.push_back(entry.endpoint());
          self->connect_to(0);
        });
  }

  // Tries endpoints_[i], then the next one. Not asio::async_connect over the
  // range: it closes the socket between its condition and each attempt,
  // which would undo bind_source().
  void connect_to(std::size_t i) {
    if (state_ != state::connecting) return;
    if (i >= endpoints_.size()) return on_failure();
    boost::system::error_code ignored;
    stream_->socket().close(ignored);
    if (!bind_source(endpoints_[i])) return connect_to(i + 1);
    stream_->socket().async_connect(endpoints_[i], [self = shared_from_this(), i](boost::system::error_code ec) {
      // Aborted: the connect timeout closed the socket; give up this round.
      if (ec == asio::error::operation_aborted) return self->on_failure();
      if (ec) return self->connect_to(i + 1);
      self->on_connected();
    });
  }

  void on_connected() {
    boost::system::error_code ignored;
    stream_->socket().set_option(tcp::no_delay(true), ignored);
    stream_->async_handshake(asio::ssl::stream_base::client, [self = shared_from_this()](boost::system::error_code hs_ec) {
      if (hs_ec) {
        if (self->stream_->is_tls()) {
          ++self->driver_.stats_.tls_handshake_failures;
          spdlog::warn("lattice: TLS handshake with {} failed: {}", self->address_, hs_ec.message());
        }
        return self->on_failure();
      }
      self->timer_.cancel();
      self->state_ = state::connected;
      self->backoff_ = self->driver_.options_.reconnect_initial;
      if (!self->queue_.empty()) self->do_write();
      else self->close_when_idle();
    });
  }

  // A connection with nothing to write for 3/4 of idle_timeout is closed,
  // and opened again by the next message: with probes and refreshes on
  // datagrams, a quiet replica would otherwise keep a connection (a
  // socket at each end) to every member it ever wrote to, 10,000 of them
  // at 10,000 members. The peer closes its end after the whole
  // idle_timeout of silence; an outbound connection only writes, so
  // without this it would not notice, hold the socket, and lose the next
  // message to the closed connection. Closing first avoids both.
  void close_when_idle() {
    timer_.expires_after(driver_.options_.idle_timeout - driver_.options_.idle_timeout / 4);  // cancels the last wait
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->state_ != state::connected || self->writing_ || !self->queue_.empty()) return;
      self->stream_->close();
      self->state_ = state::idle;
      ++self->driver_.stats_.idle_closes;
    });
  }

  void on_failure() {
    if (state_ == state::closed) return;
    ++driver_.stats_.connect_failures;
    if (stream_) stream_->close();
    writing_ = false;
    state_ = state::backoff;
    // Full jitter between half and all of the current backoff, so peers
    // that lost the same node do not reconnect in lockstep.
    const auto span = static_cast<std::uint64_t>(backoff_.count());
    const auto wait = std::chrono::milliseconds(span / 2 + driver_.rng_() % (span / 2 + 1));
    backoff_ = std::min(backoff_ * 2, driver_.options_.reconnect_max);
    timer_.expires_after(wait);
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec || self->state_ != state::backoff) return;
      self->state_ = state::idle;
      if (!self->queue_.empty()) self->do_connect();
    });
  }

  void do_write() {
    writing_ = true;
    stream_->async_write(asio::buffer(queue_.front()),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                        self->writing_ = false;
                        if (ec) return self->on_failure();
                        ++self->driver_.stats_.frames_sent;
                        self->driver_.stats_.bytes_sent += n;
                        self->queued_bytes_ -= self->queue_.front().size();
                        self->queue_.pop_front();
                        if (!self->queue_.empty()) self->do_write();
                        else self->close_when_idle();
                      });
  }

  asio_driver& driver_;
  std::string address_;
  std::optional<byte_stream> stream_;
  tcp::resolver resolver_;
  std::vector<tcp::endpoint> endpoints_;  // the resolved peer address, tried in order
  asio::steady_timer timer_;
  std::chrono::milliseconds backoff_;
  std::deque<std::vector<std::byte>> queue_;
  std::size_t queued_bytes_ = 0;
  bool writing_ = false;
  state state_ = state::idle;
};

// ---- TLS ---------------------------------------------------------------------
result<std::shared_ptr<asio::ssl::context>> make_tls_context(const std::string& cert_chain_file,
                                                              const std::string& key_file,
                                                              const std::string& ca_file) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls);
  boost::system::error_code ec;
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                           asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                           asio::ssl::context::no_tlsv1_1,
                       ec);
  if (!ec) context->use_certificate_chain_file(cert_chain_file, ec);
  if (!ec) context->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (!ec) context->load_verify_file(ca_file, ec);
  if (!ec) context->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert, ec);
  if (ec) return ec;
  return context;
}

// ---- the driver -------------------------------------------------------------
asio_driver::asio_driver(asio::io_context& io, driver_options options)
    : io_(io),
      options_(std::move(options)),
      acceptor_(io),
      udp_(io),
      tick_timer_(io),
      rng_(std::random_device{}()) {
  listen_address_ = asio::ip::make_address(options_.listen_host);
  bind(options_.listen_port);
}

asio_driver::~asio_driver() = default;

// Binds TCP, and UDP on the same port unless TLS is on. With port 0 the
// kernel picks a port that is free for TCP; if another process holds it
// for UDP, another port is picked (a few times, then it is a setup error).
void asio_driver::bind(std::uint16_t port) {
  for (int attempt = 0;; ++attempt) {
    const tcp::endpoint endpoint(listen_address_, port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    if (options_.tls) return;
    boost::system::error_code ec;
    const udp::endpoint datagram_endpoint(listen_address_, port_);
    udp_.open(datagram_endpoint.protocol(), ec);
    if (!ec) udp_.bind(datagram_endpoint, ec);
    // Sends never wait: a datagram the kernel cannot take now is lost,
    // as it could be anywhere on the way.
    if (!ec) udp_.non_blocking(true, ec);
    if (!ec) return;
    boost::system::error_code ignored;
    udp_.close(ignored);
    acceptor_.close(ignored);
    if (port != 0 || attempt == 8) throw boost::system::system_error(ec, "lattice: cannot bind the gossip UDP port");
  }
}

void asio_driver::start(protocol_core& core) {
  core_ = &core;
  do_accept();
  if (udp_.is_open()) do_receive();
  do_tick();
}

void asio_driver::do_accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec || stopping_) return;
    auto session = std::make_shared<inbound>(*this, std::move(socket));
    inbound_.emplace(session.get(), session);
    session->start();
    do_accept();
  });
}

// ---- datagrams ------------------------------------------------------------------
void asio_driver::do_receive() {
  udp_.async_receive_from(asio::buffer(datagram_buffer_), datagram_sender_,
                          [this](boost::system::error_code ec, std::size_t n) {
                            if (ec == asio::error::operation_aborted || stopping_ || !udp_.is_open()) return;
                            // Other errors (an ICMP error from an earlier
                            // send) concern no datagram of ours: read on.
                            if (!ec) on_datagram(n);
                            do_receive();
                          });
}

void asio_driver::on_datagram(std::size_t size) {
  const auto decoded = decode_datagram(std::span(datagram_buffer_).first(size), options_.frames);
  if (!decoded) {
    const auto reason = static_cast<errc>(decoded.error().value());
    const auto index = static_cast<std::size_t>(reason);
    if (index < stats_.rejected_frames.size()) ++stats_.rejected_frames[index];
    // Anyone can send a datagram: at most one warning a second, so a flood
    // cannot fill the log.
    const auto now = clock_type::now();
    if (now - last_datagram_warning_ >= std::chrono::seconds(1)) {
      last_datagram_warning_ = now;
      spdlog::warn("lattice: dropped a datagram from {}: {}", datagram_sender_.address().to_string(),
                   make_error_code(reason).message());
    }
    return;
  }
  ++stats_.datagrams_received;
  deliver(static_cast<message_type>(decoded.value().type), decoded.value().payload);
}

const udp::endpoint* asio_driver::datagram_endpoint(const std::string& address) {
  auto& entry = datagram_endpoints_[address];
  const auto now = clock_type::now();
  if (entry.endpoint && (entry.at == clock_type::time_point{} || now - entry.at < std::chrono::minutes(1)))
    return &*entry.endpoint;
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) return nullptr;
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  std::uint16_t port = 0;
  const auto port_text = std::string_view(address).substr(colon + 1);
  if (std::from_chars(port_text.data(), port_text.data() + port_text.size(), port).ec != std::errc{}) return nullptr;
  boost::system::error_code ec;
  const auto literal = asio::ip::make_address(host, ec);
  if (!ec) {
    entry.endpoint = udp::endpoint(literal, port);
    entry.at = {};  // an address literal never needs resolving again
    return &*entry.endpoint;
  }
  // A host name: resolved in the background; until then (and while an
  // old answer is refreshed) its messages take TCP, or the old answer.
  if (!entry.resolving) {
    entry.resolving = true;
    if (!udp_resolver_) udp_resolver_ = std::make_shared<udp::resolver>(io_);
    udp_resolver_->async_resolve(
        host, std::string(port_text),
        [this, address, resolver = udp_resolver_](boost::system::error_code rec, udp::resolver::results_type results) {
          if (rec == asio::error::operation_aborted) return;
          auto& resolved = datagram_endpoints_[address];
          resolved.resolving = false;
          resolved.at = clock_type::now();
          if (!rec && !results.empty()) resolved.endpoint = results.begin()->endpoint();
        });
  }
  return entry.endpoint ? &*entry.endpoint : nullptr;
}

bool asio_driver::send_datagram(const std::string& to, const std::vector<std::byte>& frame) {
  const auto* endpoint = datagram_endpoint(to);
  if (endpoint == nullptr || endpoint->address().is_v4() != listen_address_.is_v4()) return false;
  boost::system::error_code ec;
  const auto sent = udp_.send_to(asio::buffer(frame), *endpoint, 0, ec);
  if (ec) {
    ++stats_.datagrams_dropped;
  } else {
    ++stats_.datagrams_sent;
    stats_.bytes_sent += sent;
  }
  return true;
}

void asio_driver::do_tick() {
  if (stopping_) return;
  core_->on_tick(clock_type::now());
  dispatch();
  tick_timer_.expires_after(options_.tick);
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) do_tick();
  });
}

void asio_driver::deliver(message_type type, std::span<const std::byte> payload) {
  core_->on_message(type, payload, clock_type::now());
  dispatch();
}

void asio_driver::dispatch() {
  for (auto& message : core_->take_outgoing()) {
    if (send_filter_ && !send_filter_(message.to)) {
      ++stats_.dropped_filtered;
      continue;
    }
    auto frame = encode_frame(static_cast<std::uint8_t>(message.type), message.payload, options_.frames);
    const bool by_datagram = message.datagram && options_.datagrams && udp_.is_open() &&
                             frame.size() <= options_.max_datagram_bytes;
    if (by_datagram && datagram_filter_ && !datagram_filter_(message.to)) {
      ++stats_.dropped_filtered;
      continue;
    }
    if (by_datagram && send_datagram(message.to, frame)) continue;
    auto& peer = peers_[message.to];
    if (!peer) peer = std::make_shared<outbound>(*this, message.to);
    peer->enqueue(std::move(frame));
  }
}

void asio_driver::on_rejected(errc reason, const std::string& peer) {
  const auto index = static_cast<std::size_t>(reason);
  if (index < stats_.rejected_frames.size()) ++stats_.rejected_frames[index];
  spdlog::warn("lattice: closing connection from {}: {}", peer, make_error_code(reason).message());
}

void asio_driver::stop() {
  if (stopping_ || core_ == nullptr) return;
  stopping_ = true;
  tick_timer_.cancel();
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  if (udp_resolver_) udp_resolver_->cancel();
  core_->leave(clock_type::now());
  dispatch();
  finish_stop(clock_type::now() + options_.stop_flush_timeout);
}

void asio_driver::finish_stop(clock_type::time_point deadline) {
  const bool flushed = std::all_of(peers_.begin(), peers_.end(),
                                   [](const auto& p) { return p.second->flushed(); });
  if (!flushed && clock_type::now() < deadline) {
    tick_timer_.expires_after(std::chrono::milliseconds(5));
    tick_timer_.async_wait([this, deadline](boost::system::error_code) { finish_stop(deadline); });
    return;
  }
  for (auto& [address, peer] : peers_) peer->close();
  boost::system::error_code ignored;
  udp_.close(ignored);
  for (auto& [raw, weak] : inbound_)
    if (auto session = weak.lock()) session->close();
}

}  // namespace lattice::transport
