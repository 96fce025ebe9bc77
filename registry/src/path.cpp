#include "lattice/registry/path.hpp"

namespace lattice::registry {
namespace {

bool allowed(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '~' || c == ':' || c == '@' || c == '+' || c == '-';
}

}  // namespace

result<service_path> service_path::parse(std::string_view text) {
  if (text.size() > max_path_length) return errc::path_too_long;
  if (text.empty() || text.front() != '/') return errc::invalid_path;
  if (text.size() == 1) return root();
  std::size_t depth = 0;
  std::size_t start = 1;
  while (start <= text.size()) {
    const std::size_t end = std::min(text.find('/', start), text.size());
    const std::string_view segment = text.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") return errc::invalid_path;
    for (char c : segment)
      if (!allowed(c)) return errc::invalid_path;
    if (++depth > max_path_depth) return errc::path_too_long;
    start = end + 1;
  }
  return service_path(std::string(text));
}

bool service_path::is_prefix_of(std::string_view other) const noexcept {
  if (is_root()) return !other.empty() && other.front() == '/';
  if (!other.starts_with(text_)) return false;
  return other.size() == text_.size() || other[text_.size()] == '/';
}

}  // namespace lattice::registry
