// lattice/registry/path.hpp: service paths, validated.
//
// A path names a service (`/HelloWorldService/1.0.0`), any deeper business
// path (`/bigSys/smallSys/type/name`), or a config key (`/db/url`). The only
// way to get one is parse(), so a path in hand is always valid: never a
// silently odd key.
//
//   auto p = service_path::parse("/api/user/1.0.0");
//   if (!p) return p.error();                 // errc::invalid_path, ...
//   service_path::parse("/api")->is_prefix_of(*p);   // true: segment-wise
//   service_path::parse("/ap")->is_prefix_of(*p);    // false
//
// Rules: starts with '/', segments separated by single '/', no trailing
// '/', each segment 1+ characters of [A-Za-z0-9._~:@+-] and not "." or "..";
// at most max_path_length characters and max_path_depth segments. The root
// "/" is valid (it prefixes every path), but cannot hold instances.
//
// Thread safety: a value type.
#pragma once

#include <compare>
#include <cstddef>
#include <string>
#include <string_view>

#include "lattice/registry/error.hpp"

namespace lattice::registry {

inline constexpr std::size_t max_path_length = 512;
inline constexpr std::size_t max_path_depth = 32;

class service_path {
 public:
  /// Validates `text`. Errors: errc::invalid_path, errc::path_too_long.
  static result<service_path> parse(std::string_view text);
  /// The root path "/".
  static service_path root() { return service_path("/"); }

  const std::string& str() const noexcept { return text_; }
  bool is_root() const noexcept { return text_.size() == 1; }
  /// True when every segment of this path begins `other` (a path is a
  /// prefix of itself; the root is a prefix of every path).
  bool is_prefix_of(std::string_view other) const noexcept;
  bool is_prefix_of(const service_path& other) const noexcept { return is_prefix_of(other.text_); }

  friend auto operator<=>(const service_path&, const service_path&) = default;

 private:
  explicit service_path(std::string text) : text_(std::move(text)) {}
  std::string text_;
};

}  // namespace lattice::registry
