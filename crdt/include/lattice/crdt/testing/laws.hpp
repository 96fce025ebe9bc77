// lattice/crdt/testing/laws.hpp: property-based checks of the CRDT laws,
// for the types in crdt/ and for CRDTs you build on them (rapidcheck).
//
// A *model* tells the checker how to make a random mutation of your type:
//
//   struct max_register_model {
//     using type = max_register;              // crdt::delta_crdt (op_crdt optional)
//     using action = int;                     // one mutation, as plain data
//     static rc::Gen<action> gen() { return rc::gen::inRange(0, 100); }
//     // Performs `a` at the replica through its delta mutator and returns
//     // the delta; for a crdt::op_crdt type, returns {delta, op} with the op
//     // prepared for the same mutation from the state before it.
//     static type mutate(type& s, replica_context& ctx, const action& a);
//     // Optional, for types that collect tombstones: drop what every replica
//     // has passed. The checker calls it only at causally stable points.
//     static void compact(type& s, hlc_timestamp stable);
//   };
//
// Then, with Catch2, one line runs every law (lattice/crdt/testing/catch.hpp):
//
//   TEST_CASE("max_register laws") { lattice::crdt::testing::check_crdt_laws<max_register_model>(); }
//
// or call the check_* functions below inside rc::check() from any framework.
//
// The states checked are the ones real replicas reach. A generated history
// has replicas that
//   - mutate;
//   - merge another replica's full state, current or (late delivery) one
//     it had earlier;
//   - restart from their own encoded state (decode(encode(s)); the clock
//     comes back past every stamp it issued, as a data directory restores it);
//   - restart under a new id without their data, after their state reached
//     a peer (a replica that gossiped, then lost its disk: a new life takes
//     a new id), starting from that peer's state as a first exchange gives
//     it, with a clock past what it merged;
//   - when the model can compact: sync everyone, then compact one replica
//     below every stamp issued so far (a causally stable point), so states
//     with different horizons meet later merges.
// Merges of states no run can produce (a compacted map against a live key
// below its horizon that it never saw) are outside the laws; see lww_map.hpp.
// So are writes stamped below a horizon by a replica that has never heard
// from the cluster (a new one whose clock lags it): two such writes to one
// key can join differently in different orders (an open problem, recorded
// in docs/adr/0006-time-deletes-and-the-grace-rule.md).
//
// The laws:
//   - join: commutative, associative, idempotent, an upper bound of both
//     sides; the encodings of a⊔b and b⊔a are the same bytes; merge() says
//     exactly whether the state changed; equal states, and only they, have
//     equal digests;
//   - delta ≡ state: the deltas of a history, shuffled and duplicated, join
//     to the join of its states (exactly, without compaction; with it, the
//     states' join absorbs the deltas' join from either side);
//   - op path (op types): the history's ops in any order with duplicates,
//     out-of-order ones held back and retried, give the deltas' join;
//   - convergence: 5 to 8 replicas mutate while a network reorders, drops
//     and duplicates their deltas and ops; after anti-entropy every replica
//     equals the join of the deltas generated, a value built from the
//     mutations alone (a delivery that corrupts state cannot pass);
//   - codec: every state, delta and op round-trips to an equal value and the
//     same bytes; every strict prefix of an encoding is rejected; a corrupted
//     encoding is rejected or decodes to a value that re-encodes to exactly
//     the corrupted bytes (decode accepts only canonical input).
// A failure prints rapidcheck's seed and the shrunk history; rerun it with
// RC_PARAMS="reproduce=..." as rapidcheck says.
//
// Requires rapidcheck (Debian: librapidcheck-dev) in the including project;
// the lattice libraries do not link it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <rapidcheck.h>

#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/concepts.hpp"
#include "lattice/crdt/hlc.hpp"
#include "lattice/crdt/testing/replica_context.hpp"

namespace lattice::crdt::testing {

/// A model whose type collects tombstones (see the file comment).
template <class Model>
concept compacting_model = requires(typename Model::type& s, hlc_timestamp stable) {
  Model::compact(s, stable);
};

/// The op type of T, or std::monostate for a state/delta-only type.
template <class T>
struct op_of {
  using type = std::monostate;
};
template <op_crdt T>
struct op_of<T> {
  using type = typename T::op_type;
};
template <class T>
using op_of_t = typename op_of<T>::type;

/// Runs Model::mutate and returns {delta, op} for either kind of model.
template <class Model>
std::pair<typename Model::type, op_of_t<typename Model::type>> mutate(typename Model::type& state,
                                                                      replica_context& ctx,
                                                                      const typename Model::action& action) {
  if constexpr (op_crdt<typename Model::type>) {
    return Model::mutate(state, ctx, action);
  } else {
    return {Model::mutate(state, ctx, action), std::monostate{}};
  }
}

/// One step of a history.
enum class step_kind { mutate, merge, late_delivery, restart_from_bytes, restart_empty, sync_and_compact };

struct step_spec {
  step_kind kind = step_kind::mutate;
  std::size_t replica = 0;
  std::size_t peer = 0;
};

inline const char* to_string(step_kind k) noexcept {
  switch (k) {
    case step_kind::mutate: return "mutate";
    case step_kind::merge: return "merge";
    case step_kind::late_delivery: return "late_delivery";
    case step_kind::restart_from_bytes: return "restart_from_bytes";
    case step_kind::restart_empty: return "restart_empty";
    case step_kind::sync_and_compact: return "sync_and_compact";
  }
  return "?";
}

/// How rapidcheck prints a step in a counterexample.
inline void showValue(const step_spec& s, std::ostream& os) {
  os << to_string(s.kind) << "(replica " << s.replica << ", peer " << s.peer << ")";
}

template <class Model>
using history_steps = std::vector<std::pair<step_spec, typename Model::action>>;

template <class Model>
rc::Gen<history_steps<Model>> gen_history(std::size_t replicas) {
  const unsigned compaction_weight = compacting_model<Model> ? 1 : 0;
  const auto kind = rc::gen::weightedElement<step_kind>({{6, step_kind::mutate},
                                                         {3, step_kind::merge},
                                                         {1, step_kind::late_delivery},
                                                         {1, step_kind::restart_from_bytes},
                                                         {1, step_kind::restart_empty},
                                                         {compaction_weight, step_kind::sync_and_compact}});
  const auto spec = rc::gen::construct<step_spec>(kind, rc::gen::inRange<std::size_t>(0, replicas),
                                                  rc::gen::inRange<std::size_t>(0, replicas));
  return rc::gen::container<history_steps<Model>>(rc::gen::pair(spec, Model::gen()));
}

template <class Model>
struct history {
  using type = typename Model::type;
  std::vector<type> states;
  /// Earlier states of the replicas (before each mutation): what a full
  /// state still in flight, or queued behind a slow link, carries.
  std::vector<type> snapshots;
  std::vector<type> deltas;
  std::vector<op_of_t<type>> ops;
  bool compacted = false;
};

/// Distinct ids, and wall clocks that lag one another by a millisecond each
/// (the HLC must make up for the skew).
inline std::vector<replica_context> make_contexts(std::size_t replicas) {
  std::vector<replica_context> contexts;
  for (std::size_t i = 0; i < replicas; ++i)
    contexts.emplace_back(replica_id{100 + i}, 5'000'000 - 1'000 * i);
  return contexts;
}

template <class T>
T join(T a, const T& b) {
  a.merge(b);
  return a;
}

template <class T>
T join_all(const std::vector<T>& states) {
  T result;
  for (const auto& s : states) result.merge(s);
  return result;
}

template <class Model>
history<Model> run_history(const history_steps<Model>& steps, std::size_t replicas) {
  using T = typename Model::type;
  history<Model> h;
  h.states.resize(replicas);
  auto contexts = make_contexts(replicas);
  replica_id next_id = 1000;
  for (const auto& [spec, action] : steps) {
    auto& state = h.states[spec.replica];
    auto& ctx = contexts[spec.replica];
    switch (spec.kind) {
      case step_kind::mutate: {
        h.snapshots.push_back(state);
        auto [delta, op] = mutate<Model>(state, ctx, action);
        h.deltas.push_back(std::move(delta));
        h.ops.push_back(std::move(op));
        break;
      }
      case step_kind::merge:
        state.merge(h.states[spec.peer]);
        break;
      case step_kind::late_delivery:
        // An old full state arrives now, after later writes, syncs and
        // compactions (everything in it had reached every replica by then).
        if (!h.snapshots.empty()) state.merge(h.snapshots[(spec.peer * 7 + h.deltas.size()) % h.snapshots.size()]);
        break;
      case step_kind::restart_from_bytes: {
        auto decoded = decode<T>(encode(state));
        RC_ASSERT(decoded.has_value());
        state = std::move(decoded).value();
        ctx.restart();
        break;
      }
      case step_kind::restart_empty: {
        // Its state reached a peer before it died; the new life (a new id)
        // starts from that peer's state, as a replica's first exchange
        // gives it, and its clock observes what it merged (the registry
        // moves its HLC past every stamp and horizon it merges).
        auto& heir = h.states[(spec.replica + 1) % replicas];
        if (&heir != &state) heir.merge(state);
        state = heir;
        hlc_timestamp latest{};
        for (const auto& c : contexts) latest = std::max(latest, c.clock.last());
        ctx = replica_context(next_id++, ctx.wall_us);
        (void)ctx.clock.update(latest, ctx.wall_us);
        break;
      }
      case step_kind::sync_and_compact:
        if constexpr (compacting_model<Model>) {
          const T all = join_all(h.states);
          for (auto& each : h.states) each.merge(all);
          hlc_timestamp stable{};
          for (const auto& c : contexts) stable = std::max(stable, c.clock.last());
          for (auto& c : contexts) (void)c.clock.update(stable, c.wall_us);
          Model::compact(state, stable);
          h.compacted = true;
        }
        break;
    }
  }
  return h;
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
      if (state.apply(op) == apply_status::out_of_order) held.push_back(op);
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
/// associative, idempotent, an upper bound. Returns a ⊔ b ⊔ c. Usable for
/// types outside crdt/ too (the transport's member table).
template <class T>
T check_join_laws(const T& a, const T& b, const T& c) {
  const T ab = join(a, b);
  RC_ASSERT(ab == join(b, a));
  RC_ASSERT(join(ab, c) == join(a, join(b, c)));
  RC_ASSERT(join(a, a) == a);
  RC_ASSERT(join(ab, a) == ab);
  RC_ASSERT(join(ab, b) == ab);
  return join(ab, c);
}

template <class Model>
void check_join_laws() {
  using T = typename Model::type;
  const auto h = run_history<Model>(*gen_history<Model>(3), 3);
  // Three of the replicas' states, current or earlier (an old full state
  // meets newer ones when it is delivered late).
  std::vector<T> candidates = h.states;
  candidates.insert(candidates.end(), h.snapshots.begin(), h.snapshots.end());
  const auto pick = [&](const T& current) -> T {
    if (*rc::gen::inRange(0, 3) != 0) return current;
    return candidates[*rc::gen::inRange<std::size_t>(0, candidates.size())];
  };
  const T a = pick(h.states[0]);
  const T b = pick(h.states[1]);
  const T c = h.states[2];

  const T ab_c = check_join_laws(a, b, c);
  const T ab = join(a, b);
  const T ba = join(b, a);
  RC_ASSERT(ab.digest() == ba.digest());
  // Everything the encoding carries (a horizon, say) commutes too.
  RC_ASSERT(encode(ab) == encode(ba));
  RC_ASSERT(encode(join(ab, c)) == encode(join(a, join(b, c))));
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
  const T states = join_all(h.states);
  const auto seed = *rc::gen::arbitrary<std::uint64_t>();
  const T deltas = join_all(shuffle_with_duplicates(h.deltas, seed));
  if (!h.compacted) RC_ASSERT(deltas == states);
  // The states hold every delta's effect: nothing a mutation did is lost
  // by merges, restarts or compaction.
  RC_ASSERT(join(states, deltas) == states);
  RC_ASSERT(join(deltas, states) == states);

  // A delta group (deltas joined first) is as good as the deltas one by one.
  T from_group;
  from_group.merge(join_all(h.deltas));
  RC_ASSERT(from_group == deltas);
}

template <class Model>
void check_op_path() {
  using T = typename Model::type;
  if constexpr (op_crdt<T>) {
    const auto h = run_history<Model>(*gen_history<Model>(3), 3);
    const T deltas = join_all(h.deltas);
    const auto seed = *rc::gen::arbitrary<std::uint64_t>();
    const T from_ops = apply_ops<T>(shuffle_with_duplicates(h.ops, seed));
    RC_ASSERT(from_ops == deltas);
    // In generation order, no op is ever out of order.
    T in_order;
    for (const auto& op : h.ops) RC_ASSERT(in_order.apply(op) != apply_status::out_of_order);
    RC_ASSERT(in_order == deltas);
    const T states = join_all(h.states);
    RC_ASSERT(join(states, from_ops) == states);
  }
}

template <class Model>
void check_convergence() {
  using T = typename Model::type;
  using op_type = op_of_t<T>;
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
  std::vector<T> generated;  // every delta made: the expected end state
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
    } else if constexpr (op_crdt<T>) {
      if (states[m.to].apply(std::get<op_type>(m.body)) == apply_status::out_of_order && !duplicated)
        in_flight.push_back(m);
    }
  };

  for (const auto& [spec, action] : steps) {
    if (spec.kind == step_kind::merge) {
      states[spec.replica].merge(states[spec.peer]);  // anti-entropy
    } else {
      // Restarts and compaction are left to the histories above; here
      // every other step is a mutation sent over the network.
      auto [delta, op] = mutate<Model>(states[spec.replica], contexts[spec.replica], action);
      generated.push_back(delta);
      for (std::size_t to = 0; to < replicas; ++to) {
        if (to == spec.replica || chance(50)) continue;
        if (op_crdt<T> && chance(50)) in_flight.push_back({to, op});
        else in_flight.push_back({to, delta});
      }
    }
    const auto deliveries = rng() % 4;
    for (std::size_t d = 0; d < deliveries && !in_flight.empty(); ++d) deliver_one();
  }
  // Drain what is left, still reordering, duplicating and dropping.
  for (std::size_t guard = 0; guard < 100'000 && !in_flight.empty(); ++guard) deliver_one();
  RC_ASSERT(in_flight.empty());

  const T expected = join_all(generated);
  for (std::size_t i = 0; i < replicas; ++i)
    for (std::size_t j = 0; j < replicas; ++j) states[i].merge(states[j]);
  for (const auto& s : states) {
    RC_ASSERT(s == expected);
    RC_ASSERT(s.digest() == expected.digest());
  }
}

template <class U>
void check_round_trip(const U& value, std::mt19937_64& rng) {
  const auto bytes = encode(value);
  const auto decoded = decode<U>(bytes);
  RC_ASSERT(decoded.has_value());
  RC_ASSERT(decoded.value() == value);
  RC_ASSERT(encode(decoded.value()) == bytes);

  for (std::size_t length = 0; length < bytes.size() && length < 512; ++length)
    RC_ASSERT(!decode<U>(std::span(bytes).first(length)).has_value());

  for (int trial = 0; trial < 8; ++trial) {
    auto corrupted = bytes;
    const std::size_t at = rng() % corrupted.size();
    corrupted[at] ^= static_cast<std::byte>(1 + rng() % 255);
    const auto result = decode<U>(corrupted);
    if (result) RC_ASSERT(encode(result.value()) == corrupted);
  }
}

template <class Model>
void check_codec() {
  using T = typename Model::type;
  const auto h = run_history<Model>(*gen_history<Model>(3), 3);
  std::mt19937_64 rng(*rc::gen::arbitrary<std::uint64_t>());
  for (const auto& s : h.states) {
    check_round_trip(s, rng);
    const auto decoded = decode<T>(encode(s));
    RC_ASSERT(decoded.value().digest() == s.digest());
  }
  check_round_trip(join_all(h.states), rng);
  for (std::size_t i = 0; i < h.deltas.size() && i < 8; ++i) check_round_trip(h.deltas[i], rng);
  if constexpr (op_crdt<T>)
    for (std::size_t i = 0; i < h.ops.size() && i < 8; ++i) check_round_trip(h.ops[i], rng);
}

}  // namespace lattice::crdt::testing
