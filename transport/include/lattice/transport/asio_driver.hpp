// lattice/transport/asio_driver.hpp: runs a protocol_core over TCP with
// Boost.Asio.
//
// One io_context thread owns the core, the acceptor, every connection and
// the tick timer, so none of them needs a lock. Other threads talk to the
// core only by posting to that io_context.
//
//   boost::asio::io_context io;
//   transport::asio_driver driver(io, driver_options{});   // binds now
//   options.address = "127.0.0.1:" + std::to_string(driver.port());
//   transport::protocol<my_state> core(options, std::chrono::steady_clock::now());
//   driver.start(core);
//   std::thread thread([&] { io.run(); });
//   ...
//   boost::asio::post(io, [&] { core.local_change(delta, now); driver.flush(); });
//   boost::asio::post(io, [&] { driver.stop(); });   // leave, flush, close
//   thread.join();
//
// Connections. Messages to a peer go over one outbound connection to its
// gossip address, opened on first use, with one write in flight and a
// bounded queue (max_queued_bytes): when a peer cannot keep up, new
// messages to it are dropped and counted, and anti-entropy repairs the gap
// later. An outbound connection with nothing to write for 3/4 of
// idle_timeout is closed (before the peer closes its end after the whole
// idle_timeout, so no message is written into a connection the peer has
// just closed), and opened again by the next message. Connects time out; a
// failed connection is retried with jittered exponential backoff. Inbound connections only read. A frame that fails
// to decode closes its connection, is logged once with the peer's address,
// and is counted in stats().rejected_frames by reason.
//
// Datagrams. The detector's pings, acks and news (messages the core marks
// `datagram`) go by UDP, from and to the gossip port, one frame per
// datagram, when their frame fits max_datagram_bytes: probing a member
// then needs no connection to it, and a lost probe costs nothing but
// itself. Everything else, and any message to a peer whose address is not
// resolved yet, takes the TCP connection. A datagram is the same frame as
// on a stream (CRC, and the cluster key's MAC when there is one); one that
// is not exactly one valid frame is dropped and counted like a rejected
// frame (errc::bad_datagram for a short or padded one). Every replica
// listens for datagrams unless TLS is on, so a replica with
// options.datagrams off still talks to one with them on.
//
// TLS. With options.tls set (make_tls_context), every connection, in and
// out, is TLS 1.2+ with certificates verified both ways against the
// cluster CA; a peer that fails the handshake is closed, logged and counted
// (tls_handshake_failures). Frames and their optional HMAC are unchanged
// inside the TLS stream. With TLS there are no datagrams, in or out: a
// datagram would be neither encrypted nor (without a cluster key)
// authenticated, and Asio has no DTLS. Probes then ride the connections.
// (docs/adr/0017-probes-over-udp.md.)
//
// Thread safety: construct, start() and stop() on the io_context's thread
// (or before it runs); stats() likewise.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "lattice/transport/frame.hpp"
#include "lattice/transport/protocol_options.hpp"

namespace lattice::transport {

struct driver_options {
  /// Address to listen on; 127.0.0.1 by default so nothing is exposed by
  /// accident. Port 0 picks a free port (see port()). Connections to peers
  /// leave from this address too (unless it is 0.0.0.0 or ::), so firewall
  /// rules by source address see the gossip address.
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 0;
  /// Frame size limit and cluster key.
  frame_options frames;
  /// How often the core's timers are run.
  std::chrono::milliseconds tick{5};
  std::chrono::milliseconds connect_timeout{1000};
  /// An inbound connection silent this long is closed; an outbound one
  /// with nothing to write for 3/4 of it (opened again by the next message).
  std::chrono::milliseconds idle_timeout{60'000};
  /// Queued, unsent bytes per peer above which messages are dropped.
  std::size_t max_queued_bytes = 8 * 1024 * 1024;
  std::chrono::milliseconds reconnect_initial{50};
  std::chrono::milliseconds reconnect_max{2000};
  /// How long stop() waits for queued messages (the leave) to go out.
  std::chrono::milliseconds stop_flush_timeout{500};
  /// Send the core's datagram messages by UDP (see the file comment).
  /// Off: every message takes TCP (datagrams from peers are still read).
  /// Ignored with TLS: no datagrams then.
  bool datagrams = true;
  /// A datagram message whose frame is larger than this goes by TCP: it
  /// keeps datagrams under a typical path MTU (1,500 bytes less IP and UDP
  /// headers), so none is fragmented.
  std::size_t max_datagram_bytes = 1400;
  /// TLS for every gossip connection, in both directions (null: plain
  /// TCP). Build it with make_tls_context() for mutual TLS against a
  /// cluster CA. Every replica of a cluster must agree.
  std::shared_ptr<boost::asio::ssl::context> tls;
};

/// A TLS context for gossip: this replica's certificate chain and key (PEM
/// files), and the CA that every peer's certificate must chain to. Peers
/// are verified both ways (a peer without a certificate from `ca_file` is
/// refused); host names are not checked: holding a certificate from the
/// cluster CA is what makes a replica a member. TLS 1.2 or later. Errors:
/// the file's or OpenSSL's, as a boost::system error code.
result<std::shared_ptr<boost::asio::ssl::context>> make_tls_context(const std::string& cert_chain_file,
                                                                     const std::string& key_file,
                                                                     const std::string& ca_file);

struct driver_stats {
  /// Indexed by transport::errc value.
  std::array<std::uint64_t, 16> rejected_frames{};
  std::uint64_t frames_received = 0;
  std::uint64_t frames_sent = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t dropped_queue_full = 0;
  std::uint64_t connect_failures = 0;
  std::uint64_t dropped_filtered = 0;
  std::uint64_t tls_handshake_failures = 0;
  /// UDP: datagrams sent and received whole (their bytes count in
  /// bytes_sent too), and sends the kernel refused (buffer full, no route).
  std::uint64_t datagrams_sent = 0;
  std::uint64_t datagrams_received = 0;
  std::uint64_t datagrams_dropped = 0;
  /// Outbound connections closed with nothing to write (see idle_timeout).
  std::uint64_t idle_closes = 0;

  std::uint64_t rejected(errc reason) const { return rejected_frames[static_cast<std::size_t>(reason)]; }
};

class asio_driver {
 public:
  /// Binds and listens at once. Throws boost::system::system_error if the
  /// address cannot be bound (a setup error).
  asio_driver(boost::asio::io_context& io, driver_options options);
  ~asio_driver();
  asio_driver(const asio_driver&) = delete;
  asio_driver& operator=(const asio_driver&) = delete;

  /// The bound port (useful with listen_port 0), TCP and UDP alike.
  std::uint16_t port() const noexcept { return port_; }
  /// Whether this driver sends and receives datagrams (not with TLS).
  bool datagrams_open() const noexcept { return udp_.is_open(); }

  /// Starts accepting and ticking `core`. REQUIRES: `core` outlives the driver.
  void start(protocol_core& core);

  /// Announces a leave, flushes queued messages for up to
  /// stop_flush_timeout, then closes everything; io.run() then returns once
  /// nothing else uses the io_context.
  void stop();

  /// Sends what the core has queued now, instead of at the next tick. Call
  /// it on the io_context's thread right after core.local_change(), so a
  /// local write leaves at once.
  void flush() { dispatch(); }

  const driver_stats& stats() const noexcept { return stats_; }

  /// Fault injection (examples, tests, drills): messages to peers for which
  /// `allow(address)` is false are dropped (counted in dropped_filtered),
  /// as if the network lost them. Empty: everything goes. A cut between two
  /// groups is each side refusing the other's addresses; a crash is a
  /// replica refusing everyone.
  void set_send_filter(std::function<bool(const std::string& peer)> allow) { send_filter_ = std::move(allow); }
  /// The same for datagrams only, as a firewall that drops UDP between
  /// hosts but lets TCP through: a message the core let go by datagram is
  /// dropped (counted in dropped_filtered), not sent over a connection.
  void set_datagram_filter(std::function<bool(const std::string& peer)> allow) {
    datagram_filter_ = std::move(allow);
  }

 private:
  class inbound;
  class outbound;
  friend class inbound;
  friend class outbound;

  void bind(std::uint16_t port);
  void do_accept();
  void do_receive();
  void on_datagram(std::size_t size);
  bool send_datagram(const std::string& to, const std::vector<std::byte>& frame);
  const boost::asio::ip::udp::endpoint* datagram_endpoint(const std::string& address);
  void do_tick();
  void dispatch();
  void deliver(message_type type, std::span<const std::byte> payload);
  void on_rejected(errc reason, const std::string& peer);
  void finish_stop(std::chrono::steady_clock::time_point deadline);

  boost::asio::io_context& io_;
  driver_options options_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::ip::udp::socket udp_;
  std::array<std::byte, 64 * 1024> datagram_buffer_{};
  boost::asio::ip::udp::endpoint datagram_sender_;
  // Peers' gossip addresses as UDP endpoints. A host name is resolved in
  // the background (its messages take TCP meanwhile) and again once its
  // answer is a minute old, as a restarted pod may have a new address.
  struct resolved_endpoint {
    std::optional<boost::asio::ip::udp::endpoint> endpoint;
    std::chrono::steady_clock::time_point at{};
    bool resolving = false;
  };
  std::map<std::string, resolved_endpoint> datagram_endpoints_;
  std::shared_ptr<boost::asio::ip::udp::resolver> udp_resolver_;
  std::chrono::steady_clock::time_point last_datagram_warning_{};
  // Outgoing connections leave from it too (unless it is a wildcard).
  boost::asio::ip::address listen_address_;
  boost::asio::steady_timer tick_timer_;
  std::uint16_t port_ = 0;
  protocol_core* core_ = nullptr;
  std::map<std::string, std::shared_ptr<outbound>> peers_;
  std::map<inbound*, std::weak_ptr<inbound>> inbound_;
  std::mt19937_64 rng_;
  driver_stats stats_;
  std::function<bool(const std::string&)> send_filter_;
  std::function<bool(const std::string&)> datagram_filter_;
  bool stopping_ = false;
};

}  // namespace lattice::transport
