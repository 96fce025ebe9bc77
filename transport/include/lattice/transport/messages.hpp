// lattice/transport/messages.hpp: the protocol's messages, as carried in a
// frame's payload (frame type = message_type).
//
// Every message is an envelope: the sender's id and gossip address (where
// replies go; a TCP peer's source port is not its listener), then the body.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <cereal/types/optional.hpp>
#include <cereal/types/string.hpp>

#include "lattice/transport/anti_entropy.hpp"
#include "lattice/transport/membership.hpp"

namespace lattice::transport {

enum class message_type : std::uint8_t {
  /// Member table, and a delta when the message spreads a change.
  gossip = 1,
  sync_request = 2,
  range_digests = 3,
  range_push = 4,
};

template <class Body>
struct envelope {
  replica_id from = 0;
  std::string from_address;
  Body body;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(from, from_address, body);
  }
};

template <class S>
struct gossip_body {
  member_table members;
  std::optional<S> delta;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(members, delta);
  }
};

}  // namespace lattice::transport
