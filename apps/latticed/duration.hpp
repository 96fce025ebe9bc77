// apps/latticed/duration.hpp: Go-style durations as Consul writes them
// ("10s", "1m30s", "500ms", "1h"), and back.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace lattice::daemon {

/// nullopt for an empty string, an unknown unit, a missing unit on a
/// non-zero number, or an overflow.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
/// "1m30s", "500ms", "0s".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace lattice::daemon
