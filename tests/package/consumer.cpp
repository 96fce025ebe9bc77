// Built against an installed Lattice: registers, encodes, decodes, merges.
#include <string>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/lww_element_set.hpp"

int main() {
  using set = lattice::crdt::lww_element_set<std::string>;
  set a;
  a.insert("/svc/1.0/10.0.0.1:80", lattice::crdt::hlc_timestamp{1, 0, 1});
  auto b = lattice::crdt::decode<set>(lattice::crdt::encode(a));
  if (!b || !(b.value() == a)) return 1;
  set c;
  return c.merge(b.value()) && c.contains("/svc/1.0/10.0.0.1:80") ? 0 : 1;
}
