// The Asio driver over real loopback TCP: five replicas, each on its own
// io_context thread, converge; a replica with the wrong cluster key is
// rejected and counted. Every wait is bounded; every thread is joined.
#include <functional>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include "lattice/crdt/lww_element_set.hpp"
#include "lattice/transport/asio_driver.hpp"
#include "lattice/transport/protocol.hpp"

#ifndef LATTICE_TLS_FIXTURES
#error "LATTICE_TLS_FIXTURES must name tests/transport/tls"
#endif

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace driver_test {

using namespace lattice::transport;
using namespace std::chrono_literals;
using lattice::crdt::hlc_timestamp;
using set_type = lattice::crdt::lww_element_set<std::string>;

namespace {

std::shared_ptr<const cluster_key> key_of(const std::string& secret) {
  std::vector<std::byte> bytes;
  for (char c : secret) bytes.push_back(static_cast<std::byte>(c));
  return std::make_shared<const cluster_key>(std::move(bytes));
}

// One replica: its io_context runs on its own thread, which owns the core.
class node {
 public:
  node(replica_id id, std::shared_ptr<const cluster_key> key, std::vector<std::string> seeds,
       std::shared_ptr<boost::asio::ssl::context> tls = nullptr,
       liveness_source liveness = liveness_source::heartbeats, bool datagrams = true,
       const std::function<void(driver_options&, protocol_options&)>& tweak = {}) {
    driver_options d;
    d.frames.key = std::move(key);
    d.tls = std::move(tls);
    d.datagrams = datagrams;
    protocol_options p;
    if (tweak) tweak(d, p);  // before what the node sets itself
    driver_ = std::make_unique<asio_driver>(io_, d);
    address_ = "127.0.0.1:" + std::to_string(driver_->port());
    p.self = id;
    p.address = address_;
    p.incarnation = 1;
    p.seeds = seeds.empty() ? std::vector<std::string>{address_} : std::move(seeds);
    p.random_seed = id;
    p.liveness.source = liveness;
    core_ = std::make_unique<protocol<set_type>>(p, std::chrono::steady_clock::now());
    driver_->start(*core_);
    thread_ = std::thread([this] {
      io_.run();
      finished_ = true;
    });
  }

  ~node() { stop(); }

  // Runs f on the replica thread and returns its result. Bounded: a
  // replica thread that never runs it fails the test instead of hanging it
  // (the task is shared, so a late run after the failure still finds it).
  template <class F>
  auto on(F f) {
    auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::move(f));
    auto result = task->get_future();
    boost::asio::post(io_, [task] { (*task)(); });
    if (result.wait_for(10s) != std::future_status::ready)
      throw std::runtime_error("the replica thread did not run a posted task within 10 s");
    return result.get();
  }

  void stop() {
    if (!thread_.joinable()) return;
    boost::asio::post(io_, [this] { driver_->stop(); });
    // The flush takes at most stop_flush_timeout (500 ms); allow 3 s, then
    // force the io_context down so the join can never hang.
    for (int i = 0; i < 300 && !finished_; ++i) std::this_thread::sleep_for(10ms);
    if (!finished_) io_.stop();
    thread_.join();
  }

  const std::string& address() const { return address_; }
  protocol<set_type>& core() { return *core_; }
  asio_driver& driver() { return *driver_; }

 private:
  boost::asio::io_context io_;
  std::unique_ptr<asio_driver> driver_;
  std::unique_ptr<protocol<set_type>> core_;
  std::string address_;
  std::thread thread_;
  std::atomic<bool> finished_{false};
};

// A TLS context from the committed fixtures (tests/transport/tls).
std::shared_ptr<boost::asio::ssl::context> tls_as(const std::string& name, const std::string& trusted_ca = "ca") {
  const std::string dir = LATTICE_TLS_FIXTURES;
  return make_tls_context(dir + "/" + name + ".pem", dir + "/" + name + ".key", dir + "/" + trusted_ca + ".pem")
      .value();
}

// Polls `done` every 20 ms for at most `limit`.
template <class Pred>
bool wait_for(Pred done, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

// Writes `element` on `n` and sends it at once.
void write_now(node& n, const std::string& element, hlc_timestamp stamp) {
  set_type scratch;
  const auto delta = scratch.insert(element, stamp);
  n.on([&] {
    n.core().local_change(delta, std::chrono::steady_clock::now());
    n.driver().flush();
    return 0;
  });
}

bool holds(node& n, const std::string& element) {
  return n.on([&] { return n.core().state().contains(element); });
}

bool knows(node& n, replica_id id) {
  return n.on([&] { return n.core().members().table().find(id) != nullptr; });
}

std::size_t reachable(node& n) {
  return n.on([&] { return n.core().members().reachable_peers(std::chrono::steady_clock::now()).size(); });
}

std::uint64_t rejected_total(node& n) {
  return n.on([&] {
    std::uint64_t total = 0;
    for (auto count : n.driver().stats().rejected_frames) total += count;
    return total;
  });
}

}  // namespace

// The refusal tests below check that something did NOT arrive. Absence is
// only meaningful after an event that would have delivered it: each runs a
// control replica with the right credentials beside the refused one, seeded
// the same way and writing at the same moment, and checks absence only once
// the control's write and membership have arrived AND the refused replica's
// later attempts have been refused again.

TEST_CASE("five replicas converge over loopback TCP", "[transport][driver]") {
  const auto key = key_of("a-cluster-key-of-some-length");
  std::vector<std::unique_ptr<node>> nodes;
  nodes.push_back(std::make_unique<node>(1, key, std::vector<std::string>{}));
  for (replica_id id = 2; id <= 5; ++id)
    nodes.push_back(std::make_unique<node>(id, key, std::vector<std::string>{nodes[0]->address()}));

  auto all_members = [&] {
    for (auto& n : nodes)
      if (n->on([&] { return n->core().members().reachable_peers(std::chrono::steady_clock::now()).size(); }) != 4)
        return false;
    return true;
  };
  REQUIRE(wait_for(all_members, 10s));

  set_type scratch;
  const auto a = scratch.insert("/svc/a", hlc_timestamp{100, 0, 1});
  const auto b = scratch.insert("/svc/b", hlc_timestamp{100, 0, 4});
  for (const auto& [index, change] : {std::pair{0, &a}, std::pair{3, &b}}) {
    auto& n = *nodes[static_cast<std::size_t>(index)];
    const auto* delta = change;  // not the binding: clang 15 cannot capture one
    n.on([&] {
      n.core().local_change(*delta, std::chrono::steady_clock::now());
      n.driver().flush();
      return 0;
    });
  }

  auto converged = [&] {
    for (auto& n : nodes) {
      const bool has_both = n->on([&] {
        return n->core().state().contains("/svc/a") && n->core().state().contains("/svc/b");
      });
      if (!has_both) return false;
    }
    return true;
  };
  REQUIRE(wait_for(converged, 10s));
  for (auto& n : nodes) {
    const auto rejected = n->on([&] {
      std::uint64_t total = 0;
      for (auto count : n->driver().stats().rejected_frames) total += count;
      return total;
    });
    CHECK(rejected == 0);
  }

  // A graceful stop is seen by the others as a leave.
  nodes[4]->stop();
  auto left = [&] {
    return nodes[0]->on([&] {
      return nodes[0]->core().members().state_of(5, std::chrono::steady_clock::now()) ==
             member_state::left;
    });
  };
  CHECK(wait_for(left, 5s));
}

TEST_CASE("a replica with the wrong cluster key is rejected and counted", "[transport][driver]") {
  const auto key = key_of("the-right-cluster-key-0001");
  node a(1, key, {});
  node b(2, key, {a.address()});
  node intruder(9, key_of("the-wrong-cluster-key-0002"), {a.address()});
  node control(3, key, {a.address()});

  auto rejected_by_a = [&] { return a.on([&] { return a.driver().stats().rejected(errc::bad_mac); }); };
  REQUIRE(wait_for([&] { return rejected_by_a() > 0; }, 10s));
  REQUIRE(wait_for([&] { return knows(a, 3) && knows(b, 3); }, 10s));

  write_now(intruder, "/svc/x", hlc_timestamp{100, 0, 9});
  write_now(control, "/svc/z", hlc_timestamp{100, 0, 3});
  const auto rejected_after_writes = rejected_by_a();
  REQUIRE(wait_for([&] { return holds(a, "/svc/z") && holds(b, "/svc/z"); }, 10s));
  REQUIRE(wait_for([&] { return rejected_by_a() >= rejected_after_writes + 3; }, 10s));

  for (node* n : {&a, &b}) {
    CHECK_FALSE(holds(*n, "/svc/x"));
    CHECK_FALSE(knows(*n, 9));
  }
}

TEST_CASE("garbage on a gossip port is rejected, counted and harmless", "[transport][driver]") {
  node a(1, nullptr, {});
  const auto digest_before = a.on([&] { return a.core().state().digest(); });

  boost::asio::io_context client_io;
  boost::asio::ip::tcp::socket client(client_io);
  client.connect({boost::asio::ip::make_address("127.0.0.1"), a.driver().port()});
  const std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  boost::asio::write(client, boost::asio::buffer(garbage));

  REQUIRE(wait_for([&] { return a.on([&] { return a.driver().stats().rejected(errc::bad_magic); }) == 1; }, 5s));
  // The replica closed that connection: our next read sees end of stream.
  std::array<char, 16> sink{};
  boost::system::error_code ec;
  client.read_some(boost::asio::buffer(sink), ec);
  CHECK(ec == boost::asio::error::eof);
  CHECK(a.on([&] { return a.core().state().digest(); }) == digest_before);

  // And it still serves real peers.
  node b(2, nullptr, {a.address()});
  set_type scratch;
  const auto delta = scratch.insert("/svc/after", hlc_timestamp{5, 0, 2});
  REQUIRE(wait_for([&] { return b.on([&] { return b.core().members().reachable_peers(std::chrono::steady_clock::now()).size(); }) == 1; }, 10s));
  b.on([&] {
    b.core().local_change(delta, std::chrono::steady_clock::now());
    b.driver().flush();
    return 0;
  });
  CHECK(wait_for([&] { return a.on([&] { return a.core().state().contains("/svc/after"); }); }, 10s));
}

TEST_CASE("three replicas converge over mutual TLS", "[transport][driver][tls]") {
  node a(1, nullptr, {}, tls_as("node"));
  node b(2, nullptr, {a.address()}, tls_as("node"));
  node c(3, nullptr, {a.address()}, tls_as("node"));
  set_type scratch;
  const auto delta = scratch.insert("/svc/tls", hlc_timestamp{7, 0, 3});
  REQUIRE(wait_for([&] { return c.on([&] { return c.core().members().reachable_peers(std::chrono::steady_clock::now()).size(); }) == 2; }, 10s));
  c.on([&] {
    c.core().local_change(delta, std::chrono::steady_clock::now());
    c.driver().flush();
    return 0;
  });
  for (node* n : {&a, &b}) {
    CHECK(wait_for([&] { return n->on([&] { return n->core().state().contains("/svc/tls"); }); }, 10s));
    CHECK(n->on([&] { return n->driver().stats().tls_handshake_failures; }) == 0);
  }
}

TEST_CASE("a replica whose certificate the cluster CA did not sign is refused", "[transport][driver][tls]") {
  node a(1, nullptr, {}, tls_as("node"));
  // It trusts the cluster's CA, but the cluster does not trust its own.
  node intruder(9, nullptr, {a.address()}, tls_as("rogue", "ca"));
  node control(3, nullptr, {a.address()}, tls_as("node"));
  // (With TLS 1.3 the client's handshake completes before the server
  // checks its certificate, so the refusal is counted at a.)
  const auto failures = [&] { return a.on([&] { return a.driver().stats().tls_handshake_failures; }); };
  REQUIRE(wait_for([&] { return failures() > 0; }, 10s));
  REQUIRE(wait_for([&] { return knows(a, 3); }, 10s));

  write_now(intruder, "/svc/x", hlc_timestamp{100, 0, 9});
  write_now(control, "/svc/z", hlc_timestamp{100, 0, 3});
  const auto failures_after_writes = failures();
  REQUIRE(wait_for([&] { return holds(a, "/svc/z"); }, 10s));
  // Its later attempts (which carry the write) are refused at the handshake.
  REQUIRE(wait_for([&] { return failures() >= failures_after_writes + 2; }, 10s));
  CHECK_FALSE(holds(a, "/svc/x"));
  CHECK_FALSE(knows(a, 9));
}

TEST_CASE("a plain-TCP peer cannot talk to a TLS cluster", "[transport][driver][tls]") {
  node a(1, nullptr, {}, tls_as("node"));
  node plain(8, nullptr, {a.address()});
  node control(3, nullptr, {a.address()}, tls_as("node"));
  const auto failures = [&] { return a.on([&] { return a.driver().stats().tls_handshake_failures; }); };
  REQUIRE(wait_for([&] { return failures() > 0 && knows(a, 3); }, 10s));
  const auto failures_then = failures();
  REQUIRE(wait_for([&] { return failures() >= failures_then + 2; }, 10s));
  CHECK_FALSE(knows(a, 8));
}

TEST_CASE("connections to peers leave from the gossip address", "[transport][driver]") {
  // A bare listener on 127.0.0.3 stands for a peer and reports where the
  // connection came from; the replica listens on 127.0.0.2.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor peer(io, {boost::asio::ip::make_address("127.0.0.3"), 0});
  const std::string peer_address = "127.0.0.3:" + std::to_string(peer.local_endpoint().port());
  std::promise<std::string> source;
  auto from = source.get_future();
  peer.async_accept([&](boost::system::error_code ec, boost::asio::ip::tcp::socket socket) {
    source.set_value(ec ? ec.message() : socket.remote_endpoint().address().to_string());
  });
  std::thread io_thread([&] { io.run_for(10s); });

  boost::asio::io_context replica_io;
  driver_options d;
  d.listen_host = "127.0.0.2";
  asio_driver driver(replica_io, d);
  protocol_options p;
  p.self = 1;
  p.address = "127.0.0.2:" + std::to_string(driver.port());
  p.incarnation = 1;
  p.seeds = {peer_address};  // heartbeats go to the seed while no peer is known
  protocol<set_type> core(p, std::chrono::steady_clock::now());
  driver.start(core);
  std::thread replica_thread([&] { replica_io.run_for(10s); });
  const bool arrived = from.wait_for(8s) == std::future_status::ready;
  boost::asio::post(replica_io, [&] { driver.stop(); });
  io.stop();
  replica_io.stop();
  io_thread.join();
  replica_thread.join();
  REQUIRE(arrived);
  CHECK(from.get() == "127.0.0.2");
}

TEST_CASE("probes travel as datagrams, and judge a crashed peer dead", "[transport][driver][udp]") {
  const auto key = key_of("a-cluster-key-for-datagrams");
  node a(1, key, {}, nullptr, liveness_source::probes);
  node b(2, key, {a.address()}, nullptr, liveness_source::probes);
  node c(3, key, {a.address()}, nullptr, liveness_source::probes);
  REQUIRE(a.driver().datagrams_open());
  REQUIRE(wait_for([&] { return reachable(a) == 2 && reachable(b) == 2 && reachable(c) == 2; }, 10s));

  // Every node probes and is probed: both ends of the UDP path carry them.
  // The detector's pings, acks and news go as datagrams; only its
  // push-pull (a minute apart) takes TCP.
  for (node* n : {&a, &b, &c}) {
    REQUIRE(wait_for([&] {
      return n->on([&] { return std::min(n->driver().stats().datagrams_received, n->driver().stats().datagrams_sent); }) >= 10;
    }, 10s));
    // Read together on the replica thread: probes the core sent, and
    // datagrams the driver sent of them.
    const auto [datagrams, probes] = n->on([&] {
      return std::pair{n->driver().stats().datagrams_sent,
                       n->core().stats().sent_by_type[static_cast<std::size_t>(message_type::probe)]};
    });
    CHECK(datagrams + 2 >= probes);
    CHECK(rejected_total(*n) == 0);
  }

  // c crashes: it sends nothing more (datagrams included). The others
  // judge it dead by their probes going unanswered.
  c.on([&] {
    c.driver().set_send_filter([](const std::string&) { return false; });
    return 0;
  });
  for (node* n : {&a, &b})
    CHECK(wait_for([&] {
      return n->on([&] { return n->core().members().state_of(3, std::chrono::steady_clock::now()); }) ==
             member_state::dead;
    }, 10s));
  CHECK(reachable(a) == 1);
}

TEST_CASE("with UDP blocked between replicas, probes answered over TCP keep every member alive",
          "[transport][driver][udp]") {
  // A firewall that passes TCP on the gossip port and drops UDP: every
  // datagram ping and ack is lost. The detector's fallback ping over a
  // connection is answered over one; without it each node judged the
  // others dead within seconds.
  const auto key = key_of("a-cluster-key-for-datagrams");
  node a(1, key, {}, nullptr, liveness_source::probes);
  node b(2, key, {a.address()}, nullptr, liveness_source::probes);
  node c(3, key, {a.address()}, nullptr, liveness_source::probes);
  REQUIRE(wait_for([&] { return reachable(a) == 2 && reachable(b) == 2 && reachable(c) == 2; }, 10s));
  for (node* n : {&a, &b, &c})
    n->on([&] {
      n->driver().set_datagram_filter([](const std::string&) { return false; });
      return 0;
    });
  const auto detector_stats = [](node& n) { return n.on([&] { return n.core().detector()->stats(); }); };
  for (node* n : {&a, &b, &c})
    CHECK(wait_for([&] { return detector_stats(*n).stream_acks >= 10; }, 20s));
  for (node* n : {&a, &b, &c}) {
    CHECK(detector_stats(*n).deaths == 0);  // a counter: nobody was judged dead all along
    CHECK(reachable(*n) == 2);
  }
}

TEST_CASE("a connection with nothing to write is closed, and opened again by the next message",
          "[transport][driver][udp]") {
  // Probes go as datagrams and anti-entropy is slowed to an hour, so after
  // the join nothing uses the connections; they close after 3/4 of the
  // 400 ms idle timeout.
  const auto quiet = [](driver_options& d, protocol_options& p) {
    d.idle_timeout = 400ms;
    p.anti_entropy_interval = std::chrono::hours(1);
  };
  node a(1, nullptr, {}, nullptr, liveness_source::probes, true, quiet);
  node b(2, nullptr, {a.address()}, nullptr, liveness_source::probes, true, quiet);
  REQUIRE(wait_for([&] { return reachable(a) == 1 && reachable(b) == 1; }, 10s));
  const auto idle_closes = [](node& n) { return n.on([&] { return n.driver().stats().idle_closes; }); };
  REQUIRE(wait_for([&] { return idle_closes(a) >= 1 && idle_closes(b) >= 1; }, 10s));
  // Still members of each other (the probes need no connection), and a
  // write goes out on a new connection.
  CHECK(reachable(a) == 1);
  CHECK(reachable(b) == 1);
  write_now(a, "/svc/after-idle", hlc_timestamp{100, 0, 1});
  CHECK(wait_for([&] { return holds(b, "/svc/after-idle"); }, 10s));
}

TEST_CASE("with datagrams off, probes ride the connections", "[transport][driver][udp]") {
  node a(1, nullptr, {}, nullptr, liveness_source::probes, /*datagrams=*/false);
  node b(2, nullptr, {a.address()}, nullptr, liveness_source::probes, /*datagrams=*/false);
  REQUIRE(wait_for([&] { return reachable(a) == 1 && reachable(b) == 1; }, 10s));
  const auto probes_sent = [&](node& n) {
    return n.on([&] { return n.core().stats().sent_by_type[static_cast<std::size_t>(message_type::probe)]; });
  };
  REQUIRE(wait_for([&] { return probes_sent(a) >= 10 && probes_sent(b) >= 10; }, 10s));
  for (node* n : {&a, &b}) {
    CHECK(n->on([&] { return n->driver().stats().datagrams_sent; }) == 0);
    CHECK(n->on([&] { return n->driver().stats().datagrams_received; }) == 0);
  }
  CHECK(reachable(a) == 1);
}

TEST_CASE("with TLS there are no datagrams, and probes work over the TLS connections", "[transport][driver][udp][tls]") {
  node a(1, nullptr, {}, tls_as("node"), liveness_source::probes);
  node b(2, nullptr, {a.address()}, tls_as("node"), liveness_source::probes);
  CHECK_FALSE(a.driver().datagrams_open());
  REQUIRE(wait_for([&] { return reachable(a) == 1 && reachable(b) == 1; }, 10s));
  REQUIRE(wait_for([&] {
    return b.on([&] { return b.core().stats().sent_by_type[static_cast<std::size_t>(message_type::probe)]; }) >= 10;
  }, 10s));
  CHECK(b.on([&] { return b.driver().stats().datagrams_sent; }) == 0);
  CHECK(reachable(b) == 1);
}

TEST_CASE("a datagram that is not one valid frame is dropped, counted and harmless", "[transport][driver][udp]") {
  const auto key = key_of("the-right-cluster-key-0001");
  node a(1, key, {}, nullptr, liveness_source::probes);
  const auto digest_before = a.on([&] { return a.core().state().digest(); });

  // Bytes a peer could send: a frame under the wrong key, a valid frame
  // cut short, one with a byte after it, and no frame at all.
  set_type scratch;
  const auto delta = scratch.insert("/svc/forged", hlc_timestamp{100, 0, 9});
  const auto payload = lattice::crdt::encode(envelope<gossip_body<set_type>>{
      9, "127.0.0.1:1", gossip_body<set_type>{member_table{}, delta}, 0});
  frame_options wrong_key;
  wrong_key.key = key_of("the-wrong-cluster-key-0002");
  frame_options right_key;
  right_key.key = key;
  const auto forged = encode_frame(static_cast<std::uint8_t>(message_type::gossip), payload, wrong_key);
  const auto whole = encode_frame(static_cast<std::uint8_t>(message_type::gossip), payload, right_key);
  auto cut = whole;
  cut.resize(whole.size() - 1);
  auto padded = whole;
  padded.push_back(std::byte{0});
  const std::string text = "not a frame";
  const std::vector<std::byte> garbage(reinterpret_cast<const std::byte*>(text.data()),
                                       reinterpret_cast<const std::byte*>(text.data()) + text.size());

  boost::asio::io_context client_io;
  boost::asio::ip::udp::socket client(client_io, boost::asio::ip::udp::endpoint(boost::asio::ip::udp::v4(), 0));
  const boost::asio::ip::udp::endpoint to(boost::asio::ip::make_address("127.0.0.1"), a.driver().port());
  for (const auto& bytes : std::vector<std::vector<std::byte>>{forged, cut, padded, garbage})
    client.send_to(boost::asio::buffer(bytes), to);

  const auto rejected = [&](errc reason) { return a.on([&] { return a.driver().stats().rejected(reason); }); };
  REQUIRE(wait_for([&] { return rejected_total(a) == 4; }, 5s));
  CHECK(rejected(errc::bad_mac) == 1);
  CHECK(rejected(errc::bad_datagram) == 2);
  CHECK(rejected(errc::bad_magic) == 1);
  CHECK(a.on([&] { return a.core().state().digest(); }) == digest_before);
  CHECK_FALSE(knows(a, 9));

  // The same bytes whole and under the right key are delivered: the
  // rejections above were the frames', not the path's.
  client.send_to(boost::asio::buffer(whole), to);
  CHECK(wait_for([&] { return holds(a, "/svc/forged"); }, 5s));
  CHECK(a.on([&] { return a.driver().stats().datagrams_received; }) == 1);
}

}  // namespace driver_test
