// Fuzz target: decode<T> for every CRDT type the registry replicates, the
// registry document, and the member table. The first byte picks the type;
// the rest is the encoding. A value that decodes must be canonical
// (re-encode to the same bytes), merge into itself without change, and
// merge into a non-empty state leaving one that still decodes.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/g_counter.hpp"
#include "lattice/crdt/g_set.hpp"
#include "lattice/crdt/lww_element_set.hpp"
#include "lattice/crdt/lww_map.hpp"
#include "lattice/crdt/lww_register.hpp"
#include "lattice/crdt/or_set.hpp"
#include "lattice/crdt/pn_counter.hpp"
#include "lattice/crdt/two_phase_set.hpp"
#include "lattice/registry/document.hpp"
#include "lattice/transport/membership.hpp"

namespace c = lattice::crdt;
using lattice::crdt::hlc_timestamp;

namespace {

#define LATTICE_FUZZ_CHECK(cond) \
  do {                           \
    if (!(cond)) __builtin_trap(); \
  } while (0)

// A small state of each type to merge decoded values into.
template <class T>
T sample();
template <>
c::g_counter sample() {
  c::g_counter s;
  s.increment(1, 3);
  return s;
}
template <>
c::pn_counter sample() {
  c::pn_counter s;
  s.add(1, -2);
  return s;
}
template <>
c::g_set<std::string> sample() {
  c::g_set<std::string> s;
  s.insert("a");
  return s;
}
template <>
c::two_phase_set<std::string> sample() {
  c::two_phase_set<std::string> s;
  s.insert("a");
  s.remove("b");
  return s;
}
template <>
c::or_set<std::string> sample() {
  c::or_set<std::string> s;
  s.insert(1, "a");
  return s;
}
template <>
c::lww_register<std::string> sample() {
  c::lww_register<std::string> s;
  s.assign("v", hlc_timestamp{10, 0, 1});
  return s;
}
template <>
c::lww_element_set<std::string> sample() {
  c::lww_element_set<std::string> s;
  s.insert("/a", hlc_timestamp{10, 0, 1});
  s.remove("/b", hlc_timestamp{11, 0, 1});
  return s;
}
template <>
c::lww_map<std::string, std::string> sample() {
  c::lww_map<std::string, std::string> s;
  s.put("/a", "1", hlc_timestamp{10, 0, 1});
  s.erase("/b", hlc_timestamp{11, 0, 1});
  s.put("/c", "2", hlc_timestamp{40, 0, 1});
  s.compact(hlc_timestamp{20, 0, 0});
  return s;
}
template <>
lattice::registry::registry_document sample() {
  lattice::registry::registry_document s;
  s.config.put("/app/a", "1", hlc_timestamp{10, 0, 1});
  s.config.put("/app/b/c", "2", hlc_timestamp{40, 0, 1});
  s.merge(lattice::registry::registry_document::erase_config_prefix("/old/", hlc_timestamp{12, 0, 1}));
  return s;
}
template <>
lattice::transport::member_table sample() {
  lattice::transport::member_table s;
  s.offer(2, lattice::transport::member_record{"127.0.0.1:2", 5, 3, false, 42});
  return s;
}

template <class T>
void check(std::span<const std::byte> bytes) {
  auto decoded = c::decode<T>(bytes);
  if (!decoded) return;
  const T& value = decoded.value();
  LATTICE_FUZZ_CHECK(c::encode(value) == std::vector<std::byte>(bytes.begin(), bytes.end()));
  T self = value;
  // (The member table's merge returns the ids it changed.)
  const auto repeat = self.merge(value);
  if constexpr (std::is_same_v<decltype(repeat), const bool>) LATTICE_FUZZ_CHECK(!repeat);
  else LATTICE_FUZZ_CHECK(repeat.empty());
  T merged = sample<T>();
  merged.merge(value);
  LATTICE_FUZZ_CHECK(c::decode<T>(c::encode(merged)).has_value());
  T other = value;
  other.merge(sample<T>());
  LATTICE_FUZZ_CHECK(c::decode<T>(c::encode(other)).has_value());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  switch (data[0] % 10) {
    case 0: check<c::g_counter>(bytes); break;
    case 1: check<c::pn_counter>(bytes); break;
    case 2: check<c::g_set<std::string>>(bytes); break;
    case 3: check<c::two_phase_set<std::string>>(bytes); break;
    case 4: check<c::or_set<std::string>>(bytes); break;
    case 5: check<c::lww_register<std::string>>(bytes); break;
    case 6: check<c::lww_element_set<std::string>>(bytes); break;
    case 7: check<c::lww_map<std::string, std::string>>(bytes); break;
    case 8: check<lattice::registry::registry_document>(bytes); break;
    default: check<lattice::transport::member_table>(bytes); break;
  }
  return 0;
}
