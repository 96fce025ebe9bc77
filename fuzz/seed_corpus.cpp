// Writes the seed corpus in fuzz/corpus/ (run it from the build tree:
// build-fuzz/fuzz/seed_corpus fuzz/corpus). Seeds are real traffic: two
// protocol cores talking in each dissemination mode, every message they
// exchange kept as a protocol seed and, framed, as a frame seed; the
// encoding of a sample of each type for the decoder. The HTTP and config
// seeds are text files written by hand.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/g_counter.hpp"
#include "lattice/crdt/lww_map.hpp"
#include "lattice/registry/document.hpp"
#include "lattice/transport/frame.hpp"
#include "lattice/transport/protocol.hpp"
#include "lattice/transport/swim.hpp"

namespace fs = std::filesystem;
namespace t = lattice::transport;
using lattice::crdt::hlc_timestamp;
using lattice::registry::registry_document;

namespace {

void write(const fs::path& dir, const std::string& name, std::uint8_t first, const std::vector<std::byte>& bytes) {
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary);
  out.put(static_cast<char>(first));
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

registry_document sample_document(std::uint64_t base, lattice::crdt::replica_id who) {
  registry_document d;
  d.config.put("/app/a", "1", hlc_timestamp{base, 0, who});
  d.config.put("/app/b/c", "2", hlc_timestamp{base + 1, 0, who});
  d.config.erase("/app/gone", hlc_timestamp{base + 2, 0, who});
  d.merge(registry_document::erase_config_prefix("/old/", hlc_timestamp{base + 3, 0, who}));
  return d;
}

}  // namespace

// SWIM seeds: three detectors talking for a while, one of them stalled
// once (so suspicions, refutations, indirect probes and push-pull tables
// all occur); at most 4 seeds per message kind. The first byte picks the
// sender as swim_fuzz reads it (a known member).
void write_swim_seeds(const fs::path& root) {
  namespace swim = lattice::transport::swim;
  auto now = swim::steady_time{} + std::chrono::hours(1);
  swim::options o;
  o.push_pull_interval = std::chrono::seconds(2);
  std::vector<std::unique_ptr<swim::detector>> d;
  for (lattice::crdt::replica_id id = 1; id <= 3; ++id) {
    d.push_back(std::make_unique<swim::detector>(id, o, id, now));
    for (lattice::crdt::replica_id other = 1; other <= 3; ++other)
      if (other != id) d.back()->add_member(other, 1, now);
  }
  std::map<int, int> per_kind;
  int n = 0;
  std::vector<swim::outgoing> queue;
  for (int step = 0; step < 2000; ++step) {
    now += std::chrono::milliseconds(10);
    const bool stalled = step >= 500 && step < 560;  // detector 3 runs nothing for 600 ms
    for (std::size_t i = 0; i < d.size(); ++i) {
      if (stalled && i == 2) continue;
      for (auto& out : d[i]->tick(now)) queue.push_back(out);
    }
    std::vector<swim::outgoing> next;
    for (auto& out : queue) {
      if (stalled && out.to == 3) continue;  // lost meanwhile
      const auto bytes = lattice::crdt::encode(out.body);
      if (per_kind[static_cast<int>(out.body.kind)]++ < 4)
        write(root / "swim_fuzz", "seed-" + std::to_string(n++), 2, bytes);
      for (auto& reply : d[out.to - 1]->on_message(1, out.body, now)) next.push_back(reply);
    }
    queue = std::move(next);
  }
  // A push-pull between tables that differ, so the digest kinds with
  // entries (table_diff and its reply) are seeded too.
  auto& a = *d[0];
  auto& b = *d[1];
  b.add_member(9, 1, now);
  std::vector<std::pair<lattice::crdt::replica_id, swim::outgoing>> exchange;  // (from, message)
  for (auto& out : a.push_pull_with(2)) exchange.emplace_back(1, out);
  for (std::size_t i = 0; i < exchange.size() && i < 8; ++i) {
    const auto [from, out] = exchange[i];
    if (!swim::carries_table(out.body.kind)) continue;
    write(root / "swim_fuzz", "table-" + std::to_string(i), 2, lattice::crdt::encode(out.body));
    for (auto& reply : (from == 1 ? b : a).on_message(from, out.body, now)) exchange.emplace_back(from == 1 ? 2 : 1, reply);
  }
  // The TCP fallback ping (kind 11), which the stall above also sends
  // but whose seeds the per-kind numbering above would not keep stable.
  write(root / "swim_fuzz", "stream-ping-0", 2,
        lattice::crdt::encode(swim::message{swim::message_kind::stream_ping, 7, 0}));
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const fs::path root = argv[1];
  write_swim_seeds(root);
  const auto key = std::make_shared<const t::cluster_key>(std::vector<std::byte>(32, std::byte{0x5a}));
  const t::dissemination modes[] = {t::dissemination::state, t::dissemination::delta, t::dissemination::op};
  std::set<std::vector<std::byte>> seen;
  std::map<int, int> per_selector;  // at most 3 seeds per (mode, type)
  int n = 0;
  for (int m = 0; m < 3; ++m) {
    auto now = std::chrono::steady_clock::time_point{} + std::chrono::seconds(10);
    auto options = [&](lattice::crdt::replica_id id, std::vector<std::string> seeds) {
      t::protocol_options o;
      o.self = id;
      o.address = "127.0.0.1:" + std::to_string(id);
      o.seeds = std::move(seeds);
      o.mode = modes[m];
      o.wall_clock = [] { return std::uint64_t{1'700'000'000'000'000}; };
      return o;
    };
    t::protocol<registry_document> a(options(1, {}), now);
    t::protocol<registry_document> b(options(2, {"127.0.0.1:1"}), now);
    a.local_change(sample_document(1'699'999'000'000'000, 1), now);
    for (int round = 0; round < 40; ++round) {
      now += std::chrono::milliseconds(250);
      if (round == 10) b.local_change(sample_document(1'699'999'500'000'000, 2), now);
      a.on_tick(now);
      b.on_tick(now);
      for (auto* from : {&a, &b}) {
        for (auto& message : from->take_outgoing()) {
          auto* to = message.to == "127.0.0.1:1" ? &a : &b;
          if (to == from) continue;
          to->on_message(message.type, message.payload, now);
          if (!seen.insert(message.payload).second) continue;
          const auto type = static_cast<std::uint8_t>(message.type);
          const auto selector = static_cast<std::uint8_t>((m << 4) | (type - 1));
          if (++per_selector[selector] > 3) continue;
          write(root / "protocol_fuzz", "seed-" + std::to_string(n), selector, message.payload);
          t::frame_options framed;
          if (n % 2 == 1) framed.key = key;
          write(root / "frame_fuzz", "seed-" + std::to_string(n), static_cast<std::uint8_t>(n * 7),
                t::encode_frame(type, message.payload, framed));
          ++n;
        }
      }
    }
  }
  // A record refresh (type 10) for a core running the detector (delta
  // mode with probes: selector 0x49), from a member it holds no record of.
  write(root / "protocol_fuzz", "record-refresh-0", 0x49,
        lattice::crdt::encode(t::envelope<t::record_refresh>{
            2, "127.0.0.1:2", {1, 5, 1'699'999'000'000'000}, 1'700'000'000'000'000}));
  lattice::crdt::g_counter counter;
  counter.increment(1, 3);
  counter.increment(2, 5);
  write(root / "decode_fuzz", "g_counter", 0, lattice::crdt::encode(counter));
  lattice::crdt::lww_map<std::string, std::string> map;
  map.put("/a", "1", hlc_timestamp{10, 0, 1});
  map.erase("/b", hlc_timestamp{11, 0, 1});
  map.put("/c", "2", hlc_timestamp{40, 0, 1});
  map.compact(hlc_timestamp{20, 0, 0});
  write(root / "decode_fuzz", "lww_map", 7, lattice::crdt::encode(map));
  write(root / "decode_fuzz", "registry_document", 8, lattice::crdt::encode(sample_document(100, 1)));
  t::member_table members;
  members.offer(2, t::member_record{"127.0.0.1:2", 5, 3, false, 42});
  write(root / "decode_fuzz", "member_table", 9, lattice::crdt::encode(members));
  return 0;
}
