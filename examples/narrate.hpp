// examples/narrate.hpp: what the examples share: timestamped narration,
// bounded waiting, and opening a replica.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "lattice/registry/replica.hpp"

namespace lattice::examples {

inline std::string stamp() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  localtime_r(&t, &tm);
  return fmt::format("{:02}:{:02}:{:02}.{:03}", tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

/// Prints "[hh:mm:ss.mmm] message" and flushes (the output is read live).
template <class... Args>
void say(fmt::format_string<Args...> f, Args&&... args) {
  std::printf("[%s] %s\n", stamp().c_str(), fmt::format(f, std::forward<Args>(args)...).c_str());
  std::fflush(stdout);
}

/// Polls `done` every 5 ms until it holds or `limit` passes; returns
/// whether it held, and the time it took in `took`.
template <class F>
bool eventually(F done, std::chrono::milliseconds limit, std::chrono::milliseconds* took = nullptr) {
  const auto start = std::chrono::steady_clock::now();
  bool ok = done();
  while (!ok && std::chrono::steady_clock::now() - start < limit) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ok = done();
  }
  if (took) *took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  return ok;
}

/// A replica on a free loopback port joining through `seeds`; exits the
/// example with a message if it cannot open.
inline std::unique_ptr<registry::replica> open_replica(std::vector<std::string> seeds = {}) {
  registry::replica_options o;
  o.seeds = std::move(seeds);
  auto r = registry::replica::open(o);
  if (!r) {
    std::fprintf(stderr, "cannot open a replica: %s\n", r.error().message().c_str());
    std::exit(1);
  }
  return std::move(r).value();
}

}  // namespace lattice::examples
