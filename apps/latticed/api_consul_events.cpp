// Consul's user events: PUT /v1/event/fire/:name and GET /v1/event/list,
// kept as replicated state (user_events.hpp says how, and for how long).
//
// As Consul's agent, a daemon lists an event only if it is among the
// event's targets: its node name matches NodeFilter, and with a
// ServiceFilter, one of its own services matches it (and one of that
// service's tags matches TagFilter).
#include <chrono>

#include <boost/asio/post.hpp>
#include <re2/re2.h>
#include <spdlog/spdlog.h>

#include "api.hpp"
#include "consul_codec.hpp"
#include "json_codec.hpp"
#include "lattice/registry/path.hpp"
#include "query_topics.hpp"
#include "user_events.hpp"

namespace lattice::daemon {

using nlohmann::json;
namespace reg = lattice::registry;

using namespace consul;

namespace {

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool matches_filter(const std::string& pattern, const std::string& text) {
  RE2::Options options;
  options.set_log_errors(false);
  const RE2 re(pattern, options);
  return re.ok() && RE2::PartialMatch(text, re);  // Consul's filters are unanchored, as Go's regexp.MatchString
}

}  // namespace

reply api::consul_event_fire(request& req, const target& t, const std::string& name) {
  const unsigned v = req.version();
  const auto bad = [&](const std::string& message) { return error_response(http::status::bad_request, message, v); };
  if (name.empty()) return bad("Missing name");
  if (!is_utf8(name)) return bad("the event name is not UTF-8");
  if (req.body().size() > kMaxEventPayload)
    return error_response(http::status::payload_too_large,
                          "User event payload exceeds the limit of " + std::to_string(kMaxEventPayload) + " bytes", v);
  user_event e;
  e.name = name;
  e.payload = req.body();
  e.node_filter = t.get("node").value_or("");
  e.service_filter = t.get("service").value_or("");
  e.tag_filter = t.get("tag").value_or("");
  if (!e.tag_filter.empty() && e.service_filter.empty()) return bad("Cannot provide tag filter without service filter");
  for (const auto* f : {&e.node_filter, &e.service_filter, &e.tag_filter})
    if (!is_utf8(*f)) return bad("a filter is not UTF-8");
  for (const auto* f : {&e.node_filter, &e.service_filter, &e.tag_filter}) {
    RE2::Options options;
    options.set_log_errors(false);
    if (const RE2 re(*f, options); !re.ok()) return bad("Invalid filter \"" + *f + "\": " + re.error());
  }
  const std::string key = event_key(name);
  if (auto p = reg::service_path::parse(key); !p) return bad("invalid event name \"" + name + "\": " + p.error().message());
  const auto now = wall_ms();
  for (const auto& held : live_events(*replica_.current()->config, now, options_.event_retention))
    e.ltime = std::max(e.ltime, held.ltime + 1);
  e.id = new_uuid();
  e.fired_ms = now;
  e.origin = replica_.id();
  json answer = event_json(e);
  return deferred_write<void>(
      [this, key, value = encode_event(e)](auto done) mutable {
        replica_.set_config_async(key, std::move(value), std::move(done));
      },
      [v, answer] { return json_response(answer, v); }, consul_write_error(v));
}

reply api::consul_event_list(request& req, const target& t) {
  const unsigned v = req.version();
  for (const char* unsupported : {"node", "service", "tag"})
    if (t.has(unsupported))
      return error_response(http::status::bad_request,
                            std::string("?") + unsupported + " is not supported on /v1/event/list (?name is)", v);
  const auto wanted = t.get("name");
  return blocking(
      req, t, {kv_prefix_topic(std::string(kEventPrefix))},
      [this, v, wanted] {
        const auto snap = replica_.current();
        const std::string me = node_name(replica_.id());
        json out = json::array();
        std::uint64_t index = 1;
        for (const auto& e : live_events(*snap->config, wall_ms(), options_.event_retention)) {
          if (wanted && e.name != *wanted) continue;
          if (!e.node_filter.empty() && !matches_filter(e.node_filter, me)) continue;
          if (!e.service_filter.empty()) {
            bool targeted = false;
            for (const auto& [id, s] : services_) {
              if (!matches_filter(e.service_filter, service_name_of(s.path))) continue;
              if (e.tag_filter.empty()) {
                targeted = true;
              } else if (const auto tags = s.base.tags.find(kTags); tags != s.base.tags.end()) {
                for (const auto& tag : json::parse(tags->second, nullptr, false))
                  if (tag.is_string() && matches_filter(e.tag_filter, tag.get<std::string>())) targeted = true;
              }
            }
            if (!targeted) continue;
          }
          index = event_index(e.id);
          out.push_back(event_json(e));
        }
        return std::pair{index, with_index(json_response(out, v), index)};
      },
      /*opaque=*/true);
}

void api::sweep_events(time_point now) {
  if (now < next_event_sweep_) return;
  next_event_sweep_ = now + std::chrono::seconds(5);
  const auto keys =
      expired_event_keys(*replica_.current()->config, wall_ms(), options_.event_retention, replica_.id());
  for (const auto& key : keys) {
    if (!events_erasing_.insert(key).second) continue;  // its erase is in flight
    replica_.erase_config_async(key, [this, key](result<bool> r) {
      if (!r) spdlog::warn("user events: erasing {} failed: {}", key, r.error().message());
      boost::asio::post(io_, [this, key] { events_erasing_.erase(key); });
    });
  }
}

}  // namespace lattice::daemon
