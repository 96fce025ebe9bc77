// Payloads that reach the protocol core but do not decode: counted as
// rejected, and the state and member table stay exactly as they were
// (frames that fail their CRC or MAC are the driver's: driver_test.cpp).
#include <chrono>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "lattice/crdt/lww_element_set.hpp"
#include "lattice/transport/protocol.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace protocol_bad_input_test {

using lattice::crdt::hlc_timestamp;
using set_type = lattice::crdt::lww_element_set<std::string>;
namespace t = lattice::transport;

TEST_CASE("every strict prefix of a valid gossip payload is rejected and changes nothing",
          "[transport][protocol]") {
  const auto now = std::chrono::steady_clock::time_point{} + std::chrono::seconds(1);
  t::protocol_options o;
  o.self = 1;
  o.address = "sim:1";
  o.wall_clock = [] { return std::uint64_t{1'700'000'000'000'000}; };
  t::protocol<set_type> core(o, now);
  set_type own;
  own.insert("kept", hlc_timestamp{10, 0, 1});
  core.local_change(own, now);

  // What a peer would send: its table and a delta with a new element.
  t::member_table table;
  table.offer(2, t::member_record{"sim:2", 5, 3, false, 42});
  set_type delta;
  delta.insert("new", hlc_timestamp{20, 0, 2});
  const auto payload = lattice::crdt::encode(t::envelope<t::gossip_body<set_type>>{2, "sim:2", {table, delta}, 7});

  const auto state_before = core.state();
  const auto members_before = core.members().table();
  for (std::size_t length = 0; length < payload.size(); ++length) {
    core.on_message(t::message_type::gossip, std::span(payload).first(length), now);
    INFO("prefix length " << length);
    REQUIRE(core.stats().rejected == length + 1);
    REQUIRE(core.state() == state_before);
    REQUIRE(core.members().table() == members_before);
  }
  // The whole payload is accepted: the loop above fed the real thing, cut.
  core.on_message(t::message_type::gossip, payload, now);
  CHECK(core.stats().rejected == payload.size());
  CHECK(core.state().contains("new"));
  CHECK(core.members().table().find(2) != nullptr);
}

}  // namespace protocol_bad_input_test
