#include "lattice/registry/error.hpp"

#include <string>

namespace lattice::registry {
namespace {

class registry_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "lattice.registry"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::invalid_path:
        return "invalid path: it must start with '/', and each segment must be non-empty, "
               "not '.' or '..', and use only [A-Za-z0-9._~:@+-]";
      case errc::path_too_long: return "path is too long or too deep";
      case errc::root_path_not_allowed: return "this operation needs a service path, not '/'";
      case errc::invalid_id: return "instance id is empty, too long or contains control characters";
      case errc::invalid_address: return "instance address is empty, too long or contains control characters";
      case errc::invalid_tag: return "too many tags, or a tag key or value that is empty, too long or contains control characters";
      case errc::invalid_field: return "protocol, serialization or zone is too long or contains control characters";
      case errc::invalid_weight: return "weight exceeds the maximum";
      case errc::value_too_large: return "config value exceeds the maximum size";
      case errc::not_found: return "no such instance or key";
      case errc::stopped: return "the replica has stopped";
      case errc::timed_out: return "the replica thread did not take the call up in time; nothing was done";
      case errc::storage_failed: return "applied, but not made durable in the data directory";
    }
    return "unknown lattice.registry error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const registry_category category;
  return category;
}

}  // namespace lattice::registry
