#include "lattice/registry/balancer.hpp"

#include <cmath>
#include <random>

#include <xxhash.h>

namespace lattice::registry {
namespace {

bool eligible(const instance_view& v, const pick_options& o) {
  return v->weight() > 0 && (!o.role || v->role() == *o.role);
}

// At random among the providers `among` accepts, in proportion to weight.
template <class Pred>
const instance_view* pick_by_weight(const service_view& view, Pred among) {
  std::uint64_t total = 0;
  for (const auto& v : view.providers)
    if (among(v)) total += v->weight();
  if (total == 0) return nullptr;
  thread_local std::mt19937_64 rng{std::random_device{}()};
  auto ticket = std::uniform_int_distribution<std::uint64_t>(0, total - 1)(rng);
  for (const auto& v : view.providers) {
    if (!among(v)) continue;
    if (ticket < v->weight()) return &v;
    ticket -= v->weight();
  }
  return nullptr;
}

}  // namespace

const instance_view* round_robin::pick(const service_view& view, const pick_options& options) {
  // Turn over the eligible providers only, so a drained one does not hand
  // its turns to its neighbour.
  std::size_t eligible_count = 0;
  for (const auto& v : view.providers) if (eligible(v, options)) ++eligible_count;
  if (eligible_count == 0) return nullptr;
  auto turn = cursor_.fetch_add(1, std::memory_order_relaxed) % eligible_count;
  for (const auto& v : view.providers)
    if (eligible(v, options) && turn-- == 0) return &v;
  return nullptr;
}

const instance_view* weighted_random::pick(const service_view& view, const pick_options& options) {
  return pick_by_weight(view, [&](const instance_view& v) { return eligible(v, options); });
}

const instance_view* least_loaded::pick(const service_view& view, const pick_options& options) {
  // The fewest in flight; among equals, the fewest per unit of weight.
  const auto better = [](std::int64_t load, const instance_view& v, std::int64_t best_load,
                         const instance_view& best) {
    return load < best_load ||
           (load == best_load &&
            static_cast<std::uint64_t>(load) * best->weight() < static_cast<std::uint64_t>(best_load) * v->weight());
  };
  const instance_view* best = nullptr;
  std::int64_t best_load = 0;
  for (const auto& v : view.providers) {
    if (!eligible(v, options)) continue;
    const auto load = v.in_flight();
    if (!best || better(load, v, best_load, *best)) {
      best = &v;
      best_load = load;
    }
  }
  if (best == nullptr) return nullptr;
  // Every provider as good as the best shares the pick, in proportion to
  // weight: otherwise a caller whose calls never overlap (in flight always
  // 0) would send them all to one provider.
  const auto* shared = pick_by_weight(view, [&](const instance_view& v) {
    if (!eligible(v, options)) return false;
    const auto load = v.in_flight();
    return !better(load, v, best_load, *best) && !better(best_load, *best, load, v);
  });
  return shared ? shared : best;
}

const instance_view* primary_first::pick(const service_view& view, const pick_options& options) {
  pick_options o = options;
  o.role = instance_role::primary;
  if (const auto* p = inner_->pick(view, o)) return p;
  o.role = instance_role::secondary;
  return inner_->pick(view, o);
}

const instance_view* consistent_hash::pick(const service_view& view, const pick_options& options) {
  const instance_view* best = nullptr;
  double best_score = 0;
  const auto key_hash = XXH3_64bits(options.key.data(), options.key.size());
  for (const auto& v : view.providers) {
    if (!eligible(v, options)) continue;
    const auto h = XXH3_64bits_withSeed(v->id().data(), v->id().size(), key_hash);
    // Weighted rendezvous (Schindelhauer & Schomaker): -w / ln(u), u in (0,1).
    const double u = (static_cast<double>(h >> 11) + 0.5) / 9007199254740992.0;
    const double score = -static_cast<double>(v->weight()) / std::log(u);
    if (!best || score > best_score) {
      best = &v;
      best_score = score;
    }
  }
  return best;
}

}  // namespace lattice::registry
