// Every CRDT type through the law checker (lattice/crdt/testing/laws.hpp),
// over the states replicas reach: merged, restarted from bytes, restarted
// empty under new ids, and compacted at causally stable points.
#include "lattice/crdt/testing/catch.hpp"
#include "crdt_models.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace laws_test {

using namespace lattice::testing;
using lattice::crdt::testing::check_crdt_laws;

TEMPLATE_TEST_CASE("CRDT laws", "[crdt][laws]", g_counter_model, pn_counter_model, g_set_model,
                   two_phase_set_model, or_set_model, lww_register_model, lww_element_set_model,
                   lww_map_model) {
  check_crdt_laws<TestType>();
}

}  // namespace laws_test
