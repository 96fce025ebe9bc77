// tests/support/crdt_models.hpp: one model per CRDT type of crdt/, telling
// the law checker (lattice/crdt/testing/laws.hpp, where models are
// described) how to make a random mutation of it. Small domains, so that
// replicas collide on the same elements. Adding a type to the law checker is
// one model and one line in tests/crdt/laws_test.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>

#include <rapidcheck.h>

#include "lattice/crdt/g_counter.hpp"
#include "lattice/crdt/g_set.hpp"
#include "lattice/crdt/lww_element_set.hpp"
#include "lattice/crdt/lww_map.hpp"
#include "lattice/crdt/lww_register.hpp"
#include "lattice/crdt/or_set.hpp"
#include "lattice/crdt/pn_counter.hpp"
#include "lattice/crdt/two_phase_set.hpp"
#include "lattice/crdt/testing/replica_context.hpp"

namespace lattice::testing {

using crdt::hlc_timestamp;
using crdt::testing::replica_context;

struct g_counter_model {
  using type = crdt::g_counter;
  using action = std::uint64_t;
  static rc::Gen<action> gen() { return rc::gen::inRange<std::uint64_t>(0, 1000); }
  static std::pair<type, type::op_type> mutate(type& s, replica_context& ctx, action amount) {
    auto op = s.prepare_increment(ctx.id, amount);
    return {s.increment(ctx.id, amount), op};
  }
};

struct pn_counter_model {
  using type = crdt::pn_counter;
  using action = std::int64_t;
  static rc::Gen<action> gen() { return rc::gen::inRange<std::int64_t>(-1000, 1001); }
  static std::pair<type, type::op_type> mutate(type& s, replica_context& ctx, action amount) {
    auto op = s.prepare_add(ctx.id, amount);
    return {s.add(ctx.id, amount), op};
  }
};

struct g_set_model {
  using type = crdt::g_set<int>;
  using action = int;
  static rc::Gen<action> gen() { return rc::gen::inRange(0, 24); }
  static std::pair<type, type::op_type> mutate(type& s, replica_context&, action element) {
    auto op = s.prepare_insert(element);
    return {s.insert(element), op};
  }
};

/// (remove?, element) for the sets that can remove.
using set_action = std::pair<bool, int>;
inline rc::Gen<set_action> gen_set_action(int domain) {
  return rc::gen::pair(rc::gen::weightedElement<bool>({{2, false}, {1, true}}),
                       rc::gen::inRange(0, domain));
}

struct two_phase_set_model {
  using type = crdt::two_phase_set<int>;
  using action = set_action;
  static rc::Gen<action> gen() { return gen_set_action(24); }
  static std::pair<type, type::op_type> mutate(type& s, replica_context&, const action& a) {
    if (a.first) {
      auto op = s.prepare_remove(a.second);
      return {s.remove(a.second), op};
    }
    auto op = s.prepare_insert(a.second);
    return {s.insert(a.second), op};
  }
};

struct or_set_model {
  using type = crdt::or_set<int>;
  using action = set_action;
  static rc::Gen<action> gen() { return gen_set_action(12); }
  static std::pair<type, type::op_type> mutate(type& s, replica_context& ctx, const action& a) {
    if (a.first) {
      auto op = s.prepare_remove(a.second);
      return {s.remove(a.second), op};
    }
    auto op = s.prepare_insert(ctx.id, a.second);
    return {s.insert(ctx.id, a.second), op};
  }
};

/// (value, wall-clock step): a step of 0 exercises the HLC logical counter.
struct lww_register_model {
  using type = crdt::lww_register<int>;
  using action = std::pair<int, std::uint64_t>;
  static rc::Gen<action> gen() {
    return rc::gen::pair(rc::gen::inRange(0, 100), rc::gen::inRange<std::uint64_t>(0, 3));
  }
  static std::pair<type, type::op_type> mutate(type& s, replica_context& ctx, const action& a) {
    const auto stamp = ctx.stamp(a.second);
    auto op = s.prepare_assign(a.first, stamp);
    return {s.assign(a.first, stamp), op};
  }
};

struct lww_element_set_model {
  using type = crdt::lww_element_set<std::string>;
  using action = std::tuple<bool, int, std::uint64_t>;
  static rc::Gen<action> gen() {
    return rc::gen::tuple(rc::gen::weightedElement<bool>({{2, false}, {1, true}}),
                          rc::gen::inRange(0, 16), rc::gen::inRange<std::uint64_t>(0, 3));
  }
  static std::pair<type, type::op_type> mutate(type& s, replica_context& ctx, const action& a) {
    const auto [remove, element, step] = a;
    const std::string key = "/svc/" + std::to_string(element);
    const auto stamp = ctx.stamp(step);
    if (remove) {
      auto op = s.prepare_remove(key, stamp);
      return {s.remove(key, stamp), op};
    }
    auto op = s.prepare_insert(key, stamp);
    return {s.insert(key, stamp), op};
  }
  static void compact(type& s, hlc_timestamp stable) { s.compact(stable); }
};

struct lww_map_model {
  using type = crdt::lww_map<std::string, int>;
  /// (erase?, key, value, wall-clock step)
  using action = std::tuple<bool, int, int, std::uint64_t>;
  static rc::Gen<action> gen() {
    return rc::gen::tuple(rc::gen::weightedElement<bool>({{3, false}, {1, true}}),
                          rc::gen::inRange(0, 16), rc::gen::inRange(0, 50),
                          rc::gen::inRange<std::uint64_t>(0, 3));
  }
  static std::pair<type, type::op_type> mutate(type& s, replica_context& ctx, const action& a) {
    const auto [erase, k, value, step] = a;
    const std::string key = "/config/" + std::to_string(k);
    const auto stamp = ctx.stamp(step);
    if (erase) {
      auto op = s.prepare_erase(key, stamp);
      return {s.erase(key, stamp), op};
    }
    auto op = s.prepare_put(key, value, stamp);
    return {s.put(key, value, stamp), op};
  }
  static void compact(type& s, hlc_timestamp stable) { s.compact(stable); }
};

}  // namespace lattice::testing
