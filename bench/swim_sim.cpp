// SWIM failure detection (transport/swim.hpp) in the simulated datagram
// network at a chosen size: how long a kill takes to be seen by every live
// member, false deaths under loss and stalls, and quiet traffic per member.
// One JSON object on stdout (issue #14's target table, membership rows).
//
//   lattice_swim_sim --nodes 1000 --kills 20                # detection
//   lattice_swim_sim --nodes 40 --loss 5 --stall-percent 1 --quiet-seconds 3600
//
// For each kill it also reports when its victims were first suspected and
// first judged dead by anyone: detection is finding a death, then telling
// it (--together 5: five of 50 at once were slow to find, not to tell).
//
// Virtual time; a seed replays exactly. Wall time and peak memory are
// reported so the simulator's own cost at 10,000 members is visible.
//
// The hour at 10,000 members takes hours of wall time: --threads 2 runs it
// on both cores (the same run at any thread count), and --checkpoint saves
// the whole run every few virtual minutes of its quiet window, so that
// `lattice_swim_sim --resume FILE` goes on where it stopped, exactly as if
// it had not (tests/transport/swim_network_test.cpp).
//
//   lattice_swim_sim --nodes 10000 --loss 5 --stall-percent 1 --quiet-seconds 3600
//       --kills 0 --no-bytes --threads 2 --checkpoint hour.ckpt --progress-minutes 1
//   lattice_swim_sim --resume hour.ckpt
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <CLI/CLI.hpp>
#include <cereal/archives/binary.hpp>
#include <cereal/types/vector.hpp>
#include <nlohmann/json.hpp>

#include "swim_network.hpp"
#include "sim_figures.hpp"

using namespace std::chrono_literals;
using lattice::bench::peak_rss_kib;
using lattice::bench::percentile;
using lattice::testing::swim_network;
using lattice::transport::swim::member_state;

int main(int argc, char** argv) {
  CLI::App app{"SWIM failure detection in the simulator"};
  std::size_t nodes = 100;
  unsigned loss_percent = 1;
  unsigned stall_percent = 0;
  unsigned kills = 10;
  unsigned together = 1;
  double quiet_seconds = 60;
  std::uint64_t seed = 1;
  bool count_bytes = true;
  bool trace = false;
  app.add_option("--nodes", nodes, "members");
  app.add_option("--loss", loss_percent, "datagrams lost, percent");
  app.add_option("--stall-percent", stall_percent, "each second, each member stalls 200 ms with this chance (percent)");
  app.add_option("--kills", kills, "kills one after another; each waits until every live member sees it");
  app.add_option("--together", together, "members killed at once at each kill (a rack, half a cluster cut off)");
  app.add_option("--quiet-seconds", quiet_seconds, "virtual seconds measured with no kill (traffic, false deaths)");
  app.add_option("--seed", seed);
  app.add_flag("!--no-bytes", count_bytes, "do not encode messages to count bytes (faster at 10,000)");
  app.add_flag("--trace", trace, "print each false death, and each view a kill not seen in 30 s left, to stderr");
  unsigned threads = 0;
  app.add_option("--threads", threads,
                 "0: one event at a time; n >= 1: windows of the minimum delay on n threads (the same run for every n)");
  unsigned progress_minutes = 0;
  app.add_option("--progress-minutes", progress_minutes,
                 "every this many virtual minutes, print virtual time, false deaths and wall seconds to stderr");
  lattice::transport::swim::options swim;
  app.add_option("--alpha", swim.suspicion_alpha, "suspicion minimum = alpha * log10(N) * T");
  app.add_option("--beta", swim.suspicion_beta, "suspicion maximum = beta * minimum");
  app.add_option("--bystander-wait", swim.bystander_wait, "a bystander waits this many suspicion timeouts before its last calls");
  app.add_option("--max-piggyback", swim.max_piggyback, "at most this many updates ride one message");
  app.add_option("--max-queued", swim.max_queued_updates, "at most this many updates wait to be told (0: no bound)");
  app.add_option("--lambda", swim.retransmit_mult, "retransmissions = lambda * ceil(log10(N + 1))");
  app.add_option("--last-calls", swim.last_calls, "calls to a suspect whose suspicion timed out");
  app.add_option("--max-local-health", swim.max_local_health, "Lifeguard local health ceiling (0: never slow down)");
  std::string checkpoint_path, resume_path;
  unsigned checkpoint_minutes = 10;
  app.add_option("--checkpoint", checkpoint_path,
                 "during the quiet window, save the whole run to this file every --checkpoint-minutes virtual "
                 "minutes (written aside, then renamed over it)");
  app.add_option("--checkpoint-minutes", checkpoint_minutes, "virtual minutes between checkpoints")
      ->check(CLI::PositiveNumber);
  app.add_option("--resume", resume_path,
                 "go on with the run saved in this file (--checkpoint), with the options it was started with");
  const std::vector<std::string> args(argv + 1, argv + argc);
  CLI11_PARSE(app, argc, argv);

  // A resumed run takes its options from the checkpoint: only the run that
  // was saved can go on from it.
  static constexpr const char* checkpoint_magic = "lattice_swim_sim checkpoint 1";
  std::ifstream resume_file;
  std::unique_ptr<cereal::BinaryInputArchive> resume;
  std::vector<std::string> run_args = args;
  if (!resume_path.empty()) {
    const auto options_given = app.get_options([](const CLI::Option* option) { return option->count() > 0; });
    if (options_given.size() != 1) {
      std::fprintf(stderr, "--resume takes no other option: the run goes on with those it was started with\n");
      return 2;
    }
    resume_file.open(resume_path, std::ios::binary);
    if (!resume_file) {
      std::fprintf(stderr, "cannot read %s\n", resume_path.c_str());
      return 1;
    }
    // The magic's length first, as cereal writes it: garbage is told
    // apart before a length read from it is allocated.
    std::uint64_t magic_length = 0;
    resume_file.read(reinterpret_cast<char*>(&magic_length), sizeof magic_length);
    if (!resume_file || magic_length != std::char_traits<char>::length(checkpoint_magic)) {
      std::fprintf(stderr, "%s: not a checkpoint of this simulator\n", resume_path.c_str());
      return 1;
    }
    resume_file.seekg(0);
    resume = std::make_unique<cereal::BinaryInputArchive>(resume_file);
    std::string magic;
    try {
      (*resume)(magic);
      if (magic != checkpoint_magic) throw cereal::Exception("not a checkpoint of this simulator");
      (*resume)(run_args);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", resume_path.c_str(), e.what());
      return 1;
    }
    std::vector<std::string> reversed(run_args.rbegin(), run_args.rend());  // as CLI11 takes them
    try {
      app.parse(reversed);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
  }

  const auto wall_start = std::chrono::steady_clock::now();
  swim_network::options o;
  o.nodes = nodes;
  o.loss_per_mille = loss_percent * 10;
  o.seed = seed;
  o.count_bytes = count_bytes;
  o.threads = threads;
  o.swim = swim;
  swim_network net(o);
  const double setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();

  std::vector<bool> dead_by_kill(nodes, false);
  std::uint64_t false_deaths = 0;
  std::vector<std::size_t> dead_views(nodes, 0);  // observers that hold member i dead
  // When a killed member was first held dead by anyone, and when its
  // suspicion began: detection splits into finding the death and telling it.
  std::vector<std::optional<lattice::transport::steady_time>> first_dead(nodes), first_suspect(nodes);
  net.on_change([&](const swim_network::change& c) {
    const auto i = static_cast<std::size_t>(c.member - 1);
    if (c.state == member_state::suspect && dead_by_kill[i] && !first_suspect[i]) first_suspect[i] = c.at;
    if (c.state == member_state::dead) {
      if (dead_by_kill[i] && !first_dead[i]) first_dead[i] = c.at;
      if (dead_by_kill[i]) ++dead_views[i];
      else if (++false_deaths, trace)
        std::fprintf(stderr, "false death: at %.3f s member %zu judged dead by member %zu\n",
                     std::chrono::duration<double>(c.at - net.start()).count(), i + 1, c.observer + 1);
    }
  });
  std::mt19937_64 rng(seed ^ 0x5eed);
  // Totals over all members at a moment: the quiet window is the
  // difference of two.
  struct totals {
    std::uint64_t msgs = 0, bytes = 0, push_pull_bytes = 0, push_pulls = 0, in_sync = 0;
  };
  totals before;
  auto quiet_start = net.now();
  const auto quiet_length = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(quiet_seconds));
  bool in_quiet = false;
  double wall_before = 0;  // of the parts of the run before a resume
  const auto wall_now = [&] {
    return wall_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  };
  // What this program holds of the run, besides the network: saved and
  // loaded alike.
  const auto bench_state = [&](auto& ar) {
    lattice::transport::detail::checkpoint_engine(ar, rng);
    double wall = wall_now();  // saved: the run's wall time so far
    ar(false_deaths, dead_by_kill, dead_views, first_dead, first_suspect, before.msgs, before.bytes,
       before.push_pull_bytes, before.push_pulls, before.in_sync, quiet_start, wall);
    if constexpr (std::decay_t<decltype(ar)>::is_loading::value) wall_before = wall;
  };
  const auto save_checkpoint = [&] {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string aside = checkpoint_path + ".partial";
    {
      std::vector<char> buffer(1 << 22);
      std::ofstream f;
      f.rdbuf()->pubsetbuf(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      f.open(aside, std::ios::binary | std::ios::trunc);
      cereal::BinaryOutputArchive ar(f);
      ar(std::string(checkpoint_magic), run_args);
      bench_state(ar);
      net.checkpoint(ar);
      f.close();
      if (!f) {
        std::fprintf(stderr, "checkpoint: writing %s failed\n", aside.c_str());
        std::exit(1);
      }
    }
    std::filesystem::rename(aside, checkpoint_path);
    std::fprintf(stderr, "checkpoint: %lld virtual s saved to %s in %.0f wall s\n",
                 static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(net.now() - net.start()).count()),
                 checkpoint_path.c_str(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  };
  const auto run_for = [&](std::chrono::steady_clock::duration d, auto&& stop) {
    // Second by second, so stalls are drawn each second.
    const auto until = net.now() + d;
    while (net.now() < until) {
      if (stall_percent > 0)
        for (std::size_t i = 0; i < net.size(); ++i)
          if (!net.killed(i) && std::uniform_int_distribution<unsigned>(0, 99)(rng) < stall_percent)
            net.stall(i, 200ms);
      if (!net.run_until(std::min(until, net.now() + 1s), stop)) return false;
      const auto virtual_s = std::chrono::duration_cast<std::chrono::seconds>(net.now() - net.start()).count();
      if (progress_minutes > 0 && virtual_s % (60 * progress_minutes) == 0)
        std::fprintf(stderr, "progress: %lld virtual s, %llu false deaths, %.0f wall s\n",
                     static_cast<long long>(virtual_s), static_cast<unsigned long long>(false_deaths), wall_now());
      if (!checkpoint_path.empty() && in_quiet && net.now() < until && virtual_s % (60 * checkpoint_minutes) == 0)
        save_checkpoint();
    }
    return true;
  };
  const auto never = [] { return false; };

  const auto sum = [&] {
    totals t;
    for (std::size_t i = 0; i < nodes; ++i) {
      const auto& st = net.node(i).stats();
      t.msgs += st.messages_sent;
      t.bytes += net.bytes_sent(i);
      t.push_pull_bytes += net.push_pull_bytes_sent(i);
      t.push_pulls += st.push_pulls;
      t.in_sync += st.push_pulls_in_sync;
    }
    return t;
  };
  if (resume) {
    try {
      bench_state(*resume);
      net.checkpoint(*resume);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", resume_path.c_str(), e.what());
      return 1;
    }
    resume.reset();
    resume_file.close();
    std::fprintf(stderr, "resumed: at %lld virtual s from %s\n",
                 static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(net.now() - net.start()).count()),
                 resume_path.c_str());
  } else {
    // Warm up: the joins' news told and done.
    run_for(10s, never);
    before = sum();
    quiet_start = net.now();
  }
  in_quiet = true;
  run_for(quiet_start + quiet_length - net.now(), never);
  in_quiet = false;
  const totals after = sum();
  const double quiet_s = std::chrono::duration<double>(net.now() - quiet_start).count();
  const std::uint64_t quiet_false_deaths = false_deaths;
  const auto per_member_s = [&](std::uint64_t n) {
    return static_cast<double>(n) / static_cast<double>(nodes) / quiet_s;
  };

  std::vector<double> detection_s, first_suspect_s, first_dead_s;  // per kill; per victim
  const auto max_of = [](const std::vector<double>& v) { return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()); };
  std::size_t undetected = 0;
  together = std::max(1u, together);
  for (unsigned k = 0; k < kills; ++k) {
    std::size_t live = 0;
    for (std::size_t i = 0; i < nodes; ++i) if (!net.killed(i)) ++live;
    if (live <= together) break;
    std::vector<std::size_t> victims;
    while (victims.size() < together) {
      std::size_t victim = 0;
      do victim = std::uniform_int_distribution<std::size_t>(0, nodes - 1)(rng);
      while (net.killed(victim));
      dead_by_kill[victim] = true;
      net.kill(victim);
      victims.push_back(victim);
    }
    const auto at = net.now();
    if (trace) {
      // Local health slows a member's probes (period x (health + 1)): how
      // many probe slowly when the kill comes.
      std::size_t slowed = 0;
      for (std::size_t i = 0; i < nodes; ++i)
        if (!net.killed(i) && net.node(i).local_health() > 0) ++slowed;
      for (const std::size_t v : victims)
        std::fprintf(stderr, "kill: at %.3f s member %zu (%zu live members with raised local health)\n",
                     std::chrono::duration<double>(at - net.start()).count(), v + 1, slowed);
    }
    // Every live member but the victims holds each of them dead (views of
    // members that die later still count: none do before this kill is seen).
    const bool seen = !run_for(30s, [&] {
      return std::all_of(victims.begin(), victims.end(), [&](std::size_t v) { return dead_views[v] >= live - together; });
    });
    if (seen) {
      detection_s.push_back(std::chrono::duration<double>(net.now() - at).count());
      for (const std::size_t v : victims) {
        if (first_suspect[v]) first_suspect_s.push_back(std::chrono::duration<double>(*first_suspect[v] - at).count());
        if (first_dead[v]) first_dead_s.push_back(std::chrono::duration<double>(*first_dead[v] - at).count());
      }
    } else {
      ++undetected;
      if (trace)
        for (const std::size_t v : victims)
          for (std::size_t i = 0; i < nodes; ++i)
            if (!net.killed(i) && net.node(i).state_of(swim_network::id_of(v)) != member_state::dead)
              std::fprintf(stderr, "kill not seen: at %.3f s member %zu holds killed member %zu %s\n",
                           std::chrono::duration<double>(net.now() - net.start()).count(), i + 1, v + 1,
                           lattice::transport::to_string(net.node(i).state_of(swim_network::id_of(v))));
    }
    run_for(2s, never);  // let the news settle before the next kill
  }

  double queued_mean = 0;
  std::size_t queued_max = 0;
  for (std::size_t i = 0; i < nodes; ++i) {
    if (net.killed(i)) continue;
    queued_mean += static_cast<double>(net.node(i).queued_updates()) / static_cast<double>(nodes);
    queued_max = std::max(queued_max, net.node(i).queued_updates());
  }
  nlohmann::json out{
      {"nodes", nodes},
      {"loss_percent", loss_percent},
      {"stall_percent_per_second", stall_percent},
      {"killed_together", together},
      {"seed", seed},
      {"threads", threads},
      {"probe_interval_ms", o.swim.probe_interval.count()},
      {"alpha", o.swim.suspicion_alpha},
      {"beta", o.swim.suspicion_beta},
      {"bystander_wait", o.swim.bystander_wait},
      {"max_piggyback", o.swim.max_piggyback},
      {"max_queued_updates", o.swim.max_queued_updates},
      {"lambda", o.swim.retransmit_mult},
      {"last_calls", o.swim.last_calls},
      {"quiet_seconds", quiet_s},
      {"quiet_messages_per_member_per_s", per_member_s(after.msgs - before.msgs)},
      {"quiet_bytes_per_member_per_s",
       count_bytes ? nlohmann::json(per_member_s(after.bytes - before.bytes)) : nlohmann::json(nullptr)},
      {"quiet_push_pull_bytes_per_member_per_s",
       count_bytes ? nlohmann::json(per_member_s(after.push_pull_bytes - before.push_pull_bytes))
                   : nlohmann::json(nullptr)},
      // Push-pulls started in the quiet window, and how many found the
      // tables equal by their roots (one message).
      {"quiet_push_pulls", after.push_pulls - before.push_pulls},
      {"quiet_push_pulls_in_sync", after.in_sync - before.in_sync},
      {"false_deaths_quiet", quiet_false_deaths},
      {"false_deaths_total", false_deaths},
      {"kills", detection_s.size() + undetected},
      {"kills_not_seen_by_all_in_30s", undetected},
      {"kill_seen_by_all_median_s", percentile(detection_s, 0.5)},
      {"victim_first_suspected_median_s", percentile(first_suspect_s, 0.5)},
      {"victim_first_suspected_max_s", max_of(first_suspect_s)},
      {"victim_first_judged_dead_median_s", percentile(first_dead_s, 0.5)},
      {"victim_first_judged_dead_max_s", max_of(first_dead_s)},
      {"kill_seen_by_all_max_s", max_of(detection_s)},
      {"kill_seen_by_all_each_s", detection_s},  // in kill order, for finding the slow one
      // Each member's queue of updates waiting to be told, at the end.
      {"queued_updates_mean", queued_mean},
      {"queued_updates_max", queued_max},
      {"simulator_setup_s", setup_s},
      // Over every part of a resumed run.
      {"simulator_wall_s", wall_now()},
      {"simulator_peak_rss_mib", static_cast<double>(peak_rss_kib()) / 1024.0},
  };
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
