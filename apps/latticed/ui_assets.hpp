// apps/latticed/ui_assets.hpp: the web console's static files, compiled
// into latticed (cmake/embed_files.cmake writes the table from
// apps/latticed/ui/ at build time), so one binary is the whole product and
// the console needs no network access and no files at run time.
#pragma once

#include <span>
#include <string_view>

namespace lattice::daemon::ui {

struct asset {
  std::string_view path;          // under /ui: "/index.html", "/console.js"
  std::string_view content_type;  // with charset for text
  std::string_view body;
  std::string_view etag;          // quoted, strong: changes with the bytes
};

/// Every embedded file, in the order the build listed them.
std::span<const asset> assets() noexcept;

}  // namespace lattice::daemon::ui
