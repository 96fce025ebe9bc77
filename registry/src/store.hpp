// registry/src/store.hpp: a replica's durable state, in SQLite.
//
// What is kept, in one database file (<data_dir>/lattice.db, WAL mode):
//  - meta: the replica id and its last incarnation (refutations included),
//    so a restarted replica comes back as itself with a greater
//    incarnation; and when it last reached a peer, so a store that has
//    been away longer than gc_grace is not merged as if it were current,
//    and a bound on the stamp floor it advertised, which says how much of
//    it peers cannot have collected; and the maps' horizons, which say
//    that every key missing below them was deleted here (their tombstones
//    are collected, so nothing else remembers those deletes);
//  - entries: every instance and config entry of the document as this
//    replica last merged it (tombstones included), so a replica that
//    restarts alone still serves the registry it knew;
//  - own: the registrations made through this replica, re-registered on
//    restart (a daemon's clients do not register again after a crash).
// Load counters are not kept: they are per-registration and transient.
//
// Writes are staged and committed in one transaction; commit() returns
// only once SQLite has the transaction durable (synchronous=FULL: fsync of
// the WAL) unless the store was opened with durable_commits = false.
//
// Thread safety: none; the replica thread owns the store.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lattice/registry/document.hpp"
#include "lattice/registry/error.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace lattice::registry {

struct own_registration {
  std::string path;
  instance_kind kind = instance_kind::provider;
  instance record;
};

class store {
 public:
  /// Opens or creates <dir>/lattice.db (creating dir). Errors: the
  /// filesystem's or SQLite's, as std::errc::io_error with a log line.
  static result<std::unique_ptr<store>> open(const std::string& dir, bool durable_commits);
  ~store();
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  struct contents {
    std::optional<replica_id> id;
    std::uint64_t incarnation = 0;
    registry_document document;
    std::vector<own_registration> own;
    /// Wall µs when the replica last reached a peer, if ever recorded.
    std::optional<std::uint64_t> last_contact_us;
    /// At or above every stamp floor the replica advertised, if recorded
    /// (registry_core::advertised_floor_bound).
    std::optional<std::uint64_t> floor_bound_us;
    /// A resync (the grace rule) was under way: the document may lack keys
    /// that peers still hold (registry_core::restore).
    bool resyncing = false;
    // `document` carries the stored horizons: they were committed with the
    // deletion of the rows they collected.
  };
  /// Everything stored. Rows that fail to decode are skipped and logged.
  contents load();

  // Staged until commit().
  void put_identity(replica_id id, std::uint64_t incarnation);
  void put_contact(std::uint64_t wall_us);
  void put_floor_bound(std::uint64_t wall_us);
  void put_resyncing(bool resyncing);
  /// The horizons of `doc`'s stored maps (instances, config, erasures).
  /// Stage them in the commit that deletes the rows they collected: a
  /// restart without them would take a deleted key back from any peer
  /// that still holds an old copy.
  void put_horizons(const registry_document& doc);
  void put_instance(const std::string& key, const registry_document::instance_map::entry* entry);
  void put_config(const std::string& key, const registry_document::config_map::entry* entry);
  /// A recursive delete's erasure of `prefix` (null: collected).
  void put_config_erasure(const std::string& prefix, const registry_document::config_map::entry* entry);
  void put_own(const std::string& key, const own_registration& registration);
  void erase_own(const std::string& key);
  bool has_staged() const noexcept { return !staged_.empty(); }

  /// Writes the staged changes in one transaction. On failure they stay
  /// staged, ahead of anything staged later, and the next commit retries
  /// them (the caller reports this failure to whoever waits).
  result<void> commit();

 private:
  store() = default;
  struct staged_row {
    enum class table { meta, instance, config, own, config_erasure } where;
    std::string key;
    std::optional<std::string> value;  // nullopt: delete the row
  };
  bool exec(const char* sql);

  sqlite3* db_ = nullptr;
  // Per table (staged_row::table order): write a row, delete a row.
  static constexpr std::size_t kTables = 5;  // one per staged_row::table
  std::array<sqlite3_stmt*, kTables> upsert_{};
  std::array<sqlite3_stmt*, kTables> remove_{};
  std::vector<staged_row> staged_;
};

}  // namespace lattice::registry
