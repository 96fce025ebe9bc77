// The web console's static files under /ui/ (ui_assets.hpp), and / sending
// browsers there. They hold no registry data, so they are served without a
// token; the page asks for one when the API it calls refuses it.
#include "api.hpp"
#include "ui_assets.hpp"

namespace lattice::daemon {

namespace {

// The page loads only what latticed serves and talks only to it.
constexpr const char* kPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace

bool api::is_console_path(std::string_view path) {
  return path == "/" || path == "/ui" || path.starts_with("/ui/");
}

reply api::console(const request& req, const target& t) {
  const unsigned v = req.version();
  if (req.method() != http::verb::get && req.method() != http::verb::head)
    return error_response(http::status::method_not_allowed,
                          std::string(req.method_string()) + " is not allowed on " + t.path, v);
  if (t.path == "/" || t.path == "/ui") {
    response res{http::status::found, v};
    res.set(http::field::location, "/ui/");
    res.prepare_payload();
    return res;
  }
  std::string_view file = std::string_view(t.path).substr(3);  // after "/ui"
  if (file == "/") file = "/index.html";
  for (const auto& a : ui::assets()) {
    if (a.path != file) continue;
    response res{http::status::ok, v};
    res.set(http::field::etag, std::string(a.etag));
    // Revalidated on every load (a 304 costs one round trip), so a page
    // never runs a script older than the binary that serves it.
    res.set(http::field::cache_control, "no-cache");
    res.set("Content-Security-Policy", kPolicy);
    res.set("X-Content-Type-Options", "nosniff");
    res.set("Referrer-Policy", "no-referrer");
    if (auto match = req.find(http::field::if_none_match); match != req.end() && sv(match->value()) == a.etag) {
      res.result(http::status::not_modified);
      return res;
    }
    res.set(http::field::content_type, std::string(a.content_type));
    if (req.method() == http::verb::head) {
      res.content_length(a.body.size());
      return res;
    }
    res.body() = std::string(a.body);
    res.prepare_payload();
    return res;
  }
  return error_response(http::status::not_found, "no such console file: " + t.path, v);
}

}  // namespace lattice::daemon
