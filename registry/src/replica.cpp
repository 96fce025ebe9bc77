#include "lattice/registry/replica.hpp"

#include <future>
#include <random>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/system_error.hpp>
#include <spdlog/spdlog.h>

#include "lattice/transport/asio_driver.hpp"
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
  std::mutex stop_mutex;
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
  if (!options.cluster_key.empty()) {
    const auto* bytes = reinterpret_cast<const std::byte*>(options.cluster_key.data());
    d.frames.key = std::make_shared<const transport::cluster_key>(
        std::vector<std::byte>(bytes, bytes + options.cluster_key.size()));
  }
  try {
    in.driver = std::make_unique<transport::asio_driver>(in.io, d);
  } catch (const boost::system::system_error& e) {
    return e.code();
  }
  if (options.id == 0) options.id = std::random_device{}() | (std::uint64_t{std::random_device{}()} << 32) | 1;
  const auto now = std::chrono::steady_clock::now();
  core_options c;
  c.protocol.self = options.id;
  c.protocol.address = (options.advertise_host.empty() ? options.listen_host : options.advertise_host) + ":" +
                       std::to_string(in.driver->port());
  c.protocol.incarnation = crdt::system_wall_clock_us();
  c.protocol.seeds = options.seeds;
  c.protocol.mode = options.mode;
  c.protocol.heartbeat_interval = options.heartbeat_interval;
  c.protocol.anti_entropy_interval = options.anti_entropy_interval;
  c.protocol.liveness.suspect_after = options.suspect_after;
  c.protocol.liveness.dead_after = options.dead_after;
  c.protocol.random_seed = std::random_device{}();
  c.reap_after = options.reap_after;
  c.load_publish_interval = options.load_publish_interval;
  c.gc_grace = options.gc_grace;
  r->id_ = options.id;
  r->address_ = c.protocol.address;
  in.core = std::make_unique<registry_core>(std::move(c), now);
  in.adapter = std::make_unique<driver_adapter>(*r, *in.core, in.io);
  in.watches = std::make_shared<watch_hub>(!options.callbacks_on_replica_thread);
  r->publish();  // the first, empty snapshot: readers never see null
  in.driver->start(*in.adapter);
  in.thread = std::thread([&io = in.io] { io.run(); });
  spdlog::info("lattice replica {} listening on {}", r->id_, r->address_);
  return r;
}

void replica::stop() {
  std::lock_guard lock(impl_->stop_mutex);
  if (impl_->stopped.exchange(true)) return;
  boost::asio::post(impl_->io, [this] {
    impl_->driver->stop();  // leave (tombstones our ephemeral instances), flush, close
    publish();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->watches->shutdown();
}

template <class F>
auto replica::on_replica_thread(F&& f) const -> std::optional<decltype(f())> {
  using R = decltype(f());
  if (impl_->stopped.load()) return std::nullopt;
  std::packaged_task<R()> task(std::forward<F>(f));
  auto done = task.get_future();
  boost::asio::post(impl_->io, [&task] { task(); });
  // The io_context may stop before running it (a concurrent stop()).
  if (done.wait_for(std::chrono::seconds(10)) != std::future_status::ready) return std::nullopt;
  return done.get();
}

template <class F>
auto replica::write_on_replica_thread(F&& f) -> decltype(f()) {
  auto r = on_replica_thread(std::forward<F>(f));
  if (!r) return errc::stopped;
  return std::move(*r);
}

void replica::publish() {
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

result<instance> replica::register_instance(std::string_view path, instance inst, instance_kind kind) {
  auto p = service_path::parse(path);
  if (!p) return p.error();
  if (auto ok = validate(inst); !ok) return ok.error();  // fail fast, off the replica thread
  return write_on_replica_thread([&]() -> result<instance> {
    auto r = impl_->core->register_instance(p.value(), std::move(inst), kind);
    impl_->driver->flush();
    publish();
    return r;
  });
}

result<void> replica::deregister_instance(std::string_view path, std::string_view id, instance_kind kind) {
  auto p = service_path::parse(path);
  if (!p) return p.error();
  return write_on_replica_thread([&]() -> result<void> {
    auto r = impl_->core->deregister_instance(p.value(), id, kind);
    impl_->driver->flush();
    publish();
    return r;
  });
}

result<void> replica::set_config(std::string_view key, std::string value) {
  auto p = service_path::parse(key);
  if (!p) return p.error();
  return write_on_replica_thread([&]() -> result<void> {
    auto r = impl_->core->set_config(p.value(), std::move(value));
    impl_->driver->flush();
    publish();
    return r;
  });
}

result<void> replica::erase_config(std::string_view key) {
  auto p = service_path::parse(key);
  if (!p) return p.error();
  return write_on_replica_thread([&]() -> result<void> {
    auto r = impl_->core->erase_config(p.value());
    impl_->driver->flush();
    publish();
    return r;
  });
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
  const auto it = snap->config->find(key);
  if (it == snap->config->end()) return std::nullopt;
  return it->second;
}

std::vector<member_info> replica::members() const {
  auto r = on_replica_thread([this] {
    std::vector<member_info> out;
    const auto now = std::chrono::steady_clock::now();
    const auto& m = impl_->core->members();
    for (const auto& [id, record] : m.table().records())
      out.push_back(member_info{id, record.address, record.incarnation, m.state_of(id, now)});
    return out;
  });
  return r ? std::move(*r) : std::vector<member_info>{};
}

transport::protocol_stats replica::stats() const {
  return on_replica_thread([this] { return impl_->core->stats(); }).value_or(transport::protocol_stats{});
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
