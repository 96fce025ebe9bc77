// registry/src/watch_hub.hpp: persistent, coalescing watches.
//
// The replica thread hands each publication to notify(); the hub queues,
// per watch and per path (or config key), only the latest view, and a
// dispatcher thread runs the callbacks outside the lock. So a burst of
// changes reaches a slow watcher as its latest state, never as a stale one
// after the last change, and a slow callback never blocks replication.
//
// Thread safety: every member is safe from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

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
  struct watch {
    service_path prefix = service_path::root();
    std::function<void(const service_view&)> on_service;
    std::function<void(const config_change&)> on_config;
    std::map<std::string, std::shared_ptr<const service_view>> pending_services;
    std::map<std::string, std::optional<std::string>> pending_config;
  };

  std::uint64_t add(watch w, const snapshot_source& source);
  void queue_service(watch& w, const std::shared_ptr<const service_view>& view);
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
  std::uint64_t next_id_ = 1;
  std::uint64_t running_ = 0;  // id of the watch whose callback runs now
  std::thread::id runner_;     // thread running it
  bool threaded_;
  bool stopping_ = false;
  std::thread dispatcher_;
};

}  // namespace lattice::registry
