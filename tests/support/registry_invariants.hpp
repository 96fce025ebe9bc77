// tests/support/registry_invariants.hpp: what must hold after every step of
// a registry simulation, whatever the network, the clocks and the crashes
// do (the "invariant checker" of the "Proof that merges lose nothing"
// issue). The workload tells the checker what it did (acknowledged writes,
// kills, restarts); check() then looks at every live node:
//   - no node holds a live entry for a key stamped before a tombstone it
//     held for that key earlier in its life (nothing deleted comes back; a
//     tombstone that only a node which then died without its data held is
//     lost with it, which is not a resurrection elsewhere);
//   - a path's published version at a node only grows while the node lives;
//   - a node's own registrations stay listed at that node while it lives
//     (until the workload deregisters them there);
//   - incarnations a node has seen for a member only grow while it lives;
//   - a write a node acknowledged stays visible at that node while it lives:
//     its entry for the key is at least as new, or a later delete (a
//     tombstone, a prefix erasure, or a collection below the horizon) covers
//     it.
// A violation is returned as a sentence naming the node, the key and the
// stamps; the test prints it with the seed.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "registry_sim.hpp"

namespace lattice::testing {

class registry_invariants {
 public:
  /// `paths`: the service paths the workload uses (their versions are
  /// followed).
  registry_invariants(registry_sim& sim, std::vector<std::string> paths)
      : sim_(sim), paths_(std::move(paths)), lives_(sim.size()) {}

  // ---- what the workload reports ---------------------------------------

  /// Node `i` acknowledged a registration of `id` under `path`; `blind`:
  /// it held nothing for the key when it wrote it (a node restarted
  /// without its data, or cut off), so the write could not be stamped
  /// after the key's history.
  void registered(std::size_t i, const std::string& path, const std::string& id, bool blind) {
    lives_[i].own[{path, id}] = blind;
  }
  /// Node `i` acknowledged removing `id` from `path`.
  void deregistered(std::size_t i, const std::string& path, const std::string& id) {
    lives_[i].own.erase({path, id});
  }
  /// Node `i` acknowledged a config write of `key` (read its stamp now).
  void config_written(std::size_t i, const std::string& key) {
    const auto* entry = sim_.node(i).state().config.find_entry(key);
    if (entry != nullptr) lives_[i].acked_config[key] = entry->stamp;
  }
  /// Node `i` died, or started a new life: what it saw no longer binds it.
  void new_life(std::size_t i) { lives_[i] = life{}; }

  // ---- the check ---------------------------------------------------------

  /// The first violation, or nullopt.
  std::optional<std::string> check() {
    for (std::size_t i = 0; i < sim_.size(); ++i) {
      if (!sim_.alive(i)) continue;
      if (auto v = check_node(i)) return v;
    }
    return std::nullopt;
  }

 private:
  struct life {
    std::map<std::pair<std::string, std::string>, bool> own;  // -> written blind
    std::map<std::string, crdt::hlc_timestamp> acked_config;
    std::map<std::string, std::uint64_t> versions;
    std::map<crdt::replica_id, std::uint64_t> incarnations;
    std::map<std::string, crdt::hlc_timestamp> instance_tombstones;
    std::map<std::string, crdt::hlc_timestamp> config_tombstones;
  };

  void record_tombstones(std::size_t i) {
    const auto& doc = sim_.node(i).state();
    auto& l = lives_[i];
    const auto note = [&](std::map<std::string, crdt::hlc_timestamp>& into) {
      return [&into](const std::string& key, const auto& entry) {
        if (entry.live()) return;
        auto& t = into[key];
        t = std::max(t, entry.stamp);
      };
    };
    doc.instances.for_each_entry(note(l.instance_tombstones));
    doc.config.for_each_entry(note(l.config_tombstones));
  }

  std::optional<std::string> check_node(std::size_t i) {
    auto& core = sim_.node(i);
    const auto& doc = core.state();
    const auto id = i + 1;
    std::optional<std::string> violation;

    // Nothing deleted comes back.
    const auto no_resurrection = [&](const char* what, const std::map<std::string, crdt::hlc_timestamp>& tombstones) {
      return [&, what](const std::string& key, const auto& entry) {
        if (violation || !entry.live()) return;
        const auto t = tombstones.find(key);
        if (t != tombstones.end() && entry.stamp < t->second)
          violation = fmt::format("node {} holds {} {} live at {}, older than a tombstone at {} it held before", id,
                                  what, key, to_string(entry.stamp), to_string(t->second));
      };
    };
    doc.instances.for_each_entry(no_resurrection("instance", lives_[i].instance_tombstones));
    doc.config.for_each_entry(no_resurrection("config key", lives_[i].config_tombstones));
    if (violation) return violation;
    record_tombstones(i);

    core.publish(sim_.now());
    const auto& published = *core.published();
    auto& l = lives_[i];

    // Versions only grow.
    for (const auto& [path, version] : l.versions) {
      const auto* view = published.find(path);
      const std::uint64_t now_version = view ? view->version : 0;
      if (now_version < version)
        return fmt::format("node {}: version of {} went back from {} to {}", id, path, version, now_version);
    }
    for (const auto& path : paths_)
      if (const auto* view = published.find(path)) l.versions[path] = view->version;

    // Views edited chunk by chunk equal views built from scratch.
    for (const auto& path : paths_) {
      const auto* view = published.find(path);
      const auto scratch = core.view_from_scratch(path);
      if (!scratch) continue;
      if (view == nullptr) return fmt::format("node {}: {} is held but has no view", id, path);
      if (auto wrong = same_lists(view->providers, scratch->providers))
        return fmt::format("node {}: {} providers differ from a view built from scratch: {}", id, path, *wrong);
      if (auto wrong = same_lists(view->consumers, scratch->consumers))
        return fmt::format("node {}: {} consumers differ from a view built from scratch: {}", id, path, *wrong);
    }

    // Own registrations stay listed.
    for (const auto& [own, blind] : l.own) {
      const auto& [path, instance_id] = own;
      const auto* view = published.find(path);
      bool listed = false;
      if (view != nullptr)
        for (const auto& p : view->providers) listed |= p->id() == instance_id;
      if (!listed) {
        const auto key = registry::instance_key(path, registry::instance_kind::provider, instance_id);
        const auto* entry = doc.instances.find_entry(key);
        return fmt::format("node {}: its own registration {} {} ({}) is not listed there (entry: {})", id, path,
                           instance_id, blind ? "written blind" : "written after the key's history",
                           entry == nullptr ? std::string("absent")
                                            : entry->live()
                                                ? fmt::format("live at {}, {}, owner {} incarnation {}; node incarnation {}",
                                                              to_string(entry->stamp),
                                                              (*entry->value)->ephemeral() ? "ephemeral" : "persistent",
                                                              (*entry->value)->owner(),
                                                              (*entry->value)->owner_incarnation(),
                                                              core.members().self_record().incarnation)
                                                : fmt::format("tombstone at {}", to_string(entry->stamp)));
      }
    }

    // Incarnations only grow.
    for (const auto& [member, record] : core.members().table().records()) {
      auto& seen = l.incarnations[member];
      if (record.incarnation < seen)
        return fmt::format("node {}: incarnation of member {} went back from {} to {}", id, member, seen,
                           record.incarnation);
      seen = record.incarnation;
    }

    // Acknowledged writes stay (or are covered by a later delete).
    for (const auto& [key, acked] : l.acked_config) {
      const auto* entry = doc.config.find_entry(key);
      if (entry != nullptr && !(entry->stamp < acked)) continue;
      const auto* erasure = doc.erasure_covering(key);
      if (erasure != nullptr && !(*erasure < acked)) continue;
      if (entry == nullptr && acked < doc.config.horizon()) continue;
      return fmt::format("node {}: its acknowledged write of {} at {} is gone (now {})", id, key, to_string(acked),
                         entry ? to_string(entry->stamp) : std::string("absent"));
    }
    return std::nullopt;
  }

  // Nothing if `a` and `b` list the same records with the same load
  // figures, else the first difference.
  static std::optional<std::string> same_lists(const registry::instance_list& a, const registry::instance_list& b) {
    auto x = a.begin(), y = b.begin();
    for (; x != a.end() && y != b.end(); ++x, ++y) {
      if (x->record != y->record)
        return fmt::format("{} where {} should be", x->record->id(), y->record->id());
      if (x->local != y->local || x->remote_in_flight != y->remote_in_flight || x->remote_served != y->remote_served)
        return fmt::format("{}: load figures {}/{} against {}/{}", x->record->id(), x->remote_in_flight,
                           x->remote_served, y->remote_in_flight, y->remote_served);
    }
    if (x != a.end()) return fmt::format("{} listed, should not be", x->record->id());
    if (y != b.end()) return fmt::format("{} missing", y->record->id());
    if (a.size() != b.size()) return fmt::format("size {} against {} listed", a.size(), b.size());
    return std::nullopt;
  }

  static std::string to_string(const crdt::hlc_timestamp& t) {
    return fmt::format("({}, {}, {})", t.physical_us, t.logical, t.replica);
  }

  registry_sim& sim_;
  std::vector<std::string> paths_;
  std::vector<life> lives_;
};

}  // namespace lattice::testing
