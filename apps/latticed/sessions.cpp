#include "sessions.hpp"

#include <openssl/rand.h>

#include <fmt/format.h>

namespace lattice::daemon {

namespace {

// A version-4 UUID, as Consul's session ids.
std::string random_uuid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("RAND_bytes failed");
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  return fmt::format("{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
                     b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                     b[15]);
}

}  // namespace

const client_session& session_table::create(std::string name, std::chrono::milliseconds ttl, std::string behavior,
                                     bool held, time_point now, std::uint64_t index) {
  client_session s;
  s.id = random_uuid();
  s.name = std::move(name);
  s.ttl = ttl;
  s.behavior = std::move(behavior);
  s.held = held;
  s.expires = now + ttl;
  s.create_index = index;
  const std::string id = s.id;
  return sessions_.emplace(id, std::move(s)).first->second;
}

const client_session* session_table::find(const std::string& id) const {
  const auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

const client_session* session_table::renew(const std::string& id, time_point now) {
  const auto it = sessions_.find(id);
  if (it == sessions_.end()) return nullptr;
  it->second.expires = now + it->second.ttl;
  return &it->second;
}

std::optional<client_session> session_table::end(const std::string& id) {
  const auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  client_session s = std::move(it->second);
  sessions_.erase(it);
  for (const auto& b : s.bound) owner_.erase(b);
  return s;
}

std::vector<client_session> session_table::expire(time_point now) {
  std::vector<std::string> due;
  for (const auto& [id, s] : sessions_)
    if (s.ttl.count() > 0 && now >= s.expires) due.push_back(id);
  std::vector<client_session> out;
  for (const auto& id : due) out.push_back(*end(id));
  return out;
}

std::optional<session_table::time_point> session_table::next_deadline() const {
  std::optional<time_point> at;
  for (const auto& [id, s] : sessions_)
    if (s.ttl.count() > 0 && (!at || s.expires < *at)) at = s.expires;
  return at;
}

void session_table::bind(const std::string& id, const bound_instance& instance) {
  unbind(instance);
  sessions_.at(id).bound.insert(instance);
  owner_[instance] = id;
}

void session_table::unbind(const bound_instance& instance) {
  const auto it = owner_.find(instance);
  if (it == owner_.end()) return;
  if (auto s = sessions_.find(it->second); s != sessions_.end()) s->second.bound.erase(instance);
  owner_.erase(it);
}

}  // namespace lattice::daemon
