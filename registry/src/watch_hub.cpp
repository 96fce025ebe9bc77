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

void watch_hub::queue_service(watch& w, const std::shared_ptr<const service_view>& view) {
  auto& slot = w.pending_services[view->path];
  if (!slot || slot->version <= view->version) slot = view;  // keep the latest
}

std::uint64_t watch_hub::add_service_watch(service_path prefix,
                                           std::function<void(const service_view&)> callback,
                                           const snapshot_source& source) {
  watch w;
  w.prefix = std::move(prefix);
  w.on_service = std::move(callback);
  return add(std::move(w), source);
}

std::uint64_t watch_hub::add_config_watch(service_path prefix,
                                          std::function<void(const config_change&)> callback,
                                          const snapshot_source& source) {
  watch w;
  w.prefix = std::move(prefix);
  w.on_config = std::move(callback);
  return add(std::move(w), source);
}

std::uint64_t watch_hub::add(watch w, const snapshot_source& source) {
  std::unique_lock lock(mutex_);
  const auto snap = source();
  // Paths under a prefix start with its characters, but so does "/api-x"
  // for "/api": hence the segment-wise check.
  const std::string& text = w.prefix.str();
  if (w.on_service) {
    for (const auto& view : snap->services.starting_with(text))
      if (w.prefix.is_prefix_of(view->path)) queue_service(w, view);
  } else {
    for (auto it = snap->config->lower_bound(text);
         it != snap->config->end() && it->first.starts_with(text); ++it)
      if (w.prefix.is_prefix_of(it->first)) w.pending_config[it->first] = it->second;
  }
  const auto id = next_id_++;
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
  std::unique_lock lock(mutex_);
  bool any = false;
  for (auto& [id, w] : watches_) {
    if (w.on_service) {
      for (const auto& path : p.changed_paths)
        if (w.prefix.is_prefix_of(path)) {
          queue_service(w, p.snap->services.find_shared(path));
          any = true;
        }
    } else {
      for (const auto& key : p.changed_config)
        if (w.prefix.is_prefix_of(key)) {
          const auto it = p.snap->config->find(key);
          w.pending_config[key] = it == p.snap->config->end() ? std::nullopt : std::optional(it->second);
          any = true;
        }
    }
  }
  if (!any) return;
  if (threaded_) wake_.notify_all(); else deliver_all(lock);
}

void watch_hub::deliver_all(std::unique_lock<std::mutex>& lock) {
  // Repeat until nothing is pending: a callback may take long, and newer
  // views may arrive meanwhile (they replace older ones in the queue).
  for (bool delivered = true; delivered;) {
    delivered = false;
    for (auto it = watches_.begin(); it != watches_.end();) {
      const auto id = it->first;
      auto services = std::exchange(it->second.pending_services, {});
      auto config = std::exchange(it->second.pending_config, {});
      if (services.empty() && config.empty()) {
        ++it;
        continue;
      }
      delivered = true;
      auto on_service = it->second.on_service;
      auto on_config = it->second.on_config;
      running_ = id;
      runner_ = std::this_thread::get_id();
      lock.unlock();
      // (Elements, not structured bindings: clang 15 cannot capture those.)
      for (const auto& entry : services) contain(id, [&] { on_service(*entry.second); });
      for (auto& entry : config) contain(id, [&] { on_config(config_change{entry.first, std::move(entry.second)}); });
      lock.lock();
      running_ = 0;
      runner_ = {};
      idle_.notify_all();
      it = watches_.upper_bound(id);  // the map may have changed meanwhile
    }
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
    deliver_all(lock);
    if (stopping_) return;
    wake_.wait(lock);
  }
}

}  // namespace lattice::registry
