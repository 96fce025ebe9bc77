// tests/support/eventually.hpp: bounded waiting for tests over real threads
// and sockets.
#pragma once

#include <chrono>
#include <thread>

namespace lattice::testing {

/// Polls `done` every 5 ms for at most `limit`; returns whether it held.
template <class F>
bool eventually(F done, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

}  // namespace lattice::testing
