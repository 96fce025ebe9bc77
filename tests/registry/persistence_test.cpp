// A replica's data directory: what it keeps across a restart (its id, a
// greater incarnation, its registrations and the document), and what it
// must not bring back (what was removed while it was away).
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include "lattice/registry/document.hpp"
#include "lattice/registry/replica.hpp"
#include "lattice/transport/frame.hpp"
#include "lattice/transport/messages.hpp"
#include "eventually.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace persistence_test {

using namespace std::chrono_literals;
using namespace lattice::registry;
using lattice::testing::eventually;

namespace {

struct temp_dir {
  std::filesystem::path path = std::filesystem::temp_directory_path() /
                               ("lattice-test-" + std::to_string(std::random_device{}()));
  ~temp_dir() { std::filesystem::remove_all(path); }
};

// Opens a second connection to the replica's database and takes SQLite's
// write lock, as another process would. The replica commits on its own
// timer (the stamp floor, heartbeats), so the lock may be held for a moment
// when we ask: wait for it rather than fail on SQLITE_BUSY.
sqlite3* hold_write_lock(const temp_dir& dir) {
  sqlite3* other = nullptr;
  if (sqlite3_open((dir.path / "lattice.db").c_str(), &other) != SQLITE_OK) return nullptr;
  sqlite3_busy_timeout(other, 10'000);
  if (sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    sqlite3_close(other);
    return nullptr;
  }
  return other;
}

void release_write_lock(sqlite3* other) {
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
}


instance provider(std::uint16_t port, bool ephemeral = true) {
  instance i;
  i.address = "127.0.0.1";
  i.port = port;
  i.ephemeral = ephemeral;
  return i;
}

std::uint64_t self_incarnation(const replica& r) {
  for (const auto& m : r.members())
    if (m.id == r.id()) return m.incarnation;
  return 0;
}

}  // namespace

TEST_CASE("a replica reopened on its data directory comes back as itself", "[registry][persistence]") {
  temp_dir dir;
  replica_options o;
  o.data_dir = dir.path.string();
  auto first = replica::open(o).value();
  const auto id = first->id();
  const auto incarnation = self_incarnation(*first);
  REQUIRE(first->register_instance("/svc/1.0.0", provider(9001)));
  REQUIRE(first->register_instance("/svc/1.0.0", provider(9002, /*ephemeral=*/false)));
  REQUIRE(first->register_instance("/svc/1.0.0", provider(9003)));
  REQUIRE(first->deregister_instance("/svc/1.0.0", "127.0.0.1:9003"));
  REQUIRE(first->set_config("/config/app/timeout", "30s"));
  REQUIRE(first->set_config("/config/app/gone", "x"));
  REQUIRE(first->erase_config("/config/app/gone"));
  first->stop();
  first.reset();

  auto second = replica::open(o).value();
  CHECK(second->id() == id);
  CHECK(self_incarnation(*second) > incarnation);
  const auto list = second->lookup("/svc/1.0.0");
  std::vector<std::string> ids;
  for (const auto& i : list.providers()) ids.emplace_back(i->id());
  CHECK(ids == std::vector<std::string>{"127.0.0.1:9001", "127.0.0.1:9002"});
  // The ephemeral one was registered again by the new life; the
  // persistent one is the same record.
  CHECK(list.providers().find("127.0.0.1:9001")->record->owner_incarnation() == self_incarnation(*second));
  CHECK(list.providers().find("127.0.0.1:9002")->record->owner_incarnation() == incarnation);
  CHECK(second->get_config("/config/app/timeout") == "30s");
  CHECK_FALSE(second->get_config("/config/app/gone"));
}

TEST_CASE("what peers removed while a replica was away stays removed", "[registry][persistence]") {
  temp_dir dir;
  replica_options peer_options;
  peer_options.id = 2;
  auto peer = replica::open(peer_options).value();

  replica_options o;
  o.id = 1;
  o.data_dir = dir.path.string();
  o.seeds = {peer->address()};
  auto r = replica::open(o).value();
  REQUIRE(r->register_instance("/db/primary", provider(5432, /*ephemeral=*/false)));
  REQUIRE(r->set_config("/config/db/url", "old"));
  REQUIRE(eventually([&] { return peer->lookup("/db/primary").providers().size() == 1; }));
  REQUIRE(eventually([&] { return peer->get_config("/config/db/url") == "old"; }));
  r->stop();
  r.reset();

  // While it is away: the persistent instance is removed, the config moves.
  REQUIRE(peer->deregister_instance("/db/primary", "127.0.0.1:5432"));
  REQUIRE(peer->set_config("/config/db/url", "new"));

  r = replica::open(o).value();
  // It comes back with its old view, then catches up from the peer.
  REQUIRE(eventually([&] { return r->get_config("/config/db/url") == "new"; }));
  // "Stays" removed: through three more anti-entropy exchanges started by
  // each side (each compares every range of both states), not just at the
  // moment of catching up.
  namespace t = lattice::transport;
  const auto syncs = [](replica& x) {
    return x.metrics().protocol.received_by_type[static_cast<std::size_t>(t::message_type::sync_request)];
  };
  const auto r_from = syncs(*r), peer_from = syncs(*peer);
  REQUIRE(eventually([&] { return syncs(*r) >= r_from + 3 && syncs(*peer) >= peer_from + 3; }, 10s));
  CHECK(r->lookup("/db/primary").providers().empty());
  CHECK(peer->lookup("/db/primary").providers().empty());
  CHECK(r->get_config("/config/db/url") == "new");
}

TEST_CASE("an unusable data directory fails open with a clear error", "[registry][persistence]") {
  temp_dir dir;
  std::filesystem::create_directories(dir.path);
  const auto file = dir.path / "not-a-directory";
  { std::ofstream(file) << "x"; }
  replica_options o;
  o.data_dir = file.string();
  auto r = replica::open(o);
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::not_a_directory);
}

TEST_CASE("a replica whose gossip port is taken fails open cleanly", "[registry][replica]") {
  auto first = replica::open({}).value();
  replica_options o;
  o.listen_port = static_cast<std::uint16_t>(std::stoi(first->address().substr(first->address().rfind(':') + 1)));
  auto second = replica::open(o);
  REQUIRE_FALSE(second);
  CHECK(second.error() == std::errc::address_in_use);
}

TEST_CASE("bulk registration is all or nothing, and durable", "[registry][persistence]") {
  temp_dir dir;
  replica_options o;
  o.data_dir = dir.path.string();
  auto r = replica::open(o).value();
  std::vector<instance> batch;
  for (std::uint16_t port = 1; port <= 100; ++port) batch.push_back(provider(port));
  auto bad = batch;
  bad[57].address.clear();  // invalid: the whole batch is refused
  auto refused = r->register_instances("/bulk/1.0.0", bad);
  REQUIRE_FALSE(refused);
  CHECK(refused.error() == errc::invalid_address);
  CHECK(r->lookup("/bulk/1.0.0").providers().empty());
  CHECK(r->register_instances("/", batch).error() == errc::root_path_not_allowed);

  auto stored = r->register_instances("/bulk/1.0.0", batch);
  REQUIRE(stored);
  CHECK(stored.value().size() == 100);
  CHECK(stored.value()[0].id == "127.0.0.1:1");
  CHECK(r->lookup("/bulk/1.0.0").providers().size() == 100);
  r->stop();
  r.reset();
  r = replica::open(o).value();
  CHECK(r->lookup("/bulk/1.0.0").providers().size() == 100);
}

TEST_CASE("a deregistration whose commit failed is written by the retry and stays gone (f_commit_fail)",
          "[registry][persistence][regression]") {
  temp_dir dir;
  replica_options o;
  o.data_dir = dir.path.string();
  {
    auto r = replica::open(o).value();
    REQUIRE(r->register_instance("/svc", provider(9001)));
    // Another process holds SQLite's write lock past the busy timeout.
    sqlite3* const other = hold_write_lock(dir);
    REQUIRE(other != nullptr);
    const auto failed = r->deregister_instance("/svc", "127.0.0.1:9001");
    CHECK(failed.error() == errc::storage_failed);
    // Applied in memory, not durable; nobody retries this one, but its row
    // must ride along with the next commit.
    CHECK(r->set_config("/cfg", "x").error() == errc::storage_failed);
    release_write_lock(other);
    REQUIRE(r->deregister_instance("/svc", "127.0.0.1:9001"));  // the client retries
    r->stop();
  }
  auto r = replica::open(o).value();
  // Open restores synchronously: the first snapshot already holds what the
  // data directory brought back.
  CHECK(r->lookup("/svc").providers().empty());
  CHECK(r->get_config("/cfg") == std::optional<std::string>("x"));
  r->stop();
}

namespace {
// Rows in `table` of the data directory's database, read by a connection
// of the test's own (WAL: it sees what the replica committed).
int rows_in(const temp_dir& dir, const std::string& table) {
  sqlite3* db = nullptr;
  int n = -1;
  if (sqlite3_open_v2((dir.path / "lattice.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* q = nullptr;
    const auto sql = "SELECT count(*) FROM " + table;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
      n = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
  }
  sqlite3_close(db);
  return n;
}

// Sends `r` one gossip frame from a made-up replica 99, as a peer would,
// over a connection of the test's own.
void gossip_to(replica& r, const lattice::transport::member_table& table,
               const std::optional<registry_document>& delta) {
  namespace t = lattice::transport;
  const auto payload =
      lattice::crdt::encode(t::envelope<t::gossip_body<registry_document>>{99, "127.0.0.1:1", {table, delta}});
  const auto frame = t::encode_frame(static_cast<std::uint8_t>(t::message_type::gossip), payload, t::frame_options{});
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  const auto colon = r.address().rfind(':');
  socket.connect({boost::asio::ip::make_address(r.address().substr(0, colon)),
                  static_cast<unsigned short>(std::stoi(r.address().substr(colon + 1)))});
  boost::asio::write(socket, boost::asio::buffer(frame.data(), frame.size()));
}

// A peer that missed a delete offers `r` its old write of `key`, with a
// new key `marker` in the same message: once the marker is here, the old
// write was judged (kept or refused), so absence can be checked.
void offer_old_write(replica& r, const std::string& key, const hlc_timestamp& stamp, const std::string& marker) {
  namespace t = lattice::transport;
  registry_document delta;
  delta.config.put(key, "old", stamp);
  delta.config.put(marker, "new", hlc_timestamp{lattice::crdt::system_wall_clock_us(), 0, 99});
  gossip_to(r, t::member_table{}, delta);
  REQUIRE(eventually([&] { return r.get_config(marker).has_value(); }));
}
}  // namespace

TEST_CASE("tombstones collected in memory are deleted from the data directory (f_rows)",
          "[registry][persistence][regression]") {
  temp_dir dir;
  replica_options o;
  o.data_dir = dir.path.string();
  // Long enough that the 22 fsynced writes and the first counts finish
  // before anything can be collected, even under a sanitizer.
  o.gc_grace = 3s;
  o.compaction_interval = 100ms;
  auto r = replica::open(o).value();
  for (std::uint16_t port = 9001; port <= 9020; ++port) {
    REQUIRE(r->register_instance("/svc", provider(port)));
    REQUIRE(r->deregister_instance("/svc", "127.0.0.1:" + std::to_string(port)));
  }
  REQUIRE(r->set_config("/cfg", "x"));
  REQUIRE(r->erase_config("/cfg"));
  REQUIRE(r->set_config("/kept", "y"));
  // Every delete is a tombstone row until it is older than gc_grace.
  CHECK(rows_in(dir, "instances") == 20);
  CHECK(rows_in(dir, "config") == 2);
  CHECK(eventually([&] { return rows_in(dir, "instances") == 0 && rows_in(dir, "config") == 1; }, 20s));
  r->stop();
  // And a restart brings back only what is live.
  auto again = replica::open(o).value();
  CHECK(again->get_config("/kept") == std::optional<std::string>("y"));
  CHECK(again->lookup("/svc").providers().empty());
  again->stop();
}

// Item 8: a refutation moves the incarnation past a record of ours that a
// peer holds. If the data directory kept only the start-up incarnation, a
// restart with the clock stepped back below the refuted one would come
// back at or below it, and peers would ignore the new life.
TEST_CASE("a refuted incarnation is kept, so a restart with the clock behind still beats it (item 8)",
          "[registry][persistence][regression]") {
  namespace t = lattice::transport;
  temp_dir dir;
  replica_options o;
  o.data_dir = dir.path.string();
  auto r = replica::open(o).value();
  const std::uint64_t started = self_incarnation(*r);
  // A peer claims a record of ours eleven days ahead (a past life whose
  // clock ran ahead): as if our clock now stood eleven days behind it.
  const std::uint64_t ahead = started + 1'000'000'000'000ULL;
  t::member_table table;
  table.offer(r->id(), t::member_record{r->address(), ahead, 5, false});
  gossip_to(*r, table, std::nullopt);
  REQUIRE(eventually([&] { return self_incarnation(*r) > ahead; }));
  const std::uint64_t refuted = self_incarnation(*r);
  // Any later commit carries the new incarnation; a write waits for its own.
  REQUIRE(r->set_config("/poke", "1"));
  r->stop();
  auto again = replica::open(o).value();
  CHECK(again->id() == r->id());
  CHECK(self_incarnation(*again) > refuted);
  again->stop();
}

// Item 1, recursive half: the prefix tombstone of a recursive delete is
// durable. Lost in a restart, an older write of a covered key offered by a
// peer that missed the delete would come back.
TEST_CASE("a recursive delete's erasure survives a restart, and its row goes when it is collected (item 1)",
          "[registry][persistence][regression]") {
  temp_dir dir;
  replica_options o;
  o.data_dir = dir.path.string();
  o.gc_grace = 1h;  // nothing is collected in the first two lives
  {
    auto r = replica::open(o).value();
    REQUIRE(r->set_config("/app/x", "1"));
    REQUIRE(r->set_config("/app/y/z", "2"));
    REQUIRE(r->set_config("/keep", "3"));
    CHECK(r->erase_config_prefix("/app/").value() == 2);
    CHECK(rows_in(dir, "config_erasures") == 1);
    CHECK(rows_in(dir, "config") == 1);  // covered entries leave no tombstones
    CHECK(r->erase_config_prefix("/app/x/").value() == 0);  // a prefix nothing is under
    CHECK(r->erase_config_prefix("app").error() == errc::invalid_path);
    CHECK(r->erase_config_prefix("/app//").error() == errc::invalid_path);
    r->stop();
  }
  {
    auto r = replica::open(o).value();
    CHECK_FALSE(r->get_config("/app/x"));
    offer_old_write(*r, "/app/x", hlc_timestamp{1'000, 0, 99}, "/z");
    CHECK_FALSE(r->get_config("/app/x"));
    CHECK(r->get_config("/keep") == std::optional<std::string>("3"));
    r->stop();
  }
  // A short gc_grace: the erasures are collected, and their rows deleted.
  o.gc_grace = 2s;
  o.compaction_interval = 100ms;
  auto r = replica::open(o).value();
  CHECK(eventually([&] { return rows_in(dir, "config_erasures") == 0; }, 20s));
  r->stop();
}

// The chaos test's undone deletes (CI, seed 207985273): a restart lost the
// horizon, so a restarted replica took back, from a peer that still held
// it, a key it had deleted and collected before the restart; while every
// replica had restarted since, nobody's pushes erased it again, and the
// deleted value was live everywhere for good. The horizon is the claim
// "I saw and deleted every key I lack that was written before it"; the
// data directory keeps it with the rows it describes.
TEST_CASE("a key deleted and collected stays deleted across a restart against a peer's old copy",
          "[registry][persistence][regression]") {
  temp_dir dir;
  replica_options o;
  o.data_dir = dir.path.string();
  o.gc_grace = 1s;
  o.compaction_interval = 50ms;
  // Stamped before the write and its delete: what a peer that missed the
  // delete still holds (its stamp is at or above this; lower changes
  // nothing, a copy's stamp is below the tombstone either way).
  const hlc_timestamp old_stamp{lattice::crdt::system_wall_clock_us(), 0, 99};
  {
    auto r = replica::open(o).value();
    REQUIRE(r->set_config("/gone", "v"));
    REQUIRE(r->erase_config("/gone"));
    // Collected: no tombstone row is left to say it was deleted.
    REQUIRE(eventually([&] { return rows_in(dir, "config") == 0; }, 20s));
    offer_old_write(*r, "/gone", old_stamp, "/marker1");
    CHECK_FALSE(r->get_config("/gone"));
    r->stop();
  }
  auto r = replica::open(o).value();
  offer_old_write(*r, "/gone", old_stamp, "/marker2");
  CHECK_FALSE(r->get_config("/gone"));
  r->stop();
}

namespace {
// The stamp-floor bound the data directory holds (0: no row), read by a
// connection of the test's own.
std::uint64_t floor_row(const temp_dir& dir) {
  sqlite3* db = nullptr;
  std::uint64_t bound = 0;
  if (sqlite3_open_v2((dir.path / "lattice.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = CAST('floor' AS BLOB)", -1, &q, nullptr) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
      const auto* bytes = static_cast<const std::byte*>(sqlite3_column_blob(q, 0));
      const auto size = static_cast<std::size_t>(sqlite3_column_bytes(q, 0));
      if (auto decoded = lattice::crdt::decode<std::uint64_t>(std::span(bytes, size))) bound = decoded.value();
    }
    sqlite3_finalize(q);
  }
  sqlite3_close(db);
  return bound;
}

std::uint64_t self_floor(const replica& r) {
  for (const auto& m : r.members())
    if (m.id == r.id()) return m.stamp_floor_us;
  return 0;
}
}  // namespace

TEST_CASE("the stamp floor a replica advertises never passes what its data directory holds",
          "[registry][persistence]") {
  // After a kill, the grace rule keeps what is newer than the last floor
  // peers can have of us, minus gc_grace; the data directory must bound
  // every floor our member record carried, also when it cannot commit.
  temp_dir dir;
  replica_options o;
  o.data_dir = dir.path.string();
  o.gc_grace = 2s;  // the bound moves half a second ahead at a time
  auto r = replica::open(o).value();
  REQUIRE(eventually([&] { return self_floor(*r) != 0; }));
  CHECK(self_floor(*r) <= floor_row(dir));
  // Another process holds SQLite's write lock: no commit gets through.
  sqlite3* const other = hold_write_lock(dir);
  REQUIRE(other != nullptr);
  const auto held = floor_row(dir);
  // Until the wall clock has passed the bound by more than a failed
  // commit blocks the replica thread (SQLite's busy timeout, 2 s): a
  // heartbeat has gone out since, with the clock past the bound.
  const bool passed = eventually([&] { return lattice::crdt::system_wall_clock_us() > held + 2'500'000; }, 10s);
  REQUIRE(passed);
  const auto floor_while_held = self_floor(*r);
  REQUIRE(floor_while_held != 0);
  CHECK(floor_while_held <= held);
  release_write_lock(other);
  // Commits get through again, and the floor moves on with the bound.
  CHECK(eventually([&] { return self_floor(*r) > held; }, 10s));
  CHECK(self_floor(*r) <= floor_row(dir));
  r->stop();
}

// ---- group commit ---------------------------------------------------------------

namespace {
// Collects asynchronous acknowledgements from the replica thread.
struct acknowledgements {
  std::mutex mutex;
  std::vector<std::error_code> results;
  std::size_t count() {
    std::lock_guard lock(mutex);
    return results.size();
  }
  template <class T>
  replica::completion<T> add() {
    return [this](lattice::result<T> r) {
      std::lock_guard lock(mutex);
      results.push_back(r ? std::error_code{} : r.error());
    };
  }
};
}  // namespace

TEST_CASE("concurrent writes share one commit and each is acknowledged after it", "[registry][persistence]") {
  temp_dir dir;
  replica_options o;
  o.data_dir = dir.path.string();
  o.max_commit_batch = 10;
  o.commit_delay = std::chrono::minutes(1);  // only a full batch commits
  // The driver ticks every 5 ms, and a tick between the batches (the 20
  // writes take longer than that under a sanitizer) finds writes applied
  // and waiting: it must leave them to their batch's commit.
  std::vector<std::string> ids;
  {
    auto r = replica::open(o).value();
    const auto before = r->metrics();
    acknowledgements acks;
    const auto write = [&](std::uint16_t first, std::uint16_t last) {
      for (std::uint16_t port = first; port <= last; ++port)
        r->register_instance_async("/svc", provider(port, /*ephemeral=*/false), instance_kind::provider,
                                   acks.add<instance>());
    };
    write(9001, 9015);
    // Ticks have published the second batch's first five (a tick publishes
    // what is applied) while they wait for the batch to fill; that commit,
    // not the ticks, makes them durable.
    REQUIRE(eventually([&] { return r->lookup("/svc").providers().size() == 15; }, 10s));
    CHECK(acks.count() == 10);
    write(9016, 9020);
    REQUIRE(eventually([&] { return acks.count() == 20; }, 10s));
    for (const auto& ec : acks.results) CHECK_FALSE(ec);
    const auto after = r->metrics();
    CHECK(after.write_batches - before.write_batches == 2);
    CHECK(after.batched_writes - before.batched_writes == 20);
    CHECK(after.storage_commits - before.storage_commits == 2);
    CHECK(r->lookup("/svc").providers().size() == 20);  // read your writes once acknowledged
    r->stop();
  }
  auto again = replica::open(o).value();
  CHECK(again->lookup("/svc").providers().size() == 20);
  again->stop();
}

TEST_CASE("a batch whose commit fails is refused to every writer in it, and the retry makes it durable",
          "[registry][persistence]") {
  temp_dir dir;
  replica_options o;
  o.data_dir = dir.path.string();
  o.max_commit_batch = 4;
  o.commit_delay = std::chrono::minutes(1);
  auto r = replica::open(o).value();
  sqlite3* const other = hold_write_lock(dir);
  REQUIRE(other != nullptr);
  acknowledgements acks;
  for (int i = 0; i < 4; ++i) r->set_config_async("/k" + std::to_string(i), "v", acks.add<void>());
  REQUIRE(eventually([&] { return acks.count() == 4; }, 10s));
  for (const auto& ec : acks.results) CHECK(ec == errc::storage_failed);
  release_write_lock(other);
  // Applied in memory all the same; the next commit carries their rows.
  CHECK(r->get_config("/k3") == std::optional<std::string>("v"));
  r->stop();  // its last commit carries them
  auto again = replica::open(o).value();
  for (int i = 0; i < 4; ++i) CHECK(again->get_config("/k" + std::to_string(i)) == std::optional<std::string>("v"));
  again->stop();
}

TEST_CASE("an invalid write is refused at once, without reaching the replica thread", "[registry][replica]") {
  auto r = replica::open({}).value();
  acknowledgements acks;
  r->set_config_async("no-leading-slash", "v", acks.add<void>());
  r->register_instance_async("/svc", instance{}, instance_kind::provider, acks.add<instance>());  // no address
  REQUIRE(acks.count() == 2);  // synchronously, on this thread
  CHECK(acks.results[0] == errc::invalid_path);
  CHECK(acks.results[1] == errc::invalid_address);
  r->stop();
  acknowledgements late;
  r->set_config_async("/k", "v", late.add<void>());
  REQUIRE(late.count() == 1);
  CHECK(late.results[0] == errc::stopped);
}

}  // namespace persistence_test
