// registry/src/config_value.hpp: how a config value and its flags share
// the one replicated string of a config entry.
//
// Flags (Consul's KV Flags: an opaque 64-bit number clients keep beside a
// value) must come from the same write as the value, so they live in the
// same LWW entry: a second key could let a value and its flags come from
// different writers. The document, the wire and the data directory keep
// holding one string per key; only the registry's readers (the published
// config_tree) take it apart:
//
//   stored = value                                if flags == 0 and value does not start with the marker
//   stored = marker + flags (8 bytes, big-endian) + value   otherwise
//
// The marker is a NUL byte and "lattice-flags:" (15 bytes). A value that
// itself starts with the marker is wrapped with flags 0, so every value
// reads back as written; values written before flags existed read back
// unchanged unless they began with those 15 bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace lattice::registry::detail {

inline constexpr std::string_view kFlagsMarker{"\0lattice-flags:", 15};

inline std::string encode_config_value(std::string value, std::uint64_t flags) {
  if (flags == 0 && !value.starts_with(kFlagsMarker)) return value;
  std::string out(kFlagsMarker);
  for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((flags >> shift) & 0xff);
  return out + value;
}

struct decoded_config_value {
  std::string_view value;
  std::uint64_t flags = 0;
};

inline decoded_config_value decode_config_value(std::string_view stored) {
  constexpr std::size_t header = kFlagsMarker.size() + 8;
  if (stored.size() < header || !stored.starts_with(kFlagsMarker)) return {stored, 0};
  std::uint64_t flags = 0;
  for (std::size_t i = kFlagsMarker.size(); i < header; ++i) flags = (flags << 8) | static_cast<unsigned char>(stored[i]);
  return {stored.substr(header), flags};
}

}  // namespace lattice::registry::detail
