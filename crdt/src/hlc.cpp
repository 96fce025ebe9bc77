#include "lattice/crdt/hlc.hpp"

#include <algorithm>
#include <fmt/format.h>

namespace lattice::crdt {

std::string to_string(const hlc_timestamp& stamp) {
  return fmt::format("{}.{}@{}", stamp.physical_us, stamp.logical, stamp.replica);
}

std::uint64_t system_wall_clock_us() noexcept {
  const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(since_epoch).count());
}

hlc::hlc(replica_id self, std::chrono::microseconds max_drift) noexcept
    : last_{0, 0, self}, max_drift_{std::max(max_drift, std::chrono::microseconds{0})} {}

void hlc::bump(std::uint64_t& physical, std::uint32_t& logical) noexcept {
  if (logical == std::numeric_limits<std::uint32_t>::max()) {
    ++physical;
    logical = 0;
  } else {
    ++logical;
  }
}

hlc_timestamp hlc::now(std::uint64_t wall_us) noexcept {
  // Kulkarni et al., Fig. 5 "send or local event".
  if (wall_us > last_.physical_us) {
    last_.physical_us = wall_us;
    last_.logical = 0;
  } else {
    bump(last_.physical_us, last_.logical);
  }
  return last_;
}

bool hlc::acceptable(const hlc_timestamp& remote, std::uint64_t wall_us) const noexcept {
  const auto drift = static_cast<std::uint64_t>(max_drift_.count());
  // Written to avoid overflow of wall_us + drift near the top of the range.
  return remote.physical_us <= wall_us || remote.physical_us - wall_us <= drift;
}

result<hlc_timestamp> hlc::update(const hlc_timestamp& remote, std::uint64_t wall_us) noexcept {
  if (!acceptable(remote, wall_us)) return errc::clock_drift_exceeded;

  // Kulkarni et al., Fig. 5 "receive event of message m".
  const std::uint64_t previous = last_.physical_us;
  const std::uint64_t physical = std::max({previous, remote.physical_us, wall_us});
  std::uint32_t logical = 0;
  std::uint64_t carried = physical;
  if (physical == previous && physical == remote.physical_us) {
    logical = std::max(last_.logical, remote.logical);
    bump(carried, logical);
  } else if (physical == previous) {
    logical = last_.logical;
    bump(carried, logical);
  } else if (physical == remote.physical_us) {
    logical = remote.logical;
    bump(carried, logical);
  }
  last_.physical_us = carried;
  last_.logical = logical;
  return last_;
}

hlc_timestamp hlc::successor(const hlc_timestamp& stamp, replica_id self) noexcept {
  hlc_timestamp next{stamp.physical_us, stamp.logical, self};
  // Same (physical, logical) under a greater id is already after `stamp`.
  if (self > stamp.replica) return next;
  bump(next.physical_us, next.logical);
  return next;
}

hlc_timestamp hlc::after(const hlc_timestamp& existing, std::uint64_t wall_us) noexcept {
  if (auto observed = update(existing, wall_us)) return observed.value();
  return successor(existing, self());
}

}  // namespace lattice::crdt
