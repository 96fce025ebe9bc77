// transport/src/asio_outbound.hpp: the Asio driver's connection to one
// peer's gossip address: connects (TLS or plain), queues frames up to a
// bound and writes them, backs off between failed connects, and closes
// when it has had nothing to write for a while. Writes only. Included by
// asio_driver.cpp only.
#pragma once

#include <memory>
#include <optional>

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "asio_common.hpp"
#include "byte_stream.hpp"
#include "lattice/transport/asio_driver.hpp"

namespace lattice::transport {

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

}  // namespace lattice::transport
