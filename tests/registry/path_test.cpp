// service_path: the only way to a path is a parse that checks every rule.
#include <catch2/catch.hpp>

#include "lattice/registry/path.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace path_test {

using lattice::registry::errc;
using lattice::registry::service_path;

TEST_CASE("valid paths parse, segment-wise prefixes", "[registry][path]") {
  for (const char* ok : {"/", "/HelloWorldService/1.0.0", "/bigSys/smallSys/type/name", "/a-b_c~d:e@f+g"})
    CHECK(service_path::parse(ok).has_value());
  const auto api = service_path::parse("/api").value();
  CHECK(api.is_prefix_of("/api"));
  CHECK(api.is_prefix_of("/api/user/1.0.0"));
  CHECK_FALSE(api.is_prefix_of("/apix"));
  CHECK_FALSE(service_path::parse("/ap").value().is_prefix_of("/api"));
  CHECK(service_path::root().is_prefix_of("/anything"));
}

TEST_CASE("invalid paths are errors, never odd keys", "[registry][path]") {
  for (const char* bad : {"", "api", "/api/", "//api", "/api//v1", "/./x", "/x/..", "/sp ace", "/tab\t",
                          "/qu?ery", "/percent%20", "/ünï"})
    CHECK(service_path::parse(bad).error() == errc::invalid_path);
  CHECK(service_path::parse(std::string("/nul\0x", 6)).error() == errc::invalid_path);
  CHECK(service_path::parse("/" + std::string(600, 'a')).error() == errc::path_too_long);
  std::string deep;
  for (int i = 0; i < 33; ++i) deep += "/a";
  CHECK(service_path::parse(deep).error() == errc::path_too_long);
}

}  // namespace path_test
