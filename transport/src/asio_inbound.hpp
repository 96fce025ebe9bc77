// transport/src/asio_inbound.hpp: the Asio driver's side of a connection a
// peer opened to us: reads frames (TLS or plain) and hands them to the
// driver. Included by asio_driver.cpp only.
#pragma once

#include <memory>

#include <spdlog/spdlog.h>

#include "asio_common.hpp"
#include "byte_stream.hpp"
#include "lattice/transport/asio_driver.hpp"

namespace lattice::transport {

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

}  // namespace lattice::transport
