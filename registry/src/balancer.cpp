#include "lattice/registry/balancer.hpp"

#include <cmath>
#include <random>

#include <xxhash.h>

namespace lattice::registry {
namespace {

bool eligible(const instance_view& v, const pick_options& o) {
  return v->weight > 0 && (!o.role || v->role == *o.role);
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
  std::uint64_t total = 0;
  for (const auto& v : view.providers)
    if (eligible(v, options)) total += v->weight;
  if (total == 0) return nullptr;
  thread_local std::mt19937_64 rng{std::random_device{}()};
  auto ticket = std::uniform_int_distribution<std::uint64_t>(0, total - 1)(rng);
  for (const auto& v : view.providers) {
    if (!eligible(v, options)) continue;
    if (ticket < v->weight) return &v;
    ticket -= v->weight;
  }
  return nullptr;
}

const instance_view* least_loaded::pick(const service_view& view, const pick_options& options) {
  const instance_view* best = nullptr;
  std::int64_t best_load = 0;
  for (const auto& v : view.providers) {
    if (!eligible(v, options)) continue;
    const auto load = v.in_flight();
    // Fewer in flight wins; on a tie, the fewer per unit of weight.
    if (!best || load < best_load ||
        (load == best_load && static_cast<std::uint64_t>(load) * (*best)->weight <
                                  static_cast<std::uint64_t>(best_load) * v->weight) ||
        (load == best_load && load == 0 && v->weight > (*best)->weight)) {
      best = &v;
      best_load = load;
    }
  }
  return best;
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
    const auto h = XXH3_64bits_withSeed(v->id.data(), v->id.size(), key_hash);
    // Weighted rendezvous (Schindelhauer & Schomaker): -w / ln(u), u in (0,1).
    const double u = (static_cast<double>(h >> 11) + 0.5) / 9007199254740992.0;
    const double score = -static_cast<double>(v->weight) / std::log(u);
    if (!best || score > best_score) {
      best = &v;
      best_score = score;
    }
  }
  return best;
}

}  // namespace lattice::registry
