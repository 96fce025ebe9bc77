#!/usr/bin/env bash
# The README's test command: installs what is missing, builds Lattice with
# warnings as errors, runs every test, then the fast tests (CTest label
# `slow` excluded) again under AddressSanitizer+UBSan (clang, in the fuzz
# targets' build) and the tests that start threads, with the daemon tests,
# under ThreadSanitizer,
# then runs each libFuzzer target for a short fixed time (scripts/fuzz.sh).
# Any build or test failure stops the script with a non-zero exit.
#
# Every build is a unity build (CMAKE_UNITY_BUILD: several sources per
# compiler run) with line-table debug info (-g1): a clean run compiles in a
# third of the CPU time (docs/adr/0016-ci-build-time.md).
#
#   scripts/test.sh                        # everything
#   LATTICE_SANITIZERS=0 scripts/test.sh   # skip the sanitizer builds
#   LATTICE_FUZZ_SECONDS=0 scripts/test.sh  # skip the fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

jobs=${LATTICE_JOBS:-2}
step() { printf '\n==> [%d s] %s\n' "$SECONDS" "$*"; }  # seconds since the script began

build() {  # dir, cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DLATTICE_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

step "build and run all tests (build/)"
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" \
  -DCMAKE_UNITY_BUILD=ON
# More rapidcheck cases in the optimised build, where they are cheap; the
# sanitizer runs keep rapidcheck's default of 100 per property.
# This includes the chaos test (label chaos, three rounds: about 100 s).
RC_PARAMS="${RC_PARAMS:-max_success=500}" \
  ctest --test-dir build --output-on-failure -j "$jobs"

if [ "${LATTICE_SANITIZERS:-1}" != "0" ]; then
  # One clang build serves ASan+UBSan and the fuzzers: scripts/fuzz.sh
  # configures build-fuzz/ (every library instrumented for both) and builds
  # its targets; the tests and latticed are built there too, so the daemon
  # tests run against an ASan+UBSan latticed.
  step "fast tests under AddressSanitizer + UndefinedBehaviorSanitizer, clang (build-fuzz/)"
  LATTICE_FUZZ_SECONDS=0 scripts/fuzz.sh
  cmake --build build-fuzz -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-fuzz --output-on-failure -j "$jobs" -LE "slow|ui|deploy|faketime"

  # ThreadSanitizer needs threads to find anything: only the test
  # executables whose tests start them (LATTICE_TEST_SET=threads: the Asio
  # driver and the replica) are built, and latticed, whose HTTP thread and
  # replica thread the daemon tests drive. -O1 -g1 as the sanitizers' docs
  # suggest: it halves compile time and keeps line numbers in reports.
  step "tests that start threads, and the daemon tests, under ThreadSanitizer (build-tsan/)"
  build build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
    -DCMAKE_UNITY_BUILD=ON -DLATTICE_SANITIZE=thread -DLATTICE_TEST_SET=threads \
    -DLATTICE_BUILD_BENCH=OFF -DLATTICE_BUILD_EXAMPLES=OFF -DLATTICE_BUILD_APPS=ON
  # Kernels with high mmap randomisation break gcc 12's TSan runtime
  # ("unexpected memory mapping"); running without ASLR avoids that.
  norandom=()
  if setarch "$(uname -m)" -R true 2>/dev/null; then norandom=(setarch "$(uname -m)" -R); fi
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    "${norandom[@]}" ctest --test-dir build-tsan --output-on-failure -j "$jobs" -LE "slow|ui|deploy|faketime"
fi

fuzz_seconds=${LATTICE_FUZZ_SECONDS:-10}
if [ "$fuzz_seconds" != "0" ]; then
  step "fuzz targets, ${fuzz_seconds} s each, under ASan+UBSan (build-fuzz/)"
  LATTICE_FUZZ_SECONDS=$fuzz_seconds scripts/fuzz.sh
fi

step "all test runs passed"
