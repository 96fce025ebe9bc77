// apps/latticed/url.hpp: a request target split into its decoded path and
// query parameters (uriparser does the percent-decoding).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace lattice::daemon {

struct target {
  /// Percent-decoded path ("/v1/kv/a b").
  std::string path;
  /// Decoded query parameters; a flag without '=' maps to "".
  std::map<std::string, std::string, std::less<>> query;

  bool has(std::string_view key) const { return query.find(key) != query.end(); }
  std::optional<std::string> get(std::string_view key) const {
    const auto it = query.find(key);
    return it == query.end() ? std::nullopt : std::optional(it->second);
  }
};

/// nullopt for a target that is not an origin-form path with a valid
/// query (or decodes to a NUL byte).
std::optional<target> parse_target(std::string_view raw);

}  // namespace lattice::daemon
