// registry_core's dealings with time: the HLC receive rule on merged
// stamps, drift reports, and the cluster-stable compaction horizon.
#include <chrono>

#include <fmt/chrono.h>
#include <spdlog/spdlog.h>

#include "lattice/registry/registry_core.hpp"

namespace lattice::registry {
namespace {

using transport::member_state;

// "2026-12-02T18:20:01.123456Z", for log lines a person compares.
std::string utc(std::uint64_t us) {
  const std::chrono::sys_time<std::chrono::microseconds> t{std::chrono::microseconds(us)};
  return fmt::format("{:%FT%T}Z", t);
}

}  // namespace

void registry_core::observe_stamps(const registry_document& merged) {
  // One clock update for the latest acceptable stamp covers them all: the
  // clock then stands past every one of them.
  const auto wall = wall_();
  hlc_timestamp latest = hlc_timestamp::zero();
  merged.for_each_stamp([&](const hlc_timestamp& stamp) {
    if (stamp.replica == self()) return;  // ours: the clock issued it
    if (clock_.acceptable(stamp, wall)) {
      latest = std::max(latest, stamp);
      return;
    }
    // Merged all the same (refusing it would make replicas diverge), but
    // it must not drag our clock hours ahead: every write of ours would
    // then carry that error.
    ++clock_drift_;
    report_drift(stamp, wall);
  });
  // A compacted state's horizons too: a write of ours stamped below one
  // would be ignored by every replica that holds it (it reads the key's
  // absence as "erased and collected"). A replica whose clock lags the
  // cluster's is brought past them at its first exchange.
  // (Remembered even when it is too far ahead to move the clock: writes
  // are stamped above it all the same, see stamp_after. Range pushes
  // carry a peer's horizon without making it ours.)
  const auto horizon = merged.horizon();
  seen_horizon_ = std::max(seen_horizon_, horizon);
  if (horizon.replica != self() && clock_.acceptable(horizon, wall)) latest = std::max(latest, horizon);
  if (clock_.last() < latest) (void)clock_.update(latest, wall);
}

void registry_core::report_drift(const hlc_timestamp& stamp, std::uint64_t wall) {
  auto [logged, first] = drift_logged_.try_emplace(stamp.replica, last_now_);
  if (!first && last_now_ - logged->second < std::chrono::minutes(1)) return;
  logged->second = last_now_;
  const auto ahead = std::chrono::microseconds(static_cast<std::int64_t>(stamp.physical_us - wall));
  const auto& offsets = clock_offsets();
  const auto offset = offsets.find(stamp.replica);
  spdlog::warn(
      "lattice replica {}: replica {} stamped a write at {}, {:.3f} s ahead of our clock ({}; drift bound {:.3f} s). "
      "Merged, but our clock does not follow it. Its clock {}; check time sync on both hosts",
      self(), stamp.replica, utc(stamp.physical_us), std::chrono::duration<double>(ahead).count(), utc(wall),
      std::chrono::duration<double>(clock_.max_drift()).count(),
      offset == offsets.end()
          ? std::string("has not been measured (no message from it yet)")
          : fmt::format("runs {:+.3f} s from ours", std::chrono::duration<double>(std::chrono::microseconds(offset->second)).count()));
}

void registry_core::report_erasures(const registry_document& merged, const registry_document& removed) {
  // Live entries a merge removed: a peer's horizon said it erased and
  // forgot them. Right when we held a copy the delete never reached; a
  // loss when the peer's horizon is wrong about its own state. Either way
  // an operator wants to see it, with the peer it came from.
  // (Config entries an erasure covers go too, but not for a horizon.)
  std::size_t live = 0;
  std::string first;
  const auto count_below = [&](const hlc_timestamp& horizon, bool config) {
    return [&, horizon, config](const std::string& key, const auto& entry) {
      if (!entry.live() || !(entry.stamp < horizon)) return;
      if (config) {
        const hlc_timestamp* erasure = state().erasure_covering(key);
        if (erasure != nullptr && entry.stamp < *erasure) return;
      }
      if (live++ == 0) first = key;
    };
  };
  removed.instances.for_each_entry(count_below(merged.instances.horizon(), false));
  removed.config.for_each_entry(count_below(merged.config.horizon(), true));
  if (live == 0) return;
  horizon_erasures_ += live;
  const auto horizon = merged.horizon();
  spdlog::info("lattice replica {}: replica {}'s horizon ({}) removed {} live entries here that it had erased and "
               "forgotten (first: {})",
               self(), protocol_.merging_from(), utc(horizon.physical_us), live, first);
}

void registry_core::refresh_floor_holds(steady_time now, bool members_moved) {
  // Our own hold (a restart, a grace-rule resync): from the first contact,
  // gc_grace to fetch what we missed.
  // Alone (no member but us), there is nobody to fetch from: the window
  // starts now.
  if (resync_at_contact_ && (reachable_peers_ > 0 || members().table().records().size() <= 1)) {
    resync_at_contact_ = false;
    resync_until_ = now + options_.gc_grace;
  }
  if (resync_until_ && now >= *resync_until_) resync_until_.reset();
  if (auto own = floor_holds_.find(self()); own != floor_holds_.end()) {
    if (!own->second.until && reachable_peers_ > 0) own->second.until = now + options_.gc_grace;
    if (own->second.until && now > *own->second.until) floor_holds_.erase(own);
  }
  if (!members_moved) {
    // No member's state moved: only holds whose time ran out change.
    for (auto hold = floor_holds_.begin(); hold != floor_holds_.end();) {
      if (hold->first != self() && hold->second.until && now > *hold->second.until) hold = floor_holds_.erase(hold);
      else ++hold;
    }
    return;
  }
  for (const auto& [id, record] : members().table().records()) {
    if (id == self()) continue;
    const auto state = members().state_of(id, now);
    auto hold = floor_holds_.find(id);
    if (state == member_state::dead) {
      if (hold == floor_holds_.end()) floor_holds_.emplace(id, floor_hold{record.clock_us, std::nullopt});
      else if (hold->second.until) hold->second = floor_hold{std::min(hold->second.floor_us, record.clock_us), std::nullopt};
    } else if (hold != floor_holds_.end()) {
      if (state == member_state::left || (hold->second.until && now > *hold->second.until))
        floor_holds_.erase(hold);
      else if (!hold->second.until)
        hold->second.until = now + options_.gc_grace;  // back: gc_grace to exchange what was written apart
    }
  }
}

std::optional<hlc_timestamp> registry_core::compaction_horizon(steady_time now) const {
  // A member that may still write could hold a write stamped down to its
  // floor that has not reached us: only what is older than every such
  // floor by gc_grace is safe to forget. Using the least floor, not our
  // own clock, keeps a replica whose clock runs ahead from collecting
  // (and then refusing) everybody's entries, and one whose clock lags
  // from having its writes collected as soon as they arrive.
  std::uint64_t floor = UINT64_MAX;
  for (const auto& [id, record] : members().table().records()) {
    if (id != self()) {
      const auto state = members().state_of(id, now);
      if (state == member_state::left) continue;
      if (state == member_state::dead) {
        // Dead may mean cut off and still serving its side of a partition:
        // until reconnect_timeout, its writes may still arrive, and the
        // deletes it has not seen must not be forgotten. Past it, a member
        // that returns is stale and the grace rule makes it start over.
        const auto seen = members().last_progress(id);
        if (!seen || now - *seen > std::max(options_.reconnect_timeout, options_.gc_grace)) continue;
      }
    }
    if (record.clock_us == 0) return std::nullopt;
    floor = std::min(floor, record.clock_us);
    if (const auto hold = floor_holds_.find(id); hold != floor_holds_.end()) floor = std::min(floor, hold->second.floor_us);
  }
  const auto grace_us = static_cast<std::uint64_t>(std::chrono::microseconds(options_.gc_grace).count());
  if (floor == UINT64_MAX || floor <= grace_us) return std::nullopt;
  return hlc_timestamp{floor - grace_us, 0, 0};
}

void registry_core::compact(steady_time now) {
  if (resyncing()) return;  // no horizon yet (restore, apply_grace_rule)
  const auto horizon = compaction_horizon(now);
  if (!horizon) return;
  // The collected tombstones are in no index, but their rows are on disk:
  // the observer deletes them.
  registry_document collected;
  protocol_.maintain([&](registry_document& doc) { doc.compact(*horizon, &collected); });
  if (!collected.empty() && options_.observer) options_.observer(collected);
}

}  // namespace lattice::registry
