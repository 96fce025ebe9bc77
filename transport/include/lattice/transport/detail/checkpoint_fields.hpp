// lattice/transport/detail/checkpoint_fields.hpp: cereal for the few field
// types of swim::detector that cereal has no support for (a random engine,
// a boost flat_map), one function per type for saving and loading alike.
//
// Used only by the detector's serialize(), which exists so a simulation
// can be checkpointed and resumed (bench/swim_sim.cpp --checkpoint): a
// 10,000-member hour of virtual time takes longer than a working session.
// Same build both ways; not a wire or storage format.
//
// Internal: swim::detector's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <utility>

#include <boost/container/flat_map.hpp>
#include <cereal/cereal.hpp>
#include <cereal/types/string.hpp>

namespace lattice::transport::detail {

/// A random engine's whole state, as the standard's text form.
template <class Archive, class Engine>
void checkpoint_engine(Archive& archive, Engine& engine) {
  std::string text;
  if constexpr (Archive::is_saving::value) {
    std::ostringstream out;
    out << engine;
    text = out.str();
  }
  archive(text);
  if constexpr (Archive::is_loading::value) {
    std::istringstream in(text);
    in >> engine;
    if (!in) throw cereal::Exception("checkpoint: a random engine's state does not parse");
  }
}

/// A flat_map, in its (sorted) order; loading replaces what is held.
template <class Archive, class Key, class Value, class Compare>
void checkpoint_flat_map(Archive& archive, boost::container::flat_map<Key, Value, Compare>& map) {
  std::uint64_t size = map.size();
  archive(size);
  if constexpr (Archive::is_saving::value) {
    for (auto& [key, value] : map) archive(key, value);
  } else {
    map.clear();
    map.reserve(static_cast<std::size_t>(size));
    for (std::uint64_t i = 0; i < size; ++i) {
      Key key{};
      Value value{};
      archive(key, value);
      map.emplace_hint(map.end(), std::move(key), std::move(value));
    }
  }
}

}  // namespace lattice::transport::detail
