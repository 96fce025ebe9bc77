// Fuzz target: the frame decoder, the first code that sees a peer's bytes.
// The input is a byte stream as a connection would deliver it, split into
// two reads at a point the first byte chooses; the decoder runs with and
// without a cluster key. It must never crash, never return a frame longer
// than its limit, and stop at the first error. The same bytes as one
// datagram (decode_datagram) must decode exactly when the stream decoder
// finds one whole frame and nothing after it, to the same type and payload.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "lattice/transport/frame.hpp"

namespace t = lattice::transport;

namespace {

void decode_stream(std::span<const std::byte> bytes, std::size_t split, const t::frame_options& options) {
  t::frame_decoder decoder(options);
  decoder.feed(bytes.first(split));
  decoder.feed(bytes.subspan(split));
  // Each frame consumes at least a header, so this ends; the bound is a
  // second guard.
  for (std::size_t i = 0; i <= bytes.size(); ++i) {
    auto next = decoder.next();
    if (!next) {
      if (!decoder.failed()) __builtin_trap();  // an error must stick
      return;
    }
    if (!next.value()) return;  // needs more bytes
    if (next.value()->payload.size() > options.max_frame_size) __builtin_trap();
  }
  __builtin_trap();  // more frames than bytes
}

// decode_datagram agrees with the stream decoder fed the same bytes.
void decode_as_datagram(std::span<const std::byte> bytes, const t::frame_options& options) {
  const auto datagram = t::decode_datagram(bytes, options);
  t::frame_decoder decoder(options);
  decoder.feed(bytes);
  auto first = decoder.next();
  const bool one_whole_frame = first && first.value() && decoder.buffered() == 0;
  if (datagram.has_value() != one_whole_frame) __builtin_trap();
  if (!datagram) return;
  const auto& frame = *first.value();
  if (datagram.value().type != frame.type) __builtin_trap();
  if (!std::equal(datagram.value().payload.begin(), datagram.value().payload.end(), frame.payload.begin(),
                  frame.payload.end()))
    __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  const std::size_t split = bytes.empty() ? 0 : data[0] % (bytes.size() + 1);

  t::frame_options plain;
  plain.max_frame_size = 64 * 1024;
  decode_stream(bytes, split, plain);
  decode_as_datagram(bytes, plain);

  static const auto key = std::make_shared<const t::cluster_key>(
      std::vector<std::byte>(32, std::byte{0x5a}));
  t::frame_options keyed = plain;
  keyed.key = key;
  decode_stream(bytes, split, keyed);
  decode_as_datagram(bytes, keyed);
  return 0;
}
