// hello_world: HelloWorldService (seed 001) on two providers and a consumer.
//
// Each provider embeds a Lattice replica, serves a tiny TCP echo ("hello
// from <id>: <message>") and registers itself under
// /HelloWorldService/1.0.0 with id "ip:port", protocol "tcp-echo" and
// serialization "text". The consumer embeds its own replica, discovers the
// providers from its local snapshot, balances calls round-robin with a call
// guard around each, and keeps working when a provider dies: a call that
// fails goes to the next provider, and the dead one leaves the list within
// the liveness bound (about a second).
//
//   build/examples/hello_world                       # everything in one process
//   build/examples/hello_world provider --seeds 127.0.0.1:7946
//   build/examples/hello_world consumer --seeds 127.0.0.1:7946 --calls 20
//
// In one process it runs two providers and a consumer, crashes provider 2
// halfway (its replica goes silent and its server closes), and ends with
//   Summary: calls=12 succeeded=12 failovers=<n> providers_after=1
// and exit code 0 only if every call got an answer.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <fmt/format.h>

#include "lattice/registry/balancer.hpp"
#include "lattice/registry/replica.hpp"
#include "narrate.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
namespace reg = lattice::registry;
using namespace std::chrono_literals;

namespace {

constexpr const char* kService = "/HelloWorldService/1.0.0";

using lattice::examples::open_replica;
using lattice::examples::say;

// The provider's service: one line in, one line out, per connection.
class echo_server {
 public:
  explicit echo_server(std::string name) : name_(std::move(name)), acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~echo_server() { stop(); }
  void stop() {
    asio::post(io_, [this] { acceptor_.close(); io_.stop(); });
    if (thread_.joinable()) thread_.join();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  void set_name(std::string name) { name_ = std::move(name); }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec) return;
      auto s = std::make_shared<tcp::socket>(std::move(socket));
      auto buffer = std::make_shared<std::string>();
      asio::async_read_until(*s, asio::dynamic_buffer(*buffer), '\n',
                             [this, s, buffer](boost::system::error_code rec, std::size_t n) {
                               if (rec) return;
                               auto reply = std::make_shared<std::string>(
                                   fmt::format("hello from {}: {}", name_, buffer->substr(0, n)));
                               asio::async_write(*s, asio::buffer(*reply), [s, reply](auto, auto) {});
                             });
      accept();
    });
  }

  std::string name_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::thread thread_;
};

// One call: connect, send a line, read a line; nullopt after 500 ms.
std::optional<std::string> call(std::string_view host, std::uint16_t port, const std::string& message) {
  asio::io_context io;
  tcp::socket socket(io);
  std::string reply;
  bool done = false;
  const std::string line = message + "\n";
  socket.async_connect({asio::ip::make_address(host), port}, [&](boost::system::error_code ec) {
    if (ec) return;
    asio::async_write(socket, asio::buffer(line), [&](boost::system::error_code wec, std::size_t) {
      if (wec) return;
      asio::async_read_until(socket, asio::dynamic_buffer(reply), '\n',
                             [&](boost::system::error_code rec, std::size_t) { done = !rec; });
    });
  });
  io.run_for(500ms);
  if (!done) return std::nullopt;
  while (!reply.empty() && reply.back() == '\n') reply.pop_back();
  return reply;
}

struct provider {
  std::unique_ptr<reg::replica> replica;
  std::unique_ptr<echo_server> server;
  std::string id;
};

provider start_provider(const std::vector<std::string>& seeds) {
  provider p;
  p.replica = open_replica(seeds);
  p.server = std::make_unique<echo_server>("");
  reg::instance inst;
  inst.address = "127.0.0.1";
  inst.port = p.server->port();
  inst.protocol = "tcp-echo";
  inst.serialization = "text";
  auto stored = p.replica->register_instance(kService, inst);
  if (!stored) {
    std::fprintf(stderr, "register: %s\n", stored.error().message().c_str());
    std::exit(1);
  }
  p.id = stored.value().id;
  p.server->set_name(p.id);
  say("provider {} registered under {} (replica {})", p.id, kService, p.replica->address());
  return p;
}

struct call_stats {
  int calls = 0, succeeded = 0, failovers = 0;
};

// Makes `count` calls, one every `interval`; each call tries providers in
// round-robin order until one answers (at most 5 tries).
std::atomic<bool> interrupted{false};

call_stats consume(reg::replica& replica, int count, std::chrono::milliseconds interval,
                   const std::function<void(int)>& before_call = {}) {
  reg::round_robin balancer;
  call_stats stats;
  for (int i = 1; i <= count && !interrupted; ++i) {
    if (before_call) before_call(i);
    ++stats.calls;
    for (int attempt = 0; attempt < 5; ++attempt) {
      auto list = replica.lookup(kService);
      const reg::instance_view* target = list ? balancer.pick(*list) : nullptr;
      if (target == nullptr) {
        std::this_thread::sleep_for(100ms);
        continue;
      }
      reg::call_guard guard(*target);  // counts the call in flight, cluster-wide
      if (auto reply = call((*target)->address(), (*target)->port(), fmt::format("call {}", i))) {
        say("call {:2} -> {} ({} providers listed)", i, *reply, list.providers().size());
        ++stats.succeeded;
        break;
      }
      ++stats.failovers;
      say("call {:2} -> {} did not answer; trying the next provider", i, (*target)->id());
    }
    std::this_thread::sleep_for(interval);
  }
  return stats;
}

bool wait_for_providers(reg::replica& r, std::size_t n, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (r.lookup(kService).providers().size() == n) return true;
    std::this_thread::sleep_for(10ms);
  }
  return r.lookup(kService).providers().size() == n;
}

int run_all_in_one() {
  say("starting two providers and a consumer, each with its own replica, on loopback");
  auto p1 = start_provider({});
  auto p2 = start_provider({p1.replica->address()});
  auto consumer = open_replica({p1.replica->address()});
  const auto t0 = std::chrono::steady_clock::now();
  if (!wait_for_providers(*consumer, 2, 5s)) {
    say("FAILED: the consumer did not discover both providers");
    return 1;
  }
  say("consumer discovered 2 providers in {} ms",
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
  const auto stats = consume(*consumer, 12, 150ms, [&](int i) {
    if (i != 7) return;
    say("crashing provider {}: its server closes and its replica goes silent", p2.id);
    p2.server->stop();
    p2.replica->set_send_filter([](const std::string&) { return false; });
  });
  const bool removed = wait_for_providers(*consumer, 1, 3s);
  const auto after = consumer->lookup(kService).providers().size();
  say("provider {} {} the consumer's list", p2.id, removed ? "is gone from" : "is STILL in");
  std::printf("Summary: calls=%d succeeded=%d failovers=%d providers_after=%zu\n", stats.calls, stats.succeeded,
              stats.failovers, after);
  return stats.succeeded == stats.calls && after == 1 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"HelloWorldService providers and consumer on Lattice (seed 001)."};
  std::vector<std::string> seeds;
  int calls = 20;
  int interval_ms = 500;
  auto* prov = app.add_subcommand("provider", "Serve and register one provider until interrupted");
  prov->add_option("--seeds", seeds, "Gossip addresses to join through")->delimiter(',')->required();
  auto* cons = app.add_subcommand("consumer", "Discover the providers and call them");
  cons->add_option("--seeds", seeds, "Gossip addresses to join through")->delimiter(',')->required();
  cons->add_option("--calls", calls, "How many calls (0: until interrupted)")->capture_default_str();
  cons->add_option("--interval-ms", interval_ms, "Pause between calls")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGINT, [](int) { interrupted = true; });
  std::signal(SIGTERM, [](int) { interrupted = true; });

  if (*prov) {
    auto p = start_provider(seeds);
    std::printf("provider ready id=%s\n", p.id.c_str());
    std::fflush(stdout);
    while (!interrupted) std::this_thread::sleep_for(50ms);
    say("provider {} stopping: deregisters and leaves", p.id);
    p.replica->stop();
    return 0;
  }
  if (*cons) {
    auto r = open_replica(seeds);
    if (!lattice::examples::eventually([&] { return !r->lookup(kService).providers().empty(); }, 10s)) {
      say("no provider of {} found", kService);
      return 1;
    }
    const int n = calls == 0 ? std::numeric_limits<int>::max() : calls;
    const auto stats = consume(*r, n, std::chrono::milliseconds(interval_ms));
    std::printf("Summary: calls=%d succeeded=%d failovers=%d\n", stats.calls, stats.succeeded, stats.failovers);
    r->stop();
    return stats.succeeded == stats.calls ? 0 : 1;
  }
  return run_all_in_one();
}
