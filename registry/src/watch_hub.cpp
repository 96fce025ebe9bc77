#include "watch_hub.hpp"

#include <spdlog/spdlog.h>

namespace lattice::registry {

watch_hub::watch_hub(bool threaded) : threaded_(threaded) {
  if (threaded_) dispatcher_ = std::thread([this] { run(); });
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
         it != snap->config->end() && it->first.starts_with(text); ++it)
      if (w.prefix.is_prefix_of(it->first)) {
        if (!w.pending) w.pending = std::make_unique<pending_work>();
        w.pending->config[it->first] = it->second;
        mark_ready(id, w);
      }
  }
  watches_.emplace(id, std::move(w));
  if (threaded_) wake_.notify_all(); else deliver_all(lock);
  return id;
}

std::size_t watch_hub::size() const {
  std::lock_guard lock(mutex_);
  return watches_.size();
}

void watch_hub::remove(std::uint64_t id) {
  std::unique_lock lock(mutex_);
  watches_.erase(id);
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

bool watch_hub::match(const publication& p) {
  bool any = false;
  for (auto& [id, w] : watches_) {
    if (p.snap->sequence <= w.from_sequence) continue;  // its initial views are newer
    if (w.callback.index() == 0) {
      for (const auto& path : p.changed_paths)
        if (w.prefix.is_prefix_of(path)) {
          queue_service(id, w, p.snap->services.find_shared(path));
          any = true;
        }
    } else {
      for (const auto& key : p.changed_config)
        if (w.prefix.is_prefix_of(key)) {
          const auto it = p.snap->config->find(key);
          if (!w.pending) w.pending = std::make_unique<pending_work>();
          w.pending->config[key] = it == p.snap->config->end() ? std::nullopt : std::optional(it->second);
          mark_ready(id, w);
          any = true;
        }
    }
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
      for (const auto& entry : work->services) contain(id, [&] { (*on_service)(*entry.second); });
    if (const auto* on_config = std::get_if<1>(&callback))
      for (auto& entry : work->config)
        contain(id, [&] { (*on_config)(config_change{entry.first, std::move(entry.second)}); });
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
