// bench/local_watches.cpp: many watches in one embedded replica.
//
// Adds N watches (each with a callback that counts) spread over P service
// paths (one by default), then changes one of those paths and times until
// every callback watching it has run.
// Prints one JSON object: heap bytes per watch (VmRSS before and after
// adding them, over N), the time to add them, and the time a change takes
// to reach all of them.
//
//   build/bench/lattice_local_watches --watches 1000000
//   build/bench/lattice_local_watches --watches 1000000 --paths 10000
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
  std::size_t paths = 1;
  app.add_option("--watches", watches, "Watches in all")->check(CLI::PositiveNumber);
  app.add_option("--paths", paths, "Paths the watches are spread over (round robin)")->check(CLI::PositiveNumber);
  app.add_option("--changes", changes, "Changes timed")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  replica_options o;
  o.listen_host = "127.0.0.1";
  o.listen_port = 0;
  auto r = replica::open(o).value();
  instance i;
  i.address = "127.0.0.1";
  i.port = 9000;
  const auto path_of = [](std::size_t n) { return "/svc/p" + std::to_string(n); };
  for (std::size_t p = 0; p < paths; ++p)
    if (!r->register_instance(path_of(p), i)) return 1;

  std::atomic<std::uint64_t> calls{0};
  std::vector<watch_handle> handles;
  handles.reserve(watches);
  const long rss_before = rss_bytes();
  const auto add_start = clock_type::now();
  for (std::size_t n = 0; n < watches; ++n)
    handles.push_back(r->watch(path_of(n % paths), [&calls](const service_view&) { calls.fetch_add(1); }).value());
  const double add_ms = ms_since(add_start);
  // Every watch first gets the current view.
  while (calls.load() < watches) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const long rss_after = rss_bytes();

  nlohmann::json timings = nlohmann::json::array();
  for (int c = 0; c < changes; ++c) {
    // The watches of path 0.
    const auto target = calls.load() + (watches + paths - 1) / paths;
    i.tags["change"] = std::to_string(c);
    const auto start = clock_type::now();
    if (!r->register_instance(path_of(0), i)) return 1;
    const double acked_ms = ms_since(start);
    const auto deadline = clock_type::now() + std::chrono::seconds(60);
    while (calls.load() < target && clock_type::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    timings.push_back({{"acknowledged_ms", acked_ms}, {"all_callbacks_ms", ms_since(start)},
                       {"complete", calls.load() >= target}});
  }
  nlohmann::json out{{"watches", watches},
                     {"paths", paths},
                     {"bytes_per_watch", static_cast<double>(rss_after - rss_before) / static_cast<double>(watches)},
                     {"add_ms", add_ms},
                     {"changes", timings}};
  std::puts(out.dump().c_str());
  handles.clear();
  r->stop();
  return 0;
}
