// lattice/crdt/testing/catch.hpp: every law of laws.hpp as Catch2 sections
// (Catch2 v2 and rapidcheck's Catch integration, rapidcheck/catch.h).
//
//   #include <catch2/catch.hpp>
//   #include "lattice/crdt/testing/catch.hpp"
//
//   TEST_CASE("max_register obeys the CRDT laws") {
//     lattice::crdt::testing::check_crdt_laws<max_register_model>();
//   }
//
// Each law runs rapidcheck's default 100 cases; RC_PARAMS="max_success=500"
// runs more. examples/custom_crdt/ is a complete user project.
#pragma once

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include "lattice/crdt/testing/laws.hpp"

namespace lattice::crdt::testing {

/// Every law, each as its own Catch2 section. REQUIRES: the model's type
/// is a crdt::delta_crdt (see laws.hpp for the model).
template <class Model>
void check_crdt_laws() {
  static_assert(delta_crdt<typename Model::type>, "the law checker needs merge(), digest() and delta_type == T");
  rc::prop("join is commutative, associative, idempotent and an upper bound", [] { check_join_laws<Model>(); });
  rc::prop("joining the deltas equals joining the states", [] { check_delta_equals_state<Model>(); });
  if constexpr (op_crdt<typename Model::type>)
    rc::prop("ops in any order with duplicates equal the deltas", [] { check_op_path<Model>(); });
  rc::prop("replicas converge over a lossy, reordering network", [] { check_convergence<Model>(); });
  rc::prop("encoding round-trips and rejects bad input", [] { check_codec<Model>(); });
}

}  // namespace lattice::crdt::testing
