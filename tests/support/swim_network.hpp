// tests/support/swim_network.hpp: N swim::detector on virtual time over a
// simulated datagram network that loses and delays messages, partitions,
// processes that are killed (silent for good) or stall (run nothing for a
// while, their incoming messages held until they resume, as a process
// descheduled or paused by the garbage collector of its host).
//
// Everything random comes from one seed and the event queue is ordered by
// (time, sequence), so a seed replays a run exactly. Node i has id i + 1.
// Used by tests/transport/swim_test.cpp and bench/swim_sim.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <random>
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
        if (on_change_) on_change_(change{now_, i, member, state});
      });
      nodes_.push_back(process{std::move(d)});
      schedule_tick(i);
    }
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
  std::uint64_t messages_lost() const { return lost_; }

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

  /// Runs events up to `until`; returns false if `stop` said so first.
  template <class Stop>
  bool run_until(steady_time until, Stop&& stop) {
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

  void deliver(std::size_t from, transport::swim::outgoing o) {
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
                                     std::uniform_int_distribution<unsigned>(0, 999)(rng_) < options_.loss_per_mille));
    if (lost) {
      ++lost_;
      return;
    }
    const auto delay = std::uniform_int_distribution<std::int64_t>(options_.min_delay.count(),
                                                                    options_.max_delay.count())(rng_);
    events_.push(event{now_ + std::chrono::microseconds(delay), next_seq_++, to, id_of(from),
                       std::make_shared<const transport::swim::message>(std::move(o.body))});
  }

  options options_;
  std::mt19937_64 rng_;
  steady_time start_;
  steady_time now_;
  std::vector<process> nodes_;
  std::priority_queue<event, std::vector<event>, std::greater<event>> events_;
  std::uint64_t next_seq_ = 0;
  std::uint64_t lost_ = 0;
  std::function<void(const change&)> on_change_;
};

}  // namespace lattice::testing
