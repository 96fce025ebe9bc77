#include "lattice/transport/membership.hpp"

#include <algorithm>

#include "lattice/crdt/digest.hpp"

namespace lattice::transport {

std::uint64_t identity_hash(const member_record& record) {
  return crdt::stable_hash(record.address, record.incarnation, record.left);
}

const char* to_string(member_state state) noexcept {
  switch (state) {
    case member_state::alive: return "alive";
    case member_state::suspect: return "suspect";
    case member_state::dead: return "dead";
    case member_state::left: return "left";
  }
  return "unknown";
}

const char* to_string(liveness_source source) noexcept {
  switch (source) {
    case liveness_source::heartbeats: return "heartbeats";
    case liveness_source::probes: return "probes";
  }
  return "unknown";
}

bool member_table::offer(replica_id id, const member_record& record) {
  auto [it, inserted] = records_.try_emplace(id, record);
  if (inserted) return true;
  if (!(it->second < record)) return false;
  it->second = record;
  return true;
}

std::vector<replica_id> member_table::merge(const member_table& other, bool* new_life) {
  // Both maps are sorted by id: walk them together, so a merge costs
  // O(N + M) rather than a search per received record.
  std::vector<replica_id> grown;
  bool born = false;
  auto mine = records_.begin();
  for (const auto& [id, record] : other.records_) {
    while (mine != records_.end() && mine->first < id) ++mine;
    if (mine == records_.end() || mine->first != id) {
      mine = records_.emplace_hint(mine, id, record);  // inserting moves the others
      grown.push_back(id);
      born = true;
    } else if (mine->second < record) {
      const member_record& was = mine->second;
      born = born || was.incarnation != record.incarnation || was.left != record.left || was.address != record.address;
      mine->second = record;
      grown.push_back(id);
    }
  }
  if (new_life != nullptr) *new_life = born;
  return grown;
}

const member_record* member_table::find(replica_id id) const {
  const auto it = records_.find(id);
  return it == records_.end() ? nullptr : &it->second;
}

membership::membership(replica_id self, member_record record, liveness_options options,
                       steady_time now)
    : self_(self), options_(options) {
  record.left = false;
  table_.offer(self_, record);
  last_progress_[self_] = now;
}

void membership::beat(std::uint64_t clock_us, std::uint64_t beats) {
  member_record record = self_record();
  record.heartbeat += beats;
  record.clock_us = std::max(record.clock_us, clock_us);
  table_.offer(self_, record);
}

void membership::leave() {
  member_record record = self_record();
  record.left = true;
  table_.offer(self_, record);
  ++generation_;
}

bool membership::judge(replica_id id, member_state state) {
  if (options_.source != liveness_source::probes || id == self_) return false;
  auto& verdict = verdicts_[id];
  const bool revived = verdict == member_state::dead && state != member_state::dead && state != member_state::left;
  if (verdict != state) ++generation_;
  verdict = state;
  if (revived) awaiting_record_.insert(id);
  else if (state == member_state::dead || state == member_state::left) awaiting_record_.erase(id);
  return revived;
}

void membership::record_from(replica_id id) {
  if (awaiting_record_.erase(id) != 0) ++generation_;
}

void membership::progressed(replica_id id, steady_time now) {
  last_progress_[id] = now;
  if (id != self_ && (!last_peer_progress_ || *last_peer_progress_ < now)) last_peer_progress_ = now;
}

void membership::heard(replica_id id, steady_time now) {
  if (options_.source != liveness_source::probes || id == self_ || table_.find(id) == nullptr) return;
  progressed(id, now);
}

bool membership::merge(const member_table& remote, steady_time now, std::vector<replica_id>* grown_out) {
  const member_record mine = self_record();
  bool new_life = false;
  auto grown = table_.merge(remote, &new_life);
  for (replica_id id : grown) progressed(id, now);
  const bool changed = !grown.empty();
  if (new_life || (changed && options_.source != liveness_source::probes)) ++generation_;
  if (grown_out != nullptr) *grown_out = std::move(grown);
  if (self_record() != mine && !mine.left) {
    // Someone holds a record for us that beats ours: move past it.
    member_record refuted = mine;
    refuted.incarnation = self_record().incarnation + 1;
    refuted.heartbeat = 0;
    table_.offer(self_, refuted);
  }
  return changed;
}

member_state membership::state_of(replica_id id, steady_time now) const {
  const member_record* record = table_.find(id);
  if (record == nullptr) return member_state::dead;
  if (record->left) return member_state::left;
  if (id == self_) return member_state::alive;
  if (options_.source == liveness_source::probes) {
    if (awaiting_record_.contains(id)) return member_state::dead;
    const auto verdict = verdicts_.find(id);
    return verdict == verdicts_.end() ? member_state::alive : verdict->second;
  }
  const auto seen = last_progress_.find(id);
  const auto silent = seen == last_progress_.end() ? options_.dead_after : now - seen->second;
  if (silent >= options_.dead_after) return member_state::dead;
  if (silent >= options_.suspect_after) return member_state::suspect;
  return member_state::alive;
}

std::optional<steady_time> membership::last_progress(replica_id id) const {
  const auto seen = last_progress_.find(id);
  if (seen == last_progress_.end()) return std::nullopt;
  return seen->second;
}

std::vector<replica_id> membership::reachable_peers(steady_time now) const {
  // One pass over the table and the progress map together (both sorted by
  // id): this runs for every message sent, so no search per member.
  std::vector<replica_id> peers;
  peers.reserve(table_.size());
  if (options_.source == liveness_source::probes) {
    auto verdict = verdicts_.begin();
    for (const auto& [id, record] : table_.records()) {
      while (verdict != verdicts_.end() && verdict->first < id) ++verdict;
      if (id == self_ || record.left) continue;
      const bool judged = verdict != verdicts_.end() && verdict->first == id;
      if (awaiting_record_.contains(id)) continue;
      if (!judged || verdict->second == member_state::alive || verdict->second == member_state::suspect)
        peers.push_back(id);
    }
    return peers;
  }
  auto seen = last_progress_.begin();
  for (const auto& [id, record] : table_.records()) {
    while (seen != last_progress_.end() && seen->first < id) ++seen;
    if (id == self_ || record.left) continue;
    if (seen == last_progress_.end() || seen->first != id) continue;  // never progressed
    if (now - seen->second < options_.dead_after) peers.push_back(id);
  }
  return peers;
}

}  // namespace lattice::transport
