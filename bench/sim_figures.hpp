// bench/sim_figures.hpp: what the simulator benchmarks report about
// themselves and their samples (lattice_swim_sim, lattice_load_sim,
// lattice_churn_sim).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <fstream>
#include <string>
#include <vector>

namespace lattice::bench {

/// This process's peak resident memory (VmHWM), KiB; -1 if unknown.
inline long peak_rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

/// When a simulated cluster counts as formed: every live node judges
/// every other alive, or (for heartbeats, where some pair of a few dozen
/// replicas is suspect at almost any instant) every live node lists every
/// other, alive or suspect.
enum class formed_when { everyone_alive, everyone_listed };

/// How long a simulated cluster took to form, or nullopt past `limit`.
/// Checked every 100 ms, not every tick: the check asks each of N nodes
/// about N members, and at 300 checking it each 10 ms tick was most of a
/// formation's wall time.
template <class Sim>
std::optional<std::chrono::milliseconds> formation_time(Sim& sim, std::chrono::milliseconds limit,
                                                        formed_when when = formed_when::everyone_alive) {
  constexpr std::chrono::milliseconds step{100};
  for (std::chrono::milliseconds waited{0}; waited <= limit; waited += step) {
    if (when == formed_when::everyone_alive ? sim.everyone_alive() : sim.everyone_listed()) return waited;
    sim.run_for(step);
  }
  return std::nullopt;
}

/// The `p` quantile (0..1) of `v`, nearest rank; 0 for none.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace lattice::bench
