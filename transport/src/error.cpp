#include "lattice/transport/error.hpp"

#include <string>

namespace lattice::transport {
namespace {

class transport_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "lattice.transport"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::bad_magic: return "frame does not start with the Lattice magic";
      case errc::unsupported_version: return "unsupported protocol version";
      case errc::malformed_header: return "unknown flags or non-zero reserved byte in frame header";
      case errc::frame_too_large: return "frame payload exceeds the maximum frame size";
      case errc::bad_checksum: return "frame CRC32C mismatch";
      case errc::missing_mac: return "frame lacks the MAC this cluster requires";
      case errc::unexpected_mac: return "frame carries a MAC but no cluster key is configured";
      case errc::bad_mac: return "frame MAC does not verify (wrong cluster key?)";
      case errc::bad_datagram: return "datagram is not exactly one whole frame";
    }
    return "unknown lattice.transport error";
  }
};

}  // namespace

std::string_view errc_name(errc e) noexcept {
  switch (e) {
    case errc::bad_magic: return "bad_magic";
    case errc::unsupported_version: return "unsupported_version";
    case errc::malformed_header: return "malformed_header";
    case errc::frame_too_large: return "frame_too_large";
    case errc::bad_checksum: return "bad_checksum";
    case errc::missing_mac: return "missing_mac";
    case errc::unexpected_mac: return "unexpected_mac";
    case errc::bad_mac: return "bad_mac";
    case errc::bad_datagram: return "bad_datagram";
  }
  return {};
}

const std::error_category& error_category() noexcept {
  static const transport_category category;
  return category;
}

}  // namespace lattice::transport
