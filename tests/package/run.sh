#!/usr/bin/env bash
# Installs the build tree given as $1 into a scratch prefix and builds and
# runs tests/package/consumer and examples/custom_crdt (a user CRDT checked
# by the installed law checker) against it, as user projects would.
set -euo pipefail
build=$1
source_dir=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cmake --install "$build" --prefix "$scratch/prefix" >/dev/null
cmake -S "$source_dir" -B "$scratch/build" -G Ninja -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/build" >/dev/null
"$scratch/build/consumer"
# examples/custom_crdt: a user CRDT checked by the installed law checker.
examples_dir=$(cd "$source_dir/../../examples/custom_crdt" && pwd)
cmake -S "$examples_dir" -B "$scratch/custom" -G Ninja -DCMAKE_PREFIX_PATH="$scratch/prefix" >/dev/null
cmake --build "$scratch/custom" >/dev/null
"$scratch/custom/max_register_laws"
echo "consumer built against the installed package and ran"
