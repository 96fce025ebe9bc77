#include "url.hpp"

#include <uriparser/Uri.h>

namespace lattice::daemon {

std::optional<target> parse_target(std::string_view raw) {
  if (raw.empty() || raw.front() != '/') return std::nullopt;
  target out;
  const auto question = raw.find('?');
  std::string path(raw.substr(0, question));
  // uriUnescapeInPlaceExA decodes %XX; '+' stays '+' in paths.
  const char* end = uriUnescapeInPlaceExA(path.data(), URI_FALSE, URI_BR_DONT_TOUCH);
  path.resize(static_cast<std::size_t>(end - path.data()));
  if (path.find('\0') != std::string::npos) return std::nullopt;
  out.path = std::move(path);
  if (question == std::string_view::npos) return out;
  const std::string query(raw.substr(question + 1));
  UriQueryListA* list = nullptr;
  int count = 0;
  if (uriDissectQueryMallocA(&list, &count, query.data(), query.data() + query.size()) != URI_SUCCESS)
    return std::nullopt;
  for (const UriQueryListA* item = list; item != nullptr; item = item->next)
    out.query.emplace(item->key ? item->key : "", item->value ? item->value : "");
  uriFreeQueryListA(list);
  return out;
}

}  // namespace lattice::daemon
