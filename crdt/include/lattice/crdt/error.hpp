// lattice/crdt/error.hpp: errors of the CRDT layer, and the result type.
//
// Every fallible call in Lattice returns `lattice::result<T>`: a value or a
// `std::error_code`. The CRDT layer's codes are `lattice::crdt::errc`, in the
// category named "lattice.crdt"; compare them with `==` against the enum:
//
//   auto set = lattice::crdt::decode<lww_element_set<std::string>>(bytes);
//   if (!set && set.error() == lattice::crdt::errc::truncated) { ... }
//
// Thread safety: everything here is immutable and safe to share.
#pragma once

#include <string>
#include <system_error>
#include <type_traits>

#include <boost/outcome/std_result.hpp>

namespace lattice {

/// A value of type T, or the std::error_code saying why there is none.
/// `r.value()` on an error throws std::system_error; test `r` (or
/// `r.has_value()`) first.
template <class T>
using result = boost::outcome_v2::std_result<T>;

/// The success value of a `result<void>`.
inline auto success() { return boost::outcome_v2::success(); }

}  // namespace lattice

namespace lattice::crdt {

/// Why a CRDT operation or a decode failed.
enum class errc {
  /// A remote HLC stamp is further ahead of the local wall clock than the
  /// configured maximum drift; the stamp was not taken into the clock.
  clock_drift_exceeded = 1,
  /// The input ended before the value was complete.
  truncated,
  /// A length or count in the input exceeds the bytes that remain or a
  /// configured limit; nothing was allocated for it.
  oversized,
  /// The input decoded but violates the type's invariants (keys out of order
  /// or duplicated, an impossible enum value, a dot outside its context...).
  malformed,
  /// Bytes remain after a complete value.
  trailing_bytes,
  /// The input's first byte is not the little-endian marker (1).
  bad_endianness_marker,
};

/// The category of `errc` values; its name() is "lattice.crdt".
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace lattice::crdt

template <>
struct std::is_error_code_enum<lattice::crdt::errc> : std::true_type {};
