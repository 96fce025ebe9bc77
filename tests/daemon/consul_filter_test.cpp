// Consul's ?filter language (apps/latticed/consul_filter.hpp): parsing,
// refusals, and go-bexpr's semantics over answers shaped as Consul's.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "consul_filter.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace consul_filter_test {

using lattice::daemon::consul::filter;
using lattice::daemon::consul::health_service_selectors;
using lattice::daemon::consul::selector_schema;
using nlohmann::json;

namespace {

// Two health answers' elements: web-1 (tags primary, v1; zone eu-west;
// one passing and one critical check) and web-2 (no tags, no meta, every
// check passing).
json answer() {
  return json::parse(R"([
    {"Node": {"Node": "lattice-01", "Address": "127.0.0.1"},
     "Service": {"ID": "web-1", "Service": "web", "Tags": ["primary", "v1"], "Port": 8080,
                 "Meta": {"zone": "eu-west", "version": "1.2"}, "Weights": {"Passing": 1, "Warning": 1}},
     "Checks": [{"CheckID": "serfHealth", "Status": "passing"}, {"CheckID": "service:web-1", "Status": "critical"}]},
    {"Node": {"Node": "lattice-02", "Address": "127.0.0.2"},
     "Service": {"ID": "web-2", "Service": "web", "Tags": [], "Port": 9090,
                 "Meta": {}, "Weights": {"Passing": 1, "Warning": 1}},
     "Checks": [{"CheckID": "serfHealth", "Status": "passing"}]}
  ])");
}

// The service ids `expression` keeps.
std::vector<std::string> kept(const std::string& expression) {
  auto parsed = filter::parse(expression, health_service_selectors);
  if (auto* error = std::get_if<std::string>(&parsed)) FAIL(*error);
  json a = answer();
  std::get<filter>(parsed).apply(a);
  std::vector<std::string> ids;
  for (const auto& e : a) ids.push_back(e["Service"]["ID"]);
  return ids;
}

using ids = std::vector<std::string>;

}  // namespace

TEST_CASE("filter: equality on strings and numbers, quoted, raw or bare", "[consul_filter]") {
  CHECK(kept(R"(Service.ID == "web-1")") == ids{"web-1"});
  CHECK(kept("Service.ID == `web-2`") == ids{"web-2"});
  CHECK(kept("Service.ID == web-2") == ids{"web-2"});
  CHECK(kept("Service.Port == 9090") == ids{"web-2"});
  CHECK(kept("Service.Port != 9090") == ids{"web-1"});
  CHECK(kept("Service.Port == nine").empty());  // not a number: no match
  CHECK(kept(R"(Node.Address == "127.0.0.1")") == ids{"web-1"});
}

TEST_CASE("filter: in, contains, is empty over arrays, maps and strings", "[consul_filter]") {
  CHECK(kept(R"("primary" in Service.Tags)") == ids{"web-1"});
  CHECK(kept(R"("primary" not in Service.Tags)") == ids{"web-2"});
  CHECK(kept("Service.Tags contains v1") == ids{"web-1"});
  CHECK(kept("Service.Tags is empty") == ids{"web-2"});
  CHECK(kept("Service.Tags is not empty") == ids{"web-1"});
  CHECK(kept(R"("zone" in Service.Meta)") == ids{"web-1"});           // a key of a map
  CHECK(kept(R"(Service.ID contains "-2")") == ids{"web-2"});          // a substring
  CHECK(kept("Service.Meta is empty") == ids{"web-2"});
}

TEST_CASE("filter: a map key that is absent", "[consul_filter]") {
  CHECK(kept(R"(Service.Meta.zone == "eu-west")") == ids{"web-1"});
  CHECK(kept(R"(Service.Meta["zone"] != "eu-west")") == ids{"web-2"});  // absent: != holds
  CHECK(kept("Service.Meta.zone is empty") == ids{"web-2"});
}

TEST_CASE("filter: a selector through an array holds for any element", "[consul_filter]") {
  CHECK(kept("Checks.Status == critical") == ids{"web-1"});
  // Negation is over the whole selector: no check is critical.
  CHECK(kept("Checks.Status != critical") == ids{"web-2"});
  CHECK(kept(R"(Checks.CheckID == "serfHealth")") == ids{"web-1", "web-2"});
}

TEST_CASE("filter: matches is RE2, unanchored", "[consul_filter]") {
  CHECK(kept(R"(Service.Meta.zone matches "^eu-")") == ids{"web-1"});
  CHECK(kept(R"(Service.ID matches "2$")") == ids{"web-2"});
  CHECK(kept(R"(Service.ID not matches "2$")") == ids{"web-1"});
}

TEST_CASE("filter: and binds tighter than or, not and parentheses", "[consul_filter]") {
  CHECK(kept("Service.Port == 8080 or Service.Port == 9090 and Service.ID == web-1") == ids{"web-1"});
  CHECK(kept("(Service.Port == 8080 or Service.Port == 9090) and Service.ID == web-2") == ids{"web-2"});
  CHECK(kept("not Service.ID == web-1") == ids{"web-2"});
  CHECK(kept("not not Service.ID == web-1") == ids{"web-1"});
  CHECK(kept("not (Service.ID == web-1 or Service.ID == web-2)").empty());
  CHECK(kept("  Service.ID==web-1  ") == ids{"web-1"});
}

TEST_CASE("filter: malformed expressions and unknown selectors are refused", "[consul_filter]") {
  for (const char* bad : {"", "Service.ID ==", "Service.ID = web-1", "(Service.ID == web-1", "Service.ID == \"x",
                          "Service.ID == web-1 and", "== web-1", "Service.ID is", "web-1 in"}) {
    INFO(bad);
    const auto parsed = filter::parse(bad, health_service_selectors);
    REQUIRE(std::holds_alternative<std::string>(parsed));
    CHECK_THAT(std::get<std::string>(parsed), Catch::Contains("no valid expression"));
  }
  const auto unknown = filter::parse("Service.Colour == red", health_service_selectors);
  REQUIRE(std::holds_alternative<std::string>(unknown));
  CHECK_THAT(std::get<std::string>(unknown), Catch::Contains("Selector \"Service.Colour\" is not valid"));
  const auto regex = filter::parse(R"(Service.ID matches "(")", health_service_selectors);
  REQUIRE(std::holds_alternative<std::string>(regex));
  CHECK_THAT(std::get<std::string>(regex), Catch::Contains("Invalid regular expression"));
  CHECK(std::holds_alternative<std::string>(filter::parse(std::string(5000, 'a'), health_service_selectors)));
  // Nesting is bounded (the parser recurses per level); 64 levels parse.
  CHECK(std::holds_alternative<filter>(
      filter::parse(std::string(64, '(') + "Service.ID == a" + std::string(64, ')'), health_service_selectors)));
  const auto deep = filter::parse(std::string(65, '(') + "Service.ID == a" + std::string(65, ')'),
                                  health_service_selectors);
  REQUIRE(std::holds_alternative<std::string>(deep));
  CHECK_THAT(std::get<std::string>(deep), Catch::Contains("deeper than 64"));
  CHECK(std::holds_alternative<filter>(filter::parse("Service.ID == \"(((not\"", health_service_selectors)));
  // Bytes past 127 are refused outside strings, and kept inside them.
  CHECK(std::holds_alternative<std::string>(filter::parse("Service.Po\xf4 != 9090", health_service_selectors)));
  CHECK(std::holds_alternative<filter>(filter::parse("Service.ID == \"caf\xc3\xa9\"", health_service_selectors)));
}

TEST_CASE("filter: an object answer keeps the values that match", "[consul_filter]") {
  const selector_schema schema = {"ID", "Tags"};
  auto parsed = filter::parse(R"("a" in Tags)", schema);
  REQUIRE(std::holds_alternative<filter>(parsed));
  json services = json::parse(R"({"x": {"ID": "x", "Tags": ["a"]}, "y": {"ID": "y", "Tags": []}})");
  std::get<filter>(parsed).apply(services);
  CHECK(services.size() == 1);
  CHECK(services.contains("x"));
}

}  // namespace consul_filter_test
