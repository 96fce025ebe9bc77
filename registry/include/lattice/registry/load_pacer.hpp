// lattice/registry/load_pacer.hpp: the budget and significance rules of
// load_gossip.hpp as a small state machine, so registry_core's flush only
// gathers the changed counts and writes what this lets through.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "lattice/registry/load_gossip.hpp"
#include "lattice/transport/membership.hpp"

namespace lattice::registry {

class load_pacer {
 public:
  /// What one written count costs every replica it reaches, estimated
  /// before encoding: its instance key plus the rest of the entry (epoch,
  /// caller, incarnation, counts, stamp and their framing), and once per
  /// flush the message around them (envelope, the sender's member record,
  /// frame header and MAC). Checked against the encoder by
  /// tests/registry/load_gossip_test.cpp.
  static constexpr std::size_t entry_bytes(std::size_t key_bytes) { return key_bytes + 88; }
  static constexpr std::size_t write_bytes = 320;

  load_pacer(load_gossip_options options, std::size_t fanout, transport::steady_time now);

  /// Adds the share earned since the last call. `callers`: the replicas
  /// whose counts are in the document and count as live, this one included.
  void refill(transport::steady_time now, std::size_t callers);

  /// How urgent a change of one instance's counts is (larger first), or
  /// nullopt while it may wait: it moved calls in flight by less than the
  /// significance threshold and has waited less than max_hold.
  std::optional<double> urgency(std::int64_t written_in_flight, std::int64_t in_flight,
                                transport::steady_time held_since, transport::steady_time now) const;

  /// Takes `bytes` from the bucket if it holds that many (always, with no
  /// budget).
  bool spend(std::size_t bytes);

  bool unlimited() const noexcept { return options_.budget_bytes_per_second == 0; }
  /// Bytes per second this replica's own writes may take (0: unlimited).
  double share() const noexcept { return share_; }
  std::size_t callers() const noexcept { return callers_; }

 private:
  load_gossip_options options_;
  std::size_t fanout_;
  double share_ = 0;
  double tokens_ = 0;
  std::size_t callers_ = 1;
  transport::steady_time refilled_;
};

}  // namespace lattice::registry
