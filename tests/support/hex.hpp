// tests/support/hex.hpp: bytes <-> hex strings, for frozen wire vectors.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace lattice::testing {

inline std::string to_hex(const std::vector<std::byte>& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::byte b : bytes) {
    const auto v = std::to_integer<unsigned>(b);
    out += digits[v >> 4];
    out += digits[v & 0xf];
  }
  return out;
}

inline std::vector<std::byte> from_hex(std::string_view hex) {
  auto nibble = [](char c) -> unsigned {
    return c <= '9' ? static_cast<unsigned>(c - '0') : static_cast<unsigned>(c - 'a' + 10);
  };
  std::vector<std::byte> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<std::byte>(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
  return out;
}

}  // namespace lattice::testing
