// lattice/registry/instance_list.hpp: a service view's providers (or
// consumers), in id order, shared between snapshots.
//
// Every publication makes a new view of each changed path, and a write
// changes one instance among all of the path's. Copying the whole list
// each time made a registration cost O(instances of its path): with 16
// services of 5,000 instances each, building and freeing views took 47 % of
// the daemon's CPU at 64 concurrent writers (perf, bench/http_writes.sh).
// The list is a sorted_chunks, as config_tree is: a new view copies only
// the chunks its changed instances fall in.
//
//   for (const instance_view& i : view.providers) connect(i->address(), i->port());
//   if (const instance_view* i = view.providers.find("10.0.0.7:8080")) ...
//
// Thread safety: immutable once its view is published; an editor is used
// by the one thread that builds the next view.
#pragma once

#include <string_view>
#include <utility>
#include <vector>

#include "lattice/registry/instance_view.hpp"
#include "lattice/registry/sorted_chunks.hpp"

namespace lattice::registry {

struct instance_id_of {
  std::string_view operator()(const instance_view& view) const noexcept { return view.record->id(); }
};

class instance_list : public sorted_chunks<instance_view, instance_id_of> {
  using base = sorted_chunks<instance_view, instance_id_of>;

 public:
  instance_list() = default;
  /// From views in id order, ids unique.
  static instance_list from_sorted(std::vector<instance_view> views) { return instance_list(base::from_sorted(std::move(views))); }

  /// The first view. REQUIRES: !empty().
  const instance_view& front() const noexcept { return *begin(); }

  /// Whether both list the same record objects in the same order: what a
  /// new version means. Load figures are not compared. Chunks the two
  /// share are skipped (sorted_chunks::equal).
  static bool same_records(const instance_list& a, const instance_list& b) {
    return equal(a, b, [](const instance_view& x, const instance_view& y) { return x.record == y.record; });
  }

  /// Edits a list in place, copying each shared chunk the first time it
  /// touches it. One editor per new view.
  class editor {
   public:
    explicit editor(instance_list& list) : list_(list), edit_(list) {}
    /// Sets the view of instance `id` (view->record->id() == id), or
    /// removes it (nullptr). Returns true if the list's records changed (an
    /// instance added, removed or its record replaced), false if at most
    /// its load figures did.
    bool set(std::string_view id, const instance_view* view);

   private:
    const instance_list& list_;
    base::editor edit_;
  };

 private:
  explicit instance_list(base views) : base(std::move(views)) {}
};

}  // namespace lattice::registry
