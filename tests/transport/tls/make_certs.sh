#!/usr/bin/env bash
# Regenerates the TLS test fixtures (committed; valid until 2125):
#   ca.pem               the cluster CA
#   node.pem, node.key   a replica certificate signed by it
#   rogue-ca.pem, rogue.pem, rogue.key   a CA and certificate the cluster does not trust
set -euo pipefail
cd "$(dirname "$0")"
days=36500
gen_ca() {  # name
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days $days \
    -subj "/CN=lattice test $1" -keyout "$1.key" -out "$1.pem" 2>/dev/null
}
gen_cert() {  # name ca
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=lattice $1" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days $days \
    -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$2.srl"
}
gen_ca ca
gen_cert node ca
gen_ca rogue-ca
gen_cert rogue rogue-ca
rm -f ca.key rogue-ca.key
