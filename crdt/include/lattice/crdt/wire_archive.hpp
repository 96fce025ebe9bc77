// lattice/crdt/wire_archive.hpp: cereal archives for Lattice's wire format.
//
// The bytes are cereal's portable binary format: one endianness marker byte
// (1 = little endian), then every arithmetic value in that byte order and
// every container length as a 64-bit size tag. We write little endian always
// and accept only little endian (marker 1), so each value has exactly one
// encoding; on little-endian hosts these archives interoperate with
// cereal::PortableBinary{Output,Input}Archive byte for byte.
//
// Why our own archives rather than cereal's: cereal sizes a container from
// the length it reads, before it reads the elements, so a garbage length of
// 2^60 would make std::string::resize try to allocate it. `wire_input_archive`
// reads from a bounded span and refuses any size tag larger than the bytes
// that remain (every element we encode takes at least one byte). A container
// that cereal pre-sizes (std::vector, std::string) therefore allocates at
// most sizeof(element) per input byte; our own maps and sets never reserve
// more than a small constant ahead of the entries actually decoded. It also
// rejects a bool that is neither 0 nor 1 instead of loading an invalid bool.
// `wire_output_archive` appends straight to a std::vector, skipping ostream.
//
// Most code should use encode()/decode() in codec.hpp rather than these.
//
// Thread safety: an archive is used by one thread at a time.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include <cereal/cereal.hpp>

#include "lattice/crdt/error.hpp"

namespace lattice::crdt {

/// Thrown inside load functions for input that cannot be a valid value; the
/// decode() boundary turns it into its error code. Never escapes decode().
class decode_error : public std::exception {
 public:
  explicit decode_error(std::error_code code) noexcept : code_(code) {}
  const char* what() const noexcept override { return "lattice decode error"; }
  std::error_code code() const noexcept { return code_; }

 private:
  std::error_code code_;
};

namespace wire_detail {

template <std::size_t Size>
inline void reverse_bytes(std::byte* p) noexcept {
  for (std::size_t i = 0; i < Size / 2; ++i) std::swap(p[i], p[Size - 1 - i]);
}

inline constexpr bool host_is_little = std::endian::native == std::endian::little;

}  // namespace wire_detail

/// Appends cereal portable-binary bytes (little endian) to a vector.
class wire_output_archive
    : public cereal::OutputArchive<wire_output_archive, cereal::AllowEmptyClassElision> {
 public:
  /// With `with_marker`, writes the endianness byte first, as cereal's
  /// portable binary archive does; digests hash values without it.
  explicit wire_output_archive(std::vector<std::byte>& out, bool with_marker = true)
      : cereal::OutputArchive<wire_output_archive, cereal::AllowEmptyClassElision>(this),
        out_(out) {
    if (with_marker) out_.push_back(std::byte{1});
  }

  template <std::size_t ElementSize>
  void save_binary(const void* data, std::size_t size) {
    const auto offset = out_.size();
    const auto* bytes = static_cast<const std::byte*>(data);
    out_.insert(out_.end(), bytes, bytes + size);  // no zero-fill, unlike resize
    if constexpr (!wire_detail::host_is_little && ElementSize > 1) {
      for (std::size_t i = 0; i < size; i += ElementSize)
        wire_detail::reverse_bytes<ElementSize>(out_.data() + offset + i);
    }
  }

 private:
  std::vector<std::byte>& out_;
};

/// Reads cereal portable-binary bytes from a bounded span; see the file
/// comment for the checks it makes. Throws decode_error.
class wire_input_archive
    : public cereal::InputArchive<wire_input_archive, cereal::AllowEmptyClassElision> {
 public:
  /// Reads the endianness marker. Throws decode_error(truncated) on empty
  /// input and decode_error(bad_endianness_marker) on a marker other than 1.
  explicit wire_input_archive(std::span<const std::byte> bytes);

  template <std::size_t ElementSize>
  void load_binary(void* data, std::size_t size) {
    // An empty string or vector hands over data() == nullptr, which
    // memcpy must not see even for 0 bytes (found by fuzz/protocol_fuzz).
    if (size == 0) return;
    if (size > remaining()) throw decode_error(make_error_code(errc::truncated));
    std::memcpy(data, bytes_.data() + position_, size);
    position_ += size;
    if (swap_ && ElementSize > 1) {
      auto* p = static_cast<std::byte*>(data);
      for (std::size_t i = 0; i < size; i += ElementSize)
        wire_detail::reverse_bytes<ElementSize>(p + i);
    }
  }

  /// Bytes not yet read.
  std::size_t remaining() const noexcept { return bytes_.size() - position_; }

 private:
  std::span<const std::byte> bytes_;
  std::size_t position_ = 0;
  bool swap_ = false;
};

}  // namespace lattice::crdt

// ---- cereal glue: how each archive handles cereal's primitive kinds -------
namespace cereal {

template <class T>
inline std::enable_if_t<std::is_arithmetic_v<T>>
CEREAL_SAVE_FUNCTION_NAME(lattice::crdt::wire_output_archive& archive, const T& value) {
  static_assert(!std::is_floating_point_v<T> || std::numeric_limits<T>::is_iec559);
  archive.template save_binary<sizeof(T)>(std::addressof(value), sizeof(T));
}

template <class T>
inline std::enable_if_t<std::is_arithmetic_v<T>>
CEREAL_LOAD_FUNCTION_NAME(lattice::crdt::wire_input_archive& archive, T& value) {
  static_assert(!std::is_floating_point_v<T> || std::numeric_limits<T>::is_iec559);
  if constexpr (std::is_same_v<T, bool>) {
    // Loading the byte straight into a bool would make 2..255 undefined.
    std::uint8_t byte = 0;
    archive.template load_binary<1>(&byte, 1);
    if (byte > 1) throw lattice::crdt::decode_error(make_error_code(lattice::crdt::errc::malformed));
    value = byte == 1;
  } else {
    archive.template load_binary<sizeof(T)>(std::addressof(value), sizeof(T));
  }
}

template <class Archive, class T>
inline CEREAL_ARCHIVE_RESTRICT(lattice::crdt::wire_input_archive, lattice::crdt::wire_output_archive)
CEREAL_SERIALIZE_FUNCTION_NAME(Archive& archive, NameValuePair<T>& pair) {
  archive(pair.value);
}

template <class T>
inline void CEREAL_SAVE_FUNCTION_NAME(lattice::crdt::wire_output_archive& archive,
                                      const SizeTag<T>& tag) {
  archive(static_cast<std::uint64_t>(tag.size));
}

template <class T>
inline void CEREAL_LOAD_FUNCTION_NAME(lattice::crdt::wire_input_archive& archive, SizeTag<T>& tag) {
  std::uint64_t size = 0;
  archive(size);
  // Every element we encode takes at least one byte, so a count above the
  // remaining bytes is a lie; refusing it here bounds every allocation.
  if (size > archive.remaining())
    throw lattice::crdt::decode_error(make_error_code(lattice::crdt::errc::oversized));
  tag.size = static_cast<std::remove_reference_t<T>>(size);
}

template <class T>
inline void CEREAL_SAVE_FUNCTION_NAME(lattice::crdt::wire_output_archive& archive,
                                      const BinaryData<T>& data) {
  using element = std::remove_pointer_t<T>;
  archive.template save_binary<sizeof(element)>(data.data, static_cast<std::size_t>(data.size));
}

template <class T>
inline void CEREAL_LOAD_FUNCTION_NAME(lattice::crdt::wire_input_archive& archive,
                                      BinaryData<T>& data) {
  using element = std::remove_pointer_t<T>;
  archive.template load_binary<sizeof(element)>(data.data, static_cast<std::size_t>(data.size));
}

}  // namespace cereal

CEREAL_REGISTER_ARCHIVE(lattice::crdt::wire_output_archive)
CEREAL_REGISTER_ARCHIVE(lattice::crdt::wire_input_archive)
CEREAL_SETUP_ARCHIVE_TRAITS(lattice::crdt::wire_input_archive, lattice::crdt::wire_output_archive)
