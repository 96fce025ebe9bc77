#include "lattice/transport/swim.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <utility>

#include "lattice/crdt/codec.hpp"
#include "flat_growth.hpp"
#include "lattice/transport/detail/interpolation_find.hpp"

namespace lattice::transport::swim {
namespace {

// (incarnation, state) order: the join every update is merged by.
bool greater(std::uint64_t inc, member_state state, std::uint64_t held_inc, member_state held_state) {
  if (inc != held_inc) return inc > held_inc;
  return static_cast<int>(state) > static_cast<int>(held_state);
}

bool gone(member_state s) { return s == member_state::dead || s == member_state::left; }

// splitmix64's finaliser: a cheap, well-mixed 64-bit permutation.
std::uint64_t mix(std::uint64_t z) noexcept {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

std::uint32_t bucket_of(replica_id member, std::uint32_t buckets) noexcept {
  return static_cast<std::uint32_t>(mix(member) % buckets);
}

std::uint32_t buckets_for(std::size_t entries) noexcept {
  std::uint32_t buckets = 1;
  while (buckets < max_table_buckets && std::size_t{buckets} * 16 < entries) buckets <<= 1;
  return buckets;
}

void message::check_kind() const {
  if (kind > last_message_kind) crdt::throw_malformed();
}

void message::check_table() const {
  const auto& t = table;
  bool ok = t.buckets <= max_table_buckets;
  switch (kind) {
    case message_kind::table_root:
      ok = ok && t.buckets == 0 && t.hashes.empty() && t.differ.empty();
      break;
    case message_kind::table_buckets:
      ok = ok && t.buckets > 0 && t.hashes.size() == t.buckets && t.differ.empty() && t.root == 0;
      break;
    default:  // table_diff, table_diff_reply
      ok = ok && t.buckets > 0 && t.hashes.empty() && t.root == 0 &&
           std::adjacent_find(t.differ.begin(), t.differ.end(), std::greater_equal<>()) == t.differ.end() &&
           (t.differ.empty() || t.differ.back() < t.buckets);
      break;
  }
  if (!ok) crdt::throw_malformed();
}

detector::detector(replica_id self, options opts, std::uint64_t seed, steady_time now, std::uint64_t incarnation)
    : self_(self), options_(opts), rng_(seed), incarnation_(incarnation) {
  // A mix of the seed rather than a draw from rng_, so every later draw
  // is as it was.
  next_seq_ = static_cast<std::uint32_t>(mix(seed));
  queue_.set_max(options_.max_queued_updates);
  // Replicas started together must not probe in lock-step.
  const auto period = std::chrono::duration_cast<duration>(options_.probe_interval);
  next_probe_at_ = now + duration(std::uniform_int_distribution<duration::rep>(0, period.count())(rng_));
  enqueue({self_, incarnation_, member_state::alive, 0});
  next_push_pull_at_ = next_probe_at_ + options_.push_pull_interval;
}

void detector::add_member(replica_id id, std::uint64_t incarnation, steady_time now, member_state state) {
  apply({id, incarnation, state, 0}, now, /*gossip=*/false);
}

void detector::leave() {
  left_ = true;
  enqueue({self_, incarnation_, member_state::left, 0});
}

member_state detector::state_of(replica_id id) const {
  if (id == self_) return left_ ? member_state::left : member_state::alive;
  const auto it = detail::interpolation_find(members_, id);
  return it == members_.end() ? member_state::dead : it->second.state;
}

std::uint64_t detector::incarnation_of(replica_id id) const {
  if (id == self_) return incarnation_;
  const auto it = detail::interpolation_find(members_, id);
  return it == members_.end() ? 0 : it->second.incarnation;
}

duration detector::suspicion_timeout(unsigned confirmations) const {
  // Lifeguard: min = alpha * log10(N) * T, never under alpha * T, so
  // small clusters do not judge on a single lost round trip.
  const double n = static_cast<double>(live_ + 1);
  const double min_s = options_.suspicion_alpha * std::log10(std::max(n, 10.0)) *
                       std::chrono::duration<double>(options_.probe_interval).count();
  const double max_s = options_.suspicion_beta * min_s;
  const double k = std::max(1u, options_.indirect_probes);
  const double c = std::min<double>(confirmations, k);
  const double t = std::max(min_s, max_s - (max_s - min_s) * std::log(c + 1) / std::log(k + 1));
  return std::chrono::duration_cast<duration>(std::chrono::duration<double>(t));
}

unsigned detector::retransmit_limit() const {
  return options_.retransmit_mult *
         static_cast<unsigned>(std::ceil(std::log10(static_cast<double>(live_ + 2))));
}

void detector::health(int delta) {
  const int next = std::clamp(static_cast<int>(local_health_) + delta, 0, static_cast<int>(options_.max_local_health));
  local_health_ = static_cast<unsigned>(next);
}

// ---- updates --------------------------------------------------------------

void detector::set_state(replica_id id, member& m, std::uint64_t incarnation, member_state state) {
  const bool was_live = !gone(m.state);
  m.incarnation = incarnation;
  m.state = state;
  if (was_live && gone(state)) --live_;
  if (!was_live && !gone(state)) ++live_;
  if (state != member_state::suspect && suspects_.erase(id) != 0)
    std::erase_if(calls_, [id](const auto& e) { return e.second == id; });
  if (listener_) listener_(id, state);
}

void detector::apply(const update& u, steady_time now, bool gossip, replica_id from) {
  // Id 0 is nobody, and an incarnation at the top cannot be refuted.
  if (u.member == 0 || u.incarnation == std::numeric_limits<std::uint64_t>::max()) return;
  if (u.member == self_) {
    // Anyone who says we are suspect, dead or gone, or holds a later life
    // of ours, is answered by a greater incarnation: the refutation.
    if (left_) return;
    if (u.incarnation > incarnation_ || (u.incarnation == incarnation_ && u.state != member_state::alive)) {
      refute(u.incarnation);
      if (u.by != 0 && u.by != self_) direct_.emplace_back(u.by, update{self_, incarnation_, member_state::alive, 0});
    } else if (u.state != member_state::alive && from != 0) {
      // An accusation we already refuted: whoever still holds it missed the
      // refutation, so it hears it from us.
      direct_.emplace_back(from, update{self_, incarnation_, member_state::alive, 0});
    }
    return;
  }
  auto it = detail::interpolation_find(members_, u.member);
  if (it == members_.end()) {
    if (gone(u.state)) {
      // Gossip of a stranger's death teaches nothing. A table's word (a
      // push-pull's, whose member records came with it, or a record that
      // says it left) is kept: otherwise our table and the teller's would
      // differ in that member at every push-pull.
      if (gossip) return;
      transport::detail::reserve_one_more(members_);
      members_.emplace(u.member, member{u.incarnation, u.state});
      if (listener_) listener_(u.member, u.state);
      return;
    }
    transport::detail::reserve_one_more(members_);
    it = members_.emplace(u.member, member{u.incarnation, member_state::alive}).first;
    ++live_;
    // A newcomer joins the probe round at a random place still ahead (the
    // member it displaces goes last: still visited this round). O(1), so
    // a table of 10,000 is learned in linear time.
    transport::detail::reserve_one_more(order_);
    order_.push_back(u.member);
    const auto at = std::uniform_int_distribution<std::size_t>(next_in_order_, order_.size() - 1)(rng_);
    std::swap(order_[at], order_.back());
    if (listener_) listener_(u.member, member_state::alive);
    if (u.state == member_state::alive) {
      if (gossip) enqueue(u);
      return;
    }
  }
  member& m = it->second;
  if (u.state == member_state::suspect && m.state == member_state::suspect && u.incarnation == m.incarnation) {
    // The same suspicion from another accuser: a confirmation, spread on.
    auto& s = suspects_[u.member];
    if (u.by != 0 && std::find(s.accusers.begin(), s.accusers.end(), u.by) == s.accusers.end()) {
      s.accusers.push_back(u.by);
      enqueue(u);
    }
    return;
  }
  if (!greater(u.incarnation, u.state, m.incarnation, m.state)) return;
  set_state(u.member, m, u.incarnation, u.state);
  if (u.state == member_state::suspect)  // a new suspicion (maybe of a later incarnation): all anew
    suspects_[u.member] = suspicion{now, {u.by}, std::nullopt, 0};
  enqueue(u);
}

void detector::suspect(replica_id id, std::uint64_t incarnation, steady_time now) {
  ++stats_.suspicions;
  const update u{id, incarnation, member_state::suspect, self_};
  apply(u, now);
  if (const auto s = suspects_.find(id); s != suspects_.end()) s->second.accused = true;
  direct_.emplace_back(id, u);
}

steady_time detector::calls_begin(const suspicion& s) const {
  const auto timeout = suspicion_timeout(static_cast<unsigned>(s.accusers.size() - 1));
  if (s.accused) return s.since + timeout;
  return s.since + std::chrono::duration_cast<duration>(timeout * std::max(1.0, options_.bystander_wait));
}

void detector::refute(std::uint64_t above) {
  incarnation_ = above + 1;
  ++stats_.refutations;
  health(+1);  // being suspected often means we were slow
  enqueue({self_, incarnation_, member_state::alive, 0});
}

void detector::enqueue(const update& u) {
  // A newer word about a member replaces what is queued about it, and
  // starts its retransmissions over. (Confirmations of one suspicion are
  // distinct updates: each accuser counts once at every receiver.)
  queue_.push(u, u.member, [&](const update& queued) {
    return u.state != member_state::suspect || queued.state != member_state::suspect ||
           queued.incarnation != u.incarnation || queued.by == u.by;
  });
}

std::optional<update> detector::news_for(replica_id to) const {
  // The buddy rule: a member we hold as suspect or dead hears it from us
  // first, so it can refute at once.
  const auto it = detail::interpolation_find(members_, to);
  if (it == members_.end() || it->second.state == member_state::alive || it->second.state == member_state::left)
    return std::nullopt;
  update u{to, it->second.incarnation, it->second.state, 0};
  if (u.state == member_state::suspect) {
    const auto s = suspects_.find(to);
    u.by = s != suspects_.end() && !s->second.accusers.empty() ? s->second.accusers.front() : self_;
  }
  return u;
}

message detector::make(message_kind kind, std::uint32_t seq, replica_id target, const update* first,
                       bool to_alive) {
  message m{kind, seq, target, {}};
  if (first != nullptr) m.updates.push_back(*first);
  // A member we hold suspect or dead hears what it must about itself
  // (`first`, the buddy rule) and nothing more: it is most likely gone,
  // and every update it carried would count against that update's
  // retransmissions. With 100 of 1,000 members killed at once, last calls
  // and probes to the suspects took 46 % of a death's retransmissions,
  // and one survivor in some 900 never heard of a death for minutes
  // (lattice_swim_sim --nodes 1000 --together 100 --kills 3 --trace).
  if (queue_.empty() || !to_alive) return m;
  // Least told first: a new update overtakes ones already told many times.
  if (m.updates.size() < options_.max_piggyback)
    queue_.take(m.updates, options_.max_piggyback - m.updates.size(), retransmit_limit(), first);
  return m;
}

void detector::send(replica_id to, message m, std::vector<outgoing>& out, bool stream) {
  ++stats_.messages_sent;
  stats_.updates_sent += m.updates.size();
  out.push_back({to, std::move(m), stream});
}

// ---- probing ----------------------------------------------------------------

std::optional<replica_id> detector::next_target() {
  for (int pass = 0; pass < 2; ++pass) {
    while (next_in_order_ < order_.size()) {
      const replica_id id = order_[next_in_order_++];
      const auto it = detail::interpolation_find(members_, id);
      if (it != members_.end() && !gone(it->second.state)) return id;
    }
    // A round is over: the next one visits the live members in a new order.
    order_.clear();
    for (const auto& [id, m] : members_)
      if (!gone(m.state)) order_.push_back(id);
    std::shuffle(order_.begin(), order_.end(), rng_);
    next_in_order_ = 0;
  }
  return std::nullopt;
}

std::vector<replica_id> detector::random_alive(std::size_t count, replica_id except1, replica_id except2) {
  std::vector<replica_id> picked;
  if (count == 0) return picked;
  // Many members, at least half of them live (a cluster's steady state at
  // any size): draw positions until `count` distinct alive ones, a few
  // draws in all. Each draw is rejected or not whatever member it hits, so
  // every set of `count` is as likely as by the reservoir below, which
  // draws a random number per member: with news every gossip interval,
  // three quarters of a 2,000-member simulation's time went there.
  const std::size_t n = members_.size();
  if (n >= 4 * count + 2 && 2 * live_ >= n) {
    std::uniform_int_distribution<std::size_t> position(0, n - 1);
    for (std::size_t draws = 0; picked.size() < count && draws < 8 * count + 16; ++draws) {
      const auto& [id, m] = *members_.nth(position(rng_));
      if (m.state != member_state::alive || id == except1 || id == except2) continue;
      if (std::find(picked.begin(), picked.end(), id) == picked.end()) picked.push_back(id);
    }
    if (picked.size() == count) return picked;
    picked.clear();  // mostly suspects, or fewer alive than asked: one pass
  }
  // Reservoir sampling over the alive members: one pass, no copy.
  std::size_t seen = 0;
  for (const auto& [id, m] : members_) {
    if (m.state != member_state::alive || id == except1 || id == except2) continue;
    ++seen;
    if (picked.size() < count) {
      picked.push_back(id);
    } else {
      const auto j = std::uniform_int_distribution<std::size_t>(0, seen - 1)(rng_);
      if (j < count) picked[j] = id;
    }
  }
  return picked;
}

void detector::start_probe(steady_time now, std::vector<outgoing>& out) {
  const auto scale = static_cast<int>(local_health_ + 1);
  next_probe_at_ = now + options_.probe_interval * scale;
  const auto target = next_target();
  if (!target) return;
  probe p;
  p.target = *target;
  p.seq = next_seq_++;
  p.indirect_at = now + options_.probe_timeout * scale;
  p.ends_at = next_probe_at_;
  ++stats_.probes;
  const auto news = news_for(p.target);
  send(p.target, make(message_kind::ping, p.seq, 0, news ? &*news : nullptr, !news), out);
  probe_ = p;
}

void detector::end_probe(steady_time now) {
  probe p = *probe_;
  probe_.reset();
  if (p.acked) {
    health(-1);
    return;
  }
  ++stats_.probes_failed;
  // Lifeguard: if the members we asked did not even answer with nacks,
  // the trouble is more likely ours than the target's. But one nack proves
  // our own sending and receiving work: the helpers that stayed silent are
  // then more likely down with the target (several members killed at once,
  // the far side of a partition), and blaming ourselves for them slowed
  // every judgement of the others up to 9x (five of 10 killed at once
  // were held dead everywhere in 4.8 s median; 2.2 s with this rule:
  // lattice_swim_sim --together, README).
  if (p.nacks_expected == 0) health(+1);
  else if (p.nacks == 0) health(static_cast<int>(p.nacks_expected));
  // We ran late during it (a stall, a starved thread): the answers may be
  // waiting unread behind our own deadlines. That failure is ours; judge
  // nobody.
  if (p.late) {
    health(+1);
    return;
  }
  // A suspect we only heard of: our own silence from it makes us one of
  // its accusers (a confirmation, and a judge of it).
  const auto it = detail::interpolation_find(members_, p.target);
  if (it == members_.end()) return;
  if (it->second.state == member_state::alive) {
    suspect(p.target, it->second.incarnation, now);
  } else if (it->second.state == member_state::suspect) {
    const auto s = suspects_.find(p.target);
    if (s != suspects_.end() && !s->second.accused) suspect(p.target, it->second.incarnation, now);
  }
}

std::vector<outgoing> detector::tick(steady_time now) {
  std::vector<outgoing> out;
  // Called far past our own deadline: we were not running.
  const bool late = now - expected_tick_ > std::chrono::duration_cast<duration>(options_.probe_timeout) / 2;
  if (probe_ && late) probe_->late = true;
  if (probe_ && !probe_->acked && !probe_->indirect_sent && now >= probe_->indirect_at) {
    probe_->indirect_sent = true;
    for (replica_id helper : random_alive(options_.indirect_probes, probe_->target, self_)) {
      ++stats_.indirect_probes;
      ++probe_->nacks_expected;
      send(helper, make(message_kind::ping_req, probe_->seq, probe_->target), out);
    }
    // And the target itself, over a stream: if datagrams are what fails
    // between us (UDP blocked, a lossy link), the probe still succeeds
    // instead of accusing a live member. No updates ride it: the
    // datagrams carry those.
    probe_->stream_seq = next_seq_++;
    ++stats_.stream_probes;
    send(probe_->target, message{message_kind::stream_ping, *probe_->stream_seq, 0}, out, /*stream=*/true);
  }
  if (probe_ && now >= probe_->ends_at) end_probe(now);
  for (auto it = forwarded_.begin(); it != forwarded_.end();) {
    forwarded& f = it->second;
    if (!f.nacked && now >= f.nack_at) {
      f.nacked = true;
      send(f.requester, make(message_kind::nack, f.requester_seq, f.target), out);
    }
    it = now >= f.expires_at ? forwarded_.erase(it) : std::next(it);
  }
  for (auto it = suspects_.begin(); it != suspects_.end();) {
    if (now < calls_begin(it->second)) {
      ++it;
      continue;
    }
    if (it->second.last_call && now < *it->second.last_call) {
      ++it;
      continue;
    }
    if (it->second.calls < options_.last_calls) {
      // Calls spread over a probe interval, then a probe timeout for the
      // answer, so a suspect that stalled for less than a probe interval
      // (a GC pause, a busy host) is awake for at least one of them. Each is
      // a ping with the suspicion attached: a live suspect answers with its
      // refutation, and any ack at all starts the suspicion over (it is
      // alive now, whatever gossip failed to tell us). The last one also
      // goes through k others, as an indirect probe. (Half a probe timeout
      // apart, all three fell within one 200 ms stall: at 10,000 members
      // with 100 stalls a second, whose refutations gossip is slow to
      // carry, that was four false deaths in 71 s.)
      ++it->second.calls;
      const bool final_call = it->second.calls == options_.last_calls;
      const auto scale = static_cast<int>(local_health_ + 1);
      const auto apart = std::max<duration>(options_.probe_timeout / 2,
                                            options_.probe_interval / std::max(1u, options_.last_calls - 1));
      it->second.last_call = now + (final_call ? options_.probe_timeout : apart) * scale;
      const std::uint32_t seq = next_seq_++;
      calls_[seq] = it->first;
      const auto news = news_for(it->first);
      send(it->first, make(message_kind::ping, seq, 0, news ? &*news : nullptr, /*to_alive=*/false), out);
      if (final_call)
        for (replica_id helper : random_alive(options_.indirect_probes, it->first, self_))
          send(helper, make(message_kind::ping_req, seq, it->first), out);
      ++it;
      continue;
    }
    if (late) {
      // The answer to the last call may be waiting unread behind our own
      // deadlines, as for a probe (end_probe): that failure is ours. It
      // gets a probe timeout more, now that we run. (At 10,000 members
      // with 1 % stalling each second, observers that stalled through
      // their own last calls judged live suspects dead.)
      it->second.last_call = now + options_.probe_timeout * static_cast<int>(local_health_ + 1);
      ++it;
      continue;
    }
    const replica_id id = it->first;
    ++it;  // set_state erases the suspicion
    auto& m = detail::interpolation_find(members_, id)->second;
    ++stats_.deaths;
    const update dead{id, m.incarnation, member_state::dead, 0};
    set_state(id, m, m.incarnation, member_state::dead);
    enqueue(dead);
  }
  if (!left_ && !probe_ && now >= next_probe_at_) start_probe(now, out);
  if (!left_ && now >= next_push_pull_at_) push_pull(now, out);
  if (!left_ && options_.dead_call_interval.count() > 0 && now >= next_dead_call_at_) call_the_dead(now, out);
  if (!queue_.empty() && now >= next_gossip_at_) {
    next_gossip_at_ = now + options_.gossip_interval;
    for (replica_id to : random_alive(options_.gossip_fanout, self_, self_)) {
      if (queue_.empty()) break;
      send(to, make(message_kind::news, 0, 0), out);
    }
  }
  flush_direct(out);
  expect_tick(now);
  return out;
}

message detector::whole_table(message_kind kind) const {
  message m{kind, 0, 0, {}};
  m.updates.reserve(members_.size() + 1);
  m.updates.push_back(entry(self_));
  for (const auto& [id, mem] : members_) m.updates.push_back(entry(id));
  return m;
}

update detector::entry(replica_id id) const {
  if (id == self_) return {self_, incarnation_, left_ ? member_state::left : member_state::alive, 0};
  const auto it = detail::interpolation_find(members_, id);
  if (it == members_.end()) return {};
  update u{id, it->second.incarnation, it->second.state, 0};
  if (u.state == member_state::suspect)
    if (const auto sp = suspects_.find(id); sp != suspects_.end() && !sp->second.accusers.empty())
      u.by = sp->second.accusers.front();
  return u;
}

std::uint64_t detector::entry_digest(const update& u) const {
  // The accuser is left out: two replicas that agree a member is suspect
  // need not agree who said so first.
  std::uint64_t h = mix(u.member);
  h = mix(h ^ u.incarnation);
  h = mix(h ^ static_cast<std::uint64_t>(u.state));
  return mix(h ^ (entry_hash_ ? entry_hash_(u.member) : 0));
}

std::uint64_t detector::root_digest() const {
  // A sum, so the order entries are visited in does not matter.
  std::uint64_t root = entry_digest(entry(self_));
  for (const auto& [id, mem] : members_) root += entry_digest({id, mem.incarnation, mem.state, 0});
  return root;
}

std::vector<std::uint32_t> detector::bucket_digests(std::uint32_t buckets) const {
  std::vector<std::uint64_t> sums(buckets, 0);
  sums[bucket_of(self_, buckets)] += entry_digest(entry(self_));
  for (const auto& [id, mem] : members_) sums[bucket_of(id, buckets)] += entry_digest({id, mem.incarnation, mem.state, 0});
  std::vector<std::uint32_t> low(buckets);
  std::transform(sums.begin(), sums.end(), low.begin(), [](std::uint64_t h) { return static_cast<std::uint32_t>(h); });
  return low;
}

message detector::table_part(message_kind kind, std::uint32_t buckets, std::vector<std::uint32_t> differ) const {
  std::vector<bool> wanted(buckets, false);
  for (std::uint32_t b : differ) wanted[b] = true;
  message m{kind, 0, 0, {}};
  if (wanted[bucket_of(self_, buckets)]) m.updates.push_back(entry(self_));
  for (const auto& [id, mem] : members_)
    if (wanted[bucket_of(id, buckets)]) m.updates.push_back(entry(id));
  m.table.buckets = buckets;
  m.table.differ = std::move(differ);
  return m;
}

void detector::push_pull(steady_time now, std::vector<outgoing>& out) {
  const double n = static_cast<double>(live_ + 1);
  const double scale = n > 32 ? std::ceil(std::log2(n) - std::log2(32.0)) + 1 : 1;
  const double jitter = std::uniform_real_distribution<double>(0.5, 1.5)(rng_);
  next_push_pull_at_ = now + std::chrono::duration_cast<duration>(options_.push_pull_interval * (scale * jitter));
  std::optional<replica_id> peer;
  // One time in four a dead member: across a healed partition nobody
  // else would ever send it anything.
  if (std::uniform_int_distribution<int>(0, 3)(rng_) == 0) peer = random_dead();
  if (!peer) {
    const auto alive = random_alive(1, self_, self_);
    if (!alive.empty()) peer = alive.front();
  }
  if (!peer) return;
  for (auto& o : push_pull_with(*peer)) out.push_back(std::move(o));
}

std::vector<outgoing> detector::push_pull_with(replica_id peer) {
  std::vector<outgoing> out;
  ++stats_.push_pulls;
  message m{message_kind::table_root, 0, 0};
  m.table.root = root_digest();
  send(peer, std::move(m), out);
  return out;
}

std::optional<replica_id> detector::random_dead() {
  // Reservoir sampling, one pass; nothing to do while nobody is dead.
  if (live_ == members_.size()) return std::nullopt;
  std::optional<replica_id> picked;
  std::size_t seen = 0;
  for (const auto& [id, mem] : members_)
    if (mem.state == member_state::dead && std::uniform_int_distribution<std::size_t>(0, seen++)(rng_) == 0)
      picked = id;
  return picked;
}

void detector::call_the_dead(steady_time now, std::vector<outgoing>& out) {
  next_dead_call_at_ = now + options_.dead_call_interval;
  const auto id = random_dead();
  if (!id) return;
  // Not a probe (nothing waits for the ack): the death rides along, and a
  // live member answers it with its refutation, piggy-backed on the ack or
  // told straight back (apply()).
  const auto news = news_for(*id);
  send(*id, make(message_kind::ping, next_seq_++, 0, news ? &*news : nullptr, /*to_alive=*/false), out);
}

void detector::expect_tick(steady_time now) {
  // A deadline already passed (news queued after a quiet spell: gossip is
  // due at once) means "tick me now": count from now, or the prompt tick
  // that follows reads as running late, and the probe in flight judges
  // nobody and raises our local health.
  expected_tick_ = std::max(next_deadline(), now);
}

void detector::flush_direct(std::vector<outgoing>& out) {
  for (auto& [to, u] : std::exchange(direct_, {})) send(to, make(message_kind::news, 0, 0, &u), out);
}

std::vector<outgoing> detector::on_message(replica_id from, const message& m, steady_time now) {
  std::vector<outgoing> out;
  if (from == self_ || from == 0) return out;  // not a member's message
  // A whole table is merged without spreading each of its entries again:
  // what was news here is news to the few the table's sender gossips with
  // too, and the retransmit queue would otherwise fill with N entries.
  const bool table = m.kind == message_kind::sync || m.kind == message_kind::sync_reply ||
                     m.kind == message_kind::table_diff || m.kind == message_kind::table_diff_reply;
  for (const auto& u : m.updates) apply(u, now, !table, from);
  switch (m.kind) {
    case message_kind::ping:
    case message_kind::stream_ping: {
      const auto news = news_for(from);
      send(from, make(message_kind::ack, m.seq, 0, news ? &*news : nullptr), out,
           /*stream=*/m.kind == message_kind::stream_ping);
      break;
    }
    case message_kind::ack:
      if (probe_ && probe_->seq == m.seq) {
        probe_->acked = true;
      } else if (probe_ && probe_->stream_seq == m.seq) {
        if (!probe_->acked) ++stats_.stream_acks;
        probe_->acked = true;
      } else if (const auto c = calls_.find(m.seq); c != calls_.end()) {
        // A suspect answered a last call: alive now. The suspicion starts
        // over (its refutation is on its way to us, or comes with the next
        // round of calls).
        const replica_id id = c->second;
        std::erase_if(calls_, [id](const auto& e) { return e.second == id; });
        if (auto sp = suspects_.find(id); sp != suspects_.end()) {
          sp->second.since = now;
          sp->second.last_call.reset();
          sp->second.calls = 0;
        }
      } else if (const auto f = forwarded_.find(m.seq); f != forwarded_.end()) {
        send(f->second.requester, make(message_kind::ack, f->second.requester_seq, 0), out);
        forwarded_.erase(f);
      }
      break;
    case message_kind::ping_req: {
      if (m.target == 0 || m.target == self_ || m.target == from) break;
      const std::uint32_t seq = next_seq_++;
      const auto scale = static_cast<int>(local_health_ + 1);
      forwarded_[seq] = forwarded{from, m.seq, m.target, now + options_.probe_timeout,
                                  now + options_.probe_interval * scale, false};
      const auto news = news_for(m.target);
      send(m.target, make(message_kind::ping, seq, 0, news ? &*news : nullptr, !news), out);
      break;
    }
    case message_kind::nack:
      if (probe_ && probe_->seq == m.seq) ++probe_->nacks;
      break;
    case message_kind::news:
    case message_kind::sync_reply:
      break;
    case message_kind::sync:
      send(from, whole_table(message_kind::sync_reply), out);
      break;
    case message_kind::table_root: {
      if (m.table.root == root_digest()) {
        ++stats_.push_pulls_in_sync;
        break;
      }
      message reply{message_kind::table_buckets, 0, 0, {}};
      reply.table.buckets = buckets_for(members_.size() + 1);
      reply.table.hashes = bucket_digests(reply.table.buckets);
      send(from, std::move(reply), out);
      break;
    }
    case message_kind::table_buckets: {
      const auto mine = bucket_digests(m.table.buckets);
      std::vector<std::uint32_t> differ;
      for (std::uint32_t b = 0; b < m.table.buckets; ++b)
        if (mine[b] != m.table.hashes[b]) differ.push_back(b);
      if (differ.empty()) break;  // agreed meanwhile
      send(from, table_part(message_kind::table_diff, m.table.buckets, std::move(differ)), out);
      break;
    }
    case message_kind::table_diff:
      // Our entries there, with the sender's already merged: the join.
      send(from, table_part(message_kind::table_diff_reply, m.table.buckets, m.table.differ), out);
      break;
    case message_kind::table_diff_reply:
      break;
  }
  flush_direct(out);
  expect_tick(now);
  return out;
}

steady_time detector::next_deadline() const {
  if (!direct_.empty()) return steady_time{};
  steady_time next = left_ ? steady_time::max() : next_probe_at_;
  if (probe_) {
    if (!probe_->acked && !probe_->indirect_sent) next = std::min(next, probe_->indirect_at);
    next = std::min(next, probe_->ends_at);
  }
  for (const auto& [seq, f] : forwarded_) next = std::min(next, f.nacked ? f.expires_at : f.nack_at);
  if (!queue_.empty()) next = std::min(next, next_gossip_at_);
  if (!left_) next = std::min(next, next_push_pull_at_);
  if (!left_ && options_.dead_call_interval.count() > 0 && live_ < members_.size())
    next = std::min(next, next_dead_call_at_);
  for (const auto& [id, s] : suspects_) next = std::min(next, s.last_call ? *s.last_call : calls_begin(s));
  return next;
}

}  // namespace lattice::transport::swim
