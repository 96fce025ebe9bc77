#include "duration.hpp"

#include <charconv>

namespace lattice::daemon {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (text == "0") return std::chrono::milliseconds(0);
  double total_ms = 0;
  while (!text.empty()) {
    double number = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (ec != std::errc() || number < 0) return std::nullopt;
    text.remove_prefix(static_cast<std::size_t>(end - text.data()));
    double unit_ms = 0;
    if (text.starts_with("ms")) { unit_ms = 1; text.remove_prefix(2); }
    else if (text.starts_with("us") || text.starts_with("µs")) { unit_ms = 0.001; text.remove_prefix(text[0] == 'u' ? 2 : 3); }
    else if (text.starts_with("ns")) { unit_ms = 0.000001; text.remove_prefix(2); }
    else if (text.starts_with("s")) { unit_ms = 1000; text.remove_prefix(1); }
    else if (text.starts_with("m")) { unit_ms = 60'000; text.remove_prefix(1); }
    else if (text.starts_with("h")) { unit_ms = 3'600'000; text.remove_prefix(1); }
    else return std::nullopt;
    total_ms += number * unit_ms;
    if (total_ms > 1e15) return std::nullopt;
  }
  return std::chrono::milliseconds(static_cast<long long>(total_ms));
}

std::string format_duration(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms >= 3'600'000) { out += std::to_string(ms / 3'600'000) + "h"; ms %= 3'600'000; }
  if (ms >= 60'000) { out += std::to_string(ms / 60'000) + "m"; ms %= 60'000; }
  if (ms >= 1000 && ms % 1000 == 0) { out += std::to_string(ms / 1000) + "s"; ms = 0; }
  if (ms > 0) out += std::to_string(ms) + "ms";
  return out;
}

}  // namespace lattice::daemon
