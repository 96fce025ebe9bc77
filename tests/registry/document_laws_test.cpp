// The registry document (instances, config, load counters and prefix
// erasures in one state) through the shipped law checker
// (lattice/crdt/testing/laws.hpp), over the states replicas reach: merged,
// restarted from bytes, restarted empty under a new id, and compacted at
// causally stable points. A document is a delta-state CRDT (no op path).
#include <string>
#include <tuple>
#include <vector>

#include "lattice/crdt/testing/catch.hpp"
#include "lattice/registry/document.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace document_laws_test {

using lattice::crdt::hlc_timestamp;
using lattice::crdt::testing::replica_context;
using lattice::registry::instance;
using lattice::registry::instance_key;
using lattice::registry::instance_kind;
using lattice::registry::instance_record;
using lattice::registry::load_counts;
using lattice::registry::load_key;
using lattice::registry::registry_document;

namespace {

// Keys and prefixes chosen to overlap: "/a" covers "/ab" as a string
// prefix, "/a/" does not.
const std::vector<std::string> config_keys{"/a", "/a/x", "/a/y", "/ab", "/b/x", "/b/y/z"};
const std::vector<std::string> prefixes{"/a", "/a/", "/b/", "/", "/b/y/"};
const std::vector<std::string> paths{"/svc", "/svc/v1", "/other"};

struct document_model {
  using type = registry_document;
  /// (what, index, value, wall-clock step)
  using action = std::tuple<int, int, int, std::uint64_t>;
  static rc::Gen<action> gen() {
    return rc::gen::tuple(rc::gen::inRange(0, 7), rc::gen::inRange(0, 6), rc::gen::inRange(0, 50),
                          rc::gen::inRange<std::uint64_t>(0, 3));
  }
  static type mutate(type& s, replica_context& ctx, const action& a) {
    const auto [what, index, value, step] = a;
    const auto i = static_cast<std::size_t>(index);
    const auto stamp = ctx.stamp(step);
    type delta;
    switch (what) {
      case 0: delta.config.put(config_keys[i % config_keys.size()], std::to_string(value), stamp); break;
      case 1: delta.config.erase(config_keys[i % config_keys.size()], stamp); break;
      case 2: delta = type::erase_config_prefix(prefixes[i % prefixes.size()], stamp); break;
      case 3: {
        instance fields;
        fields.id = "i" + std::to_string(value % 4);
        fields.address = "127.0.0.1";
        fields.port = static_cast<std::uint16_t>(9000 + value);
        fields.owner = ctx.id;
        const auto& path = paths[i % paths.size()];
        delta.instances.put(instance_key(path, instance_kind::provider, fields.id), instance_record::make(fields),
                            stamp);
        break;
      }
      case 4: {
        const auto& path = paths[i % paths.size()];
        delta.instances.erase(instance_key(path, instance_kind::provider, "i" + std::to_string(value % 4)), stamp);
        break;
      }
      case 5: {
        const load_key key{instance_key(paths[i % paths.size()], instance_kind::provider, "i0"), {}, ctx.id, 1};
        const auto* now = s.load.find(key);
        load_counts counts = now ? *now : load_counts{};
        counts.started += static_cast<std::uint64_t>(value);
        delta.load.put(key, counts, stamp);
        break;
      }
      default: {
        const load_key key{instance_key(paths[i % paths.size()], instance_kind::provider, "i0"), {}, ctx.id, 1};
        delta.load.erase(key, stamp);
        break;
      }
    }
    s.merge(delta);
    return delta;
  }
  static void compact(type& s, hlc_timestamp stable) { s.compact(stable); }
};

}  // namespace

TEST_CASE("registry documents obey the CRDT laws", "[registry][crdt][laws]") {
  lattice::crdt::testing::check_crdt_laws<document_model>();
}

}  // namespace document_laws_test
