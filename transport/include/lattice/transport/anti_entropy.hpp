// lattice/transport/anti_entropy.hpp: push-pull reconciliation of two
// replicas' states by digest ranges (Demers et al. 1987, "anti-entropy";
// ranges as in ADR 0001). Sans-IO: these are pure functions from a state
// and a message to the next message; the protocol core moves them.
//
// One exchange, initiated by A with peer B:
//
//   A -> B  sync_request  { root digest of A }                  (~10 bytes)
//   B       equal roots: answer nothing more; the pair is in sync.
//   B -> A  range_digests { bits, B's digest of each of the 2^bits ranges }
//   A -> B  range_push    { bits, indices that differ, A's entries in them,
//                           and the request for B's entries in them }
//   B -> A  range_push    { bits, same indices, B's entries in them }
//
// After B merges A's push and A merges B's, both hold the join of the two
// states for those ranges, and the ranges that matched were equal already:
// the pair is in sync. Bytes sent grow with the number of differing ranges,
// not with the state size (apart from the digest list, 8 bytes per range).
//
// The state type must satisfy `reconcilable`: lww_map and lww_element_set
// do. Choosing `bits` for a given size is range_bits_for().
//
// Pushes are capped: each carries whole ranges only until about
// `max_push_bytes` of encoded entries (at least one range), so a replica
// that joins a large cluster, or returns after a long absence, catches up
// over several rounds instead of sending one frame larger than peers accept.
// The ranges left out still differ, and the next exchange picks them up.
//
// Thread safety: free functions over values.
#pragma once

#include <algorithm>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include <cereal/types/vector.hpp>

#include "lattice/crdt/codec.hpp"

namespace lattice::transport {

template <class S>
concept reconcilable = requires(const S& s, S& m, unsigned bits, std::size_t index) {
  { s.digest() } -> std::same_as<std::uint64_t>;
  { s.range_digest(bits, index) } -> std::same_as<std::uint64_t>;
  { s.slice(bits, index) } -> std::same_as<S>;
  { s.size() + s.tombstones() } -> std::convertible_to<std::size_t>;
  { m.merge(s) } -> std::same_as<bool>;
};

/// Most ranges a range_digests message may list (2^16 * 8 bytes = 512 KiB);
/// decoders reject more.
inline constexpr unsigned max_range_bits = 16;

struct sync_request {
  std::uint64_t root = 0;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(root);
  }
};

struct range_digests {
  std::uint8_t bits = 0;
  std::vector<std::uint64_t> digests;  // 2^bits entries
  template <class Archive>
  void serialize(Archive& archive) {
    archive(bits, digests);
    if constexpr (Archive::is_loading::value) {
      if (bits > max_range_bits || digests.size() != (std::size_t{1} << bits))
        crdt::throw_malformed();
    }
  }
};

template <class S>
struct range_push {
  std::uint8_t bits = 0;
  std::vector<std::uint32_t> indices;  // ascending, each < 2^bits
  S entries;                           // the sender's entries in those ranges
  bool wants_reply = false;            // true from the initiator
  template <class Archive>
  void serialize(Archive& archive) {
    archive(bits, indices, entries, wants_reply);
    if constexpr (Archive::is_loading::value) {
      if (bits > max_range_bits) crdt::throw_malformed();
      for (std::size_t i = 0; i < indices.size(); ++i)
        if ((indices[i] >> bits) != 0 || (i > 0 && indices[i] <= indices[i - 1]))
          crdt::throw_malformed();
    }
  }
};

/// A state whose ranges can carry its compaction horizon (lww_map and what
/// is built of it): a push with one also says which keys the sender erased
/// and forgot in the ranges it covers, and the receiver drops them there
/// (lww_map::merge_ranges). In delta and op modes, which never ship a
/// whole state, that is how replicas agree on what compaction removed
/// (the simulator's invariant sweep: without it a key live on one replica
/// below another's horizon stayed on one side for ever). The receiver
/// does not take the horizon as its own: it says nothing about the ranges
/// the push left out.
template <class S>
concept range_mergeable = requires(S& m, const S& s, unsigned bits, std::span<const std::uint32_t> indices,
                                   S* removed) {
  m.take_horizon_of(s);
  { m.merge_ranges(s, bits, indices, removed) } -> std::same_as<bool>;
};

/// The range level for a state of `entries` entries: about 8 entries per
/// range, so one differing entry costs a small slice, and at most
/// max_range_bits.
inline unsigned range_bits_for(std::size_t entries) noexcept {
  const std::size_t ranges = std::max<std::size_t>(1, entries / 8);
  return std::min<unsigned>(max_range_bits, static_cast<unsigned>(std::bit_width(ranges) - 1));
}

template <reconcilable S>
sync_request make_sync_request(const S& state) {
  return {state.digest()};
}

/// B's answer to a sync_request: nothing if the roots match, else its
/// range digests at the level its size calls for.
template <reconcilable S>
std::optional<range_digests> answer_sync_request(const S& state, const sync_request& request) {
  if (request.root == state.digest()) return std::nullopt;
  range_digests answer;
  answer.bits = static_cast<std::uint8_t>(range_bits_for(state.size() + state.tombstones()));
  answer.digests.resize(std::size_t{1} << answer.bits);
  for (std::size_t i = 0; i < answer.digests.size(); ++i)
    answer.digests[i] = state.range_digest(answer.bits, i);
  return answer;
}

/// Default cap on a push's encoded entries; well under the default frame
/// limit (16 MiB).
inline constexpr std::size_t default_max_push_bytes = 4 * 1024 * 1024;

/// The entries of `state` in `indices` at level `bits`, as one value,
/// keeping whole ranges while their encoding fits in `max_bytes` (at least
/// the first). `indices` is cut to the ranges kept.
template <reconcilable S>
S collect_ranges(const S& state, unsigned bits, std::vector<std::uint32_t>& indices,
                 std::size_t max_bytes = default_max_push_bytes) {
  S out;
  std::size_t used = 0, kept = 0;
  for (std::uint32_t i : indices) {
    auto slice = state.slice(bits, i);
    const std::size_t size = crdt::encode(slice).size();
    if (kept > 0 && used + size > max_bytes) break;
    used += size;
    out.merge(slice);
    ++kept;
  }
  indices.resize(kept);
  // A push holds every entry we have in those ranges: with our horizon,
  // what it lacks there below it was erased here (see range_mergeable).
  if constexpr (range_mergeable<S>) out.take_horizon_of(state);
  return out;
}

/// A's reaction to B's range digests: push its entries in every range that
/// differs and ask for B's. std::nullopt when no range differs.
template <reconcilable S>
std::optional<range_push<S>> answer_range_digests(const S& state, const range_digests& remote,
                                                  std::size_t max_push_bytes = default_max_push_bytes) {
  range_push<S> push;
  push.bits = remote.bits;
  push.wants_reply = true;
  for (std::size_t i = 0; i < remote.digests.size(); ++i)
    if (state.range_digest(remote.bits, i) != remote.digests[i])
      push.indices.push_back(static_cast<std::uint32_t>(i));
  if (push.indices.empty()) return std::nullopt;
  push.entries = collect_ranges(state, push.bits, push.indices, max_push_bytes);
  return push;
}

/// Merges a push into `state`; returns the reply push if one was asked for.
/// The reply is built before merging, so it carries only what `state` had
/// (capped like any push: it may cover only the first of the ranges).
/// `removed`: as for the protocol's change listener, what the merge
/// removed here, if S's merge reports it.
template <reconcilable S>
std::optional<range_push<S>> absorb_range_push(S& state, const range_push<S>& push,
                                               std::size_t max_push_bytes = default_max_push_bytes,
                                               S* removed = nullptr) {
  std::optional<range_push<S>> reply;
  if (push.wants_reply) {
    reply.emplace();
    reply->bits = push.bits;
    reply->indices = push.indices;
    reply->entries = collect_ranges(state, push.bits, reply->indices, max_push_bytes);
  }
  if constexpr (range_mergeable<S>)
    state.merge_ranges(push.entries, push.bits, push.indices, removed);
  else if constexpr (requires { state.merge(push.entries, removed); })
    state.merge(push.entries, removed);
  else
    state.merge(push.entries);
  return reply;
}

}  // namespace lattice::transport
