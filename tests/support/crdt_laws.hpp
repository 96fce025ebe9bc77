// tests/support/crdt_laws.hpp: the generic law checker for CRDTs.
//
// check_crdt_laws<Model>() runs rapidcheck properties over random histories
// of a few replicas that mutate (through the model, see crdt_models.hpp) and
// merge each other's full states. It checks, for the model's type T:
//   - join: commutative, associative, idempotent; merge() reports exactly
//     whether the state changed; equal states have equal digests and
//     distinct states distinct digests;
//   - delta ≡ state: joining every delta of the history, shuffled and
//     duplicated, into an empty state gives the join of the final states;
//   - op path: applying every op of the history in a random order, with
//     duplicates (re-delivering out-of-order ones, as a transport buffer
//     would), gives that same join;
//   - convergence: 5 to 8 replicas mutate while a network reorders, drops
//     and duplicates their deltas and ops and random pairs run anti-entropy;
//     once every replica has merged every other, all are equal;
//   - codec: every state, delta and op round-trips to an equal value and the
//     same bytes; every strict prefix of an encoding is rejected; a corrupted
//     encoding is rejected or decodes to a value that re-encodes to exactly
//     the corrupted bytes (decode accepts only canonical input).
// A failure prints rapidcheck's seed and shrunk history; rerun it with
// RC_PARAMS="reproduce=..." as rapidcheck says.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/concepts.hpp"
#include "replica_context.hpp"

namespace lattice::testing {

/// One step of a history: kind 0-2 mutates `replica`, kind 3 merges the
/// state of `peer` into `replica`.
struct step_spec {
  int kind = 0;
  std::size_t replica = 0;
  std::size_t peer = 0;
};

template <class Model>
using history_steps = std::vector<std::pair<step_spec, typename Model::action>>;

template <class Model>
rc::Gen<history_steps<Model>> gen_history(std::size_t replicas) {
  const auto spec = rc::gen::construct<step_spec>(rc::gen::inRange(0, 4),
                                                  rc::gen::inRange<std::size_t>(0, replicas),
                                                  rc::gen::inRange<std::size_t>(0, replicas));
  return rc::gen::container<history_steps<Model>>(rc::gen::pair(spec, Model::gen()));
}

template <class Model>
struct history {
  using type = typename Model::type;
  std::vector<type> states;
  std::vector<type> deltas;
  std::vector<typename type::op_type> ops;
};

/// Distinct ids, and wall clocks that lag one another by a millisecond each
/// (the HLC must make up for the skew).
inline std::vector<replica_context> make_contexts(std::size_t replicas) {
  std::vector<replica_context> contexts;
  for (std::size_t i = 0; i < replicas; ++i)
    contexts.emplace_back(crdt::replica_id{100 + i}, 5'000'000 - 1'000 * i);
  return contexts;
}

template <class Model>
history<Model> run_history(const history_steps<Model>& steps, std::size_t replicas) {
  history<Model> h;
  h.states.resize(replicas);
  auto contexts = make_contexts(replicas);
  for (const auto& [spec, action] : steps) {
    if (spec.kind < 3) {
      auto [delta, op] = Model::mutate(h.states[spec.replica], contexts[spec.replica], action);
      h.deltas.push_back(std::move(delta));
      h.ops.push_back(std::move(op));
    } else {
      h.states[spec.replica].merge(h.states[spec.peer]);
    }
  }
  return h;
}

template <class T>
T join_all(const std::vector<T>& states) {
  T result;
  for (const auto& s : states) result.merge(s);
  return result;
}

/// Shuffles `items` and appends duplicates of a random subset.
template <class U>
std::vector<U> shuffle_with_duplicates(std::vector<U> items, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::size_t original = items.size();
  for (std::size_t i = 0; i < original; ++i)
    if (rng() % 3 == 0) items.push_back(items[i]);
  std::shuffle(items.begin(), items.end(), rng);
  return items;
}

/// Applies `ops` in the given order, holding back out-of-order ones and
/// retrying them each pass, as a transport's reorder buffer would. Every op
/// must eventually apply or be a duplicate.
template <class T>
T apply_ops(const std::vector<typename T::op_type>& ops) {
  T state;
  std::vector<typename T::op_type> pending = ops;
  for (std::size_t pass = 0; pass <= ops.size() && !pending.empty(); ++pass) {
    std::vector<typename T::op_type> held;
    for (const auto& op : pending)
      if (state.apply(op) == crdt::apply_status::out_of_order) held.push_back(op);
    pending.swap(held);
  }
  RC_ASSERT(pending.empty());
  return state;
}

template <class T>
void check_merge_reports_change(T into, const T& from) {
  const T before = into;
  const bool changed = into.merge(from);
  RC_ASSERT(changed == !(into == before));
}

/// The join laws for any value type whose merge is a join: commutative,
/// associative, idempotent. Returns a ⊔ b ⊔ c for further checks. Usable for
/// types outside crdt/ too (the transport's member table).
template <class T>
T check_join_laws(const T& a, const T& b, const T& c) {
  T ab = a, ba = b;
  ab.merge(b);
  ba.merge(a);
  RC_ASSERT(ab == ba);

  T ab_c = ab, bc = b;
  ab_c.merge(c);
  bc.merge(c);
  T a_bc = a;
  a_bc.merge(bc);
  RC_ASSERT(ab_c == a_bc);

  T aa = a;
  aa.merge(a);
  RC_ASSERT(aa == a);
  return ab_c;
}

template <class Model>
void check_join_laws() {
  using T = typename Model::type;
  const auto h = run_history<Model>(*gen_history<Model>(3), 3);
  const T& a = h.states[0];
  const T& b = h.states[1];
  const T& c = h.states[2];

  const T ab_c = check_join_laws(a, b, c);
  T ab = a, ba = b;
  ab.merge(b);
  ba.merge(a);
  RC_ASSERT(ab.digest() == ba.digest());
  T aa = a;
  RC_ASSERT(!aa.merge(a));
  T self = a;
  RC_ASSERT(!self.merge(self));

  check_merge_reports_change(a, b);
  check_merge_reports_change(ab, c);
  check_merge_reports_change(ab, a);

  // The digest separates what equality separates.
  std::vector<T> all = h.states;
  all.insert(all.end(), h.deltas.begin(), h.deltas.end());
  all.push_back(ab_c);
  for (std::size_t i = 0; i < all.size() && i < 40; ++i)
    for (std::size_t j = i + 1; j < all.size() && j < 40; ++j)
      RC_ASSERT((all[i] == all[j]) == (all[i].digest() == all[j].digest()));
}

template <class Model>
void check_delta_equals_state() {
  using T = typename Model::type;
  const auto h = run_history<Model>(*gen_history<Model>(3), 3);
  const T expected = join_all(h.states);
  const auto seed = *rc::gen::arbitrary<std::uint64_t>();
  RC_ASSERT(join_all(shuffle_with_duplicates(h.deltas, seed)) == expected);

  // A delta group (deltas joined first) is as good as the deltas one by one.
  const T group = join_all(h.deltas);
  T from_group;
  from_group.merge(group);
  RC_ASSERT(from_group == expected);
}

template <class Model>
void check_op_path() {
  using T = typename Model::type;
  const auto h = run_history<Model>(*gen_history<Model>(3), 3);
  const T expected = join_all(h.states);
  const auto seed = *rc::gen::arbitrary<std::uint64_t>();
  RC_ASSERT(apply_ops<T>(shuffle_with_duplicates(h.ops, seed)) == expected);
  // In generation order, no op is ever out of order.
  T in_order;
  for (const auto& op : h.ops) RC_ASSERT(in_order.apply(op) != crdt::apply_status::out_of_order);
  RC_ASSERT(in_order == expected);
}

template <class Model>
void check_convergence() {
  using T = typename Model::type;
  using op_type = typename T::op_type;
  struct message {
    std::size_t to;
    std::variant<T, op_type> body;
  };

  const auto replicas = *rc::gen::inRange<std::size_t>(5, 9);
  const auto steps = *gen_history<Model>(replicas);
  std::mt19937_64 rng(*rc::gen::arbitrary<std::uint64_t>());
  auto chance = [&](unsigned percent) { return rng() % 100 < percent; };

  std::vector<T> states(replicas);
  auto contexts = make_contexts(replicas);
  std::vector<message> in_flight;
  // Each delivery takes a random message (reordering); 20% of the time the
  // network also keeps a copy (duplication), 15% of the time the copy handed
  // over is lost (drop). A receiver holds an out-of-order op and retries it
  // later, modelled by re-queueing it unless the network kept a copy anyway:
  // that keeps the expected number of copies per delivery below one, so the
  // drain below ends quickly instead of at its guard.
  auto deliver_one = [&] {
    const std::size_t i = rng() % in_flight.size();
    message m = in_flight[i];
    const bool duplicated = chance(20);
    if (!duplicated) in_flight.erase(in_flight.begin() + static_cast<std::ptrdiff_t>(i));
    if (chance(15)) return;
    if (auto* delta = std::get_if<T>(&m.body)) {
      states[m.to].merge(*delta);
    } else if (states[m.to].apply(std::get<op_type>(m.body)) == crdt::apply_status::out_of_order &&
               !duplicated) {
      in_flight.push_back(m);
    }
  };

  for (const auto& [spec, action] : steps) {
    if (spec.kind < 3) {
      auto [delta, op] = Model::mutate(states[spec.replica], contexts[spec.replica], action);
      for (std::size_t to = 0; to < replicas; ++to) {
        if (to == spec.replica || chance(50)) continue;
        if (chance(50)) in_flight.push_back({to, delta});
        else in_flight.push_back({to, op});
      }
    } else {
      states[spec.replica].merge(states[spec.peer]);  // anti-entropy
    }
    const auto deliveries = rng() % 4;
    for (std::size_t d = 0; d < deliveries && !in_flight.empty(); ++d) deliver_one();
  }
  // Drain what is left, still reordering, duplicating and dropping.
  for (std::size_t guard = 0; guard < 100'000 && !in_flight.empty(); ++guard) deliver_one();
  RC_ASSERT(in_flight.empty());

  const T expected = join_all(states);
  for (std::size_t i = 0; i < replicas; ++i)
    for (std::size_t j = 0; j < replicas; ++j) states[i].merge(states[j]);
  for (const auto& s : states) {
    RC_ASSERT(s == expected);
    RC_ASSERT(s.digest() == expected.digest());
  }
}

template <class U>
void check_round_trip(const U& value, std::mt19937_64& rng) {
  const auto bytes = crdt::encode(value);
  const auto decoded = crdt::decode<U>(bytes);
  RC_ASSERT(decoded.has_value());
  RC_ASSERT(decoded.value() == value);
  RC_ASSERT(crdt::encode(decoded.value()) == bytes);

  for (std::size_t length = 0; length < bytes.size() && length < 512; ++length)
    RC_ASSERT(!crdt::decode<U>(std::span(bytes).first(length)).has_value());

  for (int trial = 0; trial < 8; ++trial) {
    auto corrupted = bytes;
    const std::size_t at = rng() % corrupted.size();
    corrupted[at] ^= static_cast<std::byte>(1 + rng() % 255);
    const auto result = crdt::decode<U>(corrupted);
    if (result) RC_ASSERT(crdt::encode(result.value()) == corrupted);
  }
}

template <class Model>
void check_codec() {
  using T = typename Model::type;
  const auto h = run_history<Model>(*gen_history<Model>(3), 3);
  std::mt19937_64 rng(*rc::gen::arbitrary<std::uint64_t>());
  for (const auto& s : h.states) {
    check_round_trip(s, rng);
    const auto decoded = crdt::decode<T>(crdt::encode(s));
    RC_ASSERT(decoded.value().digest() == s.digest());
  }
  for (std::size_t i = 0; i < h.deltas.size() && i < 8; ++i) check_round_trip(h.deltas[i], rng);
  for (std::size_t i = 0; i < h.ops.size() && i < 8; ++i) check_round_trip(h.ops[i], rng);
}

/// Every law above, each as its own Catch2 section.
template <class Model>
void check_crdt_laws() {
  static_assert(crdt::crdt<typename Model::type>);
  rc::prop("join is commutative, associative and idempotent", [] { check_join_laws<Model>(); });
  rc::prop("joining the deltas equals joining the states", [] { check_delta_equals_state<Model>(); });
  rc::prop("ops in any order with duplicates equal the state path", [] { check_op_path<Model>(); });
  rc::prop("replicas converge over a lossy, reordering network", [] { check_convergence<Model>(); });
  rc::prop("encoding round-trips and rejects bad input", [] { check_codec<Model>(); });
}

}  // namespace lattice::testing
