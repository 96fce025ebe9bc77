// Consul health checks run by this agent: TTL checks its clients report
// on, HTTP and TCP checks it probes itself (check_probe.hpp), several per
// service.
//
// Only the daemon a service was registered with runs its checks; each
// check's definition, status and output live in a tag of the instance
// (consul_check.hpp), so they replicate with it: every daemon answers
// /v1/health alike, and a restarted daemon resumes the checks of its
// services. A change of status is written at once; a change of output
// alone at most every check_update_interval (as Consul's agent), except a
// check's first output.
//
// The agent's local state (services_) is the one source of every write of
// its instances, so a check result and a re-registration in flight at the
// same time cannot undo each other.
#include <algorithm>
#include <random>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "api.hpp"
#include "consul_codec.hpp"
#include "duration.hpp"

namespace lattice::daemon {

using nlohmann::json;
using namespace consul;
namespace reg = lattice::registry;

namespace {

// A random start in [0, interval), as Consul staggers checks, so that
// checks registered together do not probe together forever.
std::chrono::milliseconds stagger(std::chrono::milliseconds interval) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  if (interval.count() <= 1) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(std::uniform_int_distribution<std::int64_t>(0, interval.count() - 1)(rng));
}

std::chrono::milliseconds interval_of(const check_definition& d) { return std::max(d.interval, min_check_interval); }

}  // namespace

api::agent_check api::make_check(check_definition def, const agent_check* before, time_point now) {
  agent_check c;
  c.generation = next_generation_++;
  const bool keep = before != nullptr && before->def.kind == def.kind;
  c.status = keep ? before->status : def.status;
  c.output = keep ? before->output : def.output;
  c.written_output = keep ? before->written_output : def.output;
  c.output_written = keep ? before->output_written : now;
  c.critical_since = keep ? before->critical_since : now;
  c.expires = now + def.ttl;
  c.next_run = now + stagger(interval_of(def));
  c.def = std::move(def);
  return c;
}

void api::restore_checks() {
  // Our registrations came back from the data directory; so do their
  // checks, TTLs restarted (a restart is not a missed heartbeat).
  const auto snap = replica_.current();
  std::vector<std::string> ids;
  snap->services.for_each([&](const std::shared_ptr<const reg::service_view>& view) {
    for (const auto& i : view->providers)
      if (i->owner() == replica_.id() && !stored_checks(*i).empty()) ids.emplace_back(i->id());
  });
  for (const auto& id : ids) local(id);
}

api::local_service* api::local(const std::string& service_id) {
  if (auto it = services_.find(service_id); it != services_.end()) return &it->second;
  const auto own = own_service(service_id);
  if (!own) return nullptr;
  const auto now = std::chrono::steady_clock::now();
  local_service s;
  s.path = own->first;
  s.base = own->second->to_instance();
  for (auto it = s.base.tags.begin(); it != s.base.tags.end();)
    it = it->first.starts_with(kCheckTagPrefix) || it->first.starts_with("consul:check-") ||
                 it->first == kHealth || it->first == kOutput
             ? s.base.tags.erase(it)
             : std::next(it);
  for (auto& d : stored_checks(*own->second)) {
    const std::string id = d.id;
    check_owner_[id] = service_id;
    watch_deadline(deadline_of(s.checks[id] = make_check(std::move(d), nullptr, now)));
  }
  return &services_.emplace(service_id, std::move(s)).first->second;
}

reg::instance api::compose(local_service& s, time_point now) {
  reg::instance inst = s.base;
  for (auto& [id, c] : s.checks) {
    auto [key, value] = check_tag(c.def, c.status, c.output);
    inst.tags[std::move(key)] = std::move(value);
    c.written_output = c.output;
    c.output_written = now;
  }
  return inst;
}

void api::write_local(const std::string& service_id, std::function<void(const result<reg::instance>&)> done) {
  auto& s = services_.at(service_id);
  ++s.writes_in_flight;
  replica_.register_instance_async(
      s.path, compose(s, std::chrono::steady_clock::now()), reg::instance_kind::provider,
      [this, service_id, done = std::move(done)](result<reg::instance> r) {
        boost::asio::post(io_, [this, service_id, done, r = std::move(r)] {
          if (auto it = services_.find(service_id); it != services_.end()) --it->second.writes_in_flight;
          if (!r) spdlog::warn("consul check: writing service {} failed: {}", service_id, r.error().message());
          if (done) done(r);
        });
      });
}

reply api::write_and_answer(const std::string& service_id, std::function<response()> ok, unsigned version,
                            std::function<void()> on_failure) {
  return deferred_reply{[this, service_id, ok = std::move(ok), version, on_failure = std::move(on_failure)](
                            std::function<void(std::function<response()>)> complete) {
    write_local(service_id, [complete = std::move(complete), ok, version, on_failure](const result<reg::instance>& r) {
      if (!r && on_failure) on_failure();
      complete([ok, error = r ? std::error_code() : r.error(), version] {
        return error ? consul_write_error(version)(error) : ok();
      });
    });
  }};
}

void api::deregister_local(const std::string& service_id, std::function<void()> applied) {
  const auto it = services_.find(service_id);
  if (it == services_.end()) {
    if (applied) applied();
    return;
  }
  const std::string path = it->second.path;
  for (const auto& [id, c] : it->second.checks) check_owner_.erase(id);
  services_.erase(it);
  replica_.deregister_instance_async(path, service_id, reg::instance_kind::provider,
                                     [service_id, applied = std::move(applied)](result<bool> r) {
                                       if (!r)
                                         spdlog::warn("consul check: deregistering {} failed: {}", service_id,
                                                      r.error().message());
                                       if (applied) applied();
                                     });
}

bool api::removed_elsewhere(const local_service& s, const std::string& service_id) const {
  if (s.writes_in_flight > 0) return false;
  const auto list = replica_.lookup(s.path);
  const auto* found = list.providers().find(service_id);
  return found == nullptr || (*found)->owner() != replica_.id();
}

bool api::judge(agent_check& c, const std::string& status, std::string output, time_point now) {
  if (status == "critical" && c.status != "critical") c.critical_since = now;
  const bool changed = c.status != status;
  c.status = status;
  c.output = std::move(output);
  return changed;
}

std::optional<api::time_point> api::deadline_of(const agent_check& c) const {
  std::optional<time_point> at;
  const auto sooner = [&](time_point t) {
    if (!at || t < *at) at = t;
  };
  if (c.def.kind == check_kind::ttl) {
    if (c.status != "critical") sooner(c.expires);
  } else if (!c.running) {
    sooner(c.next_run);
  }
  if (c.status == "critical" && c.def.deregister_after.count() > 0) sooner(c.critical_since + c.def.deregister_after);
  if (c.output != c.written_output) sooner(c.output_written + options_.check_update_interval);
  return at;
}

void api::watch_deadline(std::optional<time_point> at) {
  if (at && wake_) wake_(*at);
}

std::optional<api::time_point> api::tick(time_point now) {
  std::vector<std::string> to_write, to_deregister;
  for (auto& [service_id, s] : services_) {
    bool write = false, deregister = false;
    for (auto& [check_id, c] : s.checks) {
      if (c.def.kind == check_kind::ttl) {
        if (c.status != "critical" && now >= c.expires) write |= judge(c, "critical", "TTL expired", now);
      } else if (!c.running && now >= c.next_run) {
        c.running = true;
        prober_.run(c.def, [this, service_id = service_id, check_id = check_id, g = c.generation](probe_result r) {
          on_probe(service_id, check_id, g, std::move(r));
        });
      }
      if (c.output != c.written_output && now >= c.output_written + options_.check_update_interval) write = true;
      if (c.status == "critical" && c.def.deregister_after.count() > 0 &&
          now - c.critical_since >= c.def.deregister_after)
        deregister = true;
    }
    if (deregister)
      to_deregister.push_back(service_id);
    else if (write)
      to_write.push_back(service_id);
  }
  for (const auto& id : to_deregister) {
    spdlog::info("consul check: service {} critical past DeregisterCriticalServiceAfter: deregistering", id);
    deregister_local(id);
  }
  for (const auto& id : to_write) write_local(id);
  for (const auto& s : sessions_.expire(now)) {
    spdlog::info("session {} ({}) expired: removing its {} registrations", s.id, s.name, s.bound.size());
    end_session(s);
  }
  sweep_events(now);
  std::optional<time_point> next = sessions_.next_deadline();
  if (const auto report = expire_reports(now); report && (!next || *report < *next)) next = report;
  for (const auto& [id, s] : services_)
    for (const auto& [cid, c] : s.checks)
      if (const auto at = deadline_of(c); at && (!next || *at < *next)) next = at;
  return next;
}

void api::on_probe(const std::string& service_id, const std::string& check_id, std::uint64_t generation,
                   probe_result r) {
  const auto sit = services_.find(service_id);
  if (sit == services_.end()) return;  // deregistered while it ran
  auto& s = sit->second;
  const auto cit = s.checks.find(check_id);
  if (cit == s.checks.end() || cit->second.generation != generation) return;  // replaced while it ran
  auto& c = cit->second;
  const auto now = std::chrono::steady_clock::now();
  c.running = false;
  c.next_run = now + interval_of(c.def);
  // Consecutive results needed before the status flips; a warning counts
  // at once.
  std::string status = c.status;
  if (r.status == "passing") {
    ++c.successes, c.failures = 0;
    if (c.successes >= std::max(1u, c.def.success_before_passing)) status = "passing";
  } else if (r.status == "critical") {
    ++c.failures, c.successes = 0;
    if (c.failures >= std::max(1u, c.def.failures_before_critical)) status = "critical";
  } else {
    c.successes = c.failures = 0;
    status = r.status;
  }
  const bool first_output = c.written_output.empty() && !r.output.empty();
  const bool changed = judge(c, status, std::move(r.output), now);
  if ((changed || first_output)) {
    if (removed_elsewhere(s, service_id)) {
      // Deregistered natively or expired with us: writing it would bring it back.
      for (const auto& [id, unused] : s.checks) check_owner_.erase(id);
      services_.erase(sit);
      return;
    }
    write_local(service_id);
  }
  watch_deadline(deadline_of(c));
}

// ---- endpoints -----------------------------------------------------------------------

reply api::consul_check_update_body(request& req, const std::string& check_id) {
  const unsigned v = req.version();
  const auto body = json::parse(req.body(), nullptr, false);
  const json* status = body.is_object() ? field(body, "Status") : nullptr;
  const json* output = body.is_object() ? field(body, "Output") : nullptr;
  if (status == nullptr || !status->is_string() ||
      (*status != "passing" && *status != "warning" && *status != "critical"))
    return error_response(http::status::bad_request, "Status must be passing, warning or critical", v);
  if (output != nullptr && !output->is_string())
    return error_response(http::status::bad_request, "Output must be a string", v);
  return consul_check_update(check_id, status->get<std::string>(), output ? output->get<std::string>() : "", v);
}

reply api::consul_check_update(const std::string& check_id, const std::string& status, const std::string& output,
                               unsigned version) {
  const auto owner = check_owner_.find(check_id);
  if (owner == check_owner_.end())
    return error_response(http::status::not_found, "Unknown check ID \"" + check_id + "\"", version);
  const std::string service_id = owner->second;
  auto& c = services_.at(service_id).checks.at(check_id);
  if (c.def.kind != check_kind::ttl)
    return error_response(http::status::bad_request, "check \"" + check_id + "\" is not a TTL check", version);
  const auto now = std::chrono::steady_clock::now();
  c.expires = now + c.def.ttl;
  const bool changed = judge(c, status, output, now);
  watch_deadline(deadline_of(c));
  if (!changed) return json_response(true, version);  // an output alone waits for check_update_interval
  return write_and_answer(service_id, [version] { return json_response(true, version); }, version);
}

reply api::consul_check_register(request& req) {
  const unsigned v = req.version();
  const auto bad = [&](const std::string& message) { return error_response(http::status::bad_request, message, v); };
  const auto body = json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object()) return bad("Request decode failed: malformed JSON");
  const json* name = field(body, "Name");
  if (name == nullptr || !name->is_string() || name->get<std::string>().empty()) return bad("Missing check name");
  const json* service = field(body, "ServiceID");
  if (service == nullptr || !service->is_string() || service->get<std::string>().empty())
    return bad("latticed runs checks of services only: ServiceID is required (node checks are not supported)");
  const std::string service_id = service->get<std::string>();
  local_service* s = local(service_id);
  if (s == nullptr) return bad("ServiceID \"" + service_id + "\" does not exist");
  auto parsed = parse_check(body, service_id, "", name->get<std::string>());
  if (auto* error = std::get_if<std::string>(&parsed)) return bad(*error);
  auto def = std::get<check_definition>(std::move(parsed));
  def.name = name->get<std::string>();
  if (const auto other = check_owner_.find(def.id); other != check_owner_.end() && other->second != service_id)
    return bad("CheckID \"" + def.id + "\" belongs to service \"" + other->second + "\"");
  const auto now = std::chrono::steady_clock::now();
  auto before = s->checks.find(def.id);
  agent_check c = make_check(def, before == s->checks.end() ? nullptr : &before->second, now);
  // The instance must stay within its limits (tags) with the new check.
  local_service trial = *s;
  trial.checks[def.id] = c;
  if (reg::instance inst = compose(trial, now); !reg::validate(inst))
    return bad("too many checks, or a check definition too large, for one service (instance tag limits)");
  check_owner_[def.id] = service_id;
  watch_deadline(deadline_of(s->checks[def.id] = std::move(c)));
  return write_and_answer(service_id, [v] { return text_response("", "text/plain", v); }, v);
}

reply api::consul_check_deregister(const std::string& check_id, unsigned version) {
  const auto owner = check_owner_.find(check_id);
  if (owner == check_owner_.end())
    return error_response(http::status::not_found, "Unknown check ID \"" + check_id + "\"", version);
  const std::string service_id = owner->second;
  check_owner_.erase(owner);
  services_.at(service_id).checks.erase(check_id);
  return write_and_answer(service_id, [version] { return text_response("", "text/plain", version); }, version);
}

json api::agent_checks() const {
  // As this agent judges them now (outputs not yet written included).
  json out = json::object();
  const std::string node = node_name(replica_.id());
  for (const auto& [service_id, s] : services_) {
    const std::string name = service_name_of(s.path);
    json tags = json::array();
    if (const auto t = s.base.tags.find(kTags); t != s.base.tags.end()) tags = json::parse(t->second, nullptr, false);
    if (!tags.is_array()) tags = json::array();
    if (const auto m = s.base.tags.find(kMaintenance); m != s.base.tags.end()) {
      const std::string id = "_service_maintenance:" + service_id;
      out[id] = json{{"Node", node}, {"CheckID", id}, {"Name", "Service Maintenance Mode"}, {"Status", "critical"},
                     {"Notes", m->second}, {"Output", ""}, {"ServiceID", service_id}, {"ServiceName", name},
                     {"ServiceTags", tags}, {"Type", "maintenance"}};
    }
    for (const auto& [id, c] : s.checks)
      out[id] = json{{"Node", node}, {"CheckID", id}, {"Name", c.def.name}, {"Status", c.status},
                     {"Notes", c.def.notes}, {"Output", c.output}, {"ServiceID", service_id}, {"ServiceName", name},
                     {"ServiceTags", tags}, {"Type", type_name(c.def.kind)}, {"Definition", definition_json(c.def)}};
  }
  return out;
}

}  // namespace lattice::daemon
