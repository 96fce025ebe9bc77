// latticed: a Lattice replica as a process of its own, with an HTTP API
// (native and Consul-compatible), durable state and metrics.
//
//   latticed --http 127.0.0.1:8500 --gossip 127.0.0.1:7946 --data-dir /var/lib/lattice
//   latticed --config /etc/lattice/latticed.toml
//   latticed --help
//
// Once serving, prints one line to stdout that scripts can wait for:
//   latticed ready id=<id> http=<host:port> gossip=<host:port> [dns=<host:port>] scheme=<http|https>
//
// Under systemd (Type=notify), READY=1 goes to $NOTIFY_SOCKET with the
// ready line, and STOPPING=1 when a signal starts the leave.
//
// SIGTERM / SIGINT: stop accepting HTTP, remove this replica's ephemeral
// instances, announce the leave, flush, exit 0 (within about a second).
#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <systemd/sd-daemon.h>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "api.hpp"
#include "daemon_options.hpp"
#include "dns_server.hpp"
#include "json_log.hpp"
#include "http_server.hpp"
#include "query_topics.hpp"

namespace asio = boost::asio;
using namespace lattice;

namespace {

// Runs the API's check deadlines when they fall due: a TTL check goes
// critical when its TTL runs out, not at the next poll. A deadline set
// earlier than the one waited for re-arms the timer.
class check_clock {
 public:
  check_clock(asio::io_context& io, daemon::api& api) : timer_(io), api_(api) {
    api_.on_deadline([this](daemon::api::time_point at) { arm(at); });
    run();
  }
  void cancel() {
    stopped_ = true;
    timer_.cancel();
  }

 private:
  using time_point = daemon::api::time_point;
  // At most this long between ticks, so nothing waits on a lost deadline.
  static constexpr std::chrono::seconds longest_wait{1};

  void arm(time_point at) {
    if (stopped_ || at >= armed_) return;
    armed_ = at;
    timer_.expires_at(at);  // cancels the wait in progress, whose handler then ignores it
    timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) run();
    });
  }
  void run() {
    const auto now = std::chrono::steady_clock::now();
    armed_ = time_point::max();
    arm(std::min(api_.tick(now).value_or(time_point::max()), now + longest_wait));
  }

  asio::steady_timer timer_;
  daemon::api& api_;
  time_point armed_ = time_point::max();
  bool stopped_ = false;
};

}  // namespace

// Each HTTP connection is a file descriptor: raise the soft limit to what
// --max-connections needs (plus room for the data directory and gossip),
// up to the hard limit, and lower --max-connections if even that is short.
void fit_connections_to_file_limit(std::size_t& max_connections) {
  constexpr rlim_t reserve = 256;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t wanted = static_cast<rlim_t>(max_connections) + reserve;
  if (limit.rlim_cur < wanted) {
    limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted) {
    const auto fits = limit.rlim_cur > reserve * 2 ? static_cast<std::size_t>(limit.rlim_cur - reserve) : 64;
    spdlog::warn("--max-connections {} exceeds the open-file limit ({}): using {}", max_connections,
                 limit.rlim_cur, fits);
    max_connections = fits;
  }
}

int main(int argc, char** argv) {
  auto parsed = daemon::parse_options(argc, argv);
  if (!parsed.options) return parsed.exit_code;
  auto& o = *parsed.options;

  // Logs go to stderr; stdout carries only the ready line.
  spdlog::set_default_logger(spdlog::stderr_color_mt("latticed"));
  if (o.log_format == "json")
    spdlog::set_formatter(daemon::json_log_formatter());
  else
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ latticed[%P] %v");
  spdlog::set_level(spdlog::level::from_str(o.log_level));

  fit_connections_to_file_limit(o.http.max_connections);

  auto opened = registry::replica::open(o.replica);
  if (!opened) {
    spdlog::critical("cannot start the replica: {}", opened.error().message());
    return 1;
  }
  auto replica = std::move(opened).value();

  asio::io_context io;
  daemon::http_counters counters;
  const daemon::http_server* server_ptr = nullptr;
  o.api.http_address = o.http.host + ":" + std::to_string(o.http.port);
  daemon::api api(*replica, o.api, counters, server_ptr, io);
  o.http.on_response = [&counters](std::string_view target, unsigned status,
                                   std::chrono::steady_clock::duration elapsed) {
    counters.record(daemon::api::route_of(target), status, elapsed);
  };
  if (!o.https_cert_file.empty()) {
    auto tls = daemon::make_https_context(o.https_cert_file, o.https_key_file, o.https_ca_file);
    if (auto* error = std::get_if<std::string>(&tls)) {
      spdlog::critical("cannot serve HTTPS: {}", *error);
      replica->stop();
      return 1;
    }
    o.http.tls = std::get<0>(std::move(tls));
  }
  daemon::http_server server(io, o.http, [&api](daemon::request& req) { return api.handle(req); });
  server_ptr = &server;
  if (auto r = server.listen(); !r) {
    spdlog::critical("cannot listen for HTTP on {}:{}: {}", o.http.host, o.http.port, r.error().message());
    replica->stop();
    return 1;
  }

  auto waker = daemon::query_waker::start(*replica, server, io);
  if (!waker) {
    spdlog::critical("cannot follow the replica's changes: {}", waker.error().message());
    replica->stop();
    return 1;
  }

  check_clock checks(io, api);

  daemon::dns_answerer dns_answers(*replica, o.dns);
  daemon::dns_server dns(io, dns_answers);
  std::string dns_address;
  if (o.dns_address) {
    const auto& [host, port] = *o.dns_address;
    if (auto r = dns.listen(host, port); !r) {
      if (o.dns_explicit) {
        spdlog::critical("cannot listen for DNS on {}:{}: {}", host, port, r.error().message());
        replica->stop();
        return 1;
      }
      // The default address, held by another daemon on this host perhaps.
      spdlog::warn("no DNS interface: cannot listen on {}:{}: {} (--dns HOST:PORT to choose, --dns off to "
                   "silence)", host, port, r.error().message());
    } else {
      dns_address = fmt::format(" dns={}:{}", host, dns.port());
    }
  }

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int signal) {
    if (ec) return;
    spdlog::info("signal {}: leaving the cluster", signal);
    sd_notify(0, "STOPPING=1\nSTATUS=leaving the cluster");
    server.stop();
    dns.stop();
    checks.cancel();
    replica->stop();  // removes our ephemeral instances, announces the leave, flushes
    io.stop();
  });

  const std::string http_address = fmt::format("{}:{}", o.http.host, server.port());
  const char* scheme = o.http.tls ? "https" : "http";
  spdlog::info("replica {} serving {} on {}, gossip on {}", replica->id(), o.http.tls ? "HTTPS" : "HTTP", http_address,
               replica->address());
  std::cout << fmt::format("latticed ready id={} http={} gossip={}{} scheme={}", replica->id(), http_address,
                           replica->address(), dns_address, scheme)
            << std::endl;
  // systemd's Type=notify: ready once every listener is bound and the data
  // directory loaded (a no-op when not started by systemd).
  sd_notify(0, fmt::format("READY=1\nSTATUS=serving {} on {}, gossip on {}", scheme, http_address,
                           replica->address()).c_str());
  io.run();
  spdlog::info("stopped");
  return 0;
}
