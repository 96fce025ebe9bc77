#include "lattice/crdt/dot_context.hpp"

namespace lattice::crdt {

bool dot_context::contains(const dot& d) const noexcept {
  const auto it = vector_.find(d.replica);
  if (it != vector_.end() && d.counter <= it->second) return true;
  return cloud_.count(d) != 0;
}

std::uint64_t dot_context::max_counter(replica_id replica) const noexcept {
  const auto it = vector_.find(replica);
  std::uint64_t highest = it == vector_.end() ? 0 : it->second;
  // Cloud dots of `replica` sort last among (replica, *); take the top one.
  const auto next_replica = cloud_.lower_bound(dot{replica + 1, 0});
  if (next_replica != cloud_.begin()) {
    const auto& candidate = *std::prev(next_replica);
    if (candidate.replica == replica && candidate.counter > highest) highest = candidate.counter;
  }
  return highest;
}

bool dot_context::insert(const dot& d) {
  if (d.counter == 0 || contains(d)) return false;
  auto& top = vector_[d.replica];
  if (d.counter == top + 1) {
    top = d.counter;
    absorb(d.replica);
  } else {
    if (top == 0) vector_.erase(d.replica);
    cloud_.insert(d);
  }
  return true;
}

void dot_context::absorb(replica_id replica) {
  auto& top = vector_[replica];
  for (auto it = cloud_.find(dot{replica, top + 1}); it != cloud_.end() && it->replica == replica &&
                                                     it->counter == top + 1;) {
    ++top;
    it = cloud_.erase(it);
  }
}

bool dot_context::merge(const dot_context& other) {
  bool changed = false;
  for (const auto& [replica, theirs] : other.vector_) {
    auto& mine = vector_[replica];
    if (theirs <= mine) continue;
    changed = true;
    mine = theirs;
    // Cloud dots now covered by the vector are redundant.
    cloud_.erase(cloud_.lower_bound(dot{replica, 0}), cloud_.upper_bound(dot{replica, theirs}));
    absorb(replica);
  }
  for (const auto& d : other.cloud_) changed |= insert(d);
  return changed;
}

bool dot_context::canonical() const noexcept {
  for (const auto& [replica, top] : vector_)
    if (top == 0) return false;
  for (const auto& d : cloud_) {
    if (d.counter == 0) return false;
    const auto it = vector_.find(d.replica);
    const std::uint64_t top = it == vector_.end() ? 0 : it->second;
    if (d.counter <= top + 1) return false;
  }
  return true;
}

}  // namespace lattice::crdt
