// tests/support/simulator.hpp: runs N protocol cores in one thread on
// virtual time over a simulated network that drops, duplicates, delays
// (hence reorders) and partitions messages, and crashes and restarts nodes.
// Everything random comes from one seed, and the event queue is ordered by
// (time, sequence), so a seed replays a run exactly.
//
// Node i has id i + 1 and address "sim:i". Every message passes through the
// real codec: the simulator hands each core the payload bytes another core
// produced, as the Asio driver does (minus the frame, tested on its own).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "lattice/transport/protocol.hpp"

namespace lattice::testing {

// Node: a protocol core with state() and members(), such as
// transport::protocol<S> or registry::registry_core.
template <class Node>
class basic_simulator {
 public:
  using protocol_type = Node;
  using duration = std::chrono::milliseconds;

  struct options {
    std::size_t nodes = 5;
    unsigned drop_percent = 0;
    unsigned duplicate_percent = 0;
    duration min_delay{1};
    duration max_delay{10};
    duration tick{5};
    std::uint64_t seed = 1;
    transport::protocol_options base;  // self, address, incarnation, seeds filled in per node
    /// Builds a node (default: Node(options, now)).
    std::function<std::unique_ptr<Node>(transport::protocol_options, transport::steady_time)> make;
  };

  explicit basic_simulator(options o) : options_(std::move(o)), rng_(options_.seed) {
    // Every node joins through node 0, as a fleet joins through one seed.
    options_.base.seeds = {address(0)};
    nodes_.resize(options_.nodes);
    for (std::size_t i = 0; i < options_.nodes; ++i) start(i, 1);
  }

  static std::string address(std::size_t i) { return "sim:" + std::to_string(i); }
  transport::steady_time now() const noexcept { return now_; }
  std::size_t size() const noexcept { return nodes_.size(); }
  bool alive(std::size_t i) const { return nodes_[i] != nullptr; }
  protocol_type& node(std::size_t i) { return *nodes_[i]; }

  /// Advances virtual time by `d`, delivering due messages and ticking nodes.
  void run_for(duration d) {
    const auto end = now_ + d;
    while (now_ < end) {
      deliver_due();
      for (std::size_t i = 0; i < nodes_.size(); ++i)
        if (nodes_[i]) {
          nodes_[i]->on_tick(now_);
          collect(i);
        }
      now_ += options_.tick;
    }
  }
  /// Runs until `done()` holds or `limit` passes; returns the time it took.
  template <class Pred>
  std::optional<duration> run_until(Pred done, duration limit) {
    const auto start_time = now_;
    while (now_ - start_time < limit) {
      if (done()) return std::chrono::duration_cast<duration>(now_ - start_time);
      run_for(options_.tick);
    }
    return std::nullopt;
  }

  /// Messages between the two sides are dropped until heal().
  void partition(std::set<std::size_t> side) { side_ = std::move(side); }
  void heal() {
    side_.clear();
    one_way_.clear();
  }
  /// Messages from `from` to `to` are dropped until heal(); the other way
  /// they flow (a firewall rule on one side, a half-broken link).
  void cut_one_way(std::size_t from, std::size_t to) { one_way_.insert({from, to}); }

  void kill(std::size_t i) { nodes_[i].reset(); }
  /// Starts node i again with an empty state and a higher incarnation.
  void restart(std::size_t i) { start(i, ++incarnations_[i]); }
  /// Graceful stop: the leave goes out, then the node is gone.
  void stop_gracefully(std::size_t i) {
    nodes_[i]->leave(now_);
    collect(i);
    kill(i);
  }

  std::uint64_t rng() { return rng_(); }

  // ---- questions tests and benchmarks ask of the whole cluster ----------

  /// All live nodes hold the same state digest.
  bool converged() {
    std::optional<std::uint64_t> digest;
    for (std::size_t i = 0; i < size(); ++i) {
      if (!alive(i)) continue;
      const auto d = node(i).state().digest();
      if (digest && *digest != d) return false;
      digest = d;
    }
    return true;
  }
  /// Every live node other than `who` judges node `who` to be in `state`.
  bool all_see(std::size_t who, transport::member_state state) {
    for (std::size_t i = 0; i < size(); ++i)
      if (i != who && alive(i) && node(i).members().state_of(who + 1, now_) != state) return false;
    return true;
  }
  /// Every live node judges every other live node alive.
  bool everyone_alive() {
    for (std::size_t i = 0; i < size(); ++i)
      if (alive(i) && !all_see(i, transport::member_state::alive)) return false;
    return true;
  }
  /// Live pairs (i judging j) in each member_state, and pairs where i does
  /// not know j at all: what keeps a cluster from counting as formed.
  struct pair_counts {
    std::size_t alive = 0, suspect = 0, dead = 0, left = 0, unknown = 0;
  };
  pair_counts count_pairs() {
    pair_counts c;
    for (std::size_t i = 0; i < size(); ++i)
      for (std::size_t j = 0; j < size(); ++j) {
        if (i == j || !alive(i) || !alive(j)) continue;
        if (!node(i).members().table().find(j + 1)) {
          ++c.unknown;
          continue;
        }
        switch (node(i).members().state_of(j + 1, now_)) {
          case transport::member_state::alive: ++c.alive; break;
          case transport::member_state::suspect: ++c.suspect; break;
          case transport::member_state::dead: ++c.dead; break;
          case transport::member_state::left: ++c.left; break;
        }
      }
    return c;
  }
  /// Every live node lists every other live node: judges it alive or
  /// suspect (a suspect's instances are still served), not dead, left or
  /// unknown.
  bool everyone_listed() {
    const auto c = count_pairs();
    return c.dead == 0 && c.left == 0 && c.unknown == 0;
  }
  /// Some live node judges another live node dead: a false positive.
  bool false_death() {
    for (std::size_t i = 0; i < size(); ++i)
      for (std::size_t j = 0; j < size(); ++j)
        if (i != j && alive(i) && alive(j) &&
            node(i).members().state_of(j + 1, now_) == transport::member_state::dead)
          return true;
    return false;
  }
  /// Kills `victim` and returns how long until every live node judges it
  /// dead, or nullopt if that takes longer than `limit`.
  std::optional<duration> time_to_detect_kill(std::size_t victim, duration limit) {
    kill(victim);
    return run_until([&] { return all_see(victim, transport::member_state::dead); }, limit);
  }

 private:
  struct in_flight {
    std::size_t from;
    std::size_t to;
    transport::message_type type;
    std::vector<std::byte> payload;
  };

  void start(std::size_t i, std::uint64_t incarnation) {
    auto o = options_.base;
    o.self = i + 1;
    o.address = address(i);
    o.incarnation = incarnation;
    o.random_seed = options_.seed * 1000 + i * 7 + incarnation;
    incarnations_[i] = incarnation;
    if (options_.make)
      nodes_[i] = options_.make(o, now_);
    else if constexpr (std::is_constructible_v<Node, transport::protocol_options, transport::steady_time>)
      nodes_[i] = std::make_unique<Node>(o, now_);
  }

  bool cut(std::size_t a, std::size_t b) const {
    if (one_way_.count({a, b}) != 0) return true;
    return !side_.empty() && (side_.count(a) != 0) != (side_.count(b) != 0);
  }

  void collect(std::size_t from) {
    for (auto& m : nodes_[from]->take_outgoing()) {
      const std::size_t to = std::stoul(m.to.substr(4));
      const unsigned copies = 1 + (rng_() % 100 < options_.duplicate_percent ? 1 : 0);
      for (unsigned c = 0; c < copies; ++c) {
        if (rng_() % 100 < options_.drop_percent) continue;
        const auto span = (options_.max_delay - options_.min_delay).count() + 1;
        const auto delay = options_.min_delay + duration(static_cast<long>(rng_() % static_cast<std::uint64_t>(span)));
        queue_.emplace(std::pair{now_ + delay, sequence_++}, in_flight{from, to, m.type, m.payload});
      }
    }
  }

  void deliver_due() {
    while (!queue_.empty() && queue_.begin()->first.first <= now_) {
      auto node = queue_.extract(queue_.begin());
      const in_flight& m = node.mapped();
      // A cut is checked at delivery, so messages in flight when the
      // partition starts are lost too.
      if (m.to < nodes_.size() && nodes_[m.to] && !cut(m.from, m.to)) {
        nodes_[m.to]->on_message(m.type, m.payload, now_);
        collect(m.to);
      }
    }
  }

  options options_;
  std::mt19937_64 rng_;
  std::vector<std::unique_ptr<protocol_type>> nodes_;
  std::map<std::size_t, std::uint64_t> incarnations_;
  std::map<std::pair<transport::steady_time, std::uint64_t>, in_flight> queue_;
  std::uint64_t sequence_ = 0;
  transport::steady_time now_{};
  std::set<std::size_t> side_;
  std::set<std::pair<std::size_t, std::size_t>> one_way_;
};

template <class S>
using simulator = basic_simulator<transport::protocol<S>>;

}  // namespace lattice::testing
