#include "lattice/registry/load_pacer.hpp"

#include <algorithm>
#include <cstdlib>

namespace lattice::registry {
namespace {

// Room for one small write however thin the share, so a replica among
// very many callers still writes, just rarely.
constexpr double min_bucket_bytes = 512;

}  // namespace

load_pacer::load_pacer(load_gossip_options options, std::size_t fanout, transport::steady_time now)
    : options_(options), fanout_(std::max<std::size_t>(1, fanout)), refilled_(now) {
  refill(now, 1);
  tokens_ = std::max(share_, min_bucket_bytes);
}

void load_pacer::refill(transport::steady_time now, std::size_t callers) {
  callers_ = std::max<std::size_t>(1, callers);
  if (unlimited()) return;
  // Each write reaches every replica, and each replica forwards it to
  // fanout peers: F × C writers' worth of bytes pass through every one.
  share_ = static_cast<double>(options_.budget_bytes_per_second) / static_cast<double>(fanout_ * callers_);
  const double seconds = std::chrono::duration<double>(now - refilled_).count();
  refilled_ = now;
  tokens_ = std::min(std::max(share_, min_bucket_bytes), tokens_ + share_ * std::max(0.0, seconds));
}

std::optional<double> load_pacer::urgency(std::int64_t written_in_flight, std::int64_t in_flight,
                                          transport::steady_time held_since, transport::steady_time now) const {
  const double moved = static_cast<double>(std::llabs(in_flight - written_in_flight));
  const double base = std::max<double>(1, static_cast<double>(std::llabs(written_in_flight)));
  const bool significant = moved >= std::max(1.0, options_.significance * base);
  const auto waited = now - held_since;
  // Overdue changes first, oldest first; then the largest relative moves.
  if (waited >= options_.max_hold) return 1e12 + std::chrono::duration<double, std::milli>(waited).count();
  if (significant || unlimited()) return moved / base;
  return std::nullopt;
}

bool load_pacer::spend(std::size_t bytes) {
  if (unlimited()) return true;
  const auto cost = static_cast<double>(bytes);
  if (tokens_ < cost) return false;
  tokens_ -= cost;
  return true;
}

}  // namespace lattice::registry
