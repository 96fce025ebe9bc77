// lattice/crdt/hlc.hpp: hybrid logical clock (Kulkarni, Demirbas et al.,
// "Logical Physical Clocks and Consistent Snapshots in Globally Distributed
// Databases", 2014).
//
// An HLC stamp is (physical µs, logical, replica id). Stamps are totally
// ordered by that triple, so every replica takes the same last-writer-wins
// decision for the same pair of writes, and a replica whose wall clock lags
// still issues stamps later than everything it has seen: causality beats skew.
//
//   lattice::crdt::hlc clock{/*self=*/7};
//   auto t1 = clock.now(lattice::crdt::system_wall_clock_us());
//   auto t2 = clock.update(remote_stamp, lattice::crdt::system_wall_clock_us());
//   if (!t2) log("peer clock too far ahead: {}", t2.error().message());
//
// The clock never reads the system time itself: the caller passes the wall
// time, so tests and the simulator can skew it at will.
//
// What a user can get wrong: giving two live replicas the same id (their
// stamps can then tie); feeding a wall time from a clock that is not in µs
// since the Unix epoch.
//
// Thread safety: `hlc_timestamp` is a value. An `hlc` is not thread-safe; it
// belongs to the thread that owns the replica state.
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <limits>
#include <string>

#include "lattice/crdt/error.hpp"
#include "lattice/crdt/replica_id.hpp"

namespace lattice::crdt {

/// One HLC reading. Ordered by (physical_us, logical, replica): the replica id
/// breaks ties, so two distinct replicas never produce equal stamps.
struct hlc_timestamp {
  /// Microseconds since the Unix epoch, as the clock knew it (may run ahead
  /// of the local wall clock after a remote stamp was observed).
  std::uint64_t physical_us = 0;
  /// Counts events within one physical_us value.
  std::uint32_t logical = 0;
  /// The replica that issued the stamp.
  replica_id replica = 0;

  friend constexpr auto operator<=>(const hlc_timestamp&, const hlc_timestamp&) = default;

  /// The smallest stamp: what every stamp compares greater than or equal to.
  static constexpr hlc_timestamp zero() noexcept { return {}; }
  /// The largest stamp; useful as an unbounded stable point.
  static constexpr hlc_timestamp max() noexcept {
    return {std::numeric_limits<std::uint64_t>::max(),
            std::numeric_limits<std::uint32_t>::max(),
            std::numeric_limits<replica_id>::max()};
  }

  template <class Archive>
  void serialize(Archive& archive) {
    archive(physical_us, logical, replica);
  }
};

/// "1732356000123456.3@7", for logs and test failures.
std::string to_string(const hlc_timestamp& stamp);

/// The default bound on how far ahead of our wall clock a remote stamp may
/// be. Five seconds tolerates hosts with a sloppy NTP setup while stopping a
/// peer whose clock is hours off from stamping writes nobody can overwrite.
inline constexpr std::chrono::microseconds default_max_drift = std::chrono::seconds{5};

/// The current system time in µs since the Unix epoch. Only the layers that
/// own I/O call this; CRDTs and the protocol core are handed the time.
std::uint64_t system_wall_clock_us() noexcept;

/// A hybrid logical clock owned by one replica.
class hlc {
 public:
  /// REQUIRES: `self` is unique among live replicas; max_drift >= 0.
  explicit hlc(replica_id self, std::chrono::microseconds max_drift = default_max_drift) noexcept;

  /// Stamps a local event (a write, or sending a message). The result is
  /// greater than every stamp this clock issued or observed before.
  hlc_timestamp now(std::uint64_t wall_us) noexcept;

  /// Observes a stamp received from another replica and stamps the receive
  /// event; the result is greater than both `remote` and every earlier stamp.
  /// Errors: errc::clock_drift_exceeded if remote.physical_us is more than
  /// max_drift ahead of `wall_us`; the clock is then left unchanged.
  [[nodiscard]] result<hlc_timestamp> update(const hlc_timestamp& remote,
                                             std::uint64_t wall_us) noexcept;

  /// A stamp for a write that must beat `existing` (the key's current
  /// stamp): update(existing) when `existing` is within max_drift, so the
  /// clock moves past it. A stamp beyond max_drift does not drag the clock;
  /// the result is then the stamp right after `existing` (logical + 1,
  /// carrying into physical_us), issued under our id, so the write still
  /// wins instead of silently losing.
  hlc_timestamp after(const hlc_timestamp& existing, std::uint64_t wall_us) noexcept;

  /// The smallest stamp of replica `self` greater than `stamp`.
  static hlc_timestamp successor(const hlc_timestamp& stamp, replica_id self) noexcept;

  /// True when `remote` is within max_drift of `wall_us` (what update checks).
  [[nodiscard]] bool acceptable(const hlc_timestamp& remote, std::uint64_t wall_us) const noexcept;

  /// The last stamp issued or observed.
  [[nodiscard]] hlc_timestamp last() const noexcept { return last_; }
  [[nodiscard]] replica_id self() const noexcept { return last_.replica; }
  [[nodiscard]] std::chrono::microseconds max_drift() const noexcept { return max_drift_; }

 private:
  // Advances logical, carrying into physical_us if logical would overflow
  // (2^32 events in one µs cannot happen at real rates, but a hostile peer
  // could send a stamp with logical at its maximum).
  static void bump(std::uint64_t& physical, std::uint32_t& logical) noexcept;

  hlc_timestamp last_;
  std::chrono::microseconds max_drift_;
};

}  // namespace lattice::crdt
