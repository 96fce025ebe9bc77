// apps/latticed/dns_server.hpp: the DNS interface's transport: UDP and TCP
// on one port (RFC 1035; TCP messages carry a two-byte length), answers
// from a dns_answerer.
//
// UDP datagrams larger than 4,096 bytes are dropped unanswered; TCP
// connections are limited in number (64) and closed after 10 s idle or a
// message longer than 16 KiB, so a client cannot hold the server's
// memory. Nothing a client sends stops the server: a message it cannot
// answer gets FORMERR or nothing.
//
// Thread safety: construct, listen() and stop() on the io_context's thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

#include "dns_answer.hpp"
#include "lattice/crdt/error.hpp"

namespace lattice::daemon {

class dns_server {
 public:
  dns_server(boost::asio::io_context& io, const dns_answerer& answerer);
  ~dns_server();
  dns_server(const dns_server&) = delete;
  dns_server& operator=(const dns_server&) = delete;

  /// Binds UDP and TCP on host:port (port 0: a free port, the same for
  /// both) and starts serving.
  result<void> listen(const std::string& host, std::uint16_t port);
  /// The port bound, once listening.
  std::uint16_t port() const noexcept { return port_; }
  void stop();

  std::uint64_t answered() const noexcept { return answered_; }
  std::uint64_t dropped() const noexcept { return dropped_; }

 private:
  struct tcp_client;
  void receive();
  void accept();

  const dns_answerer& answerer_;
  boost::asio::ip::udp::socket udp_;
  boost::asio::ip::tcp::acceptor tcp_;
  boost::asio::ip::udp::endpoint from_;
  std::vector<std::uint8_t> datagram_;
  std::uint16_t port_ = 0;
  std::size_t tcp_clients_ = 0;
  std::uint64_t answered_ = 0, dropped_ = 0;
  // Outstanding handlers check it: after stop() or destruction they return.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace lattice::daemon
