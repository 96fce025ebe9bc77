// Fuzz target: a SWIM message from the network into a failure detector
// (transport/swim.hpp). The first byte picks the sender (a known member,
// an unknown one, or ourselves); the rest is the message as a verified
// frame would hand it over. Whatever arrives, decoding must fail cleanly
// or the detector must take it without crashing, never address a message
// to itself or to id 0, and keep judging itself alive.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

#include "lattice/crdt/codec.hpp"
#include "lattice/transport/swim.hpp"

namespace swim = lattice::transport::swim;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto now = swim::steady_time{} + std::chrono::hours(1);
  swim::detector d(1, swim::options{}, 7, now);
  for (lattice::crdt::replica_id id = 2; id <= 5; ++id) d.add_member(id, 1, now);
  const lattice::crdt::replica_id from = 1 + data[0] % 7;  // ourselves, known, unknown
  const auto decoded = lattice::crdt::decode<swim::message>(
      std::span(reinterpret_cast<const std::byte*>(data) + 1, size - 1));
  if (!decoded) return 0;
  const auto check = [&](const std::vector<swim::outgoing>& out) {
    for (const auto& o : out)
      if (o.to == 0 || o.to == 1) __builtin_trap();
  };
  check(d.on_message(from, decoded.value(), now));
  for (int i = 1; i <= 50; ++i) check(d.tick(now + std::chrono::milliseconds(100 * i)));
  if (d.state_of(1) != swim::member_state::alive) __builtin_trap();
  return 0;
}
