// apps/latticed/daemon_options.hpp: latticed's flags and config file
// (CLI11; the config file is TOML with the flags' long names as keys).
#pragma once

#include <optional>
#include <string>

#include "api.hpp"
#include "dns_answer.hpp"
#include "http_server.hpp"
#include "lattice/registry/replica.hpp"

namespace lattice::daemon {

struct daemon_options {
  registry::replica_options replica;
  server_options http;
  api_options api;
  dns_options dns;
  /// The DNS interface's address; unset: off (--dns off).
  std::optional<std::pair<std::string, std::uint16_t>> dns_address;
  /// Whether --dns was given: then failing to bind it stops the daemon;
  /// the default address only warns (another daemon may hold it).
  bool dns_explicit = false;
  std::string log_level = "info";
  /// "text" (a line per event, for people) or "json" (an object per line).
  std::string log_format = "text";
  /// HTTPS for the API (--https-cert, --https-key; --https-ca requires
  /// client certificates). Empty: plain HTTP.
  std::string https_cert_file, https_key_file, https_ca_file;
};

struct parsed_options {
  /// Set when the daemon should start.
  std::optional<daemon_options> options;
  /// Otherwise: 0 after --help, non-zero after an error (already printed).
  int exit_code = 0;
};

parsed_options parse_options(int argc, char** argv);

}  // namespace lattice::daemon
