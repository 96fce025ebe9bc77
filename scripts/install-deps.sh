#!/usr/bin/env bash
# Installs the Debian 12 packages Lattice builds with, and nothing else.
# Idempotent: packages already present are not touched, so a second run is a
# no-op that costs one dpkg query. Runs apt as root directly, or through sudo.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config
  libboost-dev            # Asio, Beast, Outcome (1.74)
  libcereal-dev           # portable binary serialization
  libxxhash-dev           # stable state digests
  catch2 librapidcheck-dev
  libspdlog-dev libfmt-dev
  libbenchmark-dev nlohmann-json3-dev
  libssl-dev              # HMAC-SHA256 frame authentication, TLS
  libsqlite3-dev          # durable state (data_dir)
  libcli11-dev            # latticed and lattice flags, TOML config files
  liburiparser-dev        # request target decoding in latticed
  libldns-dev             # latticed's DNS interface: message parsing and encoding
  libsystemd-dev          # latticed tells systemd it is ready (sd_notify, Type=notify)
  libre2-dev              # latticed's ?filter: regular expressions as Go (and so Consul) reads them
  bind9-dnsutils          # daemon tests: dig against the DNS interface
  haproxy                 # daemon tests: a real DNS-SD consumer (SRV server-template)
  python3-dnspython       # bench/dns_answers.py
  python3 python3-consul  # daemon tests: a real Consul client library
  faketime                # daemon tests: a replica whose clock runs hours off
  chromium                # ui tests: the web console in a real (headless) browser
  python3-yaml            # deploy test: the Kubernetes manifests, parsed
  systemd                 # package test: systemd-analyze verify/security on the unit
  clang-15 libfuzzer-15-dev llvm-15  # scripts/fuzz.sh: libFuzzer targets, symbolized reports
  # bench/compare/compare.py (its smoke run is a test): the systems compared,
  # their clients, the load generator and the plots
  etcd-server etcd-client zookeeperd python3-kazoo wrk python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  sudo_cmd=()
elif command -v sudo >/dev/null 2>&1; then
  sudo_cmd=(sudo)
else
  echo "install-deps: need root or sudo to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
