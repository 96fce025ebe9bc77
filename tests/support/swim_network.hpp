// tests/support/swim_network.hpp: N swim::detector on virtual time over a
// simulated datagram network that loses and delays messages, partitions,
// processes that are killed (silent for good) or stall (run nothing for a
// while, their incoming messages held until they resume, as a process
// descheduled or paused by the garbage collector of its host).
//
// Everything random comes from one seed and the event queue is ordered by
// (time, sequence), so a seed replays a run exactly. Node i has id i + 1.
// Used by tests/transport/swim_test.cpp and bench/swim_sim.cpp.
//
// Windowed mode (options::threads >= 1) runs the events of one window of
// min_delay at a time, node by node, on that many threads. No message
// sent in a window arrives in it, so what one node does in a window
// cannot change what another does there: the nodes' events of a window
// are independent. Each node draws loss and delay from a stream of its
// own, and what the window sends is queued in an order that does not
// depend on which thread ran it, so a seed replays the same run at any
// thread count. At 10,000 members the classic loop is memory-bound (each
// message a few dozen cache misses in a cold detector), and two threads
// wait on two sets of misses at once.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <thread>
#include <tuple>
#include <vector>

#include "lattice/crdt/codec.hpp"
#include "lattice/transport/frame.hpp"
#include "lattice/transport/swim.hpp"

namespace lattice::testing {

class swim_network {
 public:
  using duration = std::chrono::steady_clock::duration;
  using steady_time = transport::swim::steady_time;

  struct options {
    std::size_t nodes = 10;
    /// Each message is lost with this probability, in parts per thousand.
    unsigned loss_per_mille = 0;
    std::chrono::microseconds min_delay{1000};
    std::chrono::microseconds max_delay{10000};
    transport::swim::options swim;
    std::uint64_t seed = 1;
    /// Count the bytes of every message as framed on the wire (encodes
    /// each one: costs time at 10,000 nodes).
    bool count_bytes = true;
    /// Every datagram is lost (a firewall that drops UDP); stream messages
    /// (the TCP fallback ping and its ack) still arrive.
    bool datagrams_blocked = false;
    /// 0: the classic loop, one event at a time from one random stream.
    /// n >= 1: windowed mode on n threads (see the top of this file); the
    /// same seed gives the same run for every n >= 1, not the classic
    /// loop's. run_until's `stop` is then asked after each change of a
    /// view and after each window, not after each event.
    unsigned threads = 0;
    /// Windowed mode: a window with fewer events runs on the calling
    /// thread alone (waking the others costs more than it saves).
    std::size_t parallel_from = 64;
  };

  /// Someone's view of someone changed to `state` at `at`.
  struct change {
    steady_time at;
    std::size_t observer;  // node index
    crdt::replica_id member;
    transport::swim::member_state state;
  };

  explicit swim_network(options o) : options_(o), rng_(o.seed), start_(steady_time{} + std::chrono::hours(1)) {
    now_ = start_;
    nodes_.reserve(o.nodes);
    for (std::size_t i = 0; i < o.nodes; ++i) {
      auto d = std::make_unique<transport::swim::detector>(id_of(i), o.swim, rng_(), now_);
      // Everyone starts knowing everyone (a join gives the whole table).
      for (std::size_t j = 0; j < o.nodes; ++j)
        if (j != i) d->add_member(id_of(j), 1, now_);
      d->on_change([this, i](crdt::replica_id member, transport::swim::member_state state) {
        process& n = nodes_[i];
        if (n.changes != nullptr) n.changes->push_back(change{n.now, i, member, state});
        else if (on_change_) on_change_(change{now_, i, member, state});
      });
      nodes_.emplace_back();
      nodes_.back().detector = std::move(d);
      if (windowed()) nodes_.back().rng.seed(rng_());
      schedule_tick(i);
    }
    if (windowed()) {
      chunks_.resize(options_.threads);
      for (unsigned t = 1; t < options_.threads; ++t) workers_.emplace_back([this, t] { work(t); });
    }
  }
  ~swim_network() {
    if (workers_.empty()) return;
    quit_ = true;
    start_window_.arrive_and_wait();
    for (auto& w : workers_) w.join();
  }

  swim_network(const swim_network&) = delete;  // the detectors' listeners hold `this`
  swim_network& operator=(const swim_network&) = delete;

  static crdt::replica_id id_of(std::size_t i) { return static_cast<crdt::replica_id>(i + 1); }
  steady_time now() const { return now_; }
  steady_time start() const { return start_; }
  std::size_t size() const { return nodes_.size(); }
  transport::swim::detector& node(std::size_t i) { return *nodes_[i].detector; }
  bool killed(std::size_t i) const { return nodes_[i].killed; }
  /// Bytes and messages node i has sent.
  std::uint64_t bytes_sent(std::size_t i) const { return nodes_[i].bytes_sent; }
  /// Of those, the bytes of push-pull messages (whole tables or digests).
  std::uint64_t push_pull_bytes_sent(std::size_t i) const { return nodes_[i].push_pull_bytes_sent; }
  std::uint64_t messages_lost() const { return lost_.load(); }

  /// Every change of any view, as it happens.
  void on_change(std::function<void(const change&)> f) { on_change_ = std::move(f); }

  void kill(std::size_t i) { nodes_[i].killed = true; }
  /// Messages between `side` and the rest are lost until heal().
  void partition(const std::vector<std::size_t>& side) {
    for (auto& n : nodes_) n.side = false;
    for (std::size_t i : side) nodes_[i].side = true;
  }
  void heal() {
    for (auto& n : nodes_) n.side = false;
  }
  /// Node i runs nothing until now + d.
  void stall(std::size_t i, duration d) { nodes_[i].stalled_until = std::max(nodes_[i].stalled_until, now_ + d); }

  /// Everything the network holds, detectors included (swim::detector's
  /// serialize), to resume a run: load into a network made with the same
  /// options, between run_until calls. Listeners are not saved.
  template <class Archive>
  void checkpoint(Archive& archive) {
    transport::detail::checkpoint_engine(archive, rng_);
    archive(now_, next_seq_);
    std::uint64_t lost = lost_.load();
    archive(lost);
    lost_ = lost;
    for (process& n : nodes_) {
      archive(n.killed, n.side, n.stalled_until, n.tick_at, n.bytes_sent, n.push_pull_bytes_sent);
      transport::detail::checkpoint_engine(archive, n.rng);
      archive(*n.detector);
    }
    std::vector<event> events;
    if constexpr (Archive::is_saving::value) {
      for (auto copy = events_; !copy.empty(); copy.pop()) events.push_back(copy.top());
    }
    std::uint64_t count = events.size();
    archive(count);
    if constexpr (Archive::is_loading::value) {
      events_ = {};
      events.resize(static_cast<std::size_t>(count));
    }
    for (event& e : events) {
      bool has_message = e.message != nullptr;
      archive(e.at, e.seq, e.node, e.from, has_message);
      if constexpr (Archive::is_saving::value) {
        if (has_message) archive(*e.message);
      } else {
        if (has_message) {
          transport::swim::message m;
          archive(m);
          e.message = std::make_shared<const transport::swim::message>(std::move(m));
        }
        events_.push(std::move(e));
      }
    }
  }

  /// Runs events up to `until`; returns false if `stop` said so first.
  template <class Stop>
  bool run_until(steady_time until, Stop&& stop) {
    if (windowed()) return run_windows(until, stop);
    while (!events_.empty() && events_.top().at <= until) {
      event e = events_.top();
      events_.pop();
      now_ = e.at;
      process& n = nodes_[e.node];
      if (n.killed) continue;
      if (n.stalled_until > now_) {
        if (!e.message) {
          if (e.at != n.tick_at) continue;  // superseded
          n.tick_at = n.stalled_until;
        }
        e.at = n.stalled_until;
        e.seq = next_seq_++;
        events_.push(std::move(e));
        continue;
      }
      std::vector<transport::swim::outgoing> out;
      if (e.message) {
        out = n.detector->on_message(e.from, *e.message, now_);
      } else {
        if (e.at != n.tick_at) continue;  // superseded by an earlier tick
        n.tick_at = steady_time::max();
        out = n.detector->tick(now_);
      }
      for (auto& o : out) deliver(e.node, std::move(o));
      schedule_tick(e.node);
      if (stop()) return false;
    }
    now_ = until;
    return true;
  }
  void run_until(steady_time until) {
    run_until(until, [] { return false; });
  }

 private:
  struct process {
    std::unique_ptr<transport::swim::detector> detector;
    bool killed = false;
    bool side = false;  // partition(): messages to the other side are lost
    steady_time stalled_until{};
    steady_time tick_at = steady_time::max();
    std::uint64_t bytes_sent = 0;
    std::uint64_t push_pull_bytes_sent = 0;
    // Windowed mode: its own loss and delay stream, the time of the event
    // it runs, where its changes go while a window runs.
    std::mt19937_64 rng;
    steady_time now{};
    std::vector<change>* changes = nullptr;
  };
  struct event {
    steady_time at;
    std::uint64_t seq = 0;
    std::size_t node = 0;
    crdt::replica_id from = 0;
    std::shared_ptr<const transport::swim::message> message;  // null: a tick
    bool operator>(const event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };

  void schedule_tick(std::size_t i) {
    process& n = nodes_[i];
    const auto at = std::max(now_, n.detector->next_deadline());
    if (at >= n.tick_at || at == steady_time::max()) return;
    n.tick_at = at;
    events_.push(event{at, next_seq_++, i, 0, nullptr});
  }

  // The event that delivers `o`, sent by `from` at `now` (its sequence
  // left to the caller), or nothing if it is lost; counts its bytes
  // either way. Loss and delay are drawn from `rng`.
  std::optional<event> route(std::size_t from, std::mt19937_64& rng, transport::swim::outgoing o, steady_time now) {
    process& sender = nodes_[from];
    if (options_.count_bytes) {
      const auto bytes = transport::frame_header_size + transport::frame_mac_size + crdt::encode(o.body).size();
      sender.bytes_sent += bytes;
      if (transport::swim::is_push_pull(o.body.kind)) sender.push_pull_bytes_sent += bytes;
    }
    const std::size_t to = static_cast<std::size_t>(o.to - 1);
    // A stream message (TCP) is not lost to random loss, which its
    // retransmissions repair, only to a partition.
    const bool lost = nodes_[to].side != sender.side ||
                      (!o.stream && (options_.datagrams_blocked ||
                                     std::uniform_int_distribution<unsigned>(0, 999)(rng) < options_.loss_per_mille));
    if (lost) {
      lost_.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    const auto delay = std::uniform_int_distribution<std::int64_t>(options_.min_delay.count(),
                                                                    options_.max_delay.count())(rng);
    return event{now + std::chrono::microseconds(delay), 0, to, id_of(from),
                 std::make_shared<const transport::swim::message>(std::move(o.body))};
  }

  // ---- windowed mode ----------------------------------------------------

  bool windowed() const { return options_.threads >= 1; }

  // What one thread produced in a window: events for later windows, each
  // with (node that made it, its count there) to order them by, and the
  // changes of views in the order they happened at each node.
  struct made_event {
    event e;
    std::size_t maker = 0;
    std::uint64_t nth = 0;
  };
  struct chunk {
    std::size_t begin = 0, end = 0;  // its share of batch_
    std::vector<made_event> made;
    std::vector<change> changes;
    std::vector<event> pending;  // run_chunk's, kept to spare allocations
  };

  template <class Stop>
  bool run_windows(steady_time until, Stop&& stop) {
    while (!events_.empty() && events_.top().at <= until) {
      // Nothing sent at or after the window's first event arrives before
      // its end.
      const steady_time end = std::min(events_.top().at + options_.min_delay, until + duration(1));
      batch_.clear();
      while (!events_.empty() && events_.top().at < end) {
        batch_.push_back(events_.top());
        events_.pop();
      }
      std::stable_sort(batch_.begin(), batch_.end(), [](const event& a, const event& b) { return a.node < b.node; });
      // One share per thread, split between nodes.
      const std::size_t threads = options_.threads;
      std::size_t at = 0;
      for (std::size_t t = 0; t < threads; ++t) {
        chunk& c = chunks_[t];
        c.begin = at;
        at = t + 1 == threads ? batch_.size() : std::max(at, batch_.size() * (t + 1) / threads);
        while (at > 0 && at < batch_.size() && batch_[at].node == batch_[at - 1].node) ++at;
        c.end = at;
        c.made.clear();
        c.changes.clear();
      }
      window_end_ = end;
      if (!workers_.empty() && batch_.size() >= options_.parallel_from) {
        start_window_.arrive_and_wait();
        run_chunk(chunks_[0]);
        end_window_.arrive_and_wait();
      } else {
        for (auto& c : chunks_) run_chunk(c);
      }
      // Queued in an order of their own, whichever thread made them.
      made_.clear();
      for (auto& c : chunks_)
        for (auto& m : c.made) made_.push_back(std::move(m));
      std::sort(made_.begin(), made_.end(), [](const made_event& a, const made_event& b) {
        return std::tie(a.e.at, a.maker, a.nth) < std::tie(b.e.at, b.maker, b.nth);
      });
      for (auto& m : made_) {
        m.e.seq = next_seq_++;
        events_.push(std::move(m.e));
      }
      changes_.clear();
      for (auto& c : chunks_) changes_.insert(changes_.end(), c.changes.begin(), c.changes.end());
      std::stable_sort(changes_.begin(), changes_.end(), [](const change& a, const change& b) { return a.at < b.at; });
      // Every change is told; the time is that of the first after which
      // `stop` holds.
      std::optional<steady_time> stopped_at;
      for (const change& c : changes_) {
        now_ = c.at;
        if (on_change_) on_change_(c);
        if (!stopped_at && stop()) stopped_at = c.at;
      }
      now_ = end - duration(1);
      if (stopped_at) now_ = *stopped_at;
      if (stopped_at || stop()) return false;
    }
    now_ = until;
    return true;
  }

  void work(unsigned t) {
    for (;;) {
      start_window_.arrive_and_wait();
      if (quit_) return;
      run_chunk(chunks_[t]);
      end_window_.arrive_and_wait();
    }
  }

  // Runs each node's events of the window in (time, sequence) order,
  // with what it makes for itself that falls in the window (a tick, an
  // event held by a stall) taken in turn after those of the same time.
  void run_chunk(chunk& c) {
    for (std::size_t b = c.begin; b < c.end;) {
      const std::size_t node = batch_[b].node;
      c.pending.clear();
      while (b < c.end && batch_[b].node == node) c.pending.push_back(batch_[b++]);
      std::reverse(c.pending.begin(), c.pending.end());  // latest first: taken from the back
      run_node(node, c.pending, c);
    }
  }

  void run_node(std::size_t i, std::vector<event>& pending, chunk& c) {
    process& n = nodes_[i];
    n.changes = &c.changes;
    std::uint64_t nth = 0;
    std::uint64_t local_seq = std::numeric_limits<std::uint64_t>::max() / 2;  // after the window's own
    const auto later = [&](event e) {
      if (e.at < window_end_) {
        e.seq = local_seq++;
        pending.insert(std::upper_bound(pending.begin(), pending.end(), e,
                                        [](const event& x, const event& y) { return x > y; }),
                       std::move(e));
      } else {
        c.made.push_back(made_event{std::move(e), i, nth++});
      }
    };
    const auto tick_later = [&] {
      const auto at = std::max(n.now, n.detector->next_deadline());
      if (at >= n.tick_at || at == steady_time::max()) return;
      n.tick_at = at;
      later(event{at, 0, i, 0, nullptr});
    };
    while (!pending.empty()) {
      event e = std::move(pending.back());
      pending.pop_back();
      if (n.killed) continue;
      n.now = e.at;
      if (n.stalled_until > e.at) {
        if (!e.message) {
          if (e.at != n.tick_at) continue;  // superseded
          n.tick_at = n.stalled_until;
        }
        e.at = n.stalled_until;
        later(std::move(e));
        continue;
      }
      std::vector<transport::swim::outgoing> out;
      if (e.message) {
        out = n.detector->on_message(e.from, *e.message, e.at);
      } else {
        if (e.at != n.tick_at) continue;  // superseded by an earlier tick
        n.tick_at = steady_time::max();
        out = n.detector->tick(e.at);
      }
      for (auto& o : out) {
        if (auto d = route(i, n.rng, std::move(o), e.at)) later(std::move(*d));
      }
      tick_later();
    }
    n.changes = nullptr;
  }

  void deliver(std::size_t from, transport::swim::outgoing o) {
    if (auto e = route(from, rng_, std::move(o), now_)) {
      e->seq = next_seq_++;
      events_.push(std::move(*e));
    }
  }

  options options_;
  std::mt19937_64 rng_;
  steady_time start_;
  steady_time now_;
  std::vector<process> nodes_;
  std::priority_queue<event, std::vector<event>, std::greater<event>> events_;
  std::uint64_t next_seq_ = 0;
  std::atomic<std::uint64_t> lost_{0};
  std::function<void(const change&)> on_change_;
  // Windowed mode.
  std::vector<event> batch_;  // the window's events, by node
  steady_time window_end_{};
  std::vector<chunk> chunks_;  // one per thread
  std::vector<made_event> made_;
  std::vector<change> changes_;
  std::barrier<> start_window_{static_cast<std::ptrdiff_t>(std::max(1u, options_.threads))};
  std::barrier<> end_window_{static_cast<std::ptrdiff_t>(std::max(1u, options_.threads))};
  bool quit_ = false;  // written before start_window_, read after it
  std::vector<std::thread> workers_;
};

}  // namespace lattice::testing
