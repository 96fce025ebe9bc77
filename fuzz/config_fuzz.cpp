// Fuzz target: latticed's TOML config file (CLI11's parser and our checks
// on the values). The input is the file; it is parsed as
// `latticed --config <file>`. Whatever it holds, parsing must end with
// options or an error, never a crash.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "daemon_options.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = "/tmp/lattice-config-fuzz-" + std::to_string(::getpid()) + ".toml";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  std::string argv0 = "latticed", flag = "--config", file = path;
  char* argv[] = {argv0.data(), flag.data(), file.data(), nullptr};
  (void)lattice::daemon::parse_options(3, argv);
  return 0;
}
