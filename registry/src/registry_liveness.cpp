// registry_core's judgement of owners and callers: which instances are
// visible, reaping the instances of owners hidden too long, and the grace
// rule for a replica cut off longer than gc_grace.
#include <spdlog/spdlog.h>

#include "lattice/registry/registry_core.hpp"

namespace lattice::registry {

using transport::member_state;

// ---- liveness -------------------------------------------------------------------

// An owner's instances of its current incarnation are listed while it is
// alive or suspect (cut off from everyone: while it has not left, since we
// cannot tell who died). The judgement is kept in owners_, made at every
// tick and whenever an instance of an owner new to us or of another
// incarnation arrives; views read only what is kept, so an instance edited
// into a view gets the same judgement as the neighbours it joins.
void registry_core::judge_owner(replica_id id, owner_state& owner, steady_time now) {
  bool alive = true;
  std::uint64_t incarnation = self_incarnation_;
  if (id != self()) {
    const auto* record = members().table().find(id);
    const auto state = members().state_of(id, now);
    alive = record != nullptr && state != member_state::left && (isolated_ || state != member_state::dead);
    incarnation = record ? record->incarnation : 0;
  }
  if (alive == owner.visible && incarnation == owner.incarnation) return;
  if (owner.visible && !alive) owner.hidden_since = now;
  owner.visible = alive;
  owner.incarnation = incarnation;
  for (const auto& [path, count] : owner.paths) mark_dirty(*path);
}

bool registry_core::caller_live(replica_id origin, std::uint64_t incarnation, steady_time now) const {
  // Exactly that incarnation: a new life counts its own calls, and a
  // refuting replica moves its entries to its new incarnation. A
  // provider's totals are its owner's whatever the life (a new life
  // overwrites them within a flush).
  const bool totals = incarnation == load_key::provider_incarnation;
  if (origin == self()) return totals || incarnation == self_incarnation_;
  const auto* record = members().table().find(origin);
  if (record == nullptr || (!totals && record->incarnation != incarnation)) return false;
  const auto state = members().state_of(origin, now);
  return state == member_state::alive || state == member_state::suspect;
}

bool registry_core::visible(const instance_record& inst) const {
  if (!inst.ephemeral()) return true;
  const auto owner = owners_.find(inst.owner());
  return owner != owners_.end() && owner->second.visible && owner->second.incarnation == inst.owner_incarnation();
}

void registry_core::refresh_owners(steady_time now, bool isolated) {
  const bool isolation_changed = isolated != isolated_;
  isolated_ = isolated;
  for (auto it = owners_.begin(); it != owners_.end();) {
    auto& [id, owner] = *it;
    if (owner.paths.empty()) {
      it = owners_.erase(it);
      continue;
    }
    judge_owner(id, owner, now);
    if (isolation_changed)
      for (const auto& [path, count] : owner.paths) mark_dirty(*path);
    ++it;
  }
}

void registry_core::reap(steady_time now) {
  if (isolated_) return;
  registry_document delta;
  for (const auto& [id, owner] : owners_) {
    // Only owners hidden for reap_after: a visible owner's paths are not
    // walked at all, so this costs nothing per tick in a healthy cluster.
    // (An owner back in a newer incarnation removes its earlier life's
    // instances itself, in on_instance_key.)
    if (id == self() || owner.visible || now - owner.hidden_since < options_.reap_after) continue;
    for (const auto& [path, count] : owner.paths) {
      const auto ps = paths_.find(*path);
      if (ps == paths_.end()) continue;
      for (const auto& t : ps->second.entries) {
        const instance_record& e = *t.record;
        if (!e.ephemeral() || e.owner() != id) continue;
        const std::string key = instance_key(*path, e.kind(), e.id());
        const auto* entry = state().instances.find_entry(key);
        if (entry == nullptr) continue;
        // The smallest stamp that removes this record, not our clock's
        // now: a reap removes what we judged, nothing written after it. A
        // registration its owner wrote after the record (a false suspicion
        // answered, a persistent re-registration) still wins, however far
        // our clock runs ahead of the owner's (or, when the owner's next
        // stamp is this very one, the owner writes it again: see below).
        // Stamped on the owner's behalf (its id as the stamp's replica): a
        // delete under its own id that outranks a registration of this
        // life can only remove an earlier life's record, and the owner
        // writes its registration again (on_instance_key). Without that, a
        // replica restarted without its data, its clock stepped back,
        // registered the id blind below the reap and lost it for good (16
        // seeds of the invariant sweep). Two reapers of one record write the
        // same tombstone.
        const auto stamp = std::max(crdt::hlc::successor(entry->stamp, id), crdt::hlc::successor(highest_horizon(), id));
        delta.instances.merge(registry_document::instance_map{}.erase(key, stamp));
        ++reaped_;
      }
    }
  }
  if (!delta.empty()) protocol_.local_change(delta, now);
}

std::uint64_t registry_core::grace_cut_off(steady_time::duration away) const {
  // What is newer than our last contact no peer can have deleted and
  // forgotten without seeing it. Older entries may be stale: a peer that
  // kept running may have erased one and collected the tombstone. But a
  // peer collects only below its horizon, the least stamp floor it knows
  // (ours included) minus gc_grace, and the floor it knows of ours is at
  // most the one we last advertised (isolated_floor_us_): an entry above
  // that minus gc_grace still has any delete of it held as a tombstone,
  // which comes back with the peer's state. Those entries are kept too,
  // and with them writes of ours acknowledged just before the cut-off
  // that reached no peer (the chaos soak lost three). A peer counts us
  // until we have been dead to it for max(reconnect_timeout, gc_grace);
  // gc_grace of margin covers a peer that stopped hearing us before we
  // stopped hearing it.
  std::uint64_t cut_off = isolated_since_wall_;
  const auto grace_us = static_cast<std::uint64_t>(std::chrono::microseconds(options_.gc_grace).count());
  const auto counted_for = std::max(options_.reconnect_timeout, options_.gc_grace) - options_.gc_grace;
  if (isolated_floor_us_ > grace_us && away <= counted_for)
    cut_off = std::min(cut_off, isolated_floor_us_ - grace_us);
  return cut_off;
}

void registry_core::apply_grace_rule(steady_time now, bool reaches_none) {
  if (reachable_peers_ == 0) {
    if (reaches_none && !isolated_since_) {
      // Cut off since we last heard from a peer, not since we judged the
      // last one dead: what we wrote in between reached nobody, and must
      // not count as older than the cut-off.
      isolated_since_ = last_heard_ ? std::min(now, *last_heard_) : now;
      isolated_since_wall_ = last_contact_us_ != 0 ? last_contact_us_ : wall_();
      isolated_floor_us_ = advertised_floor_bound();  // and it stays there (advertised_floor)
    }
    return;
  }
  if (!isolated_since_) return;
  const auto away = now - *isolated_since_;
  const bool too_long = away > options_.gc_grace;
  const hlc_timestamp cut_off_at{grace_cut_off(away), 0, 0};
  isolated_since_.reset();
  isolated_floor_us_ = 0;
  if (!too_long) return;
  // We were cut off longer than peers keep tombstones. That alone does not
  // make us stale: if every peer we reach now has run for less than
  // gc_grace, none of them can have collected a tombstone we missed (a
  // replica collects nothing in its first gc_grace), and they are the ones
  // catching up, not us. This is the case of the replica that stayed up
  // while the others were down: it kept serving and keeps its state.
  // Uptime in heartbeats: every replica of a cluster beats at the same
  // interval, and the count is in the record we already have. With probes
  // a record moves only when its member tells it (record_refresh_for), so
  // the count we hold may be short by one refresh: the limit is lowered by
  // that much, erring towards forgetting (peers give back what exists).
  const auto beat_ms = std::max<std::chrono::milliseconds::rep>(1, options_.protocol.heartbeat_interval.count());
  auto uptime_ms = options_.gc_grace.count();
  if (options_.protocol.liveness.source == transport::liveness_source::probes)
    uptime_ms -= std::min(uptime_ms, record_refresh_for(options_.protocol, options_.gc_grace).count());
  const auto uptime_limit = static_cast<std::uint64_t>(uptime_ms / beat_ms);
  bool peer_collected = false;
  for (replica_id peer : members().reachable_peers(now))
    if (const auto* record = members().table().find(peer);
        record && record->heartbeat > uptime_limit)
      peer_collected = true;
  if (!peer_collected) return;
  // A peer kept running while we were away and may have erased and
  // forgotten keys we still hold. Forget what is older than our cut-off
  // (peers give back whatever of it still exists); keep what was written
  // since, which no peer can have deleted without seeing it, and our own
  // registrations, which are written again.
  ++resyncs_;
  registry_document forgotten;
  protocol_.maintain([&](registry_document& doc) { forgotten = doc.forget_before(cut_off_at); });
  // What we forgot comes back from peers: until it has had gc_grace to,
  // our horizon stays below the cut-off (see restore).
  floor_holds_[self()] = floor_hold{cut_off_at.physical_us, now + options_.gc_grace};
  // And until then we do not compact at all: our horizon would say every
  // key we lack below it was erased, and we lack what we forgot until
  // anti-entropy brings it back (the chaos test: pushes from a resyncing
  // replica erased keys everywhere).
  resync_until_ = now + options_.gc_grace;
  spdlog::warn("lattice replica {}: cut off for longer than gc_grace ({} s) and a peer has run longer: forgot {} "
               "entries older than the cut-off and takes them from peers again",
               self(), std::chrono::duration_cast<std::chrono::seconds>(options_.gc_grace).count(), forgotten.size() + forgotten.tombstones());
  on_merged(forgotten, /*removals=*/true);  // drops them from the index and from disk
  for_each_own([&](const std::string& path, const record_ptr& record) {
    reassert_.insert(instance_key(path, record->kind(), record->id()));
  });
}

// A member that answers the fallback ping over TCP but not the datagram
// ping is alive, and the probe says so; but many such probes mean a UDP
// path that fails, and with it the detector's gossip, which rides the
// same datagrams. Nothing else would tell the operator. A datagram lost
// now and then (1 % loss rescues about 1 % of probes this way) is not
// worth a warning: a minute in which at least 10 % of probes, and at
// least 3, were saved only by TCP is.
void registry_core::report_stream_acks(steady_time now) {
  const auto* detector = protocol_.detector();
  if (detector == nullptr) return;
  const auto& stats = detector->stats();
  if (!stream_window_start_) {
    stream_window_start_ = now;
    stream_window_acks_ = stats.stream_acks;
    stream_window_probes_ = stats.probes;
    return;
  }
  if (now - *stream_window_start_ < std::chrono::minutes(1)) return;
  const auto acks = stats.stream_acks - stream_window_acks_;
  const auto probes = stats.probes - stream_window_probes_;
  if (acks >= 3 && acks * 10 >= probes)
    spdlog::warn("lattice replica {}: {} of {} probes in the last minute were answered over TCP but not by UDP "
                 "datagram: datagrams between replicas are blocked or lost. Open UDP on the gossip port between "
                 "every pair of replicas, or turn datagrams off (latticed --datagrams off)",
                 self(), acks, probes);
  stream_window_start_ = now;
  stream_window_acks_ = stats.stream_acks;
  stream_window_probes_ = stats.probes;
}

}  // namespace lattice::registry
