// bench/local_watches.cpp: many watches in one embedded replica.
//
// Adds N watches on one service path (each with a callback that counts),
// then changes the service and times until every callback has run.
// Prints one JSON object: heap bytes per watch (VmRSS before and after
// adding them, over N), the time to add them, and the time a change takes
// to reach all of them.
//
//   build/bench/lattice_local_watches --watches 1000000
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "lattice/registry/replica.hpp"

using namespace lattice::registry;
using clock_type = std::chrono::steady_clock;

namespace {

long rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6)) * 1024;
  return 0;
}

double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Many watches in one embedded replica; prints one JSON object"};
  std::size_t watches = 1'000'000;
  int changes = 3;
  app.add_option("--watches", watches, "Watches on the one path")->check(CLI::PositiveNumber);
  app.add_option("--changes", changes, "Changes timed")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  replica_options o;
  o.listen_host = "127.0.0.1";
  o.listen_port = 0;
  auto r = replica::open(o).value();
  instance i;
  i.address = "127.0.0.1";
  i.port = 9000;
  if (!r->register_instance("/svc", i)) return 1;

  std::atomic<std::uint64_t> calls{0};
  std::vector<watch_handle> handles;
  handles.reserve(watches);
  const long rss_before = rss_bytes();
  const auto add_start = clock_type::now();
  for (std::size_t n = 0; n < watches; ++n)
    handles.push_back(r->watch("/svc", [&calls](const service_view&) { calls.fetch_add(1); }).value());
  const double add_ms = ms_since(add_start);
  // Every watch first gets the current view.
  while (calls.load() < watches) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const long rss_after = rss_bytes();

  nlohmann::json timings = nlohmann::json::array();
  for (int c = 0; c < changes; ++c) {
    const auto target = calls.load() + watches;
    i.tags["change"] = std::to_string(c);
    const auto start = clock_type::now();
    if (!r->register_instance("/svc", i)) return 1;
    const double acked_ms = ms_since(start);
    const auto deadline = clock_type::now() + std::chrono::seconds(60);
    while (calls.load() < target && clock_type::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    timings.push_back({{"acknowledged_ms", acked_ms}, {"all_callbacks_ms", ms_since(start)},
                       {"complete", calls.load() >= target}});
  }
  nlohmann::json out{{"watches", watches},
                     {"bytes_per_watch", static_cast<double>(rss_after - rss_before) / static_cast<double>(watches)},
                     {"add_ms", add_ms},
                     {"changes", timings}};
  std::puts(out.dump().c_str());
  handles.clear();
  r->stop();
  return 0;
}
