// apps/version/version.hpp: what `latticed --version` and `lattice --version`
// print. Defined in a file cmake/version.cmake writes at every build.
#pragma once

namespace lattice {

/// "0.1.0 (<git describe of the source tree>)", e.g. "0.1.0 (1c6c3d9a2b4e)"
/// or "0.1.0 (1c6c3d9a2b4e-modified)" for a tree with uncommitted changes.
const char* version_string();

}  // namespace lattice
