#include "user_events.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <stdexcept>
#include <tuple>

#include <fmt/format.h>

#include "consul_codec.hpp"

namespace lattice::daemon::consul {

using nlohmann::json;

namespace {

// Every event `config` holds, newest first by (fired time, ID), with its key.
std::vector<std::pair<std::string, user_event>> all_events(const registry::config_tree& config) {
  std::vector<std::pair<std::string, user_event>> out;
  const std::string prefix(kEventPrefix);
  for (auto it = config.lower_bound(prefix); it != config.end() && it->key.starts_with(prefix); ++it)
    if (auto e = decode_event(it->value)) out.emplace_back(it->key, std::move(*e));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.second.fired_ms, a.second.id) > std::tie(b.second.fired_ms, b.second.id);
  });
  return out;
}

}  // namespace

std::string event_key(std::string_view name) { return std::string(kEventPrefix) + service_path_of(name).substr(1); }

std::string encode_event(const user_event& e) {
  // Consul's shape, and what the sweep needs; the payload always base64
  // (event_json sends an empty one as null).
  json stored = event_json(e);
  stored["Payload"] = base64(e.payload);
  stored["FiredMs"] = e.fired_ms;
  stored["Origin"] = fmt::format("{:016x}", e.origin);
  return dump_json(stored);  // the endpoint refuses what is not UTF-8; dump_json never throws
}

std::optional<user_event> decode_event(std::string_view value) {
  const json j = json::parse(value, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  try {
    user_event e;
    e.id = j.at("ID").get<std::string>();
    e.name = j.at("Name").get<std::string>();
    auto payload = unbase64(j.at("Payload").get<std::string>());
    if (!payload) return std::nullopt;
    e.payload = std::move(*payload);
    e.node_filter = j.at("NodeFilter").get<std::string>();
    e.service_filter = j.at("ServiceFilter").get<std::string>();
    e.tag_filter = j.at("TagFilter").get<std::string>();
    e.ltime = j.at("LTime").get<std::uint64_t>();
    e.fired_ms = j.at("FiredMs").get<std::int64_t>();
    e.origin = std::stoull(j.at("Origin").get<std::string>(), nullptr, 16);
    return e;
  } catch (const std::exception&) {  // json type errors, stoull
    return std::nullopt;
  }
}

std::vector<user_event> live_events(const registry::config_tree& config, std::int64_t now_ms,
                                    std::chrono::milliseconds retention) {
  std::vector<user_event> out;
  for (auto& [key, e] : all_events(config)) {
    if (out.size() == kMaxEvents) break;
    if (e.fired_ms + retention.count() > now_ms) out.push_back(std::move(e));
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> expired_event_keys(const registry::config_tree& config, std::int64_t now_ms,
                                            std::chrono::milliseconds retention, registry::replica_id self) {
  constexpr std::int64_t kOrphanGraceMs = 60'000;
  std::vector<std::string> out;
  std::size_t kept = 0;
  for (const auto& [key, e] : all_events(config)) {
    const std::int64_t due = e.fired_ms + retention.count() + (e.origin == self ? 0 : kOrphanGraceMs);
    if (kept == kMaxEvents || due <= now_ms)
      out.push_back(key);
    else
      ++kept;
  }
  return out;
}

std::uint64_t event_index(const std::string& id) {
  // Consul folds the UUID's two 64-bit halves together (uuidToUint64).
  std::string hex;
  for (const char c : id)
    if (c != '-') hex += c;
  if (hex.size() != 32) return 1;
  try {
    return std::stoull(hex.substr(0, 16), nullptr, 16) ^ std::stoull(hex.substr(16), nullptr, 16);
  } catch (const std::exception&) {
    return 1;
  }
}

std::string new_uuid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("RAND_bytes failed");
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return fmt::format("{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                     b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                     b[15]);
}

json event_json(const user_event& e) {
  return json{{"ID", e.id},
              {"Name", e.name},
              {"Payload", kv_value(e.payload)},
              {"NodeFilter", e.node_filter},
              {"ServiceFilter", e.service_filter},
              {"TagFilter", e.tag_filter},
              {"Version", 1},
              {"LTime", e.ltime}};
}

}  // namespace lattice::daemon::consul
