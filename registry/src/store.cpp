#include "store.hpp"

#include <sqlite3.h>

#include <filesystem>

#include <spdlog/spdlog.h>

#include "lattice/crdt/codec.hpp"

namespace lattice::registry {
namespace {

constexpr const char* kSchema = R"sql(
  PRAGMA journal_mode = WAL;
  CREATE TABLE IF NOT EXISTS meta     (key BLOB PRIMARY KEY, value BLOB NOT NULL);
  CREATE TABLE IF NOT EXISTS instances(key BLOB PRIMARY KEY, entry BLOB NOT NULL);
  CREATE TABLE IF NOT EXISTS config   (key BLOB PRIMARY KEY, entry BLOB NOT NULL);
  CREATE TABLE IF NOT EXISTS own      (key BLOB PRIMARY KEY, registration BLOB NOT NULL);
  CREATE TABLE IF NOT EXISTS config_erasures(key BLOB PRIMARY KEY, entry BLOB NOT NULL);
)sql";

// A statement prepared for one use (loading).
class statement {
 public:
  statement(sqlite3* db, const char* sql) { ok_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) == SQLITE_OK; }
  ~statement() { sqlite3_finalize(stmt_); }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  bool ok() const noexcept { return ok_; }
  void bind(int index, std::string_view bytes) {
    sqlite3_bind_blob(stmt_, index, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  }
  // SQLITE_ROW, SQLITE_DONE or an error.
  int step() { return sqlite3_step(stmt_); }
  std::string_view column(int index) {
    const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, index));
    return {data ? data : "", static_cast<std::size_t>(sqlite3_column_bytes(stmt_, index))};
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  bool ok_ = false;
};

template <class T>
std::string to_blob(const T& value) {
  const auto bytes = crdt::encode(value);
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

template <class T>
result<T> from_blob(std::string_view blob) {
  return crdt::decode<T>(std::span(reinterpret_cast<const std::byte*>(blob.data()), blob.size()));
}

struct identity {
  replica_id id = 0;
  std::uint64_t incarnation = 0;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(id, incarnation);
  }
};

// The stored maps' horizons (the load map is not stored).
struct stored_horizons {
  hlc_timestamp instances = hlc_timestamp::zero();
  hlc_timestamp config = hlc_timestamp::zero();
  hlc_timestamp config_erasures = hlc_timestamp::zero();
  template <class Archive>
  void serialize(Archive& archive) {
    archive(instances, config, config_erasures);
  }
};

struct stored_registration {
  std::string path;
  instance_kind kind = instance_kind::provider;
  instance record;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(path, kind, record);
  }
};

const char* table_name(std::size_t t) {
  static const char* names[] = {"meta", "instances", "config", "own", "config_erasures"};
  return names[t];
}

}  // namespace

result<std::unique_ptr<store>> store::open(const std::string& dir, bool durable_commits) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    spdlog::error("data directory {}: {}", dir, ec.message());
    return ec;
  }
  std::unique_ptr<store> s(new store());
  const auto file = (std::filesystem::path(dir) / "lattice.db").string();
  if (sqlite3_open_v2(file.c_str(), &s->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    spdlog::error("open {}: {}", file, s->db_ ? sqlite3_errmsg(s->db_) : "out of memory");
    return std::make_error_code(std::errc::io_error);
  }
  sqlite3_busy_timeout(s->db_, 2000);
  if (!s->exec(kSchema) ||
      !s->exec(durable_commits ? "PRAGMA synchronous = FULL;" : "PRAGMA synchronous = NORMAL;"))
    return std::make_error_code(std::errc::io_error);
  // Prepared once: a commit after a large merge writes thousands of rows.
  for (std::size_t t = 0; t < kTables; ++t) {
    const auto upsert = fmt::format("INSERT OR REPLACE INTO {} VALUES (?1, ?2)", table_name(t));
    const auto remove = fmt::format("DELETE FROM {} WHERE key = ?1", table_name(t));
    if (sqlite3_prepare_v2(s->db_, upsert.c_str(), -1, &s->upsert_[t], nullptr) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db_, remove.c_str(), -1, &s->remove_[t], nullptr) != SQLITE_OK) {
      spdlog::error("sqlite: {}", sqlite3_errmsg(s->db_));
      return std::make_error_code(std::errc::io_error);
    }
  }
  return s;
}

store::~store() {
  for (auto* s : upsert_) sqlite3_finalize(s);
  for (auto* s : remove_) sqlite3_finalize(s);
  sqlite3_close(db_);
}

bool store::exec(const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) == SQLITE_OK) return true;
  spdlog::error("sqlite: {}", message ? message : "unknown error");
  sqlite3_free(message);
  return false;
}

// Reads every row of `sql` (key, blob) into `map`, as the entries they hold.
template <class Map>
std::size_t load_entries(sqlite3* db, const char* sql, Map& map) {
  std::size_t skipped = 0;
  statement q(db, sql);
  while (q.ok() && q.step() == SQLITE_ROW) {
    const std::string key(q.column(0));
    auto decoded = from_blob<typename Map::entry>(q.column(1));
    if (!decoded) {
      ++skipped;
      continue;
    }
    const auto& entry = decoded.value();
    map.merge(entry.value ? Map{}.put(key, *entry.value, entry.stamp) : Map{}.erase(key, entry.stamp));
  }
  return skipped;
}

store::contents store::load() {
  contents out;
  {
    statement q(db_, "SELECT value FROM meta WHERE key = ?1");
    if (q.ok()) q.bind(1, "identity");
    if (q.ok() && q.step() == SQLITE_ROW)
      if (auto id = from_blob<identity>(q.column(0))) {
        out.id = id.value().id;
        out.incarnation = id.value().incarnation;
      }
  }
  const auto read_time = [&](const char* key, std::optional<std::uint64_t>& to) {
    statement q(db_, "SELECT value FROM meta WHERE key = ?1");
    if (q.ok()) q.bind(1, key);
    if (q.ok() && q.step() == SQLITE_ROW)
      if (auto value = from_blob<std::uint64_t>(q.column(0))) to = value.value();
  };
  read_time("contact", out.last_contact_us);
  read_time("floor", out.floor_bound_us);
  {
    statement q(db_, "SELECT value FROM meta WHERE key = ?1");
    if (q.ok()) q.bind(1, "resyncing");
    if (q.ok() && q.step() == SQLITE_ROW)
      if (auto resyncing = from_blob<bool>(q.column(0))) out.resyncing = resyncing.value();
  }
  std::size_t skipped = load_entries(db_, "SELECT key, entry FROM instances", out.document.instances);
  skipped += load_entries(db_, "SELECT key, entry FROM config", out.document.config);
  skipped += load_entries(db_, "SELECT key, entry FROM config_erasures", out.document.config_erasures);
  {
    statement q(db_, "SELECT value FROM meta WHERE key = ?1");
    if (q.ok()) q.bind(1, "horizons");
    if (q.ok() && q.step() == SQLITE_ROW) {
      if (auto h = from_blob<stored_horizons>(q.column(0))) {
        // Raising a horizon collects any tombstone row below it: one whose
        // key was erased at once on arrival (lww_map::absorb) keeps its row.
        out.document.instances.compact(h.value().instances);
        out.document.config.compact(h.value().config);
        out.document.config_erasures.compact(h.value().config_erasures);
      } else {
        ++skipped;
      }
    }
  }
  {
    statement q(db_, "SELECT registration FROM own");
    while (q.ok() && q.step() == SQLITE_ROW) {
      auto r = from_blob<stored_registration>(q.column(0));
      if (!r) {
        ++skipped;
        continue;
      }
      auto& reg = r.value();
      out.own.push_back(own_registration{std::move(reg.path), reg.kind, std::move(reg.record)});
    }
  }
  if (skipped != 0) spdlog::warn("data directory: skipped {} rows that failed to decode", skipped);
  return out;
}

void store::put_contact(std::uint64_t wall_us) {
  staged_.push_back({staged_row::table::meta, "contact", to_blob(wall_us)});
}

void store::put_floor_bound(std::uint64_t wall_us) {
  staged_.push_back({staged_row::table::meta, "floor", to_blob(wall_us)});
}

void store::put_resyncing(bool resyncing) {
  staged_.push_back({staged_row::table::meta, "resyncing", to_blob(resyncing)});
}

void store::put_horizons(const registry_document& doc) {
  staged_.push_back({staged_row::table::meta, "horizons",
                     to_blob(stored_horizons{doc.instances.horizon(), doc.config.horizon(),
                                             doc.config_erasures.horizon()})});
}

void store::put_identity(replica_id id, std::uint64_t incarnation) {
  staged_.push_back({staged_row::table::meta, "identity", to_blob(identity{id, incarnation})});
}

void store::put_instance(const std::string& key, const registry_document::instance_map::entry* entry) {
  staged_.push_back({staged_row::table::instance, key,
                     entry ? std::optional(to_blob(*entry)) : std::nullopt});
}

void store::put_config(const std::string& key, const registry_document::config_map::entry* entry) {
  staged_.push_back({staged_row::table::config, key,
                     entry ? std::optional(to_blob(*entry)) : std::nullopt});
}

void store::put_config_erasure(const std::string& prefix, const registry_document::config_map::entry* entry) {
  staged_.push_back({staged_row::table::config_erasure, prefix,
                     entry ? std::optional(to_blob(*entry)) : std::nullopt});
}

void store::put_own(const std::string& key, const own_registration& registration) {
  staged_.push_back({staged_row::table::own, key,
                     to_blob(stored_registration{registration.path, registration.kind, registration.record})});
}

void store::erase_own(const std::string& key) { staged_.push_back({staged_row::table::own, key, std::nullopt}); }

result<void> store::commit() {
  if (staged_.empty()) return success();
  auto rows = std::exchange(staged_, {});
  // On failure the rows go back in front of anything staged since, so the
  // next commit writes them (in order: a later row for a key supersedes an
  // earlier one). Dropping them would lose an acknowledged removal's row
  // for good: the retry of a deregistration finds nothing left to stage.
  const auto keep_for_retry = [&] {
    rows.insert(rows.end(), std::make_move_iterator(staged_.begin()), std::make_move_iterator(staged_.end()));
    staged_ = std::move(rows);
    return std::make_error_code(std::errc::io_error);
  };
  if (!exec("BEGIN IMMEDIATE")) return keep_for_retry();
  for (const auto& row : rows) {
    sqlite3_stmt* s = row.value ? upsert_[static_cast<std::size_t>(row.where)] : remove_[static_cast<std::size_t>(row.where)];
    // SQLITE_STATIC: `rows` outlives the step, and the bindings are
    // cleared right after it.
    sqlite3_bind_blob(s, 1, row.key.data(), static_cast<int>(row.key.size()), SQLITE_STATIC);
    if (row.value) sqlite3_bind_blob(s, 2, row.value->data(), static_cast<int>(row.value->size()), SQLITE_STATIC);
    const int stepped = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (stepped != SQLITE_DONE) {
      spdlog::error("sqlite: {}", sqlite3_errmsg(db_));
      exec("ROLLBACK");
      return keep_for_retry();
    }
  }
  if (!exec("COMMIT")) {
    exec("ROLLBACK");
    return keep_for_retry();
  }
  return success();
}

}  // namespace lattice::registry
