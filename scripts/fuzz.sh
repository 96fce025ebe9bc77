#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang-15 (ASan+UBSan, build-fuzz/)
# and runs each from its seed corpus in fuzz/corpus/ for a fixed time, with
# a memory bound (an allocation blow-up is a finding, as a crash is).
# Exits non-zero on any finding; the input that caused it is kept in
# build-fuzz/artifacts/. New inputs a run finds stay in build-fuzz/corpus/,
# never in the repository's seeds.
#
#   scripts/fuzz.sh                              # every target, 15 s each
#   LATTICE_FUZZ_SECONDS=600 scripts/fuzz.sh     # 10 minutes each
#   scripts/fuzz.sh http_fuzz                    # one target
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

seconds=${LATTICE_FUZZ_SECONDS:-15}
jobs=${LATTICE_JOBS:-2}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frame_fuzz decode_fuzz protocol_fuzz swim_fuzz http_fuzz config_fuzz dns_fuzz filter_fuzz)
fi

# The same configuration scripts/test.sh builds its ASan+UBSan tests in
# (it builds everything here after this script has built the targets).
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++-15 \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" \
  -DCMAKE_UNITY_BUILD=ON -DLATTICE_FUZZ=ON -DLATTICE_WERROR=ON -DLATTICE_BUILD_TESTS=ON \
  -DLATTICE_BUILD_EXAMPLES=OFF -DLATTICE_BUILD_BENCH=OFF >/dev/null
cmake --build build-fuzz -j "$jobs" --target "${targets[@]}"
if [ "$seconds" = "0" ]; then exit 0; fi  # built, not run

mkdir -p build-fuzz/artifacts
export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-15/bin/llvm-symbolizer
status=0
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  log="build-fuzz/$t.log"
  printf '%-14s ' "$t"
  # Everything the run prints (the targets' own stderr included) goes to
  # its log; only the summary line, or the report of a finding, is shown.
  if ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
     "build-fuzz/fuzz/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 \
       -timeout=10 -max_len=65536 -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$t-" \
       "build-fuzz/corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    echo "ok: ${runs:-?} executions in ${seconds} s, ${cov:-?} coverage points"
  else
    echo "FINDING (see $log and build-fuzz/artifacts/)"
    tail -40 "$log"
    status=1
  fi
done
exit $status
