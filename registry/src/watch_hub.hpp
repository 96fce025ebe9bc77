// registry/src/watch_hub.hpp: persistent, coalescing watches.
//
// The replica thread hands each publication to notify(); the hub queues,
// per watch and per path (or config key), only the latest view, and a
// dispatcher thread runs the callbacks outside the lock. With a dispatcher,
// notify() only queues the publication: finding the watches it concerns
// is the dispatcher's work too, so a write's acknowledgement does not wait
// for a walk over a million watches. So a burst of
// changes reaches a slow watcher as its latest state, never as a stale one
// after the last change, and a slow callback never blocks replication.
//
// Thread safety: every member is safe from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include "lattice/registry/path.hpp"
#include "lattice/registry/registry_core.hpp"
#include "lattice/registry/replica.hpp"

namespace lattice::registry {

class watch_hub {
 public:
  /// `threaded`: callbacks run on a dispatcher thread; otherwise on the
  /// thread that calls notify().
  explicit watch_hub(bool threaded);
  ~watch_hub();

  /// `current` is read under the hub's lock, so no publication falls
  /// between the initial views and the first notification.
  using snapshot_source = std::function<std::shared_ptr<const snapshot>()>;
  std::uint64_t add_service_watch(service_path prefix, std::function<void(const service_view&)> callback,
                                  const snapshot_source& current);
  std::uint64_t add_config_watch(service_path prefix, std::function<void(const config_change&)> callback,
                                 const snapshot_source& current);
  /// Removes a watch; on return its callback is not running (unless called
  /// from that callback).
  void remove(std::uint64_t id);
  /// Queues what a publication changed for the watches it concerns.
  void notify(const publication& p);
  /// Stops the dispatcher after delivering what is queued.
  void shutdown();
  /// Watches registered now.
  std::size_t size() const;
  /// Callbacks that threw; each was logged and the watch kept.
  std::uint64_t callback_errors() const noexcept { return callback_errors_.load(std::memory_order_relaxed); }

 private:
  struct pending_work {
    std::map<std::string, std::shared_ptr<const service_view>> services;
    std::map<std::string, std::optional<std::string>> config;
  };
  struct watch {
    service_path prefix = service_path::root();
    // One of the two: a service watch or a config watch.
    std::variant<std::function<void(const service_view&)>, std::function<void(const config_change&)>> callback;
    // Allocated while something is pending: a million idle watches should
    // not each carry two empty maps.
    std::unique_ptr<pending_work> pending;
    bool ready = false;  // in ready_
    std::uint32_t slot = 0;  // its place in its prefix group
    // The snapshot its initial views came from: earlier publications still
    // queued must not reach it (they would deliver a stale view after a
    // newer one).
    std::uint64_t from_sequence = 0;
  };

  std::uint64_t add(watch w, const snapshot_source& source);
  void queue_service(std::uint64_t id, watch& w, const std::shared_ptr<const service_view>& view);
  // Puts a watch that has something pending in line for delivery.
  void mark_ready(std::uint64_t id, watch& w);
  // Queues what `p` changed for the watches it concerns; true if any.
  bool match(const publication& p);
  void run();
  void deliver_all(std::unique_lock<std::mutex>& lock);
  // Runs one callback; an exception is logged and counted, never escapes
  // (it would end the dispatcher thread, or the replica thread).
  template <class F>
  void contain(std::uint64_t id, F&& f);

  std::atomic<std::uint64_t> callback_errors_{0};

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::map<std::uint64_t, watch> watches_;
  // Watches by prefix, service and config apart: a change of a path visits
  // the groups of the path's segment prefixes ("/", "/a", "/a/b" for
  // "/a/b"), so only the watches it concerns, not every watch. Entries
  // point into watches_ (map nodes do not move); removal swaps the last
  // entry into the removed one's slot.
  using entry = std::map<std::uint64_t, watch>::value_type;
  // Looked up by string_view (transparent hash): matching a change builds
  // no string per prefix it visits.
  struct prefix_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  using prefix_groups = std::unordered_map<std::string, std::vector<entry*>, prefix_hash, std::equal_to<>>;
  prefix_groups service_groups_;
  prefix_groups config_groups_;
  prefix_groups& groups_of(const watch& w) { return w.callback.index() == 0 ? service_groups_ : config_groups_; }
  // Calls f(entry&) for every watch in `groups` whose prefix covers `path`.
  template <class F>
  void for_each_covering(prefix_groups& groups, std::string_view path, F&& f);
  // Watches with something pending, in the order they got it: delivery
  // visits only these, not every watch (a million watches, one of which
  // changed, cost a walk of all of them per delivery round).
  std::deque<std::uint64_t> ready_;
  // Publications not yet matched against the watches (dispatcher only).
  std::deque<publication> publications_;
  std::uint64_t next_id_ = 1;
  std::uint64_t running_ = 0;  // id of the watch whose callback runs now
  std::thread::id runner_;     // thread running it
  bool threaded_;
  bool stopping_ = false;
  std::thread dispatcher_;
};

}  // namespace lattice::registry
