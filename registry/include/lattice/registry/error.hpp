// lattice/registry/error.hpp: errors of the registry layer.
//
// Every fallible registry call returns lattice::result<T>; its error is a
// std::error_code in the "lattice.registry" category. Compare with `==`:
//
//   auto r = replica.register_instance(path, inst);
//   if (!r && r.error() == lattice::registry::errc::invalid_tag) ...
//
// A call that fails changes nothing.
//
// Thread safety: immutable; safe to share.
#pragma once

#include <system_error>
#include <type_traits>

#include "lattice/crdt/error.hpp"  // lattice::result

namespace lattice::registry {

enum class errc {
  /// A path is empty, lacks its leading '/', has an empty, "." or ".."
  /// segment, a trailing '/', or a character outside [A-Za-z0-9._~:@+-].
  invalid_path = 1,
  /// A path is longer than max_path_length or deeper than max_path_depth.
  path_too_long,
  /// The operation needs a service path, and was given the root "/".
  root_path_not_allowed,
  /// An instance id is empty (and no address:port to default it from),
  /// longer than max_id_length, or contains a control character.
  invalid_id,
  /// An instance address is empty, too long, or contains a control
  /// character.
  invalid_address,
  /// More than max_tags tags, or a tag key or value that is empty (keys
  /// only), too long, or contains a control character.
  invalid_tag,
  /// A protocol, serialization or zone string is too long or contains a
  /// control character.
  invalid_field,
  /// A weight above max_weight.
  invalid_weight,
  /// A config value larger than max_config_value.
  value_too_large,
  /// No such instance or config key.
  not_found,
  /// The replica has stopped (or is stopping); nothing was done.
  stopped,
  /// The write was applied and is spreading, but could not be made durable
  /// in the data directory (see the log): it is not acknowledged, and may
  /// be lost if this replica restarts before a peer has it. Retry.
  storage_failed,
  /// The replica thread did not take the call up within
  /// replica::call_timeout (it is overloaded or stuck); nothing was done,
  /// and nothing will be: the call was withdrawn. Retry.
  timed_out,
};

/// The category of `errc`; its name() is "lattice.registry".
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace lattice::registry

template <>
struct std::is_error_code_enum<lattice::registry::errc> : std::true_type {};
