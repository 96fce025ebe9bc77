// apps/latticed/sessions.hpp: sessions, the lifetime a client that does
// not embed a replica binds its registrations to (ZooKeeper's ephemeral
// nodes, etcd's leases).
//
// A session ends when it is destroyed, when its TTL passes without a
// renewal, or, for a held session, when the client's streaming connection
// drops. Ending it removes every registration made under it, everywhere
// (the api deregisters them). Sessions live in the daemon that created
// them, in memory: a daemon that stops ends its sessions (its ephemeral
// instances go with it anyway), and one that restarts removes the
// registrations of the sessions it had.
//
// Thread safety: the HTTP thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "lattice/registry/instance.hpp"

namespace lattice::daemon {

/// The tag a registration made under a session carries: the session's id.
constexpr const char* kSessionTag = "lattice:session";

/// One registration: its path, kind and instance id.
using bound_instance = std::tuple<std::string, registry::instance_kind, std::string>;

struct client_session {
  using time_point = std::chrono::steady_clock::time_point;
  std::string id;  // a random UUID
  std::string name;
  /// 0: no TTL (it ends when destroyed, dropped or its daemon stops).
  std::chrono::milliseconds ttl{0};
  /// Consul's Behavior ("release" or "delete"), reported back: with no
  /// locks, both end the same way here.
  std::string behavior = "release";
  /// Bound to a streaming connection: ends when it drops.
  bool held = false;
  time_point expires{};
  std::uint64_t create_index = 0;
  std::set<bound_instance> bound;
};

class session_table {
 public:
  using time_point = client_session::time_point;

  /// A new session with a fresh id.
  const client_session& create(std::string name, std::chrono::milliseconds ttl, std::string behavior, bool held,
                        time_point now, std::uint64_t index);
  const client_session* find(const std::string& id) const;
  /// Restarts its TTL; nullptr if there is no such session (any more).
  const client_session* renew(const std::string& id, time_point now);
  /// Ends session `id`: returns it, with the registrations to remove.
  std::optional<client_session> end(const std::string& id);
  /// Ends every session whose TTL passed by `now`.
  std::vector<client_session> expire(time_point now);
  /// When the next TTL passes, if any session has one.
  std::optional<time_point> next_deadline() const;

  /// Binds a registration to session `id` (which must exist), moving it
  /// from any session it was bound to before.
  void bind(const std::string& id, const bound_instance& instance);
  /// Frees a registration from its session (deregistered, or registered
  /// again without one).
  void unbind(const bound_instance& instance);

  const std::map<std::string, client_session>& all() const noexcept { return sessions_; }

 private:
  std::map<std::string, client_session> sessions_;
  std::map<bound_instance, std::string> owner_;  // registration -> session id
};

}  // namespace lattice::daemon
