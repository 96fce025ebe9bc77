// apps/latticed/view_delta.hpp: what changed in a service's view since a
// watcher last saw it, for SSE streams opened with ?delta.
//
// A view event carries the whole instance list; with thousands of
// instances per path that is megabytes per change per watcher. A delta
// stream sends the full view once per path, then only the instances added,
// updated (same id, other fields) and removed since the previous event on
// that stream. Coalescing still applies: a slow watcher gets one delta
// from what it last saw to the latest view, never a stale one.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "lattice/registry/service_view.hpp"

namespace lattice::daemon {

/// What one stream last sent of one path: the records, in id order.
struct sent_list {
  std::vector<registry::record_ptr> providers;
  std::vector<registry::record_ptr> consumers;

  static sent_list of(const registry::service_view& view);
};

/// {"added": [...], "updated": [...], "removed": [ids]} from `before` to
/// `after` (both in id order, as views keep them).
nlohmann::json list_delta(const std::vector<registry::record_ptr>& before,
                          const registry::instance_list& after);

/// The delta event's data: {"path", "version", "providers": {...},
/// "consumers": {...}}.
nlohmann::json view_delta(const sent_list& before, const registry::service_view& after);

/// The `service` SSE event of a view, encoded once for every stream that
/// sends it: a change of a path fans out to all its watchers with the same
/// view, and encoding it per watcher cost 10,000 encodings per change at
/// 10,000 watchers. Keyed by (path, version), which fixes the instance
/// list; the load figures in it are those of the first encoding, so an
/// entry is reused for at most max_age. Thread-safe.
class event_cache {
 public:
  static constexpr std::chrono::milliseconds max_age{100};
  static constexpr std::size_t max_paths = 4096;
  std::string full_view(const registry::service_view& view);

 private:
  struct entry {
    std::uint64_t version = 0;
    std::chrono::steady_clock::time_point encoded;
    std::string event;
  };
  std::mutex mutex_;
  std::unordered_map<std::string, entry> by_path_;
};

}  // namespace lattice::daemon
