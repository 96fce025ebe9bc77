// The compact record must be the instance it was made from: same fields,
// same wire bytes (so replicas with either form agree on digests), same
// order (LWW ties), and decoding must refuse what it cannot hold.
#include "lattice/registry/instance_record.hpp"

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/lww_map.hpp"
#include "lattice/registry/document.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace instance_record_test {

using namespace lattice::registry;
using namespace std::string_literals;

namespace {

// Short alphabets so that generated instances collide field by field and
// the ordering is exercised beyond the first field.
rc::Gen<std::string> text(std::size_t max) {
  return rc::gen::map(rc::gen::container<std::string>(rc::gen::element('a', 'b', ':')),
                      [max](std::string s) { return s.substr(0, max); });
}

rc::Gen<instance> any_instance() {
  return rc::gen::apply(
      [](std::string id, std::string address, std::uint16_t port, std::string protocol, std::string zone,
         std::uint32_t weight, bool secondary, bool ephemeral, bool consumer, std::vector<std::pair<std::string, std::string>> tags,
         std::uint64_t owner, std::uint64_t incarnation, std::uint64_t physical, std::uint32_t logical) {
        instance i;
        i.id = std::move(id);
        i.address = std::move(address);
        i.port = port;
        i.protocol = std::move(protocol);
        i.serialization = i.protocol.empty() ? "" : "json";
        i.zone = std::move(zone);
        i.weight = weight % 4;
        i.role = secondary ? instance_role::secondary : instance_role::primary;
        i.ephemeral = ephemeral;
        i.kind = consumer ? instance_kind::consumer : instance_kind::provider;
        for (auto& [k, v] : tags) i.tags[k.substr(0, 2)] = v.substr(0, 2);
        i.owner = owner % 3;
        i.owner_incarnation = incarnation % 3;
        i.epoch = {physical % 3, logical % 3, owner % 3};
        return i;
      },
      text(max_id_length), text(max_address_length), rc::gen::inRange<std::uint16_t>(0, 3), text(max_field_length),
      text(max_field_length), rc::gen::arbitrary<std::uint32_t>(), rc::gen::arbitrary<bool>(),
      rc::gen::arbitrary<bool>(), rc::gen::arbitrary<bool>(),
      rc::gen::container<std::vector<std::pair<std::string, std::string>>>(
          rc::gen::pair(text(2), text(2))),
      rc::gen::arbitrary<std::uint64_t>(), rc::gen::arbitrary<std::uint64_t>(), rc::gen::arbitrary<std::uint64_t>(),
      rc::gen::arbitrary<std::uint32_t>());
}

}  // namespace

TEST_CASE("a record holds exactly the instance it was made from", "[registry][record]") {
  rc::prop("fields, wire bytes and decoding round-trip", [] {
    const instance i = *any_instance();
    const record_ptr r = instance_record::make(i);
    RC_ASSERT(r->to_instance() == i);
    RC_ASSERT(r->same_provider_fields(i));
    const auto bytes = lattice::crdt::encode(r);
    RC_ASSERT(bytes == lattice::crdt::encode(i));
    const auto back = lattice::crdt::decode<record_ptr>(bytes);
    RC_ASSERT(back.has_value());
    RC_ASSERT(back.value() == r);
    RC_ASSERT(back.value().get() != r.get());  // a fresh record, equal by value
  });
  rc::prop("records order as their instances do", [] {
    const instance a = *any_instance();
    const instance b = *rc::gen::oneOf(rc::gen::just(a), any_instance());
    const record_ptr ra = instance_record::make(a), rb = instance_record::make(b);
    RC_ASSERT((ra < rb) == (a < b));
    RC_ASSERT((rb < ra) == (b < a));
    RC_ASSERT((ra == rb) == (a == b));
  });
}

TEST_CASE("a record without tags pays for none, and tags survive", "[registry][record]") {
  instance i;
  i.address = "10.0.0.7";
  i.id = "10.0.0.7:20880";
  CHECK(instance_record::make(i)->tags().empty());
  i.tags = {{"region", "eu"}, {"tier", "gold"}};
  const auto r = instance_record::make(i);
  CHECK(r->tags() == i.tags);
  CHECK(r->id() == "10.0.0.7:20880");
  CHECK(r->address() == "10.0.0.7");
  CHECK(r->zone().empty());
}

TEST_CASE("decoding refuses fields beyond the documented limits", "[registry][record]") {
  instance i;
  i.address = "h";
  i.id = std::string(max_id_length, 'x');
  CHECK(lattice::crdt::decode<record_ptr>(lattice::crdt::encode(i)).has_value());
  for (auto field : {&instance::id, &instance::address, &instance::protocol, &instance::serialization, &instance::zone}) {
    instance bad = i;
    bad.*field = std::string(max_id_length + 1, 'x');
    const auto decoded = lattice::crdt::decode<record_ptr>(lattice::crdt::encode(bad));
    REQUIRE_FALSE(decoded.has_value());
    CHECK(decoded.error() == lattice::crdt::errc::malformed);
  }
}

TEST_CASE("the instance map stores tombstones as null records, encoded as optionals are",
          "[registry][record]") {
  // record_ptr opts in to lww_null_is_tombstone; the bytes must not change.
  lattice::crdt::lww_map<std::string, record_ptr> compact;
  lattice::crdt::lww_map<std::string, instance> plain;
  instance i;
  i.address = "10.0.0.7";
  i.id = "10.0.0.7:1";
  const lattice::crdt::hlc_timestamp t1{1, 0, 1}, t2{2, 0, 1};
  compact.put("/a\0pone"s, instance_record::make(i), t1);
  plain.put("/a\0pone"s, i, t1);
  compact.put("/a\0ptwo"s, instance_record::make(i), t1);
  plain.put("/a\0ptwo"s, i, t1);
  compact.erase("/a\0ptwo"s, t2);
  plain.erase("/a\0ptwo"s, t2);
  CHECK(compact.size() == 1);
  CHECK(compact.tombstones() == 1);
  CHECK(compact.find("/a\0ptwo"s) == nullptr);
  CHECK(lattice::crdt::encode(compact) == lattice::crdt::encode(plain));
  CHECK(compact.digest() == plain.digest());
  const auto back = lattice::crdt::decode<decltype(compact)>(lattice::crdt::encode(plain));
  REQUIRE(back.has_value());
  CHECK(back.value() == compact);
}

}  // namespace instance_record_test
