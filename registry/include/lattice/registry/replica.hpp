// lattice/registry/replica.hpp: the embedded replica, what a service links.
//
//   lattice::registry::replica_options o;
//   o.id = 7;                                   // unique in the cluster
//   o.seeds = {"10.0.0.1:7946"};
//   auto r = lattice::registry::replica::open(o);
//   if (!r) { log(r.error().message()); return; }
//   auto& replica = *r.value();
//
//   replica.register_instance("/HelloWorldService/1.0.0", hello);  // provider
//   auto providers = replica.lookup("/HelloWorldService/1.0.0");     // consumer
//   auto w = replica.watch("/HelloWorldService", [](const service_view& v) {
//     // every change under the prefix, with the full list and its version
//   });
//   replica.stop();   // removes our ephemeral instances, announces leave
//
// Threads. The replica runs one thread of its own that owns all replica
// state (the io_context thread: gossip, timers, writes) and, unless
// `callbacks_on_replica_thread`, one that runs watch callbacks. Every
// public call is safe from any thread. Writes are posted to the replica
// thread and wait for it (microseconds). Reads never wait: they load the
// last published snapshot, which the replica thread replaces after each
// batch of changes.
//
// Errors: calls return lattice::result; see error.hpp for each errc.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lattice/registry/instance.hpp"
#include "lattice/registry/load_gossip.hpp"
#include "lattice/registry/serve_counter.hpp"
#include "lattice/registry/path.hpp"
#include "lattice/registry/snapshot.hpp"
#include "lattice/transport/asio_driver.hpp"
#include "lattice/transport/protocol_options.hpp"

namespace lattice::registry {

struct replica_options {
  /// Unique among live replicas. 0: a random id.
  replica_id id = 0;
  /// Gossip listener. Default 127.0.0.1 and a free port.
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 0;
  /// Host peers use to reach us (default: listen_host).
  std::string advertise_host;
  /// "host:port" of replicas to join through; may include ourselves.
  /// Empty: a cluster of one until someone joins through us.
  std::vector<std::string> seeds;
  /// Shared cluster key (>= 16 bytes): every frame is authenticated with
  /// HMAC-SHA256 and frames without it are rejected. Empty: none.
  std::string cluster_key;
  /// TLS for gossip (PEM files): this replica's certificate chain and key,
  /// and the cluster CA every peer's certificate must chain to (mutual TLS;
  /// see transport::make_tls_context). All three or none. Every replica of
  /// a cluster must agree. Combine with cluster_key or not.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_ca_file;
  /// How changes travel; every replica of a cluster must agree.
  transport::dissemination mode = transport::dissemination::delta;
  /// How members are judged alive; every replica of a cluster must agree.
  /// `probes` (the default): SWIM with Lifeguard (transport/swim.hpp), a
  /// few small messages per replica per 200 ms whatever the cluster's
  /// size, the same settings at every size; suspect_after and dead_after
  /// are unused. `heartbeats`: whole member tables gossiped every
  /// heartbeat, a member silent for suspect_after / dead_after is suspect /
  /// dead; quiet traffic grows with the cluster, and large clusters must
  /// slow the heartbeat. See README, "Failure detection and cluster size".
  transport::liveness_source liveness = transport::liveness_source::probes;
  /// With probes: the detector's pings, acks and news go by UDP on the
  /// gossip port (so probing a member needs no connection to it), except
  /// with TLS, where everything stays on the TLS connections. Off: every
  /// message takes TCP; UDP from peers is still read, so a cluster may
  /// mix both. Firewalls must then pass UDP on the gossip port as well.
  bool datagrams = true;
  /// Heartbeat every 100 ms; suspect after 350 ms, dead after 700 ms of
  /// silence (see README, "Failure detection and cluster size"). With
  /// probes the heartbeat paces only a joiner's calls to its seeds and
  /// `state` mode's rounds.
  std::chrono::milliseconds heartbeat_interval{100};
  std::chrono::milliseconds suspect_after{350};
  std::chrono::milliseconds dead_after{700};
  std::chrono::milliseconds anti_entropy_interval{200};
  /// While the document is unchanged, anti-entropy rounds slow down to
  /// one per this (doubling from anti_entropy_interval); any change brings
  /// them back (transport::protocol_options::anti_entropy_max_interval).
  std::chrono::milliseconds anti_entropy_max_interval{2'000};
  /// A dead owner's ephemeral instances are tombstoned after this.
  std::chrono::milliseconds reap_after{30'000};
  /// Call counts are gossiped this often, within a byte budget
  /// (load_gossip.hpp: 16 KiB/s of load gossip per replica, divided among
  /// the replicas that call; significant moves of calls in flight first,
  /// any other change within 2 s).
  std::chrono::milliseconds load_publish_interval{100};
  load_gossip_options load_gossip;
  /// Tombstones are kept this long (and the grace rule: see the README, "Tombstones and the grace rule").
  std::chrono::milliseconds gc_grace{3'600'000};
  /// How often tombstones older than gc_grace are collected, in memory and
  /// in the data directory.
  std::chrono::milliseconds compaction_interval{60'000};
  /// How long a dead member (crashed, or on the other side of a partition)
  /// still holds back compaction: nothing it may not have seen is collected
  /// until it has been dead this long, so a partition shorter than this
  /// heals without losing either side's writes. Longer, and the member is
  /// stale when it returns (the grace rule). Like Consul's
  /// reconnect_timeout; the cost is tombstones kept that long after a
  /// member dies.
  std::chrono::milliseconds reconnect_timeout{72 * 3'600'000};
  /// Largest frame accepted from a peer.
  std::size_t max_frame_bytes = 16 * 1024 * 1024;
  /// Directory for durable state (SQLite: <data_dir>/lattice.db): the
  /// replica's id and incarnation, the document, and the registrations made
  /// here, which come back on restart. Empty: nothing is kept.
  std::string data_dir;
  /// With data_dir: a write returns only once it is fsynced (true), or
  /// once SQLite has it in its write-ahead log, which survives a crash of
  /// this process but not of the machine (false; faster).
  bool fsync_writes = true;
  /// Group commit: writes that reach the replica thread while a commit is
  /// pending share it (one SQLite transaction, one fsync, one publication),
  /// and each is acknowledged once that commit is durable. At most this
  /// many writes share one commit.
  std::size_t max_commit_batch = 1024;
  /// How long a commit waits for more writes to join it. 0: it runs as
  /// soon as the writes already queued have been applied, which batches
  /// concurrent writers without delaying a lone one.
  std::chrono::microseconds commit_delay{0};
  /// Run watch callbacks on the replica thread (cheaper; a slow callback
  /// then delays replication). Default: on a thread of their own.
  bool callbacks_on_replica_thread = false;
};

class watch_hub;

struct replica_metrics {
  transport::protocol_stats protocol;
  transport::driver_stats driver;
  /// Members by state, this replica included.
  std::size_t alive = 0, suspect = 0, dead = 0, left = 0;
  /// Visible instances, services (paths with one), config keys.
  std::size_t instances = 0, services = 0, config_keys = 0;
  std::size_t watches = 0;
  /// Data directory commits, failures, and their total duration.
  std::uint64_t storage_commits = 0, storage_failures = 0, storage_micros = 0;
  /// Group commit: batches of writes committed together, and the writes
  /// in them (writes / batches is the mean batch size).
  std::uint64_t write_batches = 0, batched_writes = 0;
  std::uint64_t reaped = 0;
  /// Other replicas' stamps merged while beyond the HLC drift bound.
  std::uint64_t clock_drift = 0;
  /// Live entries removed because a peer's horizon said it had erased and
  /// forgotten them (a delete this replica had missed, as a rule).
  std::uint64_t horizon_erasures = 0;
  /// Exceptions thrown by watch callbacks, and by handlers on the replica
  /// thread: each was logged and contained, and the replica kept serving.
  std::uint64_t callback_errors = 0, handler_errors = 0;
  /// Liveness by probes: the failure detector's counters and its local
  /// health (0 = healthy; each step stretches its timeouts by one more
  /// probe interval). Empty with heartbeats.
  std::optional<transport::swim::detector_stats> probes;
  unsigned local_health = 0;
  /// How this replica's own load counts were paced (load_gossip.hpp).
  load_gossip_stats load;
};

/// Keeps a watch alive; destroying it (or cancel()) stops it, and after it
/// returns the callback is not running and will not run again (unless
/// cancelled from inside the callback itself).
class watch_handle {
 public:
  watch_handle() = default;
  watch_handle(std::shared_ptr<watch_hub> hub, std::uint64_t id) : hub_(std::move(hub)), id_(id) {}
  watch_handle(watch_handle&& other) noexcept { *this = std::move(other); }
  watch_handle& operator=(watch_handle&& other) noexcept;
  ~watch_handle() { cancel(); }
  void cancel();
  explicit operator bool() const noexcept { return hub_ != nullptr; }

 private:
  std::shared_ptr<watch_hub> hub_;
  std::uint64_t id_ = 0;
};

/// A config change seen by a config watch: the key, and its value (nullopt
/// once erased).
struct config_change {
  std::string key;
  std::optional<std::string> value;
};

/// Counts one call to an instance while it lives: in flight on
/// construction, served on destruction. Cheap (two relaxed atomics), any
/// thread.
class call_guard : public counted_call {
 public:
  // On its provider's replica, an instance that counts what it serves
  // counts this call when serving it: nothing here.
  explicit call_guard(const instance_view& target)
      : counted_call(target.local && !target.local->serving ? target.local : nullptr) {}
};

/// One service's visible instances, kept alive with the snapshot they
/// came from.
class service_list {
 public:
  service_list() = default;
  service_list(std::shared_ptr<const snapshot> snap, const service_view* view)
      : snap_(std::move(snap)), view_(view) {}
  /// False if the path never had instances.
  explicit operator bool() const noexcept { return view_ != nullptr; }
  const service_view& operator*() const noexcept { return *view_; }
  const service_view* operator->() const noexcept { return view_; }
  const instance_list& providers() const noexcept { return view_ ? view_->providers : empty_; }
  std::uint64_t version() const noexcept { return view_ ? view_->version : 0; }

 private:
  static inline const instance_list empty_{};
  std::shared_ptr<const snapshot> snap_;
  const service_view* view_ = nullptr;
};

/// A member of the cluster as this replica judges it.
struct member_info {
  replica_id id = 0;
  std::string address;
  std::uint64_t incarnation = 0;
  transport::member_state state = transport::member_state::alive;
  /// Its wall clock minus ours in µs, estimated from its latest message
  /// (send time against receive time); nullopt for ourselves and for
  /// members we have not heard from directly.
  std::optional<std::int64_t> clock_offset_us;
  /// The stamp floor its member record carries (wall µs): it writes
  /// nothing stamped earlier from now on. Tombstones are collected only
  /// below the least floor of the members minus gc_grace, so a floor that
  /// stays behind (a member cut off, or one whose data directory cannot
  /// commit) is what holds compaction back. 0: not reported yet.
  std::uint64_t stamp_floor_us = 0;
  /// When this replica first judged it in `state` (local monotonic time,
  /// to the replica's tick: heartbeat_interval).
  std::chrono::steady_clock::time_point state_since{};
  /// Whether the registry digest it last sent us (each anti-entropy round
  /// sends one to a random peer) equalled ours when it came, and when that
  /// was; nullopt for ourselves and for members that have not sent one.
  std::optional<bool> digest_agreed;
  std::chrono::steady_clock::time_point digest_seen{};
};

/// The member table and the metrics as of the replica's latest tick
/// (heartbeat_interval, 100 ms by default), for readers that must not wait
/// for the replica thread: an HTTP server answering /metrics or a member
/// listing while the replica thread commits a batch of writes.
struct replica_status {
  /// When the replica thread took it.
  std::chrono::steady_clock::time_point taken;
  std::vector<member_info> members;  // this replica included
  replica_metrics metrics;
};

class replica {
 public:
  /// Binds the gossip listener, starts the replica thread and joins through
  /// the seeds. With a data_dir, first restores what an earlier run kept
  /// (and re-registers its registrations). Errors: the bind's error
  /// (address in use...), std::errc::invalid_argument for a cluster key
  /// shorter than 16 bytes or for only some of the TLS files, the TLS
  /// files' errors (unreadable, not PEM, key not matching), the data directory's error (std::errc::io_error
  /// for SQLite's, logged), errc::storage_failed.
  static result<std::unique_ptr<replica>> open(replica_options options);
  ~replica();
  replica(const replica&) = delete;
  replica& operator=(const replica&) = delete;

  /// Graceful stop: removes this replica's ephemeral instances, announces
  /// the leave, flushes (bounded by 500 ms), joins the threads. With a
  /// data_dir, the registrations made here are still kept, and come back
  /// when the replica is opened again.
  /// Idempotent; afterwards writes fail with errc::stopped and reads see
  /// the last snapshot.
  void stop();

  replica_id id() const noexcept { return id_; }
  /// "host:port" peers reach us at.
  const std::string& address() const noexcept { return address_; }

  // ---- writes ------------------------------------------------------------------

  // Every write returns once it is applied here (and, with a data_dir,
  // durable), and is spreading to peers. Its gossip does not wait for the
  // local commit (a crash before it loses nothing peers got; they give it
  // back), its return does. Writes from several threads at once share
  // commits (group commit: replica_options::max_commit_batch). Every write can also fail with
  // errc::invalid_path or errc::path_too_long (the path), errc::stopped,
  // and errc::storage_failed (applied but not durable: see error.hpp).

  /// Registers or updates `inst` under `path`; returns the stored record
  /// (id defaulted, owner and epoch filled in). Errors:
  /// errc::root_path_not_allowed, errc::invalid_id, invalid_address,
  /// invalid_field, invalid_tag, invalid_weight (instance.hpp's limits).
  result<instance> register_instance(std::string_view path, instance inst,
                                     instance_kind kind = instance_kind::provider);
  /// Registers several instances under `path` in one trip to the replica
  /// thread, one durable commit and one publication (bulk registration:
  /// see README, Benchmarks). All are validated first, so either all are
  /// registered or none is. Errors: those of register_instance.
  result<std::vector<instance>> register_instances(std::string_view path, std::vector<instance> insts,
                                                   instance_kind kind = instance_kind::provider);
  /// Removes instance `id` from `path`: writes a tombstone whether or not
  /// this replica knows the instance (a delete is a write; one that wrote
  /// nothing for an instance registered on the other side of a partition
  /// would be undone at the heal). Returns whether it was registered here.
  /// An ephemeral instance can only be removed for good at its owner
  /// (elsewhere the owner writes it back). Errors: errc::invalid_path,
  /// errc::stopped, errc::timed_out, errc::storage_failed.
  result<bool> deregister_instance(std::string_view path, std::string_view id,
                                   instance_kind kind = instance_kind::provider);
  /// Sets config `key` (a path) to `value`, with `flags` (an opaque number
  /// kept with the value, written and replaced with it; config_entry::flags
  /// reads it back). Errors: errc::root_path_not_allowed,
  /// errc::value_too_large.
  result<void> set_config(std::string_view key, std::string value, std::uint64_t flags = 0);
  /// Erases config `key` with a tombstone, whether or not this replica
  /// knows it (see deregister_instance). Returns whether it was set here.
  /// Errors: errc::invalid_path, errc::stopped, errc::timed_out,
  /// errc::storage_failed.
  result<bool> erase_config(std::string_view key);
  /// Erases every config key that starts with `prefix`, including keys
  /// this replica has not seen yet (written elsewhere before this delete):
  /// one prefix tombstone, not a tombstone per key (document.hpp). A string
  /// prefix, as in Consul's recursive delete: "/app" also covers "/apple";
  /// "/app/" covers only what is under /app; "/" covers everything.
  /// Returns how many live keys it covered here. Errors: errc::invalid_path
  /// (a prefix that is not "/", or a path with or without a trailing '/'),
  /// errc::stopped, errc::timed_out, errc::storage_failed.
  result<std::size_t> erase_config_prefix(std::string_view prefix);

  /// The provider's side of load counting (serve_counter.hpp, ADR 0021):
  /// a counter for provider `id` of `path`, registered here, in which
  /// serve guards count the calls the instance serves, from every caller.
  /// While a copy is held, this replica writes the instance's totals (one
  /// load entry, paced by replica_options::load_gossip) and every replica
  /// reads them instead of its own calls' entries: at 1,000 callers of 100
  /// providers, 100 entries instead of 10,000. Drop every copy and callers
  /// count again. Waits for the replica thread. Errors: errc::not_found
  /// (no such provider registered here: only its own replica counts what
  /// an instance serves), errc::invalid_path, errc::stopped,
  /// errc::timed_out.
  result<std::shared_ptr<serve_counter>> count_serving(std::string_view path, std::string_view id);

  // ---- the same writes, without waiting ---------------------------------------
  //
  // For callers that must not block (latticed's HTTP thread, an event
  // loop): `done` gets what the blocking form would return, once the
  // commit that holds the write is durable or has failed, and is called
  // on the replica thread: it must be quick and must not call the blocking
  // API (post the result to your own thread). Errors found before the
  // write reaches the replica thread (an invalid path or instance,
  // errc::stopped) are passed to `done` at once, on the calling thread.
  // Concurrent writes share commits (replica_options::max_commit_batch).

  template <class T>
  using completion = std::function<void(result<T>)>;
  void register_instance_async(std::string_view path, instance inst, instance_kind kind,
                               completion<instance> done);
  void register_instances_async(std::string_view path, std::vector<instance> insts, instance_kind kind,
                                completion<std::vector<instance>> done);
  void deregister_instance_async(std::string_view path, std::string_view id, instance_kind kind,
                                 completion<bool> done);
  void set_config_async(std::string_view key, std::string value, completion<void> done);
  void set_config_async(std::string_view key, std::string value, std::uint64_t flags, completion<void> done);
  void erase_config_async(std::string_view key, completion<bool> done);
  void erase_config_prefix_async(std::string_view prefix, completion<std::size_t> done);

  // ---- reads (never wait, never lock) -----------------------------------------

  /// The current snapshot.
  std::shared_ptr<const snapshot> current() const;
  /// The visible instances of one path (empty for an invalid or unknown
  /// path: reads report no errors).
  service_list lookup(std::string_view path) const;
  /// The value of config `key`, or nullopt.
  std::optional<std::string> get_config(std::string_view key) const;
  /// Cluster members as this replica judges them now (a copy, taken on the
  /// replica thread: waits for it). Empty once stopped.
  std::vector<member_info> members() const;
  /// The member table and metrics as of the last tick, without waiting
  /// (at most heartbeat_interval old; the last one taken once stopped).
  /// Never null.
  std::shared_ptr<const replica_status> status() const;

  /// A cheap per-thread handle for hot paths: current() only reloads when
  /// a new snapshot was published (one atomic load otherwise). The
  /// reference it returns stays valid until the next current() on this
  /// reader; keep a reader per thread.
  class reader {
   public:
    explicit reader(const replica& r) : replica_(&r), snap_(r.current()) {}
    const snapshot& current() {
      if (replica_->sequence_.load(std::memory_order_acquire) != snap_->sequence) snap_ = replica_->current();
      return *snap_;
    }

   private:
    const replica* replica_;
    std::shared_ptr<const snapshot> snap_;
  };

  // ---- watches -----------------------------------------------------------------

  /// Calls `callback` with the current view of every path under `prefix`
  /// now, then after every change of one (coalesced: a slow watcher gets
  /// the latest view, never a stale one after the last change). Errors:
  /// errc::invalid_path, errc::stopped.
  result<watch_handle> watch(std::string_view prefix,
                             std::function<void(const service_view&)> callback);
  /// Calls `callback` for every config key under `prefix` now, then for
  /// every change of one.
  result<watch_handle> watch_config(std::string_view prefix,
                                    std::function<void(const config_change&)> callback);

  /// Fault injection for examples, tests and drills: gossip to peers whose
  /// address `allow` refuses is dropped (see asio_driver::set_send_filter).
  /// Cut two groups apart by giving each side a filter refusing the other;
  /// simulate a crash by refusing everyone. Empty: heals.
  void set_send_filter(std::function<bool(const std::string& peer_address)> allow);

  /// Counts of this replica's transport (for tests and metrics).
  transport::protocol_stats stats() const;
  /// Everything an operator graphs (a copy, taken on the replica thread;
  /// zeros once stopped).
  replica_metrics metrics() const;

 private:
  replica();
  class driver_adapter;
  // Runs f on the replica thread and waits up to call_timeout for it to
  // start; nullopt, with *why set to errc::stopped if stopped or
  // errc::timed_out if it never started (then it never will).
  static constexpr std::chrono::seconds call_timeout{10};
  template <class F>
  auto on_replica_thread(F&& f, errc* why = nullptr) const -> std::optional<decltype(f())>;
  // Applies a write on the replica thread (`apply`, unless `claim` was
  // withdrawn first) and calls `done` with its result after the commit
  // that holds it (see group commit in replica.cpp).
  template <class R>
  void submit_write(std::function<R()> apply, std::function<void(R)> done,
                    std::shared_ptr<std::atomic<int>> claim = nullptr);
  // The blocking form: waits up to call_timeout for the write to start
  // (errc::timed_out, and then it never will), then for its commit.
  template <class R>
  R write_and_wait(std::function<R()> apply);
  // Commits the writes applied since the last commit, then acknowledges
  // them (replica thread).
  void commit_writes();
  void schedule_commit();
  std::function<result<instance>()> register_write(service_path path, instance inst, instance_kind kind);
  std::function<result<std::vector<instance>>()> register_all_write(service_path path, std::vector<instance> insts,
                                                                    instance_kind kind);
  std::function<result<bool>()> deregister_write(service_path path, std::string id, instance_kind kind);
  void publish();
  // Takes and publishes a replica_status (replica thread, every tick).
  void publish_status();

  struct impl;
  std::unique_ptr<impl> impl_;
  replica_id id_ = 0;
  std::string address_;
  // Unique per replica object in this process (never reused, unlike its
  // address): keys the thread-local snapshot cache in current().
  std::uint64_t serial_ = 0;
  std::atomic<std::uint64_t> sequence_{0};
  mutable std::mutex published_mutex_;  // guards published_ only; never held across work
  std::shared_ptr<const snapshot> published_;
  mutable std::mutex status_mutex_;  // guards status_ only
  std::shared_ptr<const replica_status> status_;
};

}  // namespace lattice::registry
