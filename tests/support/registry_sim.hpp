// tests/support/registry_sim.hpp: registry cores in the deterministic
// simulator, with HLC wall time taken from virtual time.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "lattice/registry/registry_core.hpp"
#include "simulator.hpp"

namespace lattice::testing {

using registry_sim = basic_simulator<registry::registry_core>;

/// Per replica id (node index + 1): how far its wall clock runs from
/// virtual time, in µs. Read on every clock reading, so a test may step a
/// clock while the simulation runs.
using clock_skews = std::map<crdt::replica_id, std::int64_t>;

/// A simulator of `nodes` registry cores built from `core` (its protocol
/// field is filled in per node), their wall clocks skewed by `skews`.
inline std::unique_ptr<registry_sim> make_registry_sim(registry_sim::options o,
                                                       registry::core_options core = {},
                                                       std::shared_ptr<const clock_skews> skews = nullptr) {
  auto sim_ptr = std::make_shared<registry_sim*>(nullptr);
  o.make = [core, sim_ptr, skews](transport::protocol_options p, transport::steady_time now) {
    auto c = core;
    const auto self = p.self;
    c.protocol = std::move(p);
    auto wall = [sim_ptr, skews, self] {
      const auto t = (*sim_ptr)->now().time_since_epoch();
      std::int64_t skew = 0;
      if (skews)
        if (const auto it = skews->find(self); it != skews->end()) skew = it->second;
      return static_cast<std::uint64_t>(
          1'700'000'000'000'000LL + std::chrono::duration_cast<std::chrono::microseconds>(t).count() + skew);
    };
    return std::make_unique<registry::registry_core>(std::move(c), now, wall);
  };
  auto sim = std::make_unique<registry_sim>(std::move(o));
  *sim_ptr = sim.get();
  return sim;
}

/// Ids of the providers node `i` would list for `path` right now.
inline std::vector<std::string> providers_on(registry_sim& sim, std::size_t i, std::string_view path) {
  sim.node(i).publish(sim.now());
  std::vector<std::string> ids;
  if (const auto* view = sim.node(i).published()->find(path))
    for (const auto& p : view->providers) ids.emplace_back(p->id());
  return ids;
}

/// The value of config `key` that node `i` would serve right now.
inline std::optional<std::string> config_on(registry_sim& sim, std::size_t i, const std::string& key) {
  sim.node(i).publish(sim.now());
  const auto& config = *sim.node(i).published()->config;
  const auto* entry = config.find(key);
  return entry == nullptr ? std::nullopt : std::optional<std::string>(entry->value);
}

/// A persistent provider `id` at 10.0.0.1:80 (it outlives its owner).
inline registry::instance persistent_instance(const char* id) {
  registry::instance i;
  i.id = id;
  i.address = "10.0.0.1";
  i.port = 80;
  i.ephemeral = false;
  return i;
}

/// Whether every live node lists exactly `ids` as providers of `path`.
inline bool all_list(registry_sim& sim, std::string_view path, const std::vector<std::string>& ids) {
  for (std::size_t i = 0; i < sim.size(); ++i)
    if (sim.alive(i) && providers_on(sim, i, path) != ids) return false;
  return true;
}

}  // namespace lattice::testing
