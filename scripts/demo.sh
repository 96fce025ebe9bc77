#!/usr/bin/env bash
# The README's first command: installs what is missing, builds Lattice, and
# runs the main demo. Today that is the CRDT walkthrough (three replicas, a
# partition, a heal); it becomes the live multi-replica cluster demo once
# latticed exists, under the same command.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "${LATTICE_JOBS:-2}" --target crdt_walkthrough
exec build/examples/crdt_walkthrough
