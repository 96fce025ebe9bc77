// filter_fuzz: a ?filter expression, as a Consul client sends it, parsed
// for the health answer's selectors and, when it parses, run over a fixed
// health answer. Whatever it holds, the parse must end with a filter or an
// error, and the evaluation with a subset of the answer, never a crash or
// a hang (Spirit X3 backtracks; RE2 runs in linear time).
//
// Seeds (fuzz/corpus/filter_fuzz): expressions of every operator.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "consul_filter.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lattice::daemon::consul;
  static const nlohmann::json answer = nlohmann::json::parse(R"([
    {"Node": {"Node": "lattice-01", "Address": "127.0.0.1", "Meta": {}},
     "Service": {"ID": "web-1", "Service": "web", "Tags": ["primary", "v1"], "Port": 8080,
                 "Meta": {"zone": "eu-west"}, "Weights": {"Passing": 1, "Warning": 1}},
     "Checks": [{"CheckID": "serfHealth", "Status": "passing"}, {"CheckID": "c", "Status": "critical"}]},
    {"Node": {"Node": "lattice-02"}, "Service": {"ID": "web-2", "Tags": [], "Port": 9090, "Meta": {}},
     "Checks": []}
  ])");
  auto parsed = filter::parse(std::string_view(reinterpret_cast<const char*>(data), size), health_service_selectors);
  if (auto* f = std::get_if<filter>(&parsed)) {
    nlohmann::json copy = answer;
    f->apply(copy);
    if (copy.size() > answer.size()) __builtin_trap();
  }
  return 0;
}
