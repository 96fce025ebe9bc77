// Operations: /health and /metrics (Prometheus text format 0.0.4).
#include <fmt/format.h>

#include "api.hpp"
#include "lattice/transport/error.hpp"

namespace lattice::daemon {

namespace {

// Index: transport::message_type. The counters have room for more types
// than exist; only these are exported.
using transport::message_type_name;
constexpr std::size_t message_types = transport::message_type_count;

}  // namespace

reply api::ops(request& req, const target& t) {
  if (req.method() != http::verb::get)
    return error_response(http::status::method_not_allowed, "only GET is allowed on " + t.path, req.version());
  if (t.path == "/health") {
    const auto snap = replica_.current();
    return json_response(nlohmann::json{{"status", "ok"},
                                        {"id", std::to_string(replica_.id())},
                                        {"gossip_address", replica_.address()},
                                        {"known_peers", snap->known_peers},
                                        {"reachable_peers", snap->reachable_peers},
                                        {"isolated", snap->isolated}},
                         req.version());
  }
  if (!authorized(req, t, access::read))
    return error_response(http::status::forbidden, "permission denied: a valid token is required", req.version());
  return metrics_text(req.version());
}

response api::metrics_text(unsigned version) {
  const auto taken = replica_.status();  // as of the last tick: never waits for the replica thread
  const auto& m = taken->metrics;
  std::string out;
  const auto family = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  family("lattice_gossip_messages_sent_total", "counter", "Gossip messages sent, by message type.");
  for (std::size_t i = 1; i < message_types; ++i)
    out += fmt::format("lattice_gossip_messages_sent_total{{type=\"{}\"}} {}\n", message_type_name(i),
                       m.protocol.sent_by_type[i]);
  family("lattice_gossip_bytes_sent_total", "counter", "Gossip payload bytes sent, by message type.");
  for (std::size_t i = 1; i < message_types; ++i)
    out += fmt::format("lattice_gossip_bytes_sent_total{{type=\"{}\"}} {}\n", message_type_name(i),
                       m.protocol.bytes_sent_by_type[i]);
  family("lattice_gossip_messages_received_total", "counter", "Gossip messages received, by message type.");
  for (std::size_t i = 1; i < message_types; ++i)
    out += fmt::format("lattice_gossip_messages_received_total{{type=\"{}\"}} {}\n", message_type_name(i),
                       m.protocol.received_by_type[i]);
  family("lattice_merges_total", "counter", "Merges that changed the replicated state.");
  out += fmt::format("lattice_merges_total {}\n", m.protocol.state_changes);
  {
    // Labels are the reasons' identifiers; the HELP line says what each means.
    std::string help = "Frames rejected before reaching the state, by reason:";
    const char* separator = " ";
    for (std::size_t i = 1; i < m.driver.rejected_frames.size(); ++i) {
      const auto e = static_cast<transport::errc>(i);
      if (transport::errc_name(e).empty()) continue;
      help += fmt::format("{}{} ({})", separator, transport::errc_name(e), make_error_code(e).message());
      separator = "; ";
    }
    family("lattice_rejected_frames_total", "counter", (help + ".").c_str());
  }
  for (std::size_t i = 1; i < m.driver.rejected_frames.size(); ++i) {
    const auto reason = transport::errc_name(static_cast<transport::errc>(i));
    if (reason.empty()) continue;
    out += fmt::format("lattice_rejected_frames_total{{reason=\"{}\"}} {}\n", reason, m.driver.rejected_frames[i]);
  }
  family("lattice_gossip_datagrams_total", "counter",
         "Gossip datagrams (UDP: the probes' pings, acks and news), by outcome: sent, received whole, or refused "
         "by the kernel on sending (dropped).");
  out += fmt::format("lattice_gossip_datagrams_total{{outcome=\"sent\"}} {}\n", m.driver.datagrams_sent);
  out += fmt::format("lattice_gossip_datagrams_total{{outcome=\"received\"}} {}\n", m.driver.datagrams_received);
  out += fmt::format("lattice_gossip_datagrams_total{{outcome=\"dropped\"}} {}\n", m.driver.datagrams_dropped);
  family("lattice_tls_handshake_failures_total", "counter", "Gossip connections refused at the TLS handshake.");
  out += fmt::format("lattice_tls_handshake_failures_total {}\n", m.driver.tls_handshake_failures);
  family("lattice_rejected_payloads_total", "counter", "Authenticated frames whose payload failed to decode.");
  out += fmt::format("lattice_rejected_payloads_total {}\n", m.protocol.rejected);
  family("lattice_members", "gauge", "Cluster members as this replica judges them, by state.");
  out += fmt::format("lattice_members{{state=\"alive\"}} {}\nlattice_members{{state=\"suspect\"}} {}\n"
                     "lattice_members{{state=\"dead\"}} {}\nlattice_members{{state=\"left\"}} {}\n",
                     m.alive, m.suspect, m.dead, m.left);
  family("lattice_instances", "gauge", "Visible instances (providers and consumers).");
  out += fmt::format("lattice_instances {}\n", m.instances);
  family("lattice_services", "gauge", "Paths with at least one visible instance.");
  out += fmt::format("lattice_services {}\n", m.services);
  family("lattice_config_keys", "gauge", "Config keys.");
  out += fmt::format("lattice_config_keys {}\n", m.config_keys);
  family("lattice_watch_subscribers", "gauge", "Watches registered (SSE streams included).");
  out += fmt::format("lattice_watch_subscribers {}\n", m.watches);
  family("lattice_sse_streams", "gauge", "Open Server-Sent Events streams.");
  out += fmt::format("lattice_sse_streams {}\n", server_ ? server_->streams() : 0);
  family("lattice_sse_overflows_total", "counter",
         "Server-Sent Events streams cut off because their client read too slowly.");
  out += fmt::format("lattice_sse_overflows_total {}\n", server_ ? server_->stream_overflows() : 0);
  family("lattice_blocking_queries", "gauge", "Blocking queries waiting for a change.");
  out += fmt::format("lattice_blocking_queries {}\n", server_ ? server_->waiting_queries() : 0);
  family("lattice_blocking_query_wakeups_total", "counter",
         "Times a change woke a waiting blocking query (it is evaluated again).");
  out += fmt::format("lattice_blocking_query_wakeups_total {}\n", server_ ? server_->wakeups() : 0);
  family("lattice_blocking_query_idle_wakeups_total", "counter",
         "Wakeups after which the query found nothing new to answer and went on waiting.");
  out += fmt::format("lattice_blocking_query_idle_wakeups_total {}\n", server_ ? server_->idle_wakeups() : 0);
  if (m.probes) {
    // Liveness by probes (--liveness probes): the SWIM detector.
    const auto counter = [&](const char* name, const char* help, std::uint64_t value) {
      family(name, "counter", help);
      out += fmt::format("{} {}\n", name, value);
    };
    counter("lattice_probes_total", "Members probed (one a period).", m.probes->probes);
    counter("lattice_probes_failed_total", "Probes with no ack, direct or indirect, by the end of the period.",
            m.probes->probes_failed);
    counter("lattice_indirect_probes_total", "Members asked to probe a member that did not ack in time.",
            m.probes->indirect_probes);
    counter("lattice_suspicions_total", "Members this replica began to suspect.", m.probes->suspicions);
    counter("lattice_probe_deaths_total", "Members this replica judged dead after their suspicion.",
            m.probes->deaths);
    counter("lattice_refutations_total", "Times this replica refuted a suspicion of itself.", m.probes->refutations);
    counter("lattice_stream_probes_total",
            "Probes that also pinged their target over TCP (its datagram ping had no ack in time).",
            m.probes->stream_probes);
    counter("lattice_stream_acks_total",
            "Probes acked over TCP only: a member alive but not answering datagrams. Rising: UDP on the gossip "
            "port is blocked or lossy between replicas.",
            m.probes->stream_acks);
    family("lattice_local_health", "gauge",
           "Lifeguard local health: 0 is healthy; each step stretches probe timeouts by one more period.");
    out += fmt::format("lattice_local_health {}\n", m.local_health);
  }
  // Load gossip pacing (registry/load_gossip.hpp).
  family("lattice_load_entries_written_total", "counter", "This replica's load counts written to the document.");
  out += fmt::format("lattice_load_entries_written_total {}\n", m.load.entries_written);
  family("lattice_load_budget_deferrals_total", "counter",
         "Flushes at which the load gossip budget held back a change that was due.");
  out += fmt::format("lattice_load_budget_deferrals_total {}\n", m.load.budget_deferrals);
  family("lattice_load_entries_held", "gauge", "This replica's load counts changed but not yet written.");
  out += fmt::format("lattice_load_entries_held {}\n", m.load.entries_held);
  family("lattice_load_oldest_held_seconds", "gauge", "How long the oldest change not yet written has waited.");
  out += fmt::format("lattice_load_oldest_held_seconds {:.3f}\n",
                     std::chrono::duration<double>(m.load.oldest_held).count());
  family("lattice_load_provider_counted_instances", "gauge",
         "Instances registered here whose providers count the calls they serve: this replica writes their totals, "
         "and callers write no counts of them.");
  out += fmt::format("lattice_load_provider_counted_instances {}\n", m.load.provider_counted);
  family("lattice_load_share_bytes_per_second", "gauge",
         "This replica's share of the load gossip budget (0: no budget).");
  out += fmt::format("lattice_load_share_bytes_per_second {:.1f}\n", m.load.share_bytes_per_second);
  family("lattice_reaped_total", "counter", "Instances of dead owners this replica tombstoned.");
  out += fmt::format("lattice_reaped_total {}\n", m.reaped);
  family("lattice_clock_drift_total", "counter",
         "Other replicas' stamps merged while beyond the clock drift bound (the local clock did not follow them).");
  out += fmt::format("lattice_clock_drift_total {}\n", m.clock_drift);
  family("lattice_horizon_erasures_total", "counter",
         "Live entries removed because a peer's compaction horizon said it had erased and forgotten them.");
  out += fmt::format("lattice_horizon_erasures_total {}\n", m.horizon_erasures);
  family("lattice_callback_errors_total", "counter", "Watch callbacks that threw (logged and contained).");
  out += fmt::format("lattice_callback_errors_total {}\n", m.callback_errors);
  family("lattice_handler_errors_total", "counter", "Exceptions caught on the replica thread (logged and contained).");
  out += fmt::format("lattice_handler_errors_total {}\n", m.handler_errors);
  family("lattice_http_requests_total", "counter",
         "HTTP requests answered, by route (a Consul route's pattern, a native family, or other) and status.");
  for (const auto& [route, r] : counters_.by_route)
    for (const auto& [status, count] : r.by_status)
      out += fmt::format("lattice_http_requests_total{{route=\"{}\",code=\"{}\"}} {}\n", route, status, count);
  family("lattice_http_request_duration_seconds", "histogram",
         "Time from a request read to its response, by route (a blocking query's wait and a write's commit "
         "included; an SSE stream: to its head).");
  for (const auto& [route, r] : counters_.by_route) {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < r.buckets.size(); ++i) {
      cumulative += r.buckets[i];
      const std::string le = i < http_counters::bounds.size() ? fmt::format("{}", http_counters::bounds[i]) : "+Inf";
      out += fmt::format("lattice_http_request_duration_seconds_bucket{{route=\"{}\",le=\"{}\"}} {}\n", route, le,
                         cumulative);
    }
    out += fmt::format("lattice_http_request_duration_seconds_sum{{route=\"{}\"}} {:.6f}\n", route, r.seconds);
    out += fmt::format("lattice_http_request_duration_seconds_count{{route=\"{}\"}} {}\n", route, r.count);
  }
  family("lattice_persistence_commit_seconds", "summary", "Data directory commits (fsync included).");
  out += fmt::format("lattice_persistence_commit_seconds_sum {:.6f}\nlattice_persistence_commit_seconds_count {}\n",
                     static_cast<double>(m.storage_micros) / 1e6, m.storage_commits);
  family("lattice_persistence_failures_total", "counter", "Data directory commits that failed.");
  out += fmt::format("lattice_persistence_failures_total {}\n", m.storage_failures);
  family("lattice_write_batches_total", "counter", "Group commits: batches of writes acknowledged together.");
  out += fmt::format("lattice_write_batches_total {}\n", m.write_batches);
  family("lattice_batched_writes_total", "counter",
         "Writes acknowledged through group commits (divided by batches: the mean batch size).");
  out += fmt::format("lattice_batched_writes_total {}\n", m.batched_writes);
  response res{http::status::ok, version};
  res.set(http::field::content_type, "text/plain; version=0.0.4");
  res.body() = std::move(out);
  res.prepare_payload();
  return res;
}

}  // namespace lattice::daemon
