// lattice/transport/messages.hpp: the protocol's messages, as carried in a
// frame's payload (frame type = message_type).
//
// Every message is an envelope: the sender's id and gossip address (where
// replies go; a TCP peer's source port is not its listener), its wall clock
// when it sent the message (how receivers estimate its clock offset), then
// the body.
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
#include "lattice/transport/op_log.hpp"

namespace lattice::transport {

enum class message_type : std::uint8_t {
  /// Member table, and a delta when the message spreads a change.
  gossip = 1,
  sync_request = 2,
  range_digests = 3,
  range_push = 4,
  /// `op` mode: one numbered op.
  op = 5,
  /// `op` mode anti-entropy: the sender's delivered vector and root digest.
  op_summary = 6,
  /// `op` mode: the ops the summary's sender lacks.
  op_repair = 7,
  /// Liveness by probes: one SWIM detector message (swim::message).
  probe = 8,
  /// Liveness by probes: "send me these member records" (record_request),
  /// from a replica that heard of members it holds no record of.
  record_request = 9,
  /// Liveness by probes: the refresh cycle's word of the sender's own
  /// record, without what does not move (record_refresh).
  record_refresh = 10,
};

/// One past the highest message_type: stats arrays indexed by type and
/// name tables have this many slots (0 is no type).
inline constexpr std::size_t message_type_count = 11;
static_assert(message_type_count == static_cast<std::size_t>(message_type::record_refresh) + 1,
              "a new message_type needs its slot and its name below");

/// The type's name as metrics and benchmarks print it ("gossip", ...);
/// "" for 0 and for a value that is no type.
constexpr const char* message_type_name(std::size_t type) noexcept {
  constexpr const char* names[message_type_count] = {"",   "gossip",     "sync_request", "range_digests",
                                                     "range_push", "op", "op_summary", "op_repair",
                                                     "probe",      "record_request", "record_refresh"};
  return type < message_type_count ? names[type] : "";
}

/// Body of message_type::record_refresh: the sender's record as a
/// refresh moves it (heartbeat, stamp floor) within one incarnation. Its
/// address and id are the envelope's. A receiver that holds the sender's
/// record of that incarnation takes it; otherwise it asks for the record
/// (record_request). A record with the address and the table framing was
/// a third larger, and at 10,000 members refreshes are most of the quiet
/// traffic (README).
struct record_refresh {
  std::uint64_t incarnation = 0;
  std::uint64_t heartbeat = 0;
  std::uint64_t clock_us = 0;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(incarnation, heartbeat, clock_us);
  }
};

/// Body of message_type::record_request, answered by a gossip message
/// with the records asked for that the receiver holds.
struct record_request {
  /// Members whose records the sender lacks (the receiver's own among
  /// them, or others it mentioned). At most max_ids are answered. Empty:
  /// the whole table (a joiner asking its seed).
  std::vector<replica_id> ids;
  static constexpr std::size_t max_ids = 64;
  template <class Archive>
  void save(Archive& archive) const {
    crdt::save_vector(archive, ids);
  }
  template <class Archive>
  void load(Archive& archive) {
    crdt::load_vector(archive, ids);
  }
};

template <class Body>
struct envelope {
  replica_id from = 0;
  std::string from_address;
  Body body;
  /// The sender's wall clock at sending, µs since the epoch. Last in the
  /// struct (so {from, address, body} still reads), third on the wire.
  std::uint64_t sent_us = 0;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(from, from_address, sent_us, body);
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

struct op_summary {
  std::uint64_t root = 0;
  stream_vector delivered;
  bool is_reply = false;  // an answer to a summary: do not answer again
  template <class Archive>
  void save(Archive& archive) const {
    archive(root, is_reply);
    crdt::save_ordered_map(archive, delivered);
  }
  template <class Archive>
  void load(Archive& archive) {
    archive(root, is_reply);
    crdt::load_ordered_map(archive, delivered);
  }
};

template <class S>
struct op_repair {
  std::vector<numbered_op<S>> ops;  // per origin in seq order
  /// The sender's log no longer holds everything the receiver lacks, or the
  /// vectors agree but the states do not: the receiver should range-sync
  /// with the sender and then count itself caught up to `sender_vector`.
  bool needs_range_sync = false;
  stream_vector sender_vector;
  template <class Archive>
  void save(Archive& archive) const {
    crdt::save_vector(archive, ops);
    archive(needs_range_sync);
    crdt::save_ordered_map(archive, sender_vector);
  }
  template <class Archive>
  void load(Archive& archive) {
    // Grown per decoded op, not sized from the count (codec.hpp).
    crdt::load_vector(archive, ops);
    archive(needs_range_sync);
    crdt::load_ordered_map(archive, sender_vector);
  }
};

}  // namespace lattice::transport
