#include "daemon_options.hpp"

#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "duration.hpp"
#include "version.hpp"

namespace lattice::daemon {

namespace {

// "host:port" -> (host, port); port 0 picks a free one.
bool split_address(const std::string& text, std::string& host, std::uint16_t& port) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  try {
    std::size_t used = 0;
    const auto p = std::stoul(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || p > 65535) return false;
    port = static_cast<std::uint16_t>(p);
  } catch (const std::exception&) {
    return false;
  }
  host = text.substr(0, colon);
  return true;
}

std::string read_secret(const std::string& file, const char* what) {
  std::ifstream in(file);
  if (!in) throw CLI::ValidationError(std::string(what) + " file", "cannot read " + file);
  std::stringstream s;
  s << in.rdbuf();
  std::string value = s.str();
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r' || value.back() == ' ')) value.pop_back();
  if (value.empty()) throw CLI::ValidationError(std::string(what) + " file", file + " is empty");
  return value;
}

// A CLI11 option holding a Go-style duration ("100ms", "30s").
CLI::Option* add_duration(CLI::App& app, const std::string& name, std::chrono::milliseconds& into,
                          const std::string& help) {
  return app
      .add_option_function<std::string>(
          name,
          [&into, name](const std::string& text) {
            const auto d = parse_duration(text);
            if (!d) throw CLI::ValidationError(name, "not a duration: \"" + text + "\" (e.g. 250ms, 30s, 1m)");
            into = *d;
          },
          help)
      ->default_str(format_duration(into))
      ->type_name("DURATION");
}

}  // namespace

parsed_options parse_options(int argc, char** argv) {
  daemon_options o;
  o.replica.listen_port = 7946;
  o.http.port = 8500;
  CLI::App app{"latticed: a Lattice registry replica with an HTTP API (native and Consul-compatible)."};
  app.set_config("--config", "", "TOML config file; keys are the long option names (e.g. http = \"127.0.0.1:8500\")");
  app.get_formatter()->column_width(40);
  app.set_version_flag("--version", std::string("latticed ") + version_string(), "Print the version and source commit");

  std::string gossip = "127.0.0.1:7946", http = "127.0.0.1:8500", key_file, token_file, read_token_file;
  std::string mode = "delta", fsync = "always", liveness = "probes", datagrams = "on";
  std::chrono::milliseconds commit_delay{0};
  app.add_option("--id", o.replica.id,
                 "Replica id, unique in the cluster (0: kept in the data directory, else random)")
      ->default_str("0");
  app.add_option("--gossip", gossip, "Gossip listen address host:port (port 0: any free port)")->capture_default_str();
  app.add_option("--advertise", o.replica.advertise_host, "Host peers reach us at (default: the gossip host)");
  app.add_option("--http", http, "HTTP API listen address host:port (loopback by default)")->capture_default_str();
  app.add_option("--seeds", o.replica.seeds, "Replicas to join through, host:port, comma-separated")->delimiter(',');
  app.add_option("--cluster-key-file", key_file,
                 "File holding the shared cluster key (>= 16 bytes): frames are authenticated with HMAC-SHA256")
      ->check(CLI::ExistingFile);
  auto* tls_cert = app.add_option("--tls-cert", o.replica.tls_cert_file,
                                  "PEM certificate chain for gossip TLS (with --tls-key and --tls-ca)")
                       ->check(CLI::ExistingFile);
  auto* tls_key = app.add_option("--tls-key", o.replica.tls_key_file, "PEM private key for gossip TLS")
                      ->check(CLI::ExistingFile);
  auto* tls_ca = app.add_option("--tls-ca", o.replica.tls_ca_file,
                                "PEM CA that every peer's certificate must chain to (mutual TLS)")
                     ->check(CLI::ExistingFile);
  tls_cert->needs(tls_key)->needs(tls_ca);
  tls_key->needs(tls_cert);
  tls_ca->needs(tls_cert);
  auto* https_cert = app.add_option("--https-cert", o.https_cert_file,
                                    "PEM certificate chain: serve the HTTP API over HTTPS (with --https-key)")
                         ->check(CLI::ExistingFile);
  auto* https_key = app.add_option("--https-key", o.https_key_file, "PEM private key for HTTPS")
                        ->check(CLI::ExistingFile);
  auto* https_ca = app.add_option("--https-ca", o.https_ca_file,
                                  "PEM CA that every API client's certificate must chain to (mutual TLS)")
                       ->check(CLI::ExistingFile);
  https_cert->needs(https_key);
  https_key->needs(https_cert);
  https_ca->needs(https_cert);
  app.add_option("--mode", mode, "Dissemination: delta, state or op (the whole cluster must agree)")
      ->check(CLI::IsMember({"delta", "state", "op"}))
      ->capture_default_str();
  app.add_option("--liveness", liveness,
                 "How members are judged alive: probes (SWIM with Lifeguard, constant traffic per replica at any "
                 "cluster size) or heartbeats (member tables every heartbeat; traffic grows with the cluster); the "
                 "whole cluster must agree")
      ->check(CLI::IsMember({"heartbeats", "probes"}))
      ->capture_default_str();
  app.add_option("--datagrams", datagrams,
                 "With --liveness probes: send the detector's pings and acks by UDP on the gossip port (on), or "
                 "keep every message on TCP (off); never with gossip TLS")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  add_duration(app, "--heartbeat", o.replica.heartbeat_interval, "Heartbeat interval");
  add_duration(app, "--suspect-after", o.replica.suspect_after, "Silence after which a member is suspect");
  add_duration(app, "--dead-after", o.replica.dead_after, "Silence after which a member is dead");
  add_duration(app, "--anti-entropy", o.replica.anti_entropy_interval, "Anti-entropy round interval");
  add_duration(app, "--anti-entropy-max", o.replica.anti_entropy_max_interval,
               "Longest anti-entropy round interval, reached by doubling while nothing changes");
  app.add_option("--load-budget", o.replica.load_gossip.budget_bytes_per_second,
                 "Bytes per second of load-count gossip each replica may see, shared among the replicas that write load counts "
                 "(0: none; every change is gossiped at once)")
      ->capture_default_str();
  add_duration(app, "--load-max-hold", o.replica.load_gossip.max_hold,
               "Longest a small change of this replica's load counts waits before it is gossiped");
  add_duration(app, "--load-report-ttl", o.api.load_report_ttl,
               "How long a provider's report of the calls it serves (PUT /v1/lattice/load/...) counts without "
               "another; then callers count their own calls again (0: until DELETE)");
  add_duration(app, "--reap-after", o.replica.reap_after,
               "How long a dead owner's ephemeral instances are kept hidden before removal");
  add_duration(app, "--gc-grace", o.replica.gc_grace,
               "How long tombstones are kept past the point every member has seen (deletes stay final "
               "for replicas away less than this)");
  add_duration(app, "--compaction-interval", o.replica.compaction_interval, "How often tombstones are collected");
  add_duration(app, "--reconnect-timeout", o.replica.reconnect_timeout,
               "How long a dead member's clock floor still holds back compaction (at least --gc-grace)");
  add_duration(app, "--check-update-interval", o.api.check_update_interval,
               "How often a check's output is written when its status has not changed (a status change is "
               "written at once)");
  add_duration(app, "--event-retention", o.api.event_retention,
               "How long a user event (/v1/event/fire) is listed before every daemon forgets it");
  app.add_option("--max-concurrent-checks", o.api.max_concurrent_checks,
                 "HTTP and TCP check probes running at once; the rest wait their turn")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--test-faults", o.api.test_faults,
               "Serve /v1/lattice/test/partition, which drops gossip to chosen peers (fault-injection tests "
               "only; never in production)");
  app.add_option("--data-dir", o.replica.data_dir,
                 "Directory for durable state (SQLite). Empty: nothing survives a restart");
  app.add_option("--fsync", fsync, "always: a write is acknowledged once fsynced; never: once in SQLite's WAL")
      ->check(CLI::IsMember({"always", "never"}))
      ->capture_default_str();
  app.add_option("--commit-batch", o.replica.max_commit_batch,
                 "Most writes one commit (one fsync) holds; concurrent writes share commits")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_duration(app, "--commit-delay", commit_delay,
               "How long a commit waits for more writes to join it (0: it runs once the writes already queued "
               "are applied)");
  app.add_option("--token-file", token_file, "File holding the token every write needs (none: writes are open)")
      ->check(CLI::ExistingFile);
  app.add_option("--read-token-file", read_token_file,
                 "File holding the token reads need (none: reads are open; the write token also reads)")
      ->check(CLI::ExistingFile);
  app.add_option("--datacenter", o.api.datacenter, "Datacenter name reported by the Consul API")->capture_default_str();
  app.add_option("--max-body", o.http.body_limit, "Largest HTTP request body, bytes")->capture_default_str();
  app.add_option("--max-connections", o.http.max_connections,
                 "Most HTTP connections at once, streams and blocking queries included (503 beyond); "
                 "latticed raises its open-file limit to fit, up to the hard limit")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--stream-buffer", o.http.stream_buffer_limit,
                 "Bytes a watch stream may queue for a client that reads too slowly; beyond, the stream ends "
                 "with an 'overflow' event")
      ->check(CLI::Range(std::size_t{4096}, std::size_t{1} << 30))
      ->capture_default_str();
  add_duration(app, "--stream-grace", o.http.stream_overflow_grace,
               "After a watch stream's overflow, time the client has to read the overflow event before the "
               "connection is closed");
  add_duration(app, "--http-read-timeout", o.http.read_timeout, "Time allowed to send one HTTP request");
  std::string dns = "127.0.0.1:8600";
  const auto* dns_option =
      app.add_option("--dns", dns, "DNS interface host:port, UDP and TCP (\"off\": none)")->capture_default_str();
  app.add_option("--dns-domain", o.dns.domain, "Domain the DNS interface answers for")->capture_default_str();
  std::chrono::milliseconds dns_ttl{0};
  add_duration(app, "--dns-ttl", dns_ttl, "TTL of DNS answers");
  app.add_option("--log-format", o.log_format, "text, or json: one JSON object per log line (time, level, pid, msg)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error or critical")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
    if (!split_address(gossip, o.replica.listen_host, o.replica.listen_port))
      throw CLI::ValidationError("--gossip", "expected host:port, got \"" + gossip + "\"");
    if (!split_address(http, o.http.host, o.http.port))
      throw CLI::ValidationError("--http", "expected host:port, got \"" + http + "\"");
    o.dns_explicit = dns_option->count() > 0;
    if (dns != "off") {
      std::string host;
      std::uint16_t port = 0;
      if (!split_address(dns, host, port))
        throw CLI::ValidationError("--dns", "expected host:port or off, got \"" + dns + "\"");
      o.dns_address.emplace(host, port);
    }
    o.dns.ttl = static_cast<std::uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(dns_ttl).count());
    o.dns.datacenter = o.api.datacenter;
    if (!key_file.empty()) {
      o.replica.cluster_key = read_secret(key_file, "--cluster-key");
      if (o.replica.cluster_key.size() < 16)
        throw CLI::ValidationError("--cluster-key-file", "the key must be at least 16 bytes");
    }
    if (!token_file.empty()) o.api.write_token = read_secret(token_file, "--token");
    if (!read_token_file.empty()) o.api.read_token = read_secret(read_token_file, "--read-token");
    o.replica.liveness =
        liveness == "probes" ? transport::liveness_source::probes : transport::liveness_source::heartbeats;
    o.replica.datagrams = datagrams == "on";
    o.replica.mode = mode == "state" ? transport::dissemination::state
                     : mode == "op"  ? transport::dissemination::op
                                     : transport::dissemination::delta;
    o.replica.fsync_writes = fsync == "always";
    o.replica.commit_delay = commit_delay;
    if (o.replica.suspect_after >= o.replica.dead_after)
      throw CLI::ValidationError("--suspect-after", "must be shorter than --dead-after");
  } catch (const CLI::ParseError& e) {
    parsed_options out;
    out.exit_code = app.exit(e);
    return out;
  }
  return parsed_options{std::move(o), 0};
}

}  // namespace lattice::daemon
