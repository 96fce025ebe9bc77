#!/usr/bin/env bash
# The chaos test (tests/daemon/chaos.py) for longer: five latticed under
# kill -9 and restart, split-brain and flapping partitions, a daemon down
# longer than gc_grace and one 30 s behind, rounds of faults until
# LATTICE_SOAK_SECONDS (default 1800) have passed, each round ending with a
# heal, a convergence wait and the history check. Prints the counts as one
# JSON line (also in build/soak.json); exits non-zero on any violation or
# if fewer than LATTICE_SOAK_MIN_CYCLES (default 300) kill cycles ran.
#
#   scripts/soak.sh                                  # 30 minutes
#   LATTICE_SOAK_SECONDS=300 scripts/soak.sh         # shorter
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "${LATTICE_JOBS:-2}" --target latticed

seconds=${LATTICE_SOAK_SECONDS:-1800}
min_cycles=${LATTICE_SOAK_MIN_CYCLES:-300}
status=0
LATTICED=build/apps/latticed python3 tests/daemon/chaos.py --keep-going --seconds "$seconds" | tee build/soak.json || status=$?
cycles=$(python3 -c 'import json,sys; print(json.load(open("build/soak.json"))["kill_cycles"])')
if [ "$cycles" -lt "$min_cycles" ]; then
  echo "soak: only $cycles kill cycles in $seconds s (wanted $min_cycles)" >&2
  status=1
fi
exit $status
