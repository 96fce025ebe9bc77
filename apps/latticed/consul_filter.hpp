// apps/latticed/consul_filter.hpp: Consul's ?filter expressions (the
// go-bexpr language) over the JSON answers of the catalog, health and
// agent endpoints.
//
//   Service.Meta.version == "2" and not (Checks.Status == critical)
//   "primary" in ServiceTags or ServiceMeta["zone"] matches "^eu-"
//
// Operators: == != (strings, numbers, booleans), contains / not contains
// and in / not in (an element of an array, a key of an object, a
// substring of a string), is empty / is not empty, matches / not matches
// (RE2, the syntax of Go's regexp, unanchored), and / or / not and
// parentheses with the usual precedence. A value is a quoted string ("..."
// with Go escapes, or `...` raw), a number, or a bare word.
//
// Semantics follow go-bexpr: a selector through an array is true if it
// holds for any element (Checks.Status == critical: some check is
// critical); a negated operator is the negation of the positive one over
// the whole selector (Checks.Status != passing: no check passes); a map
// key that is absent makes the positive operators false.
//
// Each endpoint names the selectors it accepts (its answer's fields, a
// "*" segment standing for any key of a map); any other selector is
// refused when the filter is parsed, with Consul's wording.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace lattice::daemon::consul {

/// The selectors an endpoint accepts, dotted ("Service.Meta.*").
using selector_schema = std::vector<std::string_view>;

class filter {
 public:
  /// Parses `expression`, checking its selectors against `schema`: the
  /// filter, or the error to answer with 400.
  static std::variant<filter, std::string> parse(std::string_view expression, const selector_schema& schema);

  /// Whether one element of an answer matches.
  bool matches(const nlohmann::json& item) const;
  /// Keeps the elements of `answer` that match: of an array, or the
  /// values of an object (/v1/agent/services, /v1/agent/checks).
  void apply(nlohmann::json& answer) const;

  struct node;

 private:
  explicit filter(std::shared_ptr<const node> root) : root_(std::move(root)) {}
  std::shared_ptr<const node> root_;
};

// The selectors of each answer shape (Consul's, for the fields latticed sends).
extern const selector_schema catalog_service_selectors;  // /v1/catalog/service/:name
extern const selector_schema health_service_selectors;   // /v1/health/service/:name
extern const selector_schema check_selectors;            // /v1/health/checks|state|node, /v1/agent/checks
extern const selector_schema node_selectors;             // /v1/catalog/nodes
extern const selector_schema agent_service_selectors;    // /v1/agent/services, /v1/catalog/node/:node

}  // namespace lattice::daemon::consul
