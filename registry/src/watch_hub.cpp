#include "watch_hub.hpp"

#include <pthread.h>

#include <spdlog/spdlog.h>

namespace lattice::registry {

watch_hub::watch_hub(bool threaded) : threaded_(threaded) {
  if (!threaded_) return;
  dispatcher_ = std::thread([this] { run(); });
  pthread_setname_np(dispatcher_.native_handle(), "lattice-watches");  // for top -H, perf and gdb
}

watch_hub::~watch_hub() { shutdown(); }

void watch_hub::shutdown() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (dispatcher_.joinable() && dispatcher_.get_id() != std::this_thread::get_id()) dispatcher_.join();
}

void watch_hub::mark_ready(std::uint64_t id, watch& w) {
  if (w.ready) return;
  w.ready = true;
  ready_.push_back(id);
}

void watch_hub::queue_service(std::uint64_t id, watch& w, const std::shared_ptr<const service_view>& view) {
  if (!w.pending) w.pending = std::make_unique<pending_work>();
  auto& slot = w.pending->services[view->path];
  if (!slot || slot->version <= view->version) slot = view;  // keep the latest
  mark_ready(id, w);
}

std::uint64_t watch_hub::add_service_watch(service_path prefix,
                                           std::function<void(const service_view&)> callback,
                                           const snapshot_source& source) {
  watch w;
  w.prefix = std::move(prefix);
  w.callback = std::move(callback);
  return add(std::move(w), source);
}

std::uint64_t watch_hub::add_config_watch(service_path prefix,
                                          std::function<void(const config_change&)> callback,
                                          const snapshot_source& source) {
  watch w;
  w.prefix = std::move(prefix);
  w.callback = std::move(callback);
  return add(std::move(w), source);
}

std::uint64_t watch_hub::add(watch w, const snapshot_source& source) {
  std::unique_lock lock(mutex_);
  const auto snap = source();
  w.from_sequence = snap->sequence;
  // Paths under a prefix start with its characters, but so does "/api-x"
  // for "/api": hence the segment-wise check.
  const std::string& text = w.prefix.str();
  const auto id = next_id_++;
  if (w.callback.index() == 0) {
    for (const auto& view : snap->services.starting_with(text))
      if (w.prefix.is_prefix_of(view->path)) queue_service(id, w, view);
  } else {
    for (auto it = snap->config->lower_bound(text);
         it != snap->config->end() && it->key.starts_with(text); ++it)
      if (w.prefix.is_prefix_of(it->key)) {
        if (!w.pending) w.pending = std::make_unique<pending_work>();
        w.pending->config[it->key] = it->value;
        mark_ready(id, w);
      }
  }
  auto& e = *watches_.emplace(id, std::move(w)).first;
  auto& group = groups_of(e.second)[e.second.prefix.str()];
  e.second.slot = static_cast<std::uint32_t>(group.size());
  group.push_back(&e);
  if (threaded_) wake_.notify_all(); else deliver_all(lock);
  return id;
}

std::size_t watch_hub::size() const {
  std::lock_guard lock(mutex_);
  return watches_.size();
}

void watch_hub::remove(std::uint64_t id) {
  std::unique_lock lock(mutex_);
  if (const auto it = watches_.find(id); it != watches_.end()) {
    auto& groups = groups_of(it->second);
    const auto g = groups.find(it->second.prefix.str());
    auto& group = g->second;
    const auto slot = it->second.slot;
    group[slot] = group.back();
    group[slot]->second.slot = slot;
    group.pop_back();
    if (group.empty()) groups.erase(g);
    watches_.erase(it);
  }
  if (runner_ == std::this_thread::get_id()) return;  // from inside a callback
  idle_.wait(lock, [&] { return running_ != id; });
}

void watch_hub::notify(const publication& p) {
  if (p.changed_paths.empty() && p.changed_config.empty()) return;
  std::unique_lock lock(mutex_);
  if (threaded_) {
    publications_.push_back(p);
    wake_.notify_all();
    return;
  }
  if (match(p)) deliver_all(lock);
}

template <class F>
void watch_hub::for_each_covering(prefix_groups& groups, std::string_view path, F&& f) {
  if (groups.empty()) return;
  const auto visit = [&](std::string_view prefix) {
    const auto g = groups.find(prefix);
    if (g == groups.end()) return;
    for (entry* e : g->second) f(*e);
  };
  visit("/");
  for (std::size_t at = path.find('/', 1); at != std::string_view::npos; at = path.find('/', at + 1))
    visit(path.substr(0, at));
  if (path.size() > 1) visit(path);
}

bool watch_hub::match(const publication& p) {
  bool any = false;
  for (const auto& path : p.changed_paths) {
    std::shared_ptr<const service_view> view;  // looked up once per path, if anyone watches it
    for_each_covering(service_groups_, path, [&](entry& e) {
      if (p.snap->sequence <= e.second.from_sequence) return;  // its initial views are newer
      if (!view) view = p.snap->services.find_shared(path);
      queue_service(e.first, e.second, view);
      any = true;
    });
  }
  for (const auto& key : p.changed_config) {
    std::optional<std::optional<std::string>> value;
    for_each_covering(config_groups_, key, [&](entry& e) {
      if (p.snap->sequence <= e.second.from_sequence) return;
      if (!value) {
        const auto* found = p.snap->config->find(key);
        value = found == nullptr ? std::nullopt : std::optional(found->value);
      }
      auto& w = e.second;
      if (!w.pending) w.pending = std::make_unique<pending_work>();
      w.pending->config[key] = *value;
      mark_ready(e.first, w);
      any = true;
    });
  }
  return any;
}

void watch_hub::deliver_all(std::unique_lock<std::mutex>& lock) {
  // Until nothing is pending: a callback may take long, and newer views may
  // arrive meanwhile (they replace older ones in the queue, and put the
  // watch back in line if it had left it).
  while (!ready_.empty()) {
    const auto id = ready_.front();
    ready_.pop_front();
    const auto it = watches_.find(id);
    if (it == watches_.end()) continue;  // removed since
    it->second.ready = false;
    const auto work = std::move(it->second.pending);
    if (!work) continue;
    // A copy: the callback may remove its own watch.
    auto callback = it->second.callback;
    running_ = id;
    runner_ = std::this_thread::get_id();
    lock.unlock();
    // (Elements, not structured bindings: clang 15 cannot capture those.)
    if (const auto* on_service = std::get_if<0>(&callback))
      for (const auto& item : work->services) contain(id, [&] { (*on_service)(*item.second); });
    if (const auto* on_config = std::get_if<1>(&callback))
      for (auto& item : work->config)
        contain(id, [&] { (*on_config)(config_change{item.first, std::move(item.second)}); });
    lock.lock();
    running_ = 0;
    runner_ = {};
    idle_.notify_all();
  }
}

template <class F>
void watch_hub::contain(std::uint64_t id, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    callback_errors_.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("lattice watch {}: callback threw: {}", id, e.what());
  } catch (...) {
    callback_errors_.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("lattice watch {}: callback threw a non-standard exception", id);
  }
}

void watch_hub::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    while (!publications_.empty()) {
      const publication p = std::move(publications_.front());
      publications_.pop_front();
      match(p);
    }
    deliver_all(lock);
    // Callbacks ran unlocked: new publications may have come meanwhile.
    if (!publications_.empty() || !ready_.empty()) continue;
    if (stopping_) return;
    wake_.wait(lock);
  }
}

}  // namespace lattice::registry
