// Fuzz target: every message the protocol core decodes, into the
// production instantiation (protocol<registry_document>), in each
// dissemination mode and with each liveness source. The first byte picks
// the mode, the liveness source and the message type; the rest is the
// payload, as a verified frame would hand it over. Whatever
// arrives, the core must not crash, and its state must still encode to
// bytes that decode (a state that does not would be refused by every peer
// and by the data directory on the next start).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

#include "lattice/crdt/codec.hpp"
#include "lattice/registry/document.hpp"
#include "lattice/transport/protocol.hpp"

namespace t = lattice::transport;
using lattice::crdt::hlc_timestamp;
using lattice::registry::registry_document;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const t::dissemination modes[] = {t::dissemination::state, t::dissemination::delta, t::dissemination::op};
  const auto now = std::chrono::steady_clock::time_point{} + std::chrono::seconds(10);

  t::protocol_options o;
  o.self = 1;
  o.address = "127.0.0.1:1";
  o.mode = modes[(data[0] >> 4) % 3];
  // Probes: the detector's messages (type 8), record requests (9) and
  // record refreshes (10) reach a core that runs the detector.
  if (((data[0] >> 4) / 3) % 2 == 1) o.liveness.source = t::liveness_source::probes;
  o.wall_clock = [] { return std::uint64_t{1'700'000'000'000'000}; };
  t::protocol<registry_document> core(o, now);
  registry_document own;
  own.config.put("/app/a", "1", hlc_timestamp{1'699'999'000'000'000, 0, 1});
  own.config.put("/app/b", "2", hlc_timestamp{1'699'999'000'000'001, 0, 1});
  core.local_change(own, now);

  const auto type = static_cast<t::message_type>(1 + (data[0] & 0x0f) % 10);
  const std::span<const std::byte> payload(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  core.on_message(type, payload, now);
  (void)core.take_outgoing();
  core.on_tick(now + std::chrono::seconds(1));
  (void)core.take_outgoing();

  if (!lattice::crdt::decode<registry_document>(lattice::crdt::encode(core.state())).has_value())
    __builtin_trap();
  return 0;
}
