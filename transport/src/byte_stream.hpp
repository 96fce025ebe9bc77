// transport/src/byte_stream.hpp: a gossip connection, plain TCP or TLS.
//
// The driver reads and writes frames the same way over both; only the
// handshake differs (TLS: a server or client handshake after connect or
// accept; plain: none).
#pragma once

#include <variant>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

namespace lattice::transport {

class byte_stream {
 public:
  using tcp = boost::asio::ip::tcp;
  using tls_stream = boost::asio::ssl::stream<tcp::socket>;

  /// Plain TCP.
  explicit byte_stream(tcp::socket socket) : stream_(std::move(socket)) {}
  /// TLS over `socket`, configured by `context` (which must outlive us).
  byte_stream(tcp::socket socket, boost::asio::ssl::context& context)
      : stream_(std::in_place_type<tls_stream>, std::move(socket), context) {}

  tcp::socket& socket() noexcept {
    if (auto* tls = std::get_if<tls_stream>(&stream_)) return tls->next_layer();
    return std::get<tcp::socket>(stream_);
  }
  bool is_tls() const noexcept { return std::holds_alternative<tls_stream>(stream_); }

  /// TLS: the handshake in `role`. Plain: completes at once.
  template <class Handler>
  void async_handshake(boost::asio::ssl::stream_base::handshake_type role, Handler&& handler) {
    if (auto* tls = std::get_if<tls_stream>(&stream_)) {
      tls->async_handshake(role, std::forward<Handler>(handler));
    } else {
      boost::asio::post(socket().get_executor(),
                        [h = std::forward<Handler>(handler)]() mutable { h(boost::system::error_code{}); });
    }
  }

  template <class Buffer, class Handler>
  void async_read_some(const Buffer& buffer, Handler&& handler) {
    std::visit([&](auto& s) { s.async_read_some(buffer, std::forward<Handler>(handler)); }, stream_);
  }

  template <class Buffer, class Handler>
  void async_write(const Buffer& buffer, Handler&& handler) {
    std::visit([&](auto& s) { boost::asio::async_write(s, buffer, std::forward<Handler>(handler)); }, stream_);
  }

  /// Closes the socket at once (no TLS close_notify: gossip frames are
  /// self-delimiting, so a truncation cannot pass for a complete frame).
  void close() {
    boost::system::error_code ignored;
    socket().close(ignored);
  }

 private:
  std::variant<tcp::socket, tls_stream> stream_;
};

}  // namespace lattice::transport
