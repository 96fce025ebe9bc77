#include "lattice/registry/replica.hpp"

#include <array>
#include <pthread.h>

#include <future>
#include <random>
#include <set>
#include <span>
#include <thread>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/system_error.hpp>
#include <spdlog/spdlog.h>

#include "lattice/transport/asio_driver.hpp"
#include "store.hpp"
#include "watch_hub.hpp"

namespace lattice::registry {

// Runs the registry core for the driver, and publishes a snapshot after
// every tick and after each burst of received messages (one publication
// per burst: the publish is posted once and runs after what is queued).
class replica::driver_adapter final : public transport::protocol_core {
 public:
  driver_adapter(replica& owner, registry_core& core, boost::asio::io_context& io)
      : owner_(owner), core_(core), io_(io) {}
  void on_message(transport::message_type type, std::span<const std::byte> payload,
                  steady_time now) override {
    core_.on_message(type, payload, now);
    if (publish_posted_) return;
    publish_posted_ = true;
    boost::asio::post(io_, [this] {
      publish_posted_ = false;
      owner_.publish();
    });
  }
  void on_tick(steady_time now) override {
    core_.on_tick(now);
    owner_.publish();
    owner_.publish_status();
  }
  void leave(steady_time now) override { core_.leave(now); }
  std::vector<transport::outgoing_message> take_outgoing() override { return core_.take_outgoing(); }

 private:
  replica& owner_;
  registry_core& core_;
  boost::asio::io_context& io_;
  bool publish_posted_ = false;
};

struct replica::impl {
  boost::asio::io_context io;
  std::unique_ptr<transport::asio_driver> driver;
  std::unique_ptr<registry_core> core;
  std::unique_ptr<driver_adapter> adapter;
  std::shared_ptr<watch_hub> watches;
  std::thread thread;
  std::atomic<bool> stopped{false};
  // Exceptions caught on the replica thread (see open()).
  std::atomic<std::uint64_t> handler_errors{0};
  std::mutex stop_mutex;

  // Group commit (replica thread only): writes applied since the last
  // commit wait here for it, each with its acknowledgement.
  std::vector<std::function<void(bool durable)>> unacknowledged;
  bool commit_scheduled = false;
  std::size_t max_commit_batch = 1024;
  std::chrono::microseconds commit_delay{0};
  std::optional<boost::asio::steady_timer> commit_timer;
  std::uint64_t write_batches = 0;
  std::uint64_t batched_writes = 0;

  // Durable state (data_dir set). Keys merged since the last commit; the
  // entries themselves are read from the document at commit time.
  std::unique_ptr<store> disk;
  bool restoring = false;
  std::set<std::string> dirty_instances;
  std::set<std::string> dirty_config;
  std::set<std::string> dirty_erasures;
  // Replica thread only (metrics() reads them there).
  std::uint64_t commits = 0;
  std::uint64_t commit_failures = 0;
  std::uint64_t commit_micros = 0;
  // What the data directory last got of the incarnation and the contact
  // time, so persist() stages them only when they move.
  std::uint64_t persisted_incarnation = 0;
  std::uint64_t persisted_contact_us = 0;
  std::uint64_t contact_grain_us = 60'000'000;  // min(a minute, gc_grace / 4)
  std::uint64_t persisted_floor_bound_us = 0;
  bool persisted_resyncing = false;
  // The stored maps' horizons as the data directory last got them.
  using horizons = std::array<hlc_timestamp, 3>;
  horizons persisted_horizons{hlc_timestamp::zero(), hlc_timestamp::zero(), hlc_timestamp::zero()};
  static horizons stored_horizons_of(const registry_document& doc) {
    return {doc.instances.horizon(), doc.config.horizon(), doc.config_erasures.horizon()};
  }

  // The instance, service and config counts of the metrics, and the
  // snapshot they were counted on: counting is O(paths), so it is done
  // again only when a new snapshot was published.
  std::uint64_t counted_sequence = ~std::uint64_t{0};
  std::size_t counted_instances = 0, counted_services = 0, counted_config_keys = 0;

  // Per member: the state it was last judged in, and since when.
  std::unordered_map<replica_id, std::pair<transport::member_state, std::chrono::steady_clock::time_point>>
      judged_states;

  std::vector<member_info> member_table(std::chrono::steady_clock::time_point now) {
    std::vector<member_info> out;
    const auto& m = core->members();
    const auto& offsets = core->clock_offsets();
    const auto& digests = core->peer_digests();
    out.reserve(m.table().records().size());
    for (const auto& [id, record] : m.table().records()) {
      member_info info;
      info.id = id;
      info.address = record.address;
      info.incarnation = record.incarnation;
      info.state = m.state_of(id, now);
      if (const auto offset = offsets.find(id); offset != offsets.end()) info.clock_offset_us = offset->second;
      info.stamp_floor_us = record.clock_us;
      auto [judged, first] = judged_states.try_emplace(id, info.state, now);
      if (!first && judged->second.first != info.state) judged->second = {info.state, now};
      info.state_since = judged->second.second;
      if (const auto d = digests.find(id); d != digests.end()) {
        info.digest_agreed = d->second.agreed;
        info.digest_seen = d->second.seen;
      }
      out.push_back(std::move(info));
    }
    if (judged_states.size() > out.size())  // members reaped from the table
      std::erase_if(judged_states, [&m](const auto& j) { return m.table().find(j.first) == nullptr; });
    return out;
  }

  // The metrics, counting members by state in `members` (member_table's).
  replica_metrics take_metrics(const std::vector<member_info>& members) {
    replica_metrics m;
    m.protocol = core->stats();
    m.driver = driver->stats();
    m.load = core->load_stats();
    if (const auto* detector = core->detector()) {
      m.probes = detector->stats();
      m.local_health = detector->local_health();
    }
    for (const auto& member : members) {
      switch (member.state) {
        case transport::member_state::alive: ++m.alive; break;
        case transport::member_state::suspect: ++m.suspect; break;
        case transport::member_state::dead: ++m.dead; break;
        case transport::member_state::left: ++m.left; break;
      }
    }
    if (const auto& snap = core->published(); snap && snap->sequence != counted_sequence) {
      counted_sequence = snap->sequence;
      counted_instances = counted_services = 0;
      snap->services.for_each([&](const std::shared_ptr<const service_view>& v) {
        counted_instances += v->providers.size() + v->consumers.size();
        if (!v->providers.empty() || !v->consumers.empty()) ++counted_services;
      });
      counted_config_keys = snap->config->size();
    }
    m.instances = counted_instances;
    m.services = counted_services;
    m.config_keys = counted_config_keys;
    m.watches = watches->size();
    m.storage_commits = commits;
    m.storage_failures = commit_failures;
    m.storage_micros = commit_micros;
    m.write_batches = write_batches;
    m.batched_writes = batched_writes;
    m.callback_errors = watches->callback_errors();
    m.handler_errors = handler_errors.load(std::memory_order_relaxed);
    m.reaped = core->reaped();
    m.clock_drift = core->clock_drift();
    m.horizon_erasures = core->horizon_erasures();
    return m;
  }

  void observe(const registry_document& merged) {
    if (!disk || restoring) return;
    merged.instances.for_each_entry([&](const std::string& key, const auto&) { dirty_instances.insert(key); });
    merged.config.for_each_entry([&](const std::string& key, const auto&) { dirty_config.insert(key); });
    merged.config_erasures.for_each_entry([&](const std::string& key, const auto&) { dirty_erasures.insert(key); });
  }
  // Writes what changed since the last call; true if it is durable.
  bool persist() {
    if (!disk) return true;
    const auto& doc = core->state();
    // A refutation moves our incarnation: a restart must beat the refuted
    // one too, even if the clock has stepped back since.
    if (const auto incarnation = core->members().self_record().incarnation; incarnation != persisted_incarnation) {
      disk->put_identity(core->self(), incarnation);
      persisted_incarnation = incarnation;
    }
    // Contact time at a quarter of gc_grace (a minute at most): fine
    // enough for the grace rule, and a row per minute at most with the
    // default gc_grace of an hour.
    if (const auto contact = core->last_contact_us(); contact > persisted_contact_us + contact_grain_us) {
      disk->put_contact(contact);
      persisted_contact_us = contact;
    }
    // The stamp floor our member record carries stays below what the data
    // directory holds (cap_floor), so a restart knows what peers can have
    // of it; the bound moves a grain ahead at a time, half a grain early.
    std::uint64_t floor_bound = 0;
    if (const auto reading = core->floor_reading_us(); reading + contact_grain_us / 2 > persisted_floor_bound_us) {
      floor_bound = reading + contact_grain_us;
      disk->put_floor_bound(floor_bound);
    }
    if (core->resyncing() != persisted_resyncing) {
      persisted_resyncing = core->resyncing();
      disk->put_resyncing(persisted_resyncing);
    }
    // Horizons ride the commit that deletes the rows they collected.
    if (const auto h = stored_horizons_of(doc); h != persisted_horizons) {
      disk->put_horizons(doc);
      persisted_horizons = h;
    }
    for (const auto& key : std::exchange(dirty_instances, {})) disk->put_instance(key, doc.instances.find_entry(key));
    for (const auto& key : std::exchange(dirty_config, {})) disk->put_config(key, doc.config.find_entry(key));
    for (const auto& key : std::exchange(dirty_erasures, {}))
      disk->put_config_erasure(key, doc.config_erasures.find_entry(key));
    if (!disk->has_staged()) return true;
    const auto start = std::chrono::steady_clock::now();
    const bool ok = disk->commit().has_value();
    commit_micros += static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
    ++(ok ? commits : commit_failures);
    if (ok && floor_bound != 0) {
      persisted_floor_bound_us = floor_bound;
      core->cap_floor(floor_bound);
    }
    return ok;
  }
  // One registration on the replica thread, staged for the data directory
  // as ours (committed by finish_write).
  result<instance> register_here(const service_path& path, const instance& inst, instance_kind kind) {
    auto r = core->register_instance(path, inst, kind);
    if (r && disk)
      disk->put_own(instance_key(path.str(), kind, r.value().id), own_registration{path.str(), kind, inst});
    return r;
  }
};

replica::replica() : impl_(std::make_unique<impl>()) {
  static std::atomic<std::uint64_t> next_serial{1};
  serial_ = next_serial.fetch_add(1, std::memory_order_relaxed);
}

replica::~replica() { stop(); }

result<std::unique_ptr<replica>> replica::open(replica_options options) {
  if (!options.cluster_key.empty() && options.cluster_key.size() < 16)
    return std::make_error_code(std::errc::invalid_argument);
  std::unique_ptr<replica> r(new replica());
  auto& in = *r->impl_;
  transport::driver_options d;
  d.listen_host = options.listen_host;
  d.listen_port = options.listen_port;
  d.frames.max_frame_size = options.max_frame_bytes;
  d.datagrams = options.datagrams;
  if (!options.cluster_key.empty()) {
    const auto* bytes = reinterpret_cast<const std::byte*>(options.cluster_key.data());
    d.frames.key = std::make_shared<const transport::cluster_key>(
        std::vector<std::byte>(bytes, bytes + options.cluster_key.size()));
  }
  const int tls_files = !options.tls_cert_file.empty() + !options.tls_key_file.empty() + !options.tls_ca_file.empty();
  if (tls_files != 0 && tls_files != 3) return std::make_error_code(std::errc::invalid_argument);
  if (tls_files == 3) {
    auto tls = transport::make_tls_context(options.tls_cert_file, options.tls_key_file, options.tls_ca_file);
    if (!tls) {
      spdlog::error("lattice: TLS setup failed: {}", tls.error().message());
      return tls.error();
    }
    d.tls = std::move(tls).value();
  }
  try {
    in.driver = std::make_unique<transport::asio_driver>(in.io, d);
  } catch (const boost::system::system_error& e) {
    return e.code();
  }
  // A data directory gives back our id, and the incarnation to beat.
  std::unique_ptr<store> disk;
  store::contents saved;
  if (!options.data_dir.empty()) {
    auto opened = store::open(options.data_dir, options.fsync_writes);
    if (!opened) return opened.error();
    disk = std::move(opened).value();
    saved = disk->load();
    if (options.id == 0 && saved.id) options.id = *saved.id;
  }
  if (options.id == 0) options.id = std::random_device{}() | (std::uint64_t{std::random_device{}()} << 32) | 1;
  const std::uint64_t incarnation = std::max(crdt::system_wall_clock_us(), saved.incarnation + 1);
  if (disk) {
    disk->put_identity(options.id, incarnation);
    if (!disk->commit()) return make_error_code(errc::storage_failed);
  }
  const auto now = std::chrono::steady_clock::now();
  core_options c;
  c.protocol.self = options.id;
  c.protocol.address = (options.advertise_host.empty() ? options.listen_host : options.advertise_host) + ":" +
                       std::to_string(in.driver->port());
  c.protocol.incarnation = incarnation;
  c.protocol.seeds = options.seeds;
  c.protocol.mode = options.mode;
  c.protocol.heartbeat_interval = options.heartbeat_interval;
  c.protocol.anti_entropy_interval = options.anti_entropy_interval;
  c.protocol.anti_entropy_max_interval = options.anti_entropy_max_interval;
  c.protocol.liveness.source = options.liveness;
  c.protocol.liveness.suspect_after = options.suspect_after;
  c.protocol.liveness.dead_after = options.dead_after;
  c.protocol.random_seed = std::random_device{}();
  c.reap_after = options.reap_after;
  c.load_publish_interval = options.load_publish_interval;
  c.load_gossip = options.load_gossip;
  c.gc_grace = options.gc_grace;
  c.compaction_interval = options.compaction_interval;
  c.reconnect_timeout = options.reconnect_timeout;
  in.max_commit_batch = std::max<std::size_t>(1, options.max_commit_batch);
  in.commit_delay = options.commit_delay;
  in.commit_timer.emplace(in.io);
  in.contact_grain_us = std::min<std::uint64_t>(60'000'000, static_cast<std::uint64_t>(options.gc_grace.count()) * 1000 / 4);
  c.observer = [&in](const registry_document& merged) { in.observe(merged); };
  r->id_ = options.id;
  r->address_ = c.protocol.address;
  in.core = std::make_unique<registry_core>(std::move(c), now);
  in.adapter = std::make_unique<driver_adapter>(*r, *in.core, in.io);
  in.watches = std::make_shared<watch_hub>(!options.callbacks_on_replica_thread);
  if (disk) {
    in.disk = std::move(disk);
    in.persisted_incarnation = incarnation;
    in.restoring = true;
    // No contact row: this data directory never reached a peer (0 says so).
    in.persisted_resyncing = saved.resyncing;
    in.persisted_floor_bound_us = saved.floor_bound_us.value_or(0);
    in.persisted_horizons = impl::stored_horizons_of(saved.document);
    saved_progress progress;
    progress.last_contact_us = saved.last_contact_us.value_or(0);
    progress.floor_bound_us = saved.floor_bound_us;
    progress.resyncing = saved.resyncing;
    in.core->restore(saved.document, progress);
    if (saved.floor_bound_us) in.core->cap_floor(*saved.floor_bound_us);
    in.restoring = false;
    // Our ephemeral registrations come back: they live as long as we do.
    // Persistent ones need nothing: the document (ours or our peers') has
    // them, or someone removed them while we were away, which must stand.
    for (auto& own : saved.own) {
      const auto path = service_path::parse(own.path);
      if (!own.record.ephemeral || !path ||
          !in.core->register_instance(path.value(), own.record, own.kind))
        in.disk->erase_own(instance_key(own.path, own.kind, own.record.id));
    }
    if (!in.persist()) return make_error_code(errc::storage_failed);
    spdlog::info("lattice replica {}: restored {} instance entries, {} config entries, {} own registrations from {}",
                 options.id, saved.document.instances.size(), saved.document.config.size(), saved.own.size(),
                 options.data_dir);
  }
  r->publish();  // the first snapshot: readers never see null
  r->publish_status();
  in.driver->start(*in.adapter);
  in.thread = std::thread([&in, id = r->id_] {
    // A handler that throws must not end the replica thread (and with it
    // every write and publication): log it, count it, keep serving. Asio
    // lets run() be called again after an exception.
    for (;;) {
      try {
        in.io.run();
        return;
      } catch (const std::exception& e) {
        in.handler_errors.fetch_add(1, std::memory_order_relaxed);
        spdlog::error("lattice replica {}: a handler on the replica thread threw: {}", id, e.what());
      } catch (...) {
        in.handler_errors.fetch_add(1, std::memory_order_relaxed);
        spdlog::error("lattice replica {}: a handler on the replica thread threw", id);
      }
    }
  });
  // Named for top -H, perf and gdb (at most 15 characters), from here so
  // that the name is set by the time open() returns.
  pthread_setname_np(in.thread.native_handle(), "lattice-replica");
  spdlog::info("lattice replica {} listening on {}", r->id_, r->address_);
  return r;
}

void replica::stop() {
  std::lock_guard lock(impl_->stop_mutex);
  if (impl_->stopped.exchange(true)) return;
  if (!impl_->thread.joinable()) return;  // open() failed before starting
  boost::asio::post(impl_->io, [this] {
    commit_writes();  // a batch waiting for commit_delay is acknowledged first
    impl_->commit_timer->cancel();
    impl_->driver->stop();  // leave (tombstones our ephemeral instances), flush, close
    impl_->persisted_contact_us = 0;  // the exact last contact, not the minute's
    publish();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->watches->shutdown();
}

template <class F>
auto replica::on_replica_thread(F&& f, errc* why) const -> std::optional<decltype(f())> {
  using R = decltype(f());
  const auto fail = [&](errc e) -> std::optional<R> {
    if (why != nullptr) *why = e;
    return std::nullopt;
  };
  if (impl_->stopped.load()) return fail(errc::stopped);
  // The task runs at most once, and only while its caller still waits: a
  // caller that gives up withdraws it (queued -> withdrawn) so it can never
  // run later against the caller's dead stack frame; a task already
  // running (queued -> running) is waited for to the end.
  enum : int { queued, running, withdrawn };
  struct call {
    std::atomic<int> state{queued};
    std::packaged_task<R()> task;
  };
  auto shared = std::make_shared<call>();
  shared->task = std::packaged_task<R()>(std::forward<F>(f));
  auto done = shared->task.get_future();
  boost::asio::post(impl_->io, [shared] {
    int expected = queued;
    if (shared->state.compare_exchange_strong(expected, running)) shared->task();
  });
  if (done.wait_for(call_timeout) != std::future_status::ready) {
    int expected = queued;
    if (shared->state.compare_exchange_strong(expected, withdrawn))
      return fail(impl_->stopped.load() ? errc::stopped : errc::timed_out);
    done.wait();  // started meanwhile: it finishes, and its result stands
  }
  return done.get();
}

void replica::publish() {
  // Writes waiting for their batch's commit: that commit persists them and
  // whatever merged meanwhile. Committing here too (every 5 ms tick) would
  // split the batch into extra fsyncs, and made the group-commit test count
  // 3 commits for 2 batches under TSan.
  if (impl_->unacknowledged.empty() && !impl_->persist())
    spdlog::error("lattice replica {}: could not persist merged changes", id_);
  auto p = impl_->core->publish(std::chrono::steady_clock::now());
  if (!p.snap) return;
  {
    std::lock_guard lock(published_mutex_);
    published_ = p.snap;
  }
  sequence_.store(p.snap->sequence, std::memory_order_release);
  impl_->watches->notify(p);
}

// ---- writes -------------------------------------------------------------------
//
// Group commit. A write is applied on the replica thread as soon as it gets
// there and waits, unacknowledged, for the next commit, which is posted
// behind it: every write already queued on the replica thread is applied
// first and shares that commit (one SQLite transaction and fsync, one
// publication). So concurrent writers batch by themselves, and a lone
// write waits for nothing but its own commit. A batch that reaches
// max_commit_batch commits at once; commit_delay, if set, holds a commit
// for more writes. Gossip goes out before the commit; acknowledgements
// after it, with errc::storage_failed if it failed (the write stays
// applied, and its rows ride along with the next commit).

namespace {
enum : int { claim_queued, claim_running, claim_withdrawn };
}

template <class R>
void replica::submit_write(std::function<R()> apply, std::function<void(R)> done,
                           std::shared_ptr<std::atomic<int>> claim) {
  if (impl_->stopped.load()) return done(R(errc::stopped));
  boost::asio::post(impl_->io, [this, apply = std::move(apply), done = std::move(done), claim]() mutable {
    if (claim) {
      int expected = claim_queued;
      if (!claim->compare_exchange_strong(expected, claim_running)) return;  // its caller gave up
    }
    impl_->unacknowledged.push_back([r = apply(), done = std::move(done)](bool durable) mutable {
      if (r && !durable) return done(R(errc::storage_failed));
      done(std::move(r));
    });
    schedule_commit();
  });
}

void replica::schedule_commit() {
  auto& in = *impl_;
  if (in.unacknowledged.size() >= in.max_commit_batch) return commit_writes();
  if (in.commit_scheduled) return;
  in.commit_scheduled = true;
  if (in.commit_delay.count() <= 0) {
    boost::asio::post(in.io, [this] { commit_writes(); });
    return;
  }
  in.commit_timer->expires_after(in.commit_delay);
  in.commit_timer->async_wait([this](boost::system::error_code ec) {
    if (!ec) commit_writes();
  });
}

void replica::commit_writes() {
  auto& in = *impl_;
  in.commit_scheduled = false;
  if (in.unacknowledged.empty()) return;
  in.driver->flush();  // gossip need not wait for our fsync; acknowledgements do
  const bool durable = in.persist();
  publish();
  auto batch = std::exchange(in.unacknowledged, {});
  ++in.write_batches;
  in.batched_writes += batch.size();
  for (auto& acknowledge : batch) {
    try {
      acknowledge(durable);
    } catch (const std::exception& e) {
      in.handler_errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::error("lattice replica {}: a write's completion threw: {}", id_, e.what());
    }
  }
}

template <class R>
R replica::write_and_wait(std::function<R()> apply) {
  if (impl_->stopped.load()) return errc::stopped;
  // The write starts at most once, and only while its caller still waits:
  // a caller that gives up withdraws it (queued -> withdrawn), so nothing
  // was done; one already started (queued -> running) is waited for to
  // its commit.
  auto claim = std::make_shared<std::atomic<int>>(claim_queued);
  auto outcome = std::make_shared<std::promise<R>>();
  auto acknowledged = outcome->get_future();
  submit_write<R>(std::move(apply), [outcome](R r) { outcome->set_value(std::move(r)); }, claim);
  if (acknowledged.wait_for(call_timeout) != std::future_status::ready) {
    int expected = claim_queued;
    if (claim->compare_exchange_strong(expected, claim_withdrawn))
      return impl_->stopped.load() ? errc::stopped : errc::timed_out;
    acknowledged.wait();
  }
  return acknowledged.get();
}

namespace {
// Checks that need no replica state, done on the caller's thread (and
// validate() fills in a default id).
result<service_path> instance_path(std::string_view path, std::span<instance> insts) {
  auto p = service_path::parse(path);
  if (!p) return p.error();
  for (auto& inst : insts)
    if (auto ok = validate(inst); !ok) return ok.error();
  return p;
}

result<void> valid_prefix(std::string_view prefix) {
  if (prefix == "/") return success();
  const auto body = prefix.ends_with('/') ? prefix.substr(0, prefix.size() - 1) : prefix;
  if (auto p = service_path::parse(body); !p) return p.error();
  return success();
}
}  // namespace

// The writes, each as a function applied on the replica thread.
std::function<result<instance>()> replica::register_write(service_path path, instance inst, instance_kind kind) {
  return [this, path = std::move(path), inst = std::move(inst), kind]() -> result<instance> {
    return impl_->register_here(path, inst, kind);
  };
}

std::function<result<std::vector<instance>>()> replica::register_all_write(service_path path,
                                                                         std::vector<instance> insts,
                                                                         instance_kind kind) {
  return [this, path = std::move(path), insts = std::move(insts), kind]() -> result<std::vector<instance>> {
    if (path.is_root()) return errc::root_path_not_allowed;
    std::vector<instance> stored;
    stored.reserve(insts.size());
    // All were validated first: the core refuses none of them now.
    for (const auto& inst : insts) {
      auto r = impl_->register_here(path, inst, kind);
      if (!r) return r.error();
      stored.push_back(std::move(r).value());
    }
    return stored;
  };
}

std::function<result<bool>()> replica::deregister_write(service_path path, std::string id, instance_kind kind) {
  return [this, path = std::move(path), id = std::move(id), kind]() -> result<bool> {
    auto r = impl_->core->deregister_instance(path, id, kind);
    if (r && impl_->disk) impl_->disk->erase_own(instance_key(path.str(), kind, id));
    return r;
  };
}

result<instance> replica::register_instance(std::string_view path, instance inst, instance_kind kind) {
  auto p = instance_path(path, std::span(&inst, 1));
  if (!p) return p.error();
  return write_and_wait(register_write(std::move(p).value(), std::move(inst), kind));
}

void replica::register_instance_async(std::string_view path, instance inst, instance_kind kind,
                                      completion<instance> done) {
  auto p = instance_path(path, std::span(&inst, 1));
  if (!p) return done(p.error());
  submit_write(register_write(std::move(p).value(), std::move(inst), kind), std::move(done));
}

result<std::vector<instance>> replica::register_instances(std::string_view path, std::vector<instance> insts,
                                                        instance_kind kind) {
  auto p = instance_path(path, insts);
  if (!p) return p.error();
  return write_and_wait(register_all_write(std::move(p).value(), std::move(insts), kind));
}

void replica::register_instances_async(std::string_view path, std::vector<instance> insts, instance_kind kind,
                                       completion<std::vector<instance>> done) {
  auto p = instance_path(path, insts);
  if (!p) return done(p.error());
  submit_write(register_all_write(std::move(p).value(), std::move(insts), kind), std::move(done));
}

result<bool> replica::deregister_instance(std::string_view path, std::string_view id, instance_kind kind) {
  auto p = service_path::parse(path);
  if (!p) return p.error();
  return write_and_wait(deregister_write(std::move(p).value(), std::string(id), kind));
}

void replica::deregister_instance_async(std::string_view path, std::string_view id, instance_kind kind,
                                        completion<bool> done) {
  auto p = service_path::parse(path);
  if (!p) return done(p.error());
  submit_write(deregister_write(std::move(p).value(), std::string(id), kind), std::move(done));
}

result<std::shared_ptr<serve_counter>> replica::count_serving(std::string_view path, std::string_view id) {
  auto p = service_path::parse(path);
  if (!p) return p.error();
  errc why = errc::stopped;
  auto counted = on_replica_thread(
      [this, p = std::move(p).value(), id = std::string(id)] { return impl_->core->count_serving(p, id); }, &why);
  if (!counted) return why;
  return std::move(*counted);
}

result<void> replica::set_config(std::string_view key, std::string value, std::uint64_t flags) {
  auto p = service_path::parse(key);
  if (!p) return p.error();
  return write_and_wait<result<void>>([this, p = std::move(p).value(), value = std::move(value), flags]() mutable {
    return impl_->core->set_config(p, std::move(value), flags);
  });
}

void replica::set_config_async(std::string_view key, std::string value, completion<void> done) {
  set_config_async(key, std::move(value), 0, std::move(done));
}

void replica::set_config_async(std::string_view key, std::string value, std::uint64_t flags, completion<void> done) {
  auto p = service_path::parse(key);
  if (!p) return done(p.error());
  submit_write<result<void>>(
      [this, p = std::move(p).value(), value = std::move(value), flags]() mutable {
        return impl_->core->set_config(p, std::move(value), flags);
      },
      std::move(done));
}

result<bool> replica::erase_config(std::string_view key) {
  auto p = service_path::parse(key);
  if (!p) return p.error();
  return write_and_wait<result<bool>>([this, p = std::move(p).value()] { return impl_->core->erase_config(p); });
}

void replica::erase_config_async(std::string_view key, completion<bool> done) {
  auto p = service_path::parse(key);
  if (!p) return done(p.error());
  submit_write<result<bool>>([this, p = std::move(p).value()] { return impl_->core->erase_config(p); },
                             std::move(done));
}

result<std::size_t> replica::erase_config_prefix(std::string_view prefix) {
  if (auto ok = valid_prefix(prefix); !ok) return ok.error();
  return write_and_wait<result<std::size_t>>(
      [this, prefix = std::string(prefix)] { return impl_->core->erase_config_prefix(prefix); });
}

void replica::erase_config_prefix_async(std::string_view prefix, completion<std::size_t> done) {
  if (auto ok = valid_prefix(prefix); !ok) return done(ok.error());
  submit_write<result<std::size_t>>(
      [this, prefix = std::string(prefix)] { return impl_->core->erase_config_prefix(prefix); }, std::move(done));
}

// ---- reads ----------------------------------------------------------------------

std::shared_ptr<const snapshot> replica::current() const {
  // A thread-local copy per replica makes the common case one atomic load:
  // the mutex is taken only when a new snapshot was published since this
  // thread last looked.
  struct cache {
    std::uint64_t owner = 0;  // serial_, not the address: addresses are reused
    std::shared_ptr<const snapshot> snap;
  };
  thread_local cache local;
  if (local.owner != serial_ || !local.snap ||
      local.snap->sequence != sequence_.load(std::memory_order_acquire)) {
    std::lock_guard lock(published_mutex_);
    local.owner = serial_;
    local.snap = published_;
  }
  return local.snap;
}

service_list replica::lookup(std::string_view path) const {
  auto snap = current();
  const service_view* view = snap->find(path);
  return service_list(std::move(snap), view);
}

std::optional<std::string> replica::get_config(std::string_view key) const {
  auto snap = current();
  const auto* entry = snap->config->find(key);
  if (entry == nullptr) return std::nullopt;
  return entry->value;
}

std::vector<member_info> replica::members() const {
  auto r = on_replica_thread([this] { return impl_->member_table(std::chrono::steady_clock::now()); });
  return r ? std::move(*r) : std::vector<member_info>{};
}

std::shared_ptr<const replica_status> replica::status() const {
  std::lock_guard lock(status_mutex_);
  return status_;
}

void replica::publish_status() {
  auto status = std::make_shared<replica_status>();
  status->taken = std::chrono::steady_clock::now();
  status->members = impl_->member_table(status->taken);
  status->metrics = impl_->take_metrics(status->members);
  std::lock_guard lock(status_mutex_);
  status_ = std::move(status);
}

transport::protocol_stats replica::stats() const {
  return on_replica_thread([this] { return impl_->core->stats(); }).value_or(transport::protocol_stats{});
}

void replica::set_send_filter(std::function<bool(const std::string&)> allow) {
  on_replica_thread([this, allow = std::move(allow)]() mutable {
    impl_->driver->set_send_filter(std::move(allow));
    return true;
  });
}

replica_metrics replica::metrics() const {
  auto r = on_replica_thread(
      [this] { return impl_->take_metrics(impl_->member_table(std::chrono::steady_clock::now())); });
  return r ? *r : replica_metrics{};
}

// ---- watches ----------------------------------------------------------------------

result<watch_handle> replica::watch(std::string_view prefix,
                                    std::function<void(const service_view&)> callback) {
  auto p = service_path::parse(prefix);
  if (!p) return p.error();
  if (impl_->stopped.load()) return errc::stopped;
  const auto id = impl_->watches->add_service_watch(std::move(p).value(), std::move(callback), [this] { return current(); });
  return watch_handle(impl_->watches, id);
}

result<watch_handle> replica::watch_config(std::string_view prefix,
                                           std::function<void(const config_change&)> callback) {
  auto p = service_path::parse(prefix);
  if (!p) return p.error();
  if (impl_->stopped.load()) return errc::stopped;
  const auto id = impl_->watches->add_config_watch(std::move(p).value(), std::move(callback), [this] { return current(); });
  return watch_handle(impl_->watches, id);
}

watch_handle& watch_handle::operator=(watch_handle&& other) noexcept {
  if (this != &other) {
    cancel();
    hub_ = std::move(other.hub_);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

void watch_handle::cancel() {
  if (hub_) hub_->remove(id_);
  hub_.reset();
}

}  // namespace lattice::registry
