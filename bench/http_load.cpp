// bench/http_load.cpp: a closed-loop HTTP load generator for latticed.
//
// `--connections` keep-alive connections, each with one request in flight
// at a time, for `--seconds`; one io thread (pin it to a core of its own
// with taskset). Workloads:
//   register  PUT /v1/lattice/instances/bench/s<k> (k: the connection
//             modulo 16; or --service) with a new persistent instance each
//             time (a durable write: one row, one commit shared with
//             whatever else is in flight);
//   lookup    GET /v1/lattice/instances/<--service>;
//   health    GET /v1/health/service/<--service> (Consul's health answer).
// Prints one JSON object: requests, errors (non-2xx or transport), the
// rate, and latency percentiles in ms.
//
//   http_load --target 127.0.0.1:8500 --workload register --connections 64 --seconds 10
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

struct shared_state {
  std::string host;
  std::string workload;
  std::string service;  // register: all to this path if set; lookup: the path
  clock_type::time_point measure_from;  // after the warm-up
  clock_type::time_point end;
  std::uint64_t next_port = 0;
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  std::vector<double> latencies_ms;
};

class connection : public std::enable_shared_from_this<connection> {
 public:
  connection(asio::io_context& io, shared_state& state, int index) : socket_(io), state_(state), index_(index) {}

  void start(const tcp::resolver::results_type& endpoints) {
    asio::async_connect(socket_, endpoints, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
      if (ec) {
        std::cerr << "connect: " << ec.message() << "\n";
        return;
      }
      self->send();
    });
  }

 private:
  void send() {
    if (clock_type::now() >= state_.end) return;
    request_ = {};
    request_.version(11);
    request_.set(http::field::host, state_.host);
    request_.keep_alive(true);
    if (state_.workload == "register") {
      const std::uint64_t n = state_.next_port++;
      request_.method(http::verb::put);
      request_.target("/v1/lattice/instances" +
                      (state_.service.empty() ? "/bench/s" + std::to_string(index_ % 16) : state_.service));
      request_.body() = nlohmann::json{{"address", "10.0." + std::to_string((n >> 16) & 255) + "." +
                                                       std::to_string((n >> 8) & 255)},
                                       {"port", 1024 + (n & 255)},
                                       {"ephemeral", false}}
                            .dump();
      request_.set(http::field::content_type, "application/json");
    } else {
      request_.method(http::verb::get);
      request_.target((state_.workload == "health" ? "/v1/health/service" : "/v1/lattice/instances") +
                      state_.service);
    }
    request_.prepare_payload();
    sent_ = clock_type::now();
    http::async_write(socket_, request_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->fail(ec);
      self->receive();
    });
  }

  void receive() {
    response_ = {};
    http::async_read(socket_, buffer_, response_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->fail(ec);
      const auto now = clock_type::now();
      if (now >= self->state_.measure_from) {
        ++self->state_.requests;
        if (self->response_.result_int() / 100 != 2) ++self->state_.errors;
        self->state_.latencies_ms.push_back(std::chrono::duration<double, std::milli>(now - self->sent_).count());
      }
      self->send();
    });
  }

  void fail(beast::error_code ec) {
    ++state_.errors;
    std::cerr << "connection " << index_ << ": " << ec.message() << "\n";
  }

  tcp::socket socket_;
  shared_state& state_;
  int index_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  clock_type::time_point sent_;
};

double percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto at = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1));
  return sorted[at];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Closed-loop HTTP load against latticed; prints one JSON object"};
  std::string target = "127.0.0.1:8500";
  std::string workload = "register";
  int connections = 64;
  double seconds = 10;
  double warmup = 1;
  std::uint64_t first_port = 0;
  std::string service;
  app.add_option("--target", target, "host:port of latticed's HTTP API")->capture_default_str();
  app.add_option("--workload", workload, "register, lookup or health")
      ->check(CLI::IsMember({"register", "lookup", "health"}))
      ->capture_default_str();
  app.add_option("--connections", connections, "Connections, one request in flight on each")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--seconds", seconds, "Measured time")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--warmup", warmup, "Unmeasured time first")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--first", first_port, "First instance number (distinct runs register distinct instances)")
      ->capture_default_str();
  app.add_option("--service", service, "register: every instance under this path; lookup: the path looked up "
                 "(default /bench/lookup)");
  CLI11_PARSE(app, argc, argv);
  if (workload != "register" && service.empty()) service = "/bench/lookup";

  const auto colon = target.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "--target must be host:port\n";
    return 2;
  }
  asio::io_context io;
  tcp::resolver resolver(io);
  const auto endpoints = resolver.resolve(target.substr(0, colon), target.substr(colon + 1));
  shared_state state;
  state.host = target;
  state.workload = workload;
  state.service = service;
  state.next_port = first_port;
  const auto start = clock_type::now();
  state.measure_from = start + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(warmup));
  state.end = state.measure_from + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
  for (int i = 0; i < connections; ++i) std::make_shared<connection>(io, state, i)->start(endpoints);
  io.run();
  const double measured = std::chrono::duration<double>(clock_type::now() - state.measure_from).count();

  std::sort(state.latencies_ms.begin(), state.latencies_ms.end());
  nlohmann::json out{{"workload", workload},
                     {"connections", connections},
                     {"seconds", measured},
                     {"requests", state.requests},
                     {"errors", state.errors},
                     {"per_second", static_cast<double>(state.requests) / measured},
                     {"p50_ms", percentile(state.latencies_ms, 0.50)},
                     {"p99_ms", percentile(state.latencies_ms, 0.99)},
                     {"max_ms", state.latencies_ms.empty() ? 0.0 : state.latencies_ms.back()}};
  std::cout << out.dump() << std::endl;
  return state.errors == 0 ? 0 : 1;
}
