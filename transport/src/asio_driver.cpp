#include "lattice/transport/asio_driver.hpp"

#include <charconv>

#include <spdlog/spdlog.h>

#include "asio_common.hpp"
#include "asio_inbound.hpp"
#include "asio_outbound.hpp"
#include "byte_stream.hpp"

namespace lattice::transport {

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
