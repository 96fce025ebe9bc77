#!/usr/bin/env bash
# The README's first command: installs what is missing, builds Lattice, and
# runs the live demo (scripts/demo.py): three latticed replicas, two
# HelloWorldService providers and a consumer on loopback, narrated, ending
# with a summary of the measured times. Exits 0 when every step happened.
# It prints the web console's URL; `scripts/demo.sh --keep` leaves the
# cluster running until Ctrl-C, killing a provider and healing a partition
# in turn for the console to show.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "${LATTICE_JOBS:-2}" --target latticed lattice hello_world
exec /usr/bin/python3 scripts/demo.py --build build "$@"
