// apps/latticed/json_log.hpp: --log-format json, one JSON object per log
// line, for log shippers that parse JSON rather than a text pattern:
//
//   {"time":"2026-12-04T02:31:07.412+0000","level":"info","pid":4242,"msg":"replica ... serving HTTP on ..."}
//
// The message is escaped as JSON (nlohmann), so a message quoting a
// request target or a peer's bytes cannot break the line.
#pragma once

#include <memory>

#include <spdlog/formatter.h>

namespace lattice::daemon {

std::unique_ptr<spdlog::formatter> json_log_formatter();

}  // namespace lattice::daemon
