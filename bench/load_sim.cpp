// Load counters at scale (issue #14): registry cores in the simulator, a
// share of them providers, every replica a consumer calling a few of them
// with calls in flight that keep changing. Reports the gossip each replica
// sends, the document's load entries, and how far each replica's view of
// the load (what least_loaded reads) lags the truth. One JSON object on
// stdout.
//
//   lattice_load_sim --replicas 1000 --providers 100 --calls 10 --seconds 30
//   lattice_load_sim --replicas 100 --budget 0          # no budget, as before
//   lattice_load_sim --replicas 1000 --provider-counts  # providers count what they serve
//
// Virtual time; a seed replays exactly. Liveness by probes unless
// --liveness heartbeats (whose member tables would dominate at 1,000).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
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
using lattice::registry::instance_view;
using lattice::registry::load_cell_ptr;
using lattice::testing::registry_sim;

namespace {

double mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0 : sum / static_cast<double>(v.size());
}

const char* service = "/bench/load";

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Load counters at scale in the simulator"};
  std::size_t replicas = 1000, providers = 100, calls = 10, samplers = 20;
  double seconds = 30, warmup = 10;
  unsigned loss_percent = 1;
  std::uint64_t seed = 1;
  std::size_t budget = lattice::registry::load_gossip_options{}.budget_bytes_per_second;
  unsigned change_ms = 100;
  unsigned max_in_flight = 20;
  std::string liveness = "probes";
  bool provider_counts = false;
  app.add_option("--replicas", replicas, "replicas, every one a consumer");
  app.add_option("--providers", providers, "replicas 0..P-1 each register one provider");
  app.add_option("--calls", calls, "providers each consumer calls");
  app.add_option("--seconds", seconds, "virtual seconds measured");
  app.add_option("--warmup", warmup, "virtual seconds of calls before measuring");
  app.add_option("--loss", loss_percent, "messages lost, percent");
  app.add_option("--budget", budget, "load_gossip_options::budget_bytes_per_second (0: none)");
  app.add_option("--change-ms", change_ms, "how often each consumer's calls in flight to each provider move");
  app.add_option("--max-in-flight", max_in_flight, "calls in flight per consumer and provider stay in [0, this]");
  app.add_option("--samplers", samplers, "replicas whose view is compared with the truth each second");
  app.add_option("--liveness", liveness)->check(CLI::IsMember({"probes", "heartbeats"}));
  app.add_option("--seed", seed);
  app.add_flag("--provider-counts", provider_counts,
               "providers count the calls they serve (replica::count_serving): one entry per instance");
  CLI11_PARSE(app, argc, argv);
  providers = std::min(providers, replicas);
  calls = std::min(calls, providers);

  const auto wall_start = std::chrono::steady_clock::now();
  registry_sim::options o;
  o.nodes = replicas;
  o.seed = seed;
  o.drop_percent = loss_percent;
  o.tick = 10ms;
  o.base.liveness.source = liveness == "probes" ? lattice::transport::liveness_source::probes
                                                : lattice::transport::liveness_source::heartbeats;
  lattice::registry::core_options core;
  core.load_gossip.budget_bytes_per_second = budget;
  auto sim = lattice::testing::make_registry_sim(o, core);
  // Heartbeats from a few dozen replicas on rarely or never hold everyone
  // alive at one instant (60-104 virtual s at 23-25 replicas, not within
  // 120 s from 26): they are formed when every replica lists every other.
  const auto formed = liveness == "probes" ? lattice::bench::formed_when::everyone_alive
                                           : lattice::bench::formed_when::everyone_listed;
  const auto formed_in = lattice::bench::formation_time(*sim, 120s, formed);
  if (!formed_in) {
    const auto pairs = sim->count_pairs();
    std::fprintf(stderr,
                 "the cluster did not form within 120 virtual seconds (of the live pairs, %zu judged alive, %zu "
                 "suspect, %zu dead, %zu left, %zu unknown)\n",
                 pairs.alive, pairs.suspect, pairs.dead, pairs.left, pairs.unknown);
    return 1;
  }
  // What a mass start costs: every replica started at once with one seed.
  double formation_bytes = 0, formation_gossip_bytes = 0;
  for (std::size_t r = 0; r < replicas; ++r) {
    formation_bytes += static_cast<double>(sim->node(r).stats().bytes_sent);
    formation_gossip_bytes += static_cast<double>(sim->node(r).stats().bytes_sent_by_type[1]);
  }
  const auto path = lattice::registry::service_path::parse(service).value();
  for (std::size_t p = 0; p < providers; ++p) {
    lattice::registry::instance i;
    i.address = "10.1." + std::to_string(p / 250) + "." + std::to_string(p % 250 + 1);
    i.port = 8080;
    if (!sim->node(p).register_instance(path, i)) return 1;
  }
  const auto listed_everywhere = [&] {
    for (std::size_t r = 0; r < replicas; ++r) {
      sim->node(r).publish(sim->now());
      const auto* view = sim->node(r).published()->find(service);
      if (view == nullptr || view->providers.size() != providers) return false;
    }
    return true;
  };
  if (!sim->run_until(listed_everywhere, 60s)) {
    std::fprintf(stderr, "the providers were not listed everywhere within 60 virtual seconds\n");
    return 1;
  }
  // Providers that count what they serve see every call start and end at
  // once, whoever makes it. By position in the published list, as below.
  std::vector<std::shared_ptr<lattice::registry::serve_counter>> serving(provider_counts ? providers : 0);
  for (std::size_t p = 0; p < serving.size(); ++p) {
    std::size_t position = 0;
    for (const instance_view& v : sim->node(p).published()->find(service)->providers) {
      if (v->owner() == sim->node(p).self()) {
        auto counter = sim->node(p).count_serving(path, v->id());
        if (!counter) return 1;
        serving[position] = std::move(counter).value();
      }
      ++position;
    }
  }
  if (provider_counts) sim->run_for(1s);  // the totals' first writes, and every view takes them
  const double setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();

  // Each consumer's cells for the providers it calls (provider ids in the
  // published order, the same on every replica), and its calls in flight.
  struct pair {
    std::size_t provider;
    load_cell_ptr cell;
    std::uint64_t in_flight = 0;
  };
  std::vector<std::vector<pair>> calling(replicas);
  std::mt19937_64 rng(seed * 7919);
  for (std::size_t r = 0; r < replicas; ++r) {
    const auto& list = sim->node(r).published()->find(service)->providers;
    std::vector<std::size_t> picks(providers);
    for (std::size_t p = 0; p < providers; ++p) picks[p] = p;
    std::shuffle(picks.begin(), picks.end(), rng);
    for (std::size_t k = 0; k < calls; ++k) {
      const auto it = std::next(list.begin(), static_cast<std::ptrdiff_t>(picks[k]));
      calling[r].push_back(pair{picks[k], it->local, 0});
    }
  }
  // Each provider has a level its callers' calls in flight drift towards
  // (some providers are slower than others: what least_loaded is for),
  // with noise: every change_ms each pair moves by -2..+2, and one more
  // towards its provider's level half the time.
  std::vector<std::uint64_t> level(providers);
  std::uniform_int_distribution<std::uint64_t> pick_level(0, max_in_flight);
  for (auto& l : level) l = pick_level(rng);
  std::uniform_int_distribution<int> step(-2, 2);
  std::bernoulli_distribution pull(0.5);
  const auto move_calls = [&] {
    for (auto& pairs : calling)
      for (auto& p : pairs) {
        int s = step(rng);
        if (pull(rng)) s += p.in_flight < level[p.provider] ? 1 : p.in_flight > level[p.provider] ? -1 : 0;
        // A call guard counts nothing on the provider's own replica when
        // it counts what it serves (the cell is its serve guards').
        auto* caller = p.cell->serving ? nullptr : p.cell.get();
        auto* served = serving.empty() ? nullptr : serving[p.provider]->cell().get();
        if (s > 0 && p.in_flight + static_cast<std::uint64_t>(s) <= max_in_flight) {
          if (caller) caller->started += static_cast<std::uint64_t>(s);
          if (served) served->started += static_cast<std::uint64_t>(s);
          p.in_flight += static_cast<std::uint64_t>(s);
        } else if (s < 0 && p.in_flight >= static_cast<std::uint64_t>(-s)) {
          if (caller) caller->finished += static_cast<std::uint64_t>(-s);
          if (served) served->finished += static_cast<std::uint64_t>(-s);
          p.in_flight -= static_cast<std::uint64_t>(-s);
        }
      }
  };
  const auto run_calls = [&](double for_seconds) {
    const auto rounds = static_cast<std::size_t>(for_seconds * 1000 / change_ms);
    for (std::size_t i = 0; i < rounds; ++i) {
      move_calls();
      sim->run_for(std::chrono::milliseconds(change_ms));
    }
  };
  run_calls(warmup);

  constexpr std::size_t types = lattice::transport::message_type_count;
  const auto count_bytes = [&](std::vector<double>& by_type, std::uint64_t& all, std::uint64_t& written,
                               std::uint64_t& gossip_messages) {
    by_type.assign(types, 0);
    all = written = gossip_messages = 0;
    for (std::size_t r = 0; r < replicas; ++r) {
      const auto& st = sim->node(r).stats();
      all += st.bytes_sent;
      for (std::size_t t = 0; t < types; ++t) by_type[t] += static_cast<double>(st.bytes_sent_by_type[t]);
      gossip_messages += st.sent_by_type[1];
      written += sim->node(r).load_stats().entries_written;
    }
  };
  std::vector<double> by_type_before, by_type_after;
  std::uint64_t bytes_before = 0, written_before = 0, gossip_messages_before = 0;
  count_bytes(by_type_before, bytes_before, written_before, gossip_messages_before);

  std::vector<double> abs_error, truth_values, age_ms, regret, random_regret, held_ms;
  std::size_t picks_right = 0, picks = 0;
  std::vector<std::size_t> sampled(replicas);
  for (std::size_t r = 0; r < replicas; ++r) sampled[r] = r;
  std::shuffle(sampled.begin(), sampled.end(), rng);
  sampled.resize(std::min(samplers, replicas));
  const auto measure_start = std::chrono::steady_clock::now();
  for (std::size_t second = 0; second < static_cast<std::size_t>(seconds); ++second) {
    run_calls(1.0);
    std::vector<double> truth(providers, 0);
    for (const auto& pairs : calling)
      for (const auto& p : pairs) truth[p.provider] += static_cast<double>(p.in_flight);
    // --calls 0 measures a quiet cluster: nothing to compare.
    for (std::size_t r : calls == 0 ? std::vector<std::size_t>{} : sampled) {
      sim->node(r).publish(sim->now());
      const auto& list = sim->node(r).published()->find(service)->providers;
      std::vector<double> seen(providers);
      std::size_t p = 0;
      for (const instance_view& v : list) {
        seen[p] = static_cast<double>(v.in_flight());
        abs_error.push_back(std::abs(seen[p] - truth[p]));
        truth_values.push_back(truth[p]);
        if (v.remote_load_heard) age_ms.push_back(std::chrono::duration<double, std::milli>(sim->now() - *v.remote_load_heard).count());
        ++p;
      }
      // least_loaded over the providers this replica calls, by its view,
      // against the truth.
      std::size_t pick = calling[r].front().provider, best = pick;
      for (const auto& c : calling[r]) {
        if (seen[c.provider] < seen[pick]) pick = c.provider;
        if (truth[c.provider] < truth[best]) best = c.provider;
      }
      regret.push_back(truth[pick] - truth[best]);
      double called = 0;
      for (const auto& c : calling[r]) called += truth[c.provider];
      random_regret.push_back(called / static_cast<double>(calling[r].size()) - truth[best]);
      if (truth[pick] == truth[best]) ++picks_right;
      ++picks;
    }
    for (std::size_t r = 0; r < replicas; ++r)
      held_ms.push_back(static_cast<double>(sim->node(r).load_stats().oldest_held.count()));
  }
  const double measure_wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - measure_start).count();

  std::uint64_t bytes = 0, written = 0, gossip_messages = 0;
  count_bytes(by_type_after, bytes, written, gossip_messages);
  const double per_replica_s = static_cast<double>(replicas) * seconds;
  nlohmann::json by_type = nlohmann::json::object();
  for (std::size_t t = 1; t < types; ++t)
    if (by_type_after[t] > by_type_before[t]) by_type[lattice::transport::message_type_name(t)] = (by_type_after[t] - by_type_before[t]) / per_replica_s;
  const auto& doc = sim->node(replicas - 1).state();
  std::size_t load_entries = doc.load.size();
  const auto doc_bytes = lattice::crdt::encode(doc).size();

  const nlohmann::json out{
      {"replicas", replicas},
      {"providers", providers},
      {"calls_per_consumer", calls},
      {"budget_bytes_per_second", budget},
      {"provider_counts", provider_counts},
      {"liveness", liveness},
      {"loss_percent", loss_percent},
      {"seed", seed},
      {"virtual_seconds_measured", seconds},
      {"formation_virtual_seconds", std::chrono::duration<double>(*formed_in).count()},
      {"formed_when", formed == lattice::bench::formed_when::everyone_alive ? "everyone alive" : "everyone listed"},
      {"formation_bytes_per_replica", formation_bytes / static_cast<double>(replicas)},
      {"formation_gossip_bytes_per_replica", formation_gossip_bytes / static_cast<double>(replicas)},
      {"bytes_sent_per_replica_per_second", static_cast<double>(bytes - bytes_before) / per_replica_s},
      {"bytes_sent_per_replica_per_second_by_type", by_type},
      {"gossip_message_bytes_mean", gossip_messages > gossip_messages_before
                                        ? (by_type_after[1] - by_type_before[1]) /
                                              static_cast<double>(gossip_messages - gossip_messages_before)
                                        : 0},
      {"load_entries_written_per_replica_per_second", static_cast<double>(written - written_before) / per_replica_s},
      {"document_load_entries", load_entries},
      {"document_encoded_bytes", doc_bytes},
      {"in_flight_truth_mean", mean(truth_values)},
      {"in_flight_abs_error_mean", mean(abs_error)},
      {"in_flight_abs_error_p99", percentile(abs_error, 0.99)},
      {"in_flight_relative_error", mean(truth_values) > 0 ? mean(abs_error) / mean(truth_values) : 0},
      {"remote_load_age_ms_median", percentile(age_ms, 0.5)},
      {"remote_load_age_ms_p99", percentile(age_ms, 0.99)},
      {"oldest_held_ms_median", percentile(held_ms, 0.5)},
      {"oldest_held_ms_max", percentile(held_ms, 1.0)},
      {"least_loaded_picks_a_true_minimum", picks ? static_cast<double>(picks_right) / static_cast<double>(picks) : 0},
      {"least_loaded_regret_mean_calls", mean(regret)},
      {"random_pick_regret_mean_calls", mean(random_regret)},
      {"wall_seconds_setup", setup_s},
      {"wall_seconds_measured", measure_wall_s},
      {"peak_rss_mib", static_cast<double>(peak_rss_kib()) / 1024},
  };
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
