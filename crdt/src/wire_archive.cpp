#include "lattice/crdt/wire_archive.hpp"

#include "lattice/crdt/error.hpp"

namespace lattice::crdt {

wire_input_archive::wire_input_archive(std::span<const std::byte> bytes)
    : cereal::InputArchive<wire_input_archive, cereal::AllowEmptyClassElision>(this),
      bytes_(bytes) {
  if (bytes_.empty()) throw decode_error(make_error_code(errc::truncated));
  const auto marker = std::to_integer<std::uint8_t>(bytes_[0]);
  if (marker > 1) throw decode_error(make_error_code(errc::bad_endianness_marker));
  position_ = 1;
  const bool input_little = marker == 1;
  swap_ = input_little != wire_detail::host_is_little;
}

std::error_code wire_input_archive::errc_truncated() noexcept {
  return make_error_code(errc::truncated);
}

}  // namespace lattice::crdt
