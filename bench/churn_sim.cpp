// Registry changes at scale (issue #14's "registry change at every
// replica" and "churn" rows): registry cores in the simulator with the
// default liveness (probes), 1 % loss and 1-10 ms delays. After the
// cluster forms and settles, it measures a quiet window, then a churn
// window in which random replicas write new config keys at a fixed rate
// cluster-wide. For each change: how long until every live replica holds
// it, and until half of them do. Bytes each replica sends per second, by
// message type, in both windows. One JSON object on stdout.
//
//   lattice_churn_sim --replicas 1000 --changes-per-second 10 --seconds 30
//   lattice_churn_sim --replicas 10000 --formed --seconds 10   # 10,000: start formed
//
// Virtual time; a seed replays exactly. Each change is a config key
// written once, so holding the key is having the change.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "registry_sim.hpp"
#include "sim_figures.hpp"

using namespace std::chrono_literals;
using lattice::bench::peak_rss_kib;
using lattice::bench::percentile;
using lattice::testing::registry_sim;

namespace {

constexpr std::size_t message_types = lattice::transport::message_type_count;

// Payload bytes (by message type) and messages sent by every replica so far.
struct sent_so_far {
  std::vector<double> bytes = std::vector<double>(message_types, 0);
  double messages = 0;
};
sent_so_far sent(registry_sim& sim) {
  sent_so_far out;
  for (std::size_t r = 0; r < sim.size(); ++r) {
    const auto& st = sim.node(r).stats();
    out.messages += static_cast<double>(st.messages_sent);
    for (std::size_t t = 0; t < message_types; ++t) out.bytes[t] += static_cast<double>(st.bytes_sent_by_type[t]);
  }
  return out;
}

// Per replica and second, between two readings. "framed" adds each
// message's 16-byte frame header and 32-byte MAC (a cluster with a key).
nlohmann::json rates(const sent_so_far& before, const sent_so_far& after, std::size_t replicas, double seconds) {
  nlohmann::json by_type = nlohmann::json::object();
  const double per = static_cast<double>(replicas) * seconds;
  double all = 0;
  for (std::size_t t = 1; t < message_types; ++t) {
    const double rate = (after.bytes[t] - before.bytes[t]) / per;
    all += rate;
    if (rate > 0) by_type[lattice::transport::message_type_name(t)] = rate;
  }
  const double messages = (after.messages - before.messages) / per;
  return {{"bytes_sent_per_replica_per_second", all},
          {"messages_sent_per_replica_per_second", messages},
          {"framed_bytes_sent_per_replica_per_second", all + 48 * messages},
          {"by_type", by_type}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Registry changes at scale in the simulator"};
  std::size_t replicas = 1000;
  double seconds = 30, quiet_seconds = 10, settle_seconds = 20, changes_per_second = 10;
  unsigned loss_percent = 1, tick_ms = 10;
  std::uint64_t seed = 1;
  app.add_option("--replicas", replicas, "replicas, all started at once through one seed");
  app.add_option("--changes-per-second", changes_per_second, "config keys written per second, cluster-wide");
  app.add_option("--seconds", seconds, "virtual seconds of churn measured");
  app.add_option("--quiet-seconds", quiet_seconds, "virtual seconds of quiet measured before the churn");
  app.add_option("--settle-seconds", settle_seconds, "virtual seconds after forming, before measuring");
  app.add_option("--loss", loss_percent, "messages lost, percent");
  app.add_option("--tick-ms", tick_ms, "the simulator's step: arrival times are known to within it");
  app.add_option("--seed", seed);
  unsigned anti_entropy_max_ms = 2000;
  app.add_option("--anti-entropy-max-ms", anti_entropy_max_ms,
                 "longest anti-entropy wait while nothing changes (200: no back-off)");
  std::size_t fanout = lattice::transport::protocol_options{}.fanout;
  app.add_option("--fanout", fanout,
                 "peers each new receiver of a change forwards it to (its origin pushes it to origin_fanout)");
  bool formed = false;
  app.add_flag("--formed", formed,
               "start from a formed cluster: every replica holds every member's record, as after a join, "
               "without the joins' announcements (N^2 messages; needed at 10,000)");
  CLI11_PARSE(app, argc, argv);

  const auto wall_start = std::chrono::steady_clock::now();
  registry_sim::options o;
  o.nodes = replicas;
  o.seed = seed;
  o.drop_percent = loss_percent;
  o.tick = std::chrono::milliseconds(tick_ms);
  o.base.liveness.source = lattice::transport::liveness_source::probes;
  o.base.anti_entropy_max_interval = std::chrono::milliseconds(anti_entropy_max_ms);
  o.base.fanout = fanout;
  auto sim = lattice::testing::make_registry_sim(o);
  if (formed) {
    lattice::transport::member_table everyone;
    for (std::size_t r = 0; r < replicas; ++r) everyone.offer(r + 1, sim->node(r).members().self_record());
    for (std::size_t r = 0; r < replicas; ++r) sim->node(r).adopt_formed_table(everyone, sim->now());
  }
  const auto formed_in = lattice::bench::formation_time(*sim, 120s);
  if (!formed_in) {
    std::fprintf(stderr, "the cluster did not form within 120 virtual seconds\n");
    return 1;
  }
  sim->run_for(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(settle_seconds)));

  const auto quiet_before = sent(*sim);
  sim->run_for(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(quiet_seconds)));
  const auto quiet_after = sent(*sim);

  // The churn: a change every 1 / rate seconds, by a random replica; every
  // step, each outstanding change is looked for at the replicas that did
  // not hold it yet.
  struct change {
    std::string key;
    lattice::transport::steady_time at;
    std::vector<bool> held;
    std::size_t holders = 0;
    std::optional<double> half_ms, all_ms;
  };
  std::vector<change> changes;
  std::mt19937_64 rng(seed * 104729);
  std::uniform_int_distribution<std::size_t> pick(0, replicas - 1);
  const auto step = std::chrono::milliseconds(tick_ms);
  const auto every = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::duration<double>(1.0 / std::max(changes_per_second, 0.001)));
  const auto churn_before = sent(*sim);
  const auto churn_start = sim->now();
  auto next_change = churn_start;
  const auto look = [&] {
    for (auto& c : changes) {
      if (c.all_ms) continue;
      for (std::size_t r = 0; r < replicas; ++r) {
        if (c.held[r] || !sim->node(r).state().config.contains(c.key)) continue;
        c.held[r] = true;
        const double ms = std::chrono::duration<double, std::milli>(sim->now() - c.at).count();
        if (++c.holders * 2 >= replicas && !c.half_ms) c.half_ms = ms;
        if (c.holders == replicas) c.all_ms = ms;
      }
    }
  };
  const auto churn_length = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(seconds));
  while (sim->now() - churn_start < churn_length) {
    while (sim->now() >= next_change) {
      const std::size_t writer = pick(rng);
      change c{"/churn/k" + std::to_string(changes.size()), sim->now(), std::vector<bool>(replicas), 0, {}, {}};
      if (!sim->node(writer).set_config(lattice::registry::service_path::parse(c.key).value(), "v")) return 1;
      changes.push_back(std::move(c));
      next_change += every;
    }
    sim->run_for(step);
    look();
  }
  const auto churn_after = sent(*sim);
  const double churn_s = std::chrono::duration<double>(sim->now() - churn_start).count();
  // Changes still on their way are given up to 10 s more (not counted in
  // the bytes above).
  for (int i = 0; i < 10'000 / static_cast<int>(tick_ms); ++i) {
    if (std::all_of(changes.begin(), changes.end(), [](const change& c) { return c.all_ms.has_value(); })) break;
    sim->run_for(step);
    look();
  }

  std::vector<double> all_ms, half_ms;
  std::size_t never = 0;
  for (const auto& c : changes) {
    if (c.all_ms) all_ms.push_back(*c.all_ms);
    else ++never;
    if (c.half_ms) half_ms.push_back(*c.half_ms);
  }
  nlohmann::json out;
  out["replicas"] = replicas;
  out["seed"] = seed;
  out["loss_percent"] = loss_percent;
  out["tick_ms"] = tick_ms;
  out["started_formed"] = formed;
  out["formation_virtual_seconds"] = std::chrono::duration<double>(*formed_in).count();
  out["quiet"] = rates(quiet_before, quiet_after, replicas, quiet_seconds);
  out["churn"] = rates(churn_before, churn_after, replicas, churn_s);
  out["churn"]["changes_per_second"] = changes_per_second;
  out["changes"] = changes.size();
  out["changes_never_everywhere"] = never;
  out["change_at_every_replica_ms"] = {{"median", percentile(all_ms, 0.5)},
                                       {"p99", percentile(all_ms, 0.99)},
                                       {"max", all_ms.empty() ? 0.0 : *std::max_element(all_ms.begin(), all_ms.end())}};
  out["change_at_half_the_replicas_ms_median"] = percentile(half_ms, 0.5);
  out["peak_rss_mib"] = static_cast<double>(peak_rss_kib()) / 1024.0;
  out["wall_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  std::printf("%s\n", out.dump(2).c_str());
  return never == 0 ? 0 : 1;
}
