#!/usr/bin/env bash
# The README's test command: installs what is missing, builds Lattice with
# warnings as errors, runs every test, then runs the fast tests (CTest label
# `slow` excluded) again under AddressSanitizer+UBSan and ThreadSanitizer.
#
#   scripts/test.sh            # everything
#   LATTICE_SANITIZERS=0 scripts/test.sh   # skip the sanitizer builds
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

jobs=${LATTICE_JOBS:-2}
step() { printf '\n==> %s\n' "$*"; }

build_and_test() {  # dir, ctest args..., -- cmake args...
  local dir=$1; shift
  local ctest_args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do ctest_args+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  cmake -S . -B "$dir" -G Ninja -DLATTICE_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" "${ctest_args[@]}"
}

step "build and run all tests (build/)"
# More rapidcheck cases in the optimised build, where they are cheap; the
# sanitizer runs keep rapidcheck's default of 100 per property.
RC_PARAMS="${RC_PARAMS:-max_success=500}" build_and_test build -- -DCMAKE_BUILD_TYPE=RelWithDebInfo

if [ "${LATTICE_SANITIZERS:-1}" != "0" ]; then
  # Sanitizer builds compile only the tests: benches and examples add build
  # time and no coverage the main build does not already give.
  sanitizer_flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DLATTICE_BUILD_BENCH=OFF
                   -DLATTICE_BUILD_EXAMPLES=OFF -DLATTICE_BUILD_APPS=OFF)

  step "fast tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    build_and_test build-asan -LE slow -- "${sanitizer_flags[@]}" -DLATTICE_SANITIZE=address

  step "fast tests under ThreadSanitizer (build-tsan/)"
  # Kernels with high mmap randomisation break gcc 12's TSan runtime
  # ("unexpected memory mapping"); running without ASLR avoids that.
  norandom=()
  if setarch "$(uname -m)" -R true 2>/dev/null; then norandom=(setarch "$(uname -m)" -R); fi
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    "${norandom[@]}" bash -c "$(declare -f build_and_test); jobs=$jobs; build_and_test build-tsan -LE slow -- ${sanitizer_flags[*]} -DLATTICE_SANITIZE=thread"
fi

step "all test runs passed"
