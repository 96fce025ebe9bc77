#include "lattice/crdt/error.hpp"

namespace lattice::crdt {
namespace {

class crdt_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "lattice.crdt"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::clock_drift_exceeded:
        return "remote timestamp is further ahead than the maximum clock drift";
      case errc::truncated:
        return "input ends before the value is complete";
      case errc::oversized:
        return "a length in the input exceeds the remaining bytes or a limit";
      case errc::malformed:
        return "input violates the type's invariants";
      case errc::trailing_bytes:
        return "bytes remain after a complete value";
      case errc::bad_endianness_marker:
        return "input has an invalid endianness marker";
    }
    return "unknown lattice.crdt error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const crdt_category category;
  return category;
}

}  // namespace lattice::crdt
