#!/usr/bin/env bash
# The README's test command: installs what is missing, builds Lattice with
# warnings as errors, runs every test, then runs the fast tests (CTest label
# `slow` excluded) again under AddressSanitizer+UBSan and ThreadSanitizer,
# then runs each libFuzzer target for a short fixed time (scripts/fuzz.sh).
# Any build or test failure stops the script with a non-zero exit.
#
#   scripts/test.sh                        # everything
#   LATTICE_SANITIZERS=0 scripts/test.sh   # skip the sanitizer builds
#   LATTICE_FUZZ_SECONDS=0 scripts/test.sh  # skip the fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

jobs=${LATTICE_JOBS:-2}
step() { printf '\n==> %s\n' "$*"; }

build() {  # dir, cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DLATTICE_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

step "build and run all tests (build/)"
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
# More rapidcheck cases in the optimised build, where they are cheap; the
# sanitizer runs keep rapidcheck's default of 100 per property.
# This includes the chaos test (label chaos, three rounds: about 100 s).
RC_PARAMS="${RC_PARAMS:-max_success=500}" \
  ctest --test-dir build --output-on-failure -j "$jobs"

if [ "${LATTICE_SANITIZERS:-1}" != "0" ]; then
  # Sanitizer builds compile only the tests: benches and examples add build
  # time and no coverage the main build does not already give.
  # -O1 -g1 as the sanitizers' docs suggest: it halves compile time (the
  # rapidcheck law checker takes 203 s at -O2 -g under ASan, 102 s at -O1
  # -g1) and keeps line numbers in reports.
  sanitizer_flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
                   -DLATTICE_BUILD_BENCH=OFF -DLATTICE_BUILD_EXAMPLES=OFF -DLATTICE_BUILD_APPS=OFF)

  step "fast tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
  build build-asan "${sanitizer_flags[@]}" -DLATTICE_SANITIZE=address
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE slow

  step "fast tests under ThreadSanitizer (build-tsan/)"
  build build-tsan "${sanitizer_flags[@]}" -DLATTICE_SANITIZE=thread
  # Kernels with high mmap randomisation break gcc 12's TSan runtime
  # ("unexpected memory mapping"); running without ASLR avoids that.
  norandom=()
  if setarch "$(uname -m)" -R true 2>/dev/null; then norandom=(setarch "$(uname -m)" -R); fi
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    "${norandom[@]}" ctest --test-dir build-tsan --output-on-failure -j "$jobs" -LE slow
fi

fuzz_seconds=${LATTICE_FUZZ_SECONDS:-10}
if [ "$fuzz_seconds" != "0" ]; then
  step "fuzz targets, ${fuzz_seconds} s each, under ASan+UBSan (build-fuzz/)"
  LATTICE_FUZZ_SECONDS=$fuzz_seconds scripts/fuzz.sh
fi

step "all test runs passed"
