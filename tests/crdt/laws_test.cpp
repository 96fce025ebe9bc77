// Every CRDT type through the generic law checker (tests/support/crdt_laws.hpp).
#include "crdt_laws.hpp"
#include "crdt_models.hpp"

using namespace lattice::testing;

TEMPLATE_TEST_CASE("CRDT laws", "[crdt][laws]", g_counter_model, pn_counter_model, g_set_model,
                   two_phase_set_model, or_set_model, lww_register_model, lww_element_set_model,
                   lww_map_model) {
  check_crdt_laws<TestType>();
}
