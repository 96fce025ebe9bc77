// lattice/transport/detail/told_queue.hpp: news waiting to be told, least
// told first, each told a bounded number of times (the SWIM detector's
// piggy-backed updates, swim.hpp).
//
// Entries live in one vector and are chained, by index, into one list per
// number of times told, newest first (as memberlist orders its broadcasts:
// when more news arrives than messages can carry, what is fresh goes out
// and a backlog of stale words waits, rather than fresh words waiting
// behind it), and into one list per key, so taking the next few for a
// message, or finding what a new word supersedes, costs a few index moves,
// not a sort or a scan. The detector takes them for every message
// it sends; a stable sort of the whole queue per message was three
// quarters of a 10,000-member simulation with stalls (once 100 members a
// second are suspected and refuted, their updates queue by the thousand),
// and a deque per count was 60 % slower than the sort at 2,000 members,
// where queues are short.
//
// A bound (set_max) drops the oldest of the most told when a push passes
// it: each list also keeps its tail, its oldest entry.
//
// Internal: swim::detector's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <unordered_map>
#include <vector>

#include <cereal/types/unordered_map.hpp>
#include <cereal/types/vector.hpp>

namespace lattice::transport::detail {

template <class Entry>
class told_queue {
 public:
  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }

  /// Past `max` entries (0: no bound), each push drops the oldest of the
  /// most told: the word most likely heard everywhere already.
  void set_max(std::size_t max) noexcept { max_ = max; }

  /// Queues `e`, about `key` (a member), as never told, before the others
  /// never told. Every queued entry with the same key that
  /// `supersedes(queued)` says it replaces is dropped (a newer word about
  /// the same member starts its tellings over, and stale words about it
  /// would only take room in messages). So the queue holds a few entries
  /// per key at most: its size is bounded by the members'.
  template <class Supersedes>
  void push(const Entry& e, std::uint64_t key, Supersedes&& supersedes) {
    if (const auto k = by_key_.find(key); k != by_key_.end())
      for (std::uint32_t i = k->second; i != none;) {
        const std::uint32_t next = nodes_[i].key_next;
        if (supersedes(nodes_[i].entry)) {
          unlink(i);
          release(i);  // may erase k: `next` was read first
        }
        i = next;
      }
    const std::uint32_t i = allocate(e, key);
    link_front(i, 0);
    if (max_ != 0 && size_ > max_) drop_most_told();
  }

  /// Appends to `out` up to `max` entries, least told first and newest
  /// first among equals, leaving out any equal to `skip` (if given; they
  /// are neither told nor counted). Each counts one telling; one told
  /// `limit` times is dropped. A `limit` lower than before drops at once
  /// the entries told that often.
  void take(std::vector<Entry>& out, std::size_t max, unsigned limit, const Entry* skip) {
    while (lists_.size() > limit) {
      for (std::uint32_t i = lists_.back().head; i != none;) {
        const std::uint32_t next = nodes_[i].next;
        release(i);
        i = next;
      }
      lists_.pop_back();
    }
    taken_.clear();
    for (std::size_t told = 0; told < lists_.size() && taken_.size() < max; ++told)
      for (std::uint32_t i = lists_[told].head; i != none && taken_.size() < max;) {
        const std::uint32_t next = nodes_[i].next;
        if (skip == nullptr || !(nodes_[i].entry == *skip)) {
          out.push_back(nodes_[i].entry);
          unlink(i);
          taken_.push_back(i);
        }
        i = next;
      }
    // Moved on only now, so an entry is not taken twice by one call; in
    // reverse, so they keep their order at the front of their next list.
    for (auto t = taken_.rbegin(); t != taken_.rend(); ++t) {
      const unsigned told = nodes_[*t].told + 1;
      if (told < limit) link_front(*t, told);
      else release(*t);
    }
  }

  /// The whole queue, for a simulation's checkpoint (swim::detector's
  /// serialize). Entry must be serializable.
  template <class Archive>
  void serialize(Archive& archive) {
    archive(nodes_, free_, lists_, by_key_, size_, max_);
  }

 private:
  static constexpr std::uint32_t none = std::numeric_limits<std::uint32_t>::max();

  struct node {
    Entry entry;
    std::uint64_t key = 0;
    std::uint32_t prev = none;  // in the list of its count of tellings
    std::uint32_t next = none;
    std::uint32_t key_prev = none;  // in the list of its key
    std::uint32_t key_next = none;
    unsigned told = 0;

    template <class Archive>
    void serialize(Archive& archive) {
      archive(entry, key, prev, next, key_prev, key_next, told);
    }
  };
  struct list {
    std::uint32_t head = none;
    std::uint32_t tail = none;  // the oldest in it

    template <class Archive>
    void serialize(Archive& archive) {
      archive(head, tail);
    }
  };

  void drop_most_told() {
    for (auto l = lists_.rbegin(); l != lists_.rend(); ++l)
      if (l->tail != none) {
        const std::uint32_t i = l->tail;
        unlink(i);
        release(i);
        return;
      }
  }

  std::uint32_t allocate(const Entry& e, std::uint64_t key) {
    std::uint32_t i;
    if (!free_.empty()) {
      i = free_.back();
      free_.pop_back();
      nodes_[i].entry = e;
    } else {
      i = static_cast<std::uint32_t>(nodes_.size());
      nodes_.push_back(node{e});
    }
    node& n = nodes_[i];
    n.key = key;
    n.key_prev = none;
    auto [k, first] = by_key_.try_emplace(key, i);
    n.key_next = first ? none : k->second;
    if (!first) {
      nodes_[k->second].key_prev = i;
      k->second = i;
    }
    ++size_;
    return i;
  }

  // Out of its key's list and onto the free list (already out of its
  // count's list, or that whole list is being dropped).
  void release(std::uint32_t i) {
    node& n = nodes_[i];
    if (n.key_prev != none) nodes_[n.key_prev].key_next = n.key_next;
    else if (n.key_next != none) by_key_[n.key] = n.key_next;
    else by_key_.erase(n.key);
    if (n.key_next != none) nodes_[n.key_next].key_prev = n.key_prev;
    free_.push_back(i);
    --size_;
  }

  void link_front(std::uint32_t i, unsigned told) {
    if (lists_.size() <= told) lists_.resize(told + 1);
    list& l = lists_[told];
    node& n = nodes_[i];
    n.told = told;
    n.prev = none;
    n.next = l.head;
    if (l.head != none) nodes_[l.head].prev = i;
    else l.tail = i;
    l.head = i;
  }

  void unlink(std::uint32_t i) {
    node& n = nodes_[i];
    list& l = lists_[n.told];
    if (n.prev != none) nodes_[n.prev].next = n.next;
    else l.head = n.next;
    if (n.next != none) nodes_[n.next].prev = n.prev;
    else l.tail = n.prev;
  }

  std::vector<node> nodes_;            // queued entries and free slots
  std::vector<std::uint32_t> free_;    // free slots of nodes_
  std::vector<list> lists_;            // index: times told
  std::unordered_map<std::uint64_t, std::uint32_t> by_key_;  // first node of each key's list
  std::vector<std::uint32_t> taken_;   // take()'s scratch, kept to spare allocations
  std::size_t size_ = 0;
  std::size_t max_ = 0;
};

}  // namespace lattice::transport::detail
