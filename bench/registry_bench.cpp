// bench/registry_bench.cpp: what the embedded registry costs its host.
//
//   build/bench/lattice_registry_bench --benchmark_format=json > registry.json
//
// Benchmarks:
//  - lookup/*: one 10-instance service read from the local snapshot of a
//    real replica, through replica::lookup (thread-local snapshot cache) and
//    through a replica::reader; 1 and 2 threads. Google Benchmark reports
//    items_per_second summed over threads.
//  - pick/*: one balancer pick over a 10-provider view.
//  - register/core: registry_core::register_instance + publish per batch of
//    1,000 (no I/O: the cost of the registry itself).
//  - register/replica: replica::register_instance from another thread
//    (posted to the replica thread and awaited: the facade's round trip).
//  - register/replica_batch_1000[_durable]: replica::register_instances,
//    1,000 at a time under one path; _durable with a data directory
//    (SQLite, fsync on), so each call also commits 1,000 rows.
//  - config/write_publish/N: registry_core::set_config of one key and the
//    publication after it, with N other config keys held.
//  - memory/100k_own, memory/100k_held: heap bytes per instance for
//    100,000 instances without tags (10,000 services of 10) in a
//    registry_core with its published snapshot (document, index, views,
//    load cells), registered by this replica (own) or received from another
//    (held). Measured with mallinfo2(); the counter bytes_per_instance.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>

#include "lattice/registry/balancer.hpp"
#include "lattice/registry/registry_core.hpp"
#include "lattice/registry/replica.hpp"
#include "lattice/transport/messages.hpp"

namespace reg = lattice::registry;
using namespace std::chrono_literals;

namespace {

constexpr const char* kPath = "/bench/HelloWorldService/1.0.0";

reg::instance make_instance(std::size_t i) {
  reg::instance inst;
  inst.address = "10." + std::to_string((i >> 16) & 255) + "." + std::to_string((i >> 8) & 255) +
                 "." + std::to_string(i & 255);
  inst.port = 8080;
  inst.protocol = "http";
  inst.serialization = "json";
  inst.weight = 100 + static_cast<std::uint32_t>(i % 3) * 50;
  inst.role = i % 4 == 3 ? reg::instance_role::secondary : reg::instance_role::primary;
  return inst;
}

// One replica, alone, with kPath holding 10 providers; shared by the lookup
// benchmarks so threads read the same snapshot.
reg::replica& lookup_replica() {
  static const std::unique_ptr<reg::replica> r = [] {
    auto opened = reg::replica::open({});
    if (!opened) {
      std::fprintf(stderr, "open: %s\n", opened.error().message().c_str());
      std::abort();
    }
    auto replica = std::move(opened).value();
    for (std::size_t i = 0; i < 10; ++i)
      if (!replica->register_instance(kPath, make_instance(i))) std::abort();
    // Writes are published when the replica thread finishes the batch.
    for (int attempt = 0; attempt < 1000 && replica->lookup(kPath).providers().size() != 10; ++attempt)
      std::this_thread::sleep_for(1ms);
    if (replica->lookup(kPath).providers().size() != 10) std::abort();
    return replica;
  }();
  return *r;
}

void BM_LookupFacade(benchmark::State& state) {
  auto& r = lookup_replica();
  std::size_t found = 0;
  for (auto _ : state) {
    auto list = r.lookup(kPath);
    found += list.providers().size();
    benchmark::DoNotOptimize(list);
  }
  if (found != 10 * static_cast<std::size_t>(state.iterations())) state.SkipWithError("lookup lost providers");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LookupFacade)->Name("lookup/facade")->Threads(1)->Threads(2)->UseRealTime();

void BM_LookupReader(benchmark::State& state) {
  auto& r = lookup_replica();
  reg::replica::reader reader(r);
  std::size_t found = 0;
  for (auto _ : state) {
    const reg::service_view* view = reader.current().find(kPath);
    found += view->providers.size();
    benchmark::DoNotOptimize(view);
  }
  if (found != 10 * static_cast<std::size_t>(state.iterations())) state.SkipWithError("lookup lost providers");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LookupReader)->Name("lookup/reader")->Threads(1)->Threads(2)->UseRealTime();

const reg::service_view& pick_view() {
  static const reg::service_view view = [] {
    reg::service_view v;
    v.path = kPath;
    std::vector<reg::instance_view> providers;
    for (std::size_t i = 0; i < 10; ++i) {
      auto inst = make_instance(i);
      inst.id = inst.address + ":8080";
      reg::instance_view iv;
      iv.record = reg::instance_record::make(inst);
      iv.local = reg::load_cell_ptr(new reg::load_cell);
      iv.remote_in_flight = static_cast<std::int64_t>((i * 7) % 5);
      providers.push_back(std::move(iv));
    }
    std::sort(providers.begin(), providers.end(),
              [](const auto& a, const auto& b) { return a.record->id() < b.record->id(); });
    v.providers = reg::instance_list::from_sorted(std::move(providers));
    return v;
  }();
  return view;
}

template <class Balancer>
void BM_Pick(benchmark::State& state, Balancer* lb, bool keyed) {
  const auto& view = pick_view();
  const std::vector<std::string> keys = {"user-1", "user-22", "user-333", "user-4444"};
  std::size_t n = 0;
  for (auto _ : state) {
    reg::pick_options o;
    if (keyed) o.key = keys[n++ & 3];
    const reg::instance_view* target = lb->pick(view, o);
    if (target == nullptr) {
      state.SkipWithError("no pick");
      break;
    }
    benchmark::DoNotOptimize(target);
  }
  state.SetItemsProcessed(state.iterations());
}

reg::round_robin rr;
reg::weighted_random wr;
reg::least_loaded ll;
reg::consistent_hash ch;
reg::primary_first pf(std::make_unique<reg::round_robin>());
BENCHMARK_CAPTURE(BM_Pick, round_robin, &rr, false)->Name("pick/round_robin");
BENCHMARK_CAPTURE(BM_Pick, weighted_random, &wr, false)->Name("pick/weighted_random");
BENCHMARK_CAPTURE(BM_Pick, least_loaded, &ll, false)->Name("pick/least_loaded");
BENCHMARK_CAPTURE(BM_Pick, primary_first, &pf, false)->Name("pick/primary_first(round_robin)");
BENCHMARK_CAPTURE(BM_Pick, consistent_hash, &ch, true)->Name("pick/consistent_hash");

reg::core_options lone_core_options() {
  reg::core_options o;
  o.protocol.self = 1;
  o.protocol.address = "127.0.0.1:1";
  o.protocol.incarnation = 1;
  return o;
}

// `services` paths of `per_service` providers each, into a fresh core.
void fill(reg::registry_core& core, std::size_t services, std::size_t per_service) {
  for (std::size_t s = 0; s < services; ++s) {
    const auto path = reg::service_path::parse("/bench/svc" + std::to_string(s) + "/1.0.0").value();
    for (std::size_t i = 0; i < per_service; ++i)
      if (!core.register_instance(path, make_instance(s * per_service + i))) std::abort();
    // The core queues a delta per write for peers; with none it still
    // holds them until taken, as a driver would.
    if (s % 64 == 63) core.take_outgoing();
  }
  core.take_outgoing();
}

void BM_RegisterCore(benchmark::State& state) {
  constexpr std::size_t kBatch = 1000;
  std::size_t total = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto now = lattice::transport::steady_time{} + 1h;
    auto core = std::make_unique<reg::registry_core>(lone_core_options(), now);
    state.ResumeTiming();
    fill(*core, kBatch / 10, 10);
    auto pub = core->publish(now);
    if (pub.snap == nullptr || pub.snap->services.size() != kBatch / 10) state.SkipWithError("not published");
    total += kBatch;
    state.PauseTiming();
    core.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(total));
}
BENCHMARK(BM_RegisterCore)->Name("register/core")->Unit(benchmark::kMicrosecond);

void BM_RegisterReplica(benchmark::State& state) {
  auto opened = reg::replica::open({});
  if (!opened) {
    state.SkipWithError("open failed");
    return;
  }
  auto r = std::move(opened).value();
  std::size_t i = 0;
  for (auto _ : state) {
    const auto path = "/bench/svc" + std::to_string(i / 10) + "/1.0.0";
    if (!r->register_instance(path, make_instance(i))) {
      state.SkipWithError("register failed");
      break;
    }
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
  r->stop();
}
BENCHMARK(BM_RegisterReplica)->Name("register/replica")->UseRealTime();

// `durable`: with a data directory (fsync on), so each call also commits
// its 1,000 rows to SQLite.
void BM_RegisterReplicaBatch(benchmark::State& state, bool durable) {
  reg::replica_options o;
  const auto dir = std::filesystem::temp_directory_path() / ("lattice-bench-" + std::to_string(::getpid()));
  if (durable) o.data_dir = dir.string();
  auto opened = reg::replica::open(o);
  if (!opened) {
    state.SkipWithError("open failed");
    return;
  }
  auto r = std::move(opened).value();
  constexpr std::size_t kBatch = 1000;
  std::size_t base = 0, total = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<reg::instance> batch;
    for (std::size_t i = 0; i < kBatch; ++i) batch.push_back(make_instance(base + i));
    const auto path = "/bench/batch" + std::to_string(base / kBatch) + "/1.0.0";
    base += kBatch;
    state.ResumeTiming();
    if (!r->register_instances(path, std::move(batch))) {
      state.SkipWithError("register failed");
      break;
    }
    total += kBatch;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(total));
  r->stop();
  r.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK_CAPTURE(BM_RegisterReplicaBatch, memory, false)
    ->Name("register/replica_batch_1000")->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_RegisterReplicaBatch, durable, true)
    ->Name("register/replica_batch_1000_durable")->UseRealTime()->Unit(benchmark::kMicrosecond);

// Heap bytes per instance held by a core after `load` fills it, counted
// from before the core is built to after its snapshot is published.
template <class Load>
double bytes_per_instance(benchmark::State& state, std::size_t services, std::size_t instances,
                          Load&& load) {
  malloc_trim(0);
  const auto before = mallinfo2().uordblks;
  const auto now = lattice::transport::steady_time{} + 1h;
  auto o = lone_core_options();
  o.protocol.self = 2;
  o.protocol.address = "127.0.0.1:2";
  reg::registry_core core(o, now);
  load(core, now);
  core.take_outgoing();
  auto pub = core.publish(now);
  if (pub.snap == nullptr || pub.snap->services.size() != services) state.SkipWithError("not published");
  pub = {};
  return static_cast<double>(mallinfo2().uordblks - before) / static_cast<double>(instances);
}

constexpr std::size_t kServices = 10'000, kPerService = 10, kInstances = kServices * kPerService;

// This replica's own registrations: the document, the index, the views,
// and the record of what it must re-assert.
void BM_MemoryOwn(benchmark::State& state) {
  double per_instance = 0;
  for (auto _ : state)
    per_instance = bytes_per_instance(state, kServices, kInstances,
                                      [](reg::registry_core& core, auto) { fill(core, kServices, kPerService); });
  state.counters["bytes_per_instance"] = per_instance;
  state.counters["instances"] = kInstances;
}
BENCHMARK(BM_MemoryOwn)->Name("memory/100k_own")->Iterations(1)->Unit(benchmark::kMillisecond);

// Registrations of another replica, received in one gossip message: what
// most replicas of a cluster hold.
void BM_MemoryHeld(benchmark::State& state) {
  double per_instance = 0;
  for (auto _ : state) {
    const auto now = lattice::transport::steady_time{} + 1h;
    auto source = std::make_unique<reg::registry_core>(lone_core_options(), now);
    fill(*source, kServices, kPerService);
    using body_type = lattice::transport::gossip_body<reg::registry_document>;
    const auto payload = lattice::crdt::encode(lattice::transport::envelope<body_type>{
        1, "127.0.0.1:1", body_type{source->members().table(), source->state()}});
    source.reset();
    per_instance = bytes_per_instance(state, kServices, kInstances, [&](reg::registry_core& core, auto at) {
      core.on_message(lattice::transport::message_type::gossip, payload, at);
    });
  }
  state.counters["bytes_per_instance"] = per_instance;
  state.counters["instances"] = kInstances;
}
BENCHMARK(BM_MemoryHeld)->Name("memory/100k_held")->Iterations(1)->Unit(benchmark::kMillisecond);

// One config write and the publication that follows, in a core that
// already holds `state.range(0)` config keys: what a config change costs as
// the config tree grows (the chaos soak's writes per round fell as its keys
// accumulated).
void BM_ConfigWritePublish(benchmark::State& state) {
  const auto keys = static_cast<std::size_t>(state.range(0));
  auto now = lattice::transport::steady_time{} + 1h;
  reg::registry_core core(lone_core_options(), now);
  for (std::size_t i = 0; i < keys; ++i) {
    if (!core.set_config(reg::service_path::parse("/bench/cfg/k" + std::to_string(i)).value(), "v")) std::abort();
    if (i % 1024 == 1023) core.take_outgoing();
  }
  core.take_outgoing();
  core.publish(now);
  const auto key = reg::service_path::parse("/bench/cfg/hot").value();
  std::uint64_t n = 0;
  for (auto _ : state) {
    if (!core.set_config(key, std::to_string(n++))) state.SkipWithError("write failed");
    auto pub = core.publish(now);
    benchmark::DoNotOptimize(pub.snap);
    if (n % 1024 == 0) core.take_outgoing();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(n));
}
BENCHMARK(BM_ConfigWritePublish)->Name("config/write_publish")->Arg(1'000)->Arg(10'000)->Arg(100'000)
    ->Unit(benchmark::kMicrosecond);

// One registration and the publication that follows, into a path that
// already holds `state.range(0)` instances: what a write costs as its
// service grows (views edited chunk by chunk, docs/adr/0010).
void BM_RegisterPublishInto(benchmark::State& state) {
  const auto held = static_cast<std::size_t>(state.range(0));
  auto now = lattice::transport::steady_time{} + 1h;
  reg::registry_core core(lone_core_options(), now);
  const auto path = reg::service_path::parse("/bench/big/1.0.0").value();
  for (std::size_t i = 0; i < held; ++i) {
    if (!core.register_instance(path, make_instance(i))) std::abort();
    if (i % 1024 == 1023) core.take_outgoing();
  }
  core.take_outgoing();
  core.publish(now);
  std::size_t n = 0;
  for (auto _ : state) {
    // Distinct new instances, spread over the path's id range.
    if (!core.register_instance(path, make_instance(held + (n++ * 7919) % (1u << 24)))) state.SkipWithError("write failed");
    auto pub = core.publish(now);
    benchmark::DoNotOptimize(pub.snap);
    if (n % 1024 == 0) core.take_outgoing();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(n));
}
BENCHMARK(BM_RegisterPublishInto)->Name("register/publish_into")->Arg(1'000)->Arg(10'000)->Arg(100'000)
    ->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  // Replicas log to stdout by default; keep it for the benchmark's JSON.
  spdlog::set_level(spdlog::level::warn);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
