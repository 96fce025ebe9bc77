#include "lattice/crdt/wire_archive.hpp"

#include "lattice/crdt/error.hpp"

namespace lattice::crdt {

wire_input_archive::wire_input_archive(std::span<const std::byte> bytes)
    : cereal::InputArchive<wire_input_archive, cereal::AllowEmptyClassElision>(this),
      bytes_(bytes) {
  if (bytes_.empty()) throw decode_error(make_error_code(errc::truncated));
  // Lattice always writes little endian (marker 1). cereal would also accept
  // 0 (big endian), but then one value would have two encodings, and digests
  // and frozen vectors rely on there being exactly one.
  if (std::to_integer<std::uint8_t>(bytes_[0]) != 1)
    throw decode_error(make_error_code(errc::bad_endianness_marker));
  position_ = 1;
  swap_ = !wire_detail::host_is_little;
}

}  // namespace lattice::crdt
