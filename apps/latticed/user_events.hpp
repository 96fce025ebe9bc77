// apps/latticed/user_events.hpp: Consul's user events (/v1/event/fire,
// /v1/event/list) kept as replicated state.
//
// Consul sends a user event once by gossip; an agent that misses it (down,
// partitioned) never sees it. Here an event is a config entry under the
// reserved prefix "/~lattice/events/", keyed by its name, so it reaches
// every replica by the same anti-entropy as everything else, a partitioned
// replica included once the partition heals. Keyed by name, a newer event
// of a name replaces the older one everywhere (coalescing by name: what a
// deploy trigger or a cache flush wants, the latest).
//
// Bounds, applied alike by every replica from what it holds:
//  - an event is listed for `retention` after it was fired (by the firing
//    daemon's wall clock), then erased: by the daemon that fired it, or by
//    any daemon a minute later if that one is gone;
//  - at most kMaxEvents are kept: the newest by (fired time, ID); any
//    daemon erases the rest;
//  - a payload holds at most kMaxEventPayload bytes (Serf's default limit).
//
// Pure functions: the endpoints and the sweep live in api_consul_events.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lattice/registry/config_tree.hpp"
#include "lattice/registry/replica.hpp"

namespace lattice::daemon::consul {

/// Config keys under this prefix are latticed's own; the KV and config
/// APIs neither list nor write them.
constexpr std::string_view kReservedPrefix = "/~lattice/";
constexpr std::string_view kEventPrefix = "/~lattice/events/";
constexpr std::size_t kMaxEventPayload = 512;
constexpr std::size_t kMaxEvents = 256;

struct user_event {
  std::string id;  // a UUID, as Consul's
  std::string name;
  std::string payload;  // bytes
  std::string node_filter, service_filter, tag_filter;  // RE2, empty: any
  std::uint64_t ltime = 0;    // one more than the newest event the firing daemon held
  std::int64_t fired_ms = 0;  // Unix milliseconds, at the firing daemon
  registry::replica_id origin = 0;
};

/// The config key of events named `name` (escaped as a service name).
std::string event_key(std::string_view name);
std::string encode_event(const user_event& e);
/// nullopt for a value that is not an event (never written by latticed).
std::optional<user_event> decode_event(std::string_view value);

/// The events `config` holds that are listed at `now_ms`: fired within
/// `retention`, the newest kMaxEvents, oldest first.
std::vector<user_event> live_events(const registry::config_tree& config, std::int64_t now_ms,
                                    std::chrono::milliseconds retention);
/// The keys replica `self` erases now: its own events past `retention`,
/// anyone's a minute past it, and every event beyond the newest kMaxEvents.
std::vector<std::string> expired_event_keys(const registry::config_tree& config, std::int64_t now_ms,
                                            std::chrono::milliseconds retention, registry::replica_id self);

/// Consul's index for an event list: the last event's ID folded to 64 bits
/// (an opaque value: a blocking list returns when it differs).
std::uint64_t event_index(const std::string& id);
/// A new random UUID (version 4).
std::string new_uuid();
/// As Consul's API shapes an event (Payload base64, or null when empty).
nlohmann::json event_json(const user_event& e);

}  // namespace lattice::daemon::consul
