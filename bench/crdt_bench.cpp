// bench/crdt_bench.cpp: the crdt/ layer's hot paths.
//
//   build/bench/lattice_crdt_bench --benchmark_format=json > crdt.json
//
// Figures reported (issue #2 targets in brackets):
//   BM_LwwSetJoin            full-state join, 100k elements, 1% differ
//                            items_per_second = elements of the incoming state
//                            [>= 20M/s per core]
//   BM_LwwSetJoinAllDiffer   the same with every element differing (no
//                            bucket can be skipped): the worst case
//   BM_LwwSetApplyDelta10    merge of a 10-element delta into a 100k set,
//                            every delta really changes 10 elements [<= 2 µs]
//   BM_LwwSetEncode/Decode   100k elements; bytes_per_second and
//                            bytes_per_element
// Keys look like registry keys ("/HelloWorldService/1.0.0/10.0.3.7:8080"),
// about 38 bytes, so string comparison costs are realistic.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/lww_element_set.hpp"

namespace {

using lattice::crdt::hlc_timestamp;
using set_type = lattice::crdt::lww_element_set<std::string>;

constexpr std::size_t elements = 100'000;

std::string key_of(std::size_t i) {
  return "/HelloWorldService/1.0.0/10.0." + std::to_string(i / 256 % 256) + "." +
         std::to_string(i % 256) + ":" + std::to_string(8080 + i / 65536);
}

hlc_timestamp stamp(std::uint64_t t, lattice::crdt::replica_id replica) { return {t, 0, replica}; }

set_type make_set(std::size_t n) {
  set_type s;
  for (std::size_t i = 0; i < n; ++i) s.insert(key_of(i), stamp(1000 + i, 1));
  return s;
}

// `base` with 1% of its elements changed by a newer write (half removals).
set_type differing_by_one_percent(const set_type& base, std::size_t n) {
  set_type other = base;
  std::mt19937_64 rng(42);
  for (std::size_t j = 0; j < n / 100; ++j) {
    const std::size_t i = rng() % n;
    if (j % 2 == 0) other.remove(key_of(i), stamp(10'000'000 + j, 2));
    else other.insert(key_of(i), stamp(10'000'000 + j, 2));
  }
  return other;
}

// Times `copy of base`.merge(other); copying and freeing stay untimed.
void time_join(benchmark::State& state, const set_type& base, const set_type& other) {
  for (auto _ : state) {
    state.PauseTiming();
    set_type target = base;
    state.ResumeTiming();
    benchmark::DoNotOptimize(target.merge(other));
    state.PauseTiming();
    target = set_type{};
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(other.size()));
}

void BM_LwwSetJoin(benchmark::State& state) {
  const set_type base = make_set(elements);
  time_join(state, base, differing_by_one_percent(base, elements));
}
BENCHMARK(BM_LwwSetJoin)->Unit(benchmark::kMillisecond);

// The worst case for the digest skip: every element of the incoming state is
// newer, so every bucket differs and every entry is replaced.
void BM_LwwSetJoinAllDiffer(benchmark::State& state) {
  const set_type base = make_set(elements);
  set_type other;
  for (std::size_t i = 0; i < elements; ++i) other.insert(key_of(i), stamp(50'000'000 + i, 2));
  time_join(state, base, other);
}
BENCHMARK(BM_LwwSetJoinAllDiffer)->Unit(benchmark::kMillisecond);

void BM_LwwSetApplyDelta10(benchmark::State& state) {
  set_type target = make_set(elements);
  const auto deltas_needed = static_cast<std::size_t>(state.max_iterations);
  std::vector<set_type> deltas;
  deltas.reserve(deltas_needed);
  std::mt19937_64 rng(7);
  std::uint64_t t = 100'000'000;
  for (std::size_t d = 0; d < deltas_needed; ++d) {
    set_type delta;
    for (int k = 0; k < 10; ++k) {
      const std::size_t i = rng() % elements;
      if (k % 3 == 0) delta.remove(key_of(i), stamp(++t, 3));
      else delta.insert(key_of(i), stamp(++t, 3));
    }
    deltas.push_back(std::move(delta));
  }
  std::size_t next = 0;
  for (auto _ : state) benchmark::DoNotOptimize(target.merge(deltas[next++]));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * 10));
}
BENCHMARK(BM_LwwSetApplyDelta10)->Iterations(50'000)->Unit(benchmark::kNanosecond);

void BM_LwwSetEncode(benchmark::State& state) {
  const set_type s = make_set(elements);
  std::vector<std::byte> buffer;
  for (auto _ : state) {
    buffer.clear();
    lattice::crdt::encode_into(buffer, s);
    benchmark::DoNotOptimize(buffer.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(buffer.size()));
  state.counters["bytes_per_element"] = static_cast<double>(buffer.size()) / elements;
}
BENCHMARK(BM_LwwSetEncode)->Unit(benchmark::kMillisecond);

void BM_LwwSetDecode(benchmark::State& state) {
  const auto bytes = lattice::crdt::encode(make_set(elements));
  for (auto _ : state) {
    auto decoded = lattice::crdt::decode<set_type>(bytes);
    if (!decoded) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(decoded);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(bytes.size()));
  state.counters["bytes_per_element"] = static_cast<double>(bytes.size()) / elements;
}
BENCHMARK(BM_LwwSetDecode)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
