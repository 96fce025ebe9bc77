// lattice/crdt/codec.hpp: turning CRDT values into bytes and back.
//
//   std::vector<std::byte> bytes = lattice::crdt::encode(set);
//   auto copy = lattice::crdt::decode<decltype(set)>(bytes);
//   if (!copy) log("bad state from peer: {}", copy.error().message());
//
// The format is cereal's portable binary (see wire_archive.hpp), and our
// types write their maps and sets as a count followed by entries in strictly
// ascending key order. That makes the encoding canonical: equal values encode
// to equal bytes, which the frozen wire vectors in tests/ rely on.
//
// decode() is the boundary for untrusted input: it never throws, never reads
// past the span, allocates at most a constant times the input size, and on
// failure returns one of errc::truncated, oversized, malformed,
// trailing_bytes or bad_endianness_marker. A rejected input changes nothing:
// the value is built fresh and only returned once complete and valid.
//
// Thread safety: free functions over values; no shared state.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <new>
#include <span>
#include <stdexcept>
#include <vector>

#include <cereal/cereal.hpp>
#include <cereal/types/string.hpp>  // strings are our most common key type

#include "lattice/crdt/error.hpp"
#include "lattice/crdt/wire_archive.hpp"

namespace lattice::crdt {

/// Appends the encoding of `value` (endianness marker included) to `out`.
template <class T>
void encode_into(std::vector<std::byte>& out, const T& value) {
  wire_output_archive archive(out);
  archive(value);
}

/// The encoding of `value`.
template <class T>
[[nodiscard]] std::vector<std::byte> encode(const T& value) {
  std::vector<std::byte> out;
  encode_into(out, value);
  return out;
}

/// Decodes a complete T from `bytes`; see the file comment for the errors.
/// REQUIRES: T is default constructible.
template <class T>
[[nodiscard]] result<T> decode(std::span<const std::byte> bytes) noexcept {
  static_assert(!std::is_const_v<T> && !std::is_reference_v<T>,
                "decode<T>: name the plain value type (decltype of a const gives const T)");
  try {
    wire_input_archive archive(bytes);
    T value{};
    archive(value);
    if (archive.remaining() != 0) return errc::trailing_bytes;
    return value;
  } catch (const decode_error& error) {
    return error.code();
  } catch (const cereal::Exception&) {
    return errc::malformed;
  } catch (const std::bad_alloc&) {
    return errc::oversized;
  } catch (const std::length_error&) {
    return errc::oversized;
  } catch (const std::exception&) {
    return errc::malformed;
  }
}

// ---- helpers for the types' serialize functions ---------------------------

/// Throws the decode_error that decode() reports as errc::malformed. For use
/// inside load functions when input breaks an invariant.
[[noreturn]] inline void throw_malformed() {
  throw decode_error(make_error_code(errc::malformed));
}

/// Writes an ordered map (std::map) as a count and its entries.
template <class Archive, class Map>
void save_ordered_map(Archive& archive, const Map& map) {
  archive(cereal::make_size_tag(static_cast<cereal::size_type>(map.size())));
  for (const auto& [key, value] : map) archive(key, value);
}

/// Reads what save_ordered_map wrote into an empty map, requiring strictly
/// ascending keys so that every value has exactly one encoding.
template <class Archive, class Map>
void load_ordered_map(Archive& archive, Map& map) {
  cereal::size_type count = 0;
  archive(cereal::make_size_tag(count));
  map.clear();
  for (cereal::size_type i = 0; i < count; ++i) {
    typename Map::key_type key{};
    typename Map::mapped_type value{};
    archive(key, value);
    if (!map.empty() && !map.key_comp()(std::prev(map.end())->first, key)) throw_malformed();
    map.emplace_hint(map.end(), std::move(key), std::move(value));
  }
}

/// Writes an ordered set (std::set) as a count and its elements.
template <class Archive, class Set>
void save_ordered_set(Archive& archive, const Set& set) {
  archive(cereal::make_size_tag(static_cast<cereal::size_type>(set.size())));
  for (const auto& element : set) archive(element);
}

/// Reads what save_ordered_set wrote, requiring strictly ascending elements.
template <class Archive, class Set>
void load_ordered_set(Archive& archive, Set& set) {
  cereal::size_type count = 0;
  archive(cereal::make_size_tag(count));
  set.clear();
  for (cereal::size_type i = 0; i < count; ++i) {
    typename Set::value_type element{};
    archive(element);
    if (!set.empty() && !set.key_comp()(*std::prev(set.end()), element)) throw_malformed();
    set.emplace_hint(set.end(), std::move(element));
  }
}

/// Writes a vector as cereal does (a count, then the elements), for
/// elements that load_vector must read back.
template <class Archive, class Vector>
void save_vector(Archive& archive, const Vector& vector) {
  archive(cereal::make_size_tag(static_cast<cereal::size_type>(vector.size())));
  for (const auto& element : vector) archive(element);
}

/// Reads what save_vector (or cereal's own vector save) wrote, growing the
/// vector one decoded element at a time. cereal's loader resizes to the
/// count first: the count is only known to be at most the remaining bytes,
/// so a vector of large elements (a numbered op is ~250 bytes) would let a
/// 1 MiB message allocate ~250 MiB before reading one element. Use this for
/// every vector whose element is larger than its smallest encoding.
template <class Archive, class Vector>
void load_vector(Archive& archive, Vector& vector) {
  cereal::size_type count = 0;
  archive(cereal::make_size_tag(count));
  vector.clear();
  vector.reserve(std::min<std::size_t>(static_cast<std::size_t>(count), 16));
  for (cereal::size_type i = 0; i < count; ++i) {
    typename Vector::value_type element{};
    archive(element);
    vector.push_back(std::move(element));
  }
}

}  // namespace lattice::crdt
