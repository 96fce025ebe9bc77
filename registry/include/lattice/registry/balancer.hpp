// lattice/registry/balancer.hpp: choosing a provider from a service view.
//
// Every balancer reads only the view it is given (the local snapshot), so
// a pick costs nanoseconds and never waits for the network. Each returns
// nullptr when no provider qualifies.
//
//   lattice::registry::least_loaded lb;
//   auto list = replica.lookup("/api/user/1.0.0");
//   if (const instance_view* target = lb.pick(*list)) {
//     lattice::registry::call_guard call(*target);   // counts in flight
//     invoke((*target)->address(), (*target)->port());
//   }
//
// Weight 0 drains an instance: no balancer picks it while another
// qualifies (consistent hashing and least-loaded included).
//
// Thread safety: round_robin keeps an atomic cursor; the others keep no
// state (weighted_random uses a thread-local generator). All may be shared
// between threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "lattice/registry/snapshot.hpp"

namespace lattice::registry {

struct pick_options {
  /// Only providers in this role (primary_first sets it).
  std::optional<instance_role> role;
  /// The request's key, for consistent hashing.
  std::string_view key;
};

class balancer {
 public:
  virtual ~balancer() = default;
  virtual const instance_view* pick(const service_view& view, const pick_options& options = {}) = 0;
};

/// Each provider in turn.
class round_robin final : public balancer {
 public:
  const instance_view* pick(const service_view& view, const pick_options& options = {}) override;

 private:
  std::atomic<std::uint64_t> cursor_{0};
};

/// At random, in proportion to weight.
class weighted_random final : public balancer {
 public:
  const instance_view* pick(const service_view& view, const pick_options& options = {}) override;
};

/// The fewest calls in flight cluster-wide (the instance's PN-Counter:
/// every consumer's call guards), then the fewest per unit of weight;
/// providers still tied share the pick at random in proportion to weight
/// (so calls that never overlap still spread).
class least_loaded final : public balancer {
 public:
  const instance_view* pick(const service_view& view, const pick_options& options = {}) override;
};

/// Primaries through `inner`; secondaries only when no primary qualifies.
class primary_first final : public balancer {
 public:
  explicit primary_first(std::unique_ptr<balancer> inner) : inner_(std::move(inner)) {}
  const instance_view* pick(const service_view& view, const pick_options& options = {}) override;

 private:
  std::unique_ptr<balancer> inner_;
};

/// Rendezvous (highest-random-weight) hashing of options.key over the
/// providers' ids, weighted: a key keeps its provider while that provider
/// is listed, and only the keys of a provider that leaves move.
class consistent_hash final : public balancer {
 public:
  const instance_view* pick(const service_view& view, const pick_options& options = {}) override;
};

}  // namespace lattice::registry
