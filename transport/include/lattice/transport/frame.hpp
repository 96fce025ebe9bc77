// lattice/transport/frame.hpp: how messages are delimited and protected on
// a byte stream. Sans-IO: the encoder returns bytes, the decoder is fed
// bytes; neither touches a socket or a clock.
//
//   transport::frame_options options;               // optionally with a key
//   auto bytes = transport::encode_frame(7, payload, options);
//   transport::frame_decoder decoder(options);
//   decoder.feed(received);                         // any split is fine
//   while (true) {
//     auto next = decoder.next();
//     if (!next) { close_connection(next.error()); break; }  // sticky
//     if (!next.value()) break;                     // need more bytes
//     handle(next.value()->type, next.value()->payload);
//   }
//
// Layout (little endian; docs/wire-format.md has the full description):
//
//   offset  size  field
//   0       4     magic "LATC"
//   4       1     protocol version (3)
//   5       1     message type (defined by the protocol core)
//   6       1     flags: bit 0 = a MAC follows the payload; others must be 0
//   7       1     reserved, must be 0
//   8       4     payload length N (u32)
//   12      4     CRC32C (Castagnoli) of bytes 0..11 followed by the payload
//   16      N     payload
//   16+N    32    HMAC-SHA256(cluster key, bytes 0..16+N-1), if flag bit 0
//
// The header is checked as soon as its 16 bytes arrive, so an oversized or
// foreign stream is refused before its payload is buffered. The CRC catches
// damage; the MAC, when the cluster has a key, authenticates the sender. A
// decoder that has failed stays failed: framing is lost, so the connection
// must be closed.
//
// Thread safety: frame_options is immutable after construction and may be
// shared; a frame_decoder belongs to one connection and one thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lattice/transport/error.hpp"

namespace lattice::transport {

inline constexpr std::array<std::byte, 4> frame_magic{std::byte{'L'}, std::byte{'A'},
                                                      std::byte{'T'}, std::byte{'C'}};
inline constexpr std::uint8_t protocol_version = 3;
inline constexpr std::size_t frame_header_size = 16;
inline constexpr std::size_t frame_mac_size = 32;
inline constexpr std::uint8_t frame_flag_mac = 0x01;
/// Default bound on a frame's payload; larger states are sent in slices.
inline constexpr std::size_t default_max_frame_size = 16 * 1024 * 1024;

/// A shared cluster key for HMAC-SHA256 frame authentication.
class cluster_key {
 public:
  /// REQUIRES: at least 16 bytes of secret (use 32 random bytes).
  /// Throws std::invalid_argument if shorter: a setup error.
  explicit cluster_key(std::vector<std::byte> secret);
  /// HMAC-SHA256 of `data` under this key.
  std::array<std::byte, frame_mac_size> mac(std::span<const std::byte> data) const;
  /// Constant-time comparison of `data`'s MAC with `expected`.
  bool verify(std::span<const std::byte> data, std::span<const std::byte> expected) const;

 private:
  std::vector<std::byte> secret_;
};

struct frame_options {
  /// Payloads larger than this are refused (errc::frame_too_large).
  std::size_t max_frame_size = default_max_frame_size;
  /// With a key, every frame is MACed and must verify; without, frames
  /// must carry no MAC. Shared so that every connection uses one key.
  std::shared_ptr<const cluster_key> key;
};

/// One decoded message.
struct frame {
  std::uint8_t type = 0;
  std::vector<std::byte> payload;
};

/// A frame decoded in place: `payload` points into the bytes it came from.
struct frame_view {
  std::uint8_t type = 0;
  std::span<const std::byte> payload;
};

/// Decodes a datagram, which holds exactly one whole frame: the checks
/// frame_decoder makes, and errc::bad_datagram for a datagram cut short or
/// with bytes after its frame. Allocates nothing.
[[nodiscard]] result<frame_view> decode_datagram(std::span<const std::byte> bytes, const frame_options& options);

/// CRC32C (Castagnoli) of `bytes`.
std::uint32_t crc32c(std::span<const std::byte> bytes) noexcept;

/// Appends one frame carrying `payload` to `out`.
/// REQUIRES: payload.size() <= options.max_frame_size.
void encode_frame_into(std::vector<std::byte>& out, std::uint8_t type,
                       std::span<const std::byte> payload, const frame_options& options);
/// One frame carrying `payload`. REQUIRES as above.
std::vector<std::byte> encode_frame(std::uint8_t type, std::span<const std::byte> payload,
                                    const frame_options& options);

/// Splits a byte stream into frames; see the file comment.
class frame_decoder {
 public:
  explicit frame_decoder(frame_options options);

  /// Buffers received bytes. Ignored once the decoder has failed.
  void feed(std::span<const std::byte> bytes);

  /// The next complete frame, std::nullopt if more bytes are needed, or the
  /// error that broke the stream (the same one on every later call):
  /// bad_magic, unsupported_version, malformed_header, frame_too_large,
  /// bad_checksum, missing_mac, unexpected_mac, bad_mac.
  [[nodiscard]] result<std::optional<frame>> next();

  /// Bytes received and not yet returned as frames.
  std::size_t buffered() const noexcept { return buffer_.size() - consumed_; }
  bool failed() const noexcept { return static_cast<bool>(error_); }

 private:
  result<std::optional<frame>> fail(errc code);

  frame_options options_;
  std::vector<std::byte> buffer_;
  std::size_t consumed_ = 0;  // bytes of buffer_ already returned
  std::error_code error_;
};

}  // namespace lattice::transport
