#include "lattice/transport/membership.hpp"

#include <algorithm>

#include "lattice/crdt/digest.hpp"
#include "flat_growth.hpp"

namespace lattice::transport {

using detail::reserve_one_more;

namespace {
// Up to this many members new to a table in one merge are inserted in
// place; more, and the table is rebuilt in one pass.
constexpr std::size_t few_strangers = 8;
}  // namespace

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
  auto it = records_.lower_bound(id);
  if (it == records_.end() || it->first != id) {
    reserve_one_more(records_);  // may move the entries: the place is found again
    records_.emplace_hint(records_.lower_bound(id), id, record);
    return true;
  }
  if (!(it->second < record)) return false;
  it->second = record;
  return true;
}

std::vector<replica_id> member_table::merge(const member_table& other, bool* new_life) {
  // Records of members held here grow in place; each is found by a binary
  // search from the last one's place (both maps are sorted by id), so a
  // one-record merge (a rumour's, a refresh's) costs O(log N) and a whole
  // table O(M log N), not a walk over our table per message.
  std::vector<replica_id> grown;
  bool born = false;
  std::size_t strangers = 0;
  const auto by_id = [](const map_type::value_type& entry, replica_id id) { return entry.first < id; };
  auto mine = records_.begin();
  for (const auto& [id, record] : other.records_) {
    mine = std::lower_bound(mine, records_.end(), id, by_id);
    if (mine == records_.end() || mine->first != id) {
      ++strangers;
    } else if (mine->second < record) {
      const member_record& was = mine->second;
      born = born || was.incarnation != record.incarnation || was.left != record.left || was.address != record.address;
      mine->second = record;
      grown.push_back(id);
    }
  }
  if (strangers != 0) born = true;
  if (strangers > 0 && strangers <= few_strangers) {
    // A joiner or two: inserted in place, each moving the members after it.
    for (const auto& [id, record] : other.records_)
      if (!records_.contains(id)) {
        reserve_one_more(records_);
        records_.emplace(id, record);
        grown.push_back(id);
      }
  } else if (strangers > few_strangers) {
    // A table learned whole (a seed's answer to a join, a push-pull): one
    // pass into a sequence of exactly the union's size, where inserting
    // one by one moved the rest each time, and no spare capacity, which at
    // 10,000 members in each of 10,000 simulated replicas is gigabytes.
    map_type::sequence_type merged;
    merged.reserve(records_.size() + strangers);
    auto old = records_.extract_sequence();
    auto held = old.begin();
    for (const auto& [id, record] : other.records_) {
      for (; held != old.end() && held->first < id; ++held) merged.emplace_back(std::move(*held));
      if (held != old.end() && held->first == id) continue;  // grew above, if it did; copied on the next step
      merged.emplace_back(id, record);
      grown.push_back(id);
    }
    for (; held != old.end(); ++held) merged.emplace_back(std::move(*held));
    records_.adopt_sequence(boost::container::ordered_unique_range, std::move(merged));
  }
  if (strangers != 0) std::sort(grown.begin(), grown.end());
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
  progressed(self_, now);
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
  auto& verdict = view_of(id).verdict;
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

membership::local_view& membership::view_of(replica_id id) {
  auto it = local_.lower_bound(id);
  if (it != local_.end() && it->first == id) return it->second;
  reserve_one_more(local_);  // may move the entries: the place is found again
  return local_.emplace_hint(local_.lower_bound(id), id, local_view{})->second;
}

void membership::progressed(replica_id id, steady_time now) {
  local_view& view = view_of(id);
  view.last_progress = now;
  view.progressed = true;
  if (id != self_ && (!last_peer_progress_ || *last_peer_progress_ < now)) last_peer_progress_ = now;
}

void membership::progressed_all(const std::vector<replica_id>& ids, steady_time now) {
  // `ids` ascending. Members new here are merged into local_ in one pass,
  // as member_table::merge does, where one view_of() each moved the rest.
  std::size_t unseen = 0;
  for (replica_id id : ids)
    if (!local_.contains(id)) ++unseen;
  if (unseen > few_strangers) {
    decltype(local_)::sequence_type merged;
    merged.reserve(local_.size() + unseen);
    auto old = local_.extract_sequence();
    auto held = old.begin();
    for (replica_id id : ids) {
      for (; held != old.end() && held->first < id; ++held) merged.emplace_back(std::move(*held));
      if (held != old.end() && held->first == id) continue;  // its view moves below
      merged.emplace_back(id, local_view{});
    }
    for (; held != old.end(); ++held) merged.emplace_back(std::move(*held));
    local_.adopt_sequence(boost::container::ordered_unique_range, std::move(merged));
  }
  for (replica_id id : ids) progressed(id, now);
}

void membership::heard(replica_id id, steady_time now) {
  if (options_.source != liveness_source::probes || id == self_ || table_.find(id) == nullptr) return;
  progressed(id, now);
}

bool membership::merge(const member_table& remote, steady_time now, std::vector<replica_id>* grown_out) {
  const member_record mine = self_record();
  bool new_life = false;
  auto grown = table_.merge(remote, &new_life);
  progressed_all(grown, now);
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
    const auto view = local_.find(id);
    return view == local_.end() ? member_state::alive : view->second.verdict;
  }
  const auto seen = local_.find(id);
  const bool never = seen == local_.end() || !seen->second.progressed;
  const auto silent = never ? options_.dead_after : now - seen->second.last_progress;
  if (silent >= options_.dead_after) return member_state::dead;
  if (silent >= options_.suspect_after) return member_state::suspect;
  return member_state::alive;
}

std::optional<steady_time> membership::last_progress(replica_id id) const {
  const auto seen = local_.find(id);
  if (seen == local_.end() || !seen->second.progressed) return std::nullopt;
  return seen->second.last_progress;
}

const std::vector<replica_id>& membership::reachable_peers(steady_time now) const {
  const bool by_probes = options_.source == liveness_source::probes;
  if (by_probes && reachable_generation_ == generation_) return reachable_;
  // One pass over the table and the local views together (both sorted by
  // id), no search per member.
  std::vector<replica_id>& peers = reachable_;
  peers.clear();
  auto view = local_.begin();
  for (const auto& [id, record] : table_.records()) {
    while (view != local_.end() && view->first < id) ++view;
    if (id == self_ || record.left) continue;
    const local_view* known = view != local_.end() && view->first == id ? &view->second : nullptr;
    if (options_.source == liveness_source::probes) {
      if (awaiting_record_.contains(id)) continue;
      const member_state verdict = known != nullptr ? known->verdict : member_state::alive;
      if (verdict == member_state::alive || verdict == member_state::suspect) peers.push_back(id);
    } else if (known != nullptr && known->progressed && now - known->last_progress < options_.dead_after) {
      peers.push_back(id);
    }
  }
  if (by_probes) reachable_generation_ = generation_;
  else reachable_generation_.reset();
  return peers;
}

}  // namespace lattice::transport
