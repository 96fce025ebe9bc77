#include "dns_server.hpp"

#include <array>

#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

namespace lattice::daemon {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

namespace {
constexpr std::size_t max_datagram = 4096;
constexpr std::size_t max_tcp_message = 16 * 1024;
constexpr std::size_t max_tcp_clients = 64;
constexpr std::chrono::seconds tcp_idle{10};
}  // namespace

// One TCP connection: length-prefixed queries, answered in order.
struct dns_server::tcp_client : std::enable_shared_from_this<tcp_client> {
  tcp_client(dns_server& server, tcp::socket socket)
      : server_(server), alive_(server.alive_), socket_(std::move(socket)), timer_(socket_.get_executor()) {}
  ~tcp_client() {
    if (*alive_) --server_.tcp_clients_;
  }

  void read_length() {
    arm();
    asio::async_read(socket_, asio::buffer(length_), [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
      if (ec || !*self->alive_) return self->close();
      const std::size_t size = static_cast<std::size_t>(self->length_[0]) << 8 | self->length_[1];
      if (size == 0 || size > max_tcp_message) return self->close();
      self->message_.resize(size);
      asio::async_read(self->socket_, asio::buffer(self->message_), [self](boost::system::error_code ec2, std::size_t) {
        if (ec2 || !*self->alive_) return self->close();
        self->reply_ = self->server_.answerer_.answer(self->message_, /*udp=*/false);
        if (self->reply_.empty()) {
          ++self->server_.dropped_;
          return self->read_length();
        }
        ++self->server_.answered_;
        self->prefix_ = {static_cast<std::uint8_t>(self->reply_.size() >> 8), static_cast<std::uint8_t>(self->reply_.size())};
        const std::array<asio::const_buffer, 2> out{asio::buffer(self->prefix_), asio::buffer(self->reply_)};
        asio::async_write(self->socket_, out, [self](boost::system::error_code ec3, std::size_t) {
          if (ec3 || !*self->alive_) return self->close();
          self->read_length();
        });
      });
    });
  }

  void arm() {
    timer_.expires_after(tcp_idle);
    timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      if (ec) return;
      if (auto self = weak.lock()) self->close();
    });
  }

  void close() {
    timer_.cancel();
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

  dns_server& server_;
  std::shared_ptr<bool> alive_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  std::array<std::uint8_t, 2> length_{};
  std::array<std::uint8_t, 2> prefix_{};
  std::vector<std::uint8_t> message_, reply_;
};

dns_server::dns_server(asio::io_context& io, const dns_answerer& answerer)
    : answerer_(answerer), udp_(io), tcp_(io), datagram_(max_datagram + 1) {}

dns_server::~dns_server() {
  *alive_ = false;
  stop();
}

result<void> dns_server::listen(const std::string& host, std::uint16_t port) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return ec;
  // Port 0: UDP picks a free port and TCP must take the same number, which
  // a TCP socket elsewhere may hold; pick again, a bounded number of times.
  for (int attempt = 0; attempt < (port == 0 ? 16 : 1); ++attempt) {
    stop();
    udp::endpoint at(address, port);
    udp_.open(at.protocol(), ec);
    if (!ec) udp_.bind(at, ec);
    if (ec) return ec;
    port_ = udp_.local_endpoint().port();
    tcp::endpoint tcp_at(address, port_);
    tcp_.open(tcp_at.protocol(), ec);
    if (!ec) tcp_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) tcp_.bind(tcp_at, ec);
    if (!ec) tcp_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec != asio::error::address_in_use) break;
  }
  if (ec) return ec;
  receive();
  accept();
  return success();
}

void dns_server::stop() {
  boost::system::error_code ignored;
  udp_.close(ignored);
  tcp_.close(ignored);
}

void dns_server::receive() {
  udp_.async_receive_from(asio::buffer(datagram_), from_, [this, alive = alive_](boost::system::error_code ec, std::size_t n) {
    if (!*alive || ec == asio::error::operation_aborted || !udp_.is_open()) return;
    if (!ec && n <= max_datagram) {
      auto answer = answerer_.answer(std::span<const std::uint8_t>(datagram_.data(), n), /*udp=*/true);
      if (answer.empty()) {
        ++dropped_;
      } else {
        ++answered_;
        boost::system::error_code send_error;
        udp_.send_to(asio::buffer(answer), from_, 0, send_error);  // a full buffer drops it, as UDP may
      }
    } else {
      ++dropped_;
    }
    receive();
  });
}

void dns_server::accept() {
  tcp_.async_accept([this, alive = alive_](boost::system::error_code ec, tcp::socket socket) {
    if (!*alive || !tcp_.is_open()) return;
    if (!ec) {
      if (tcp_clients_ >= max_tcp_clients) {
        boost::system::error_code ignored;
        socket.close(ignored);
      } else {
        ++tcp_clients_;
        std::make_shared<tcp_client>(*this, std::move(socket))->read_length();
      }
    }
    accept();
  });
}

}  // namespace lattice::daemon
