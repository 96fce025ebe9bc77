// examples/narrate.hpp: what every example shares: timestamped narration
// and bounded waiting.
#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <thread>

#include <fmt/format.h>

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

}  // namespace lattice::examples
