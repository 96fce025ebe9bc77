// Checks max_register (max_register.hpp) against every CRDT law with the
// checker Lattice ships, and shows the checker catching a register whose
// merge is not a join.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include "lattice/crdt/testing/catch.hpp"
#include "max_register.hpp"

using lattice::crdt::testing::replica_context;

namespace {

// How the checker makes a random mutation: raise to a value from a small
// range, so replicas often write the same one.
struct max_register_model {
  using type = max_register;
  using action = std::uint64_t;
  static rc::Gen<action> gen() { return rc::gen::inRange<std::uint64_t>(0, 50); }
  static std::pair<type, type::op_type> mutate(type& s, replica_context&, action v) {
    auto op = s.prepare_raise(v);
    return {s.raise(v), op};
  }
};

// A register that takes whatever it merges last: a plausible mistake, and
// not a join (merge order decides the value).
class last_merged_register {
 public:
  using delta_type = last_merged_register;
  last_merged_register set(std::uint64_t v) {
    value_ = v;
    return *this;
  }
  bool merge(const last_merged_register& other) {
    const bool changed = other.value_ != value_ && other.value_ != 0;
    if (changed) value_ = other.value_;
    return changed;
  }
  std::uint64_t digest() const { return lattice::crdt::stable_hash(value_); }
  bool empty() const noexcept { return value_ == 0; }
  friend bool operator==(const last_merged_register&, const last_merged_register&) = default;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(value_);
  }

 private:
  std::uint64_t value_ = 0;
};

struct last_merged_model {
  using type = last_merged_register;
  using action = std::uint64_t;
  static rc::Gen<action> gen() { return rc::gen::inRange<std::uint64_t>(1, 50); }
  static type mutate(type& s, replica_context&, action v) { return s.set(v); }
};

}  // namespace

TEST_CASE("max_register obeys the CRDT laws") {
  lattice::crdt::testing::check_crdt_laws<max_register_model>();
}

TEST_CASE("the law checker rejects a merge that is not a join") {
  // rc::check reports the counterexample it found and returns false.
  CHECK_FALSE(rc::check("last-merged register: join laws",
                        [] { lattice::crdt::testing::check_join_laws<last_merged_model>(); }));
}
