// What a forwarded rumour carries besides its delta: the records of its
// origin and of the replica forwarding it, never those of every relay it
// passed through (protocol::spread; ADR 0015's "relays" item).
#include <chrono>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "lattice/crdt/lww_element_set.hpp"
#include "lattice/transport/protocol.hpp"

// A namespace of its own for the unity build (scripts/test.sh).
namespace rumour_records_test {

using lattice::crdt::hlc_timestamp;
using set_type = lattice::crdt::lww_element_set<std::string>;
namespace t = lattice::transport;
using ids = std::set<t::replica_id>;

namespace {

t::member_record record_of(t::replica_id id) {
  return t::member_record{"sim:" + std::to_string(id), 5, 3, false, 42};
}

// Feeds `core` a rumour from `from` carrying the records of `carried` and
// a delta new to it; returns the member ids each forwarded copy carried.
std::vector<ids> forward(t::protocol<set_type>& core, t::replica_id from, const ids& carried,
                         const std::string& element, std::chrono::steady_clock::time_point now) {
  t::member_table table;
  for (auto id : carried) table.offer(id, record_of(id));
  set_type delta;
  delta.insert(element, hlc_timestamp{20, 0, from});
  core.on_message(t::message_type::gossip,
                  lattice::crdt::encode(t::envelope<t::gossip_body<set_type>>{from, "sim:" + std::to_string(from),
                                                                              {table, delta}, 7}),
                  now);
  std::vector<ids> out;
  for (const auto& m : core.take_outgoing()) {
    if (m.type != t::message_type::gossip) continue;
    const auto body = lattice::crdt::decode<t::envelope<t::gossip_body<set_type>>>(m.payload);
    REQUIRE(body.has_value());
    if (!body.value().body.delta) continue;  // not the rumour
    ids carried_ids;
    for (const auto& entry : body.value().body.members.records()) carried_ids.insert(entry.first);
    out.push_back(carried_ids);
  }
  return out;
}

}  // namespace

TEST_CASE("a forwarded rumour carries its origin's record and the forwarder's, not every relay's",
          "[transport][protocol]") {
  const auto now = std::chrono::steady_clock::time_point{} + std::chrono::seconds(1);
  t::protocol_options o;
  o.self = 3;
  o.address = "sim:3";
  o.fanout = 3;
  o.wall_clock = [] { return std::uint64_t{1'700'000'000'000'000}; };
  t::protocol<set_type> core(o, now);
  // Peers to forward to.
  t::member_table peers;
  for (t::replica_id id = 4; id <= 7; ++id) peers.offer(id, record_of(id));
  core.on_message(t::message_type::gossip,
                  lattice::crdt::encode(t::envelope<t::gossip_body<set_type>>{4, "sim:4", {peers, {}}, 7}), now);
  core.take_outgoing();

  // First hop: the sender is the origin, and stays.
  const auto first = forward(core, 1, {1}, "a", now);
  REQUIRE_FALSE(first.empty());
  for (const auto& c : first) CHECK(c == ids{1, 3});
  // A later hop: the sender (a relay) is dropped, the origin kept.
  const auto later = forward(core, 2, {1, 2}, "b", now);
  REQUIRE_FALSE(later.empty());
  for (const auto& c : later) CHECK(c == ids{1, 3});
  // The origin is known here, having come with the rumour.
  CHECK(core.members().table().find(1) != nullptr);
}

}  // namespace rumour_records_test
