// Consul's KV store over Lattice's config tree: key K is the config key
// "/K". Reads are local and may block (?index); a recursive delete is one
// prefix tombstone, so it also covers keys this daemon has not seen yet.
// Locks and compare-and-set (?cas, ?acquire, ?release) are refused:
// Lattice is AP and has no single order of writes to compare against.
#include <algorithm>
#include <charconv>
#include <set>

#include "api.hpp"
#include "consul_codec.hpp"
#include "lattice/registry/path.hpp"
#include "query_topics.hpp"
#include "lattice/crdt/digest.hpp"
#include "user_events.hpp"

namespace lattice::daemon {

using nlohmann::json;
namespace reg = lattice::registry;

using namespace consul;

namespace {

constexpr const char* kKeyAlphabet = " (Lattice config keys are paths: segments of [A-Za-z0-9._~:@+-])";

// ?cas, ?acquire, ?release: refused by name on every KV method.
std::optional<response> refuse_locks(const target& t, unsigned v) {
  for (const char* unsupported : {"cas", "acquire", "release"})
    if (t.has(unsupported))
      return error_response(http::status::bad_request,
                            std::string("?") + unsupported + " is not supported: Lattice has no locks or "
                            "compare-and-set (it is AP; see the README)", v);
  return std::nullopt;
}

// Keys under "~lattice/" are latticed's own (user events): not listed,
// not readable or writable as KV.
bool reserved(const std::string& config_key) {
  return config_key.starts_with(kReservedPrefix) || config_key + "/" == kReservedPrefix;
}

std::optional<response> refuse_reserved(const std::string& config_key, unsigned v) {
  if (!reserved(config_key)) return std::nullopt;
  return error_response(http::status::bad_request,
                        "keys under \"" + std::string(kReservedPrefix.substr(1)) + "\" are reserved for latticed", v);
}

}  // namespace

reply api::consul_kv_get(request& req, const target& t, const std::string& key) {
  const unsigned v = req.version();
  if (auto refused = refuse_locks(t, v)) return std::move(*refused);
  const std::string config_key = "/" + key;
  const bool recurse = t.has("recurse"), keys = t.has("keys"), raw = t.has("raw");
  const auto separator = t.get("separator");
  auto topic = recurse || keys ? kv_prefix_topic(config_key) : kv_key_topic(config_key);
  if (key.empty() && !recurse && !keys) return error_response(http::status::bad_request, "Missing key name", v);
  // Indexes (README, "KV indexes"): a key's is the physical time of the
  // stamp of the write that set it, the same at every daemon; a listing's
  // folds those of the keys it holds; a missing key's is the latest config
  // change this daemon applied. None moves with anything else (services,
  // members), and a blocking read answers when its index differs.
  return blocking(req, t, {std::move(topic)}, [=, this]() {
    const auto snap = replica_.current();
    const auto& config = *snap->config;
    // At least 1, as the header says (with_index): a blocking read given
    // the header's index must block.
    const std::uint64_t missing = std::max<std::uint64_t>(snap->config_clock_us, 1);
    if (!recurse && !keys) {
      const auto* it = reserved(config_key) ? nullptr : config.find(config_key);
      if (it == nullptr)
        return std::pair{missing, with_index(error_response(http::status::not_found, "", v), missing)};
      const std::uint64_t index = it->modified_us;
      if (raw) {
        response res{http::status::ok, v};
        res.set(http::field::content_type, "application/octet-stream");
        res.body() = it->value;
        res.prepare_payload();
        return std::pair{index, with_index(std::move(res), index)};
      }
      json entry{{"Key", key}, {"Value", kv_value(it->value)}, {"Flags", it->flags}, {"LockIndex", 0},
                 {"CreateIndex", index}, {"ModifyIndex", index}};  // CreateIndex: see the README
      return std::pair{index, with_index(json_response(json::array({entry}), v), index)};
    }
    json out = json::array();
    std::set<std::string> seen;
    std::uint64_t fold = 0;
    for (auto it = config.lower_bound(config_key); it != config.end() && it->key.starts_with(config_key); ++it) {
      if (reserved(it->key)) continue;
      fold += crdt::stable_hash(it->key, it->modified_us);
      std::string k = it->key.substr(1);
      if (keys) {
        if (separator && !separator->empty()) {
          const auto at = k.find(*separator, key.size());
          if (at != std::string::npos) k = k.substr(0, at + separator->size());
        }
        if (seen.insert(k).second) out.push_back(k);
      } else {
        out.push_back(json{{"Key", k}, {"Value", kv_value(it->value)}, {"Flags", it->flags}, {"LockIndex", 0},
                           {"CreateIndex", it->modified_us}, {"ModifyIndex", it->modified_us}});
      }
    }
    if (out.empty()) return std::pair{missing, with_index(error_response(http::status::not_found, "", v), missing)};
    // Within 2^53, so that a JavaScript client holds it exactly.
    const std::uint64_t index = (fold & ((std::uint64_t{1} << 53) - 1)) | 1;
    return std::pair{index, with_index(json_response(out, v), index)};
  }, /*opaque=*/true);
}

reply api::consul_kv_put(request& req, const target& t, const std::string& key) {
  const unsigned v = req.version();
  if (auto refused = refuse_locks(t, v)) return std::move(*refused);
  const std::string config_key = "/" + key;
  if (auto p = reg::service_path::parse(config_key); !p)
    return error_response(http::status::bad_request, "invalid key \"" + key + "\": " + p.error().message() +
                                                         kKeyAlphabet, v);
  if (auto refused = refuse_reserved(config_key, v)) return std::move(*refused);
  // Flags are written with the value, in the same entry (replica.hpp).
  std::uint64_t flags = 0;
  if (const auto text = t.get("flags")) {
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), flags);
    if (ec != std::errc{} || end != text->data() + text->size() || text->empty())
      return error_response(http::status::bad_request, "Invalid flags: \"" + *text + "\" (an unsigned 64-bit number)",
                            v);
  }
  return deferred_write<void>(
      [this, config_key, value = req.body(), flags](auto done) mutable {
        replica_.set_config_async(config_key, std::move(value), flags, std::move(done));
      },
      [v] { return json_response(true, v); }, consul_write_error(v));
}

reply api::consul_kv_delete(request& req, const target& t, const std::string& key) {
  const unsigned v = req.version();
  if (auto refused = refuse_locks(t, v)) return std::move(*refused);
  const std::string config_key = "/" + key;
  if (auto refused = refuse_reserved(config_key, v)) return std::move(*refused);
  if (t.has("recurse")) {
    // One prefix tombstone; a string prefix, as Consul's.
    return deferred_write<std::size_t>(
        [this, config_key](auto done) { replica_.erase_config_prefix_async(config_key, std::move(done)); },
        [v](std::size_t) { return json_response(true, v); },
        [v, key](std::error_code ec) {
          return error_response(static_cast<http::status>(status_of(ec)),
                                "prefix \"" + key + "\": " + ec.message() + kKeyAlphabet, v);
        });
  }
  if (auto p = reg::service_path::parse(config_key); !p)
    return error_response(http::status::bad_request, "invalid key \"" + key + "\": " + p.error().message() +
                                                         kKeyAlphabet, v);
  // A tombstone whether or not the key is known here; Consul answers true
  // for a missing key too.
  return deferred_write<bool>(
      [this, config_key](auto done) { replica_.erase_config_async(config_key, std::move(done)); },
      [v](bool) { return json_response(true, v); }, consul_write_error(v));
}

}  // namespace lattice::daemon
