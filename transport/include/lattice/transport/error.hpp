// lattice/transport/error.hpp: errors of the transport layer.
//
// Transport errors are std::error_codes in the "lattice.transport" category,
// because that is what Asio completion handlers carry. Compare them with
// `==` against the enum:
//
//   if (auto f = decoder.next(); !f && f.error() == transport::errc::bad_mac) ...
//
// Thread safety: immutable; safe to share.
#pragma once

#include <string_view>
#include <system_error>
#include <type_traits>

#include "lattice/crdt/error.hpp"  // lattice::result

namespace lattice::transport {

/// Why a frame was rejected. Every one of these closes the connection it
/// arrived on (a rejected datagram is dropped alone); none of them lets
/// the frame reach the replica's state.
enum class errc {
  /// The first four bytes are not "LATC": not a Lattice peer, or the stream
  /// lost its framing.
  bad_magic = 1,
  /// The protocol version byte is one this build does not speak.
  unsupported_version,
  /// Unknown flag bits or a non-zero reserved byte.
  malformed_header,
  /// The declared payload length exceeds the configured maximum; detected
  /// from the header alone, before the payload is buffered.
  frame_too_large,
  /// The CRC32C does not match: the bytes were damaged in transit.
  bad_checksum,
  /// The cluster has a key and the frame carries no MAC.
  missing_mac,
  /// The frame carries a MAC but this replica has no cluster key: the peer
  /// belongs to a keyed cluster, or the configuration differs.
  unexpected_mac,
  /// The HMAC-SHA256 does not verify: the sender lacks the cluster key.
  bad_mac,
  /// A datagram that is not exactly one whole frame (cut short, or with
  /// bytes after the frame). Dropped; there is no connection to close.
  bad_datagram,
};

/// The enumerator's name ("bad_magic"): a short, stable identifier for
/// metric labels and logs that machines read; message() is the prose.
/// Empty for a value that is no errc.
std::string_view errc_name(errc e) noexcept;

/// The category of `errc`; its name() is "lattice.transport".
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace lattice::transport

template <>
struct std::is_error_code_enum<lattice::transport::errc> : std::true_type {};
