// One Catch2 main shared by every test executable.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <spdlog/spdlog.h>

int main(int argc, char* argv[]) {
  // spdlog builds its global registry on first use. libspdlog is not built
  // with ThreadSanitizer, which cannot see the guard of that
  // initialization, so a first log line written by two threads at once is
  // reported as a data race (the TLS driver test did, once): build it
  // here, before any test starts a thread.
  spdlog::default_logger();
  return Catch::Session().run(argc, argv);
}
