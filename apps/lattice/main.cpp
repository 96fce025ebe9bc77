// lattice: the command line for a latticed (its native HTTP API).
//
//   lattice health                              (exit 0 when the daemon answers)
//   lattice members
//   lattice services
//   lattice instances /HelloWorldService/1.0.0
//   lattice watch /HelloWorldService            (until Ctrl-C)
//   lattice register /HelloWorldService/1.0.0 --address 10.0.0.5 --port 8080 --tag env=prod
//   lattice register /HelloWorldService/1.0.0 --address 10.0.0.5 --port 8080 --session
//                                               (listed while this runs)
//   lattice deregister /HelloWorldService/1.0.0 10.0.0.5:8080
//   lattice config set /app/timeout 30s | get /app/timeout | delete [-r] /app/timeout | list /app
//
// Global options: --addr host:port, or https://host:port for a daemon
// serving HTTPS (or $LATTICE_HTTP_ADDR; default 127.0.0.1:8500), --ca (the
// CA the daemon's certificate must chain to; default the system's), --cert
// and --key (a client certificate, for a daemon started with --https-ca),
// --token (or $LATTICE_TOKEN), --json (raw JSON for scripts instead of
// tables).
//
// Exit codes: 0 done; 1 other errors; 2 bad usage; 3 daemon unreachable;
// 4 not found; 5 invalid input (the daemon said 400/413); 6 permission
// denied (403).
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>

#include "version.hpp"
#include <nlohmann/json.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;

namespace {

enum exit_code { ok = 0, failed = 1, usage = 2, unreachable = 3, not_found = 4, invalid = 5, denied = 6 };

struct failure {
  exit_code code;
  std::string message;
};

// One connection to the daemon, plain or TLS.
class connection {
 public:
  using tls_stream = beast::ssl_stream<beast::tcp_stream>;
  explicit connection(beast::tcp_stream s) : stream_(std::move(s)) {}
  explicit connection(tls_stream s) : stream_(std::move(s)) {}

  beast::tcp_stream& lowest() {
    return std::visit([](auto& s) -> beast::tcp_stream& { return beast::get_lowest_layer(s); }, stream_);
  }
  template <class F>
  auto with(F f) {
    return std::visit(f, stream_);
  }

 private:
  std::variant<beast::tcp_stream, tls_stream> stream_;
};

struct client {
  std::string host = "127.0.0.1";
  std::string port = "8500";
  std::string token;
  // HTTPS: a context that verifies the daemon (and holds our certificate).
  std::shared_ptr<asio::ssl::context> tls;

  http::request<http::string_body> make(http::verb verb, const std::string& target, std::string body = {}) const {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, host + ":" + port);
    req.set(http::field::user_agent, "lattice-cli");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    if (!body.empty() || verb == http::verb::put) {
      req.body() = std::move(body);
      req.prepare_payload();
    }
    return req;
  }

  connection connect(asio::io_context& io) const {
    tcp::resolver resolver(io);
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(5));
    beast::error_code ec;
    const auto endpoints = resolver.resolve(host, port, ec);
    if (!ec) stream.connect(endpoints, ec);
    if (ec)
      throw failure{unreachable, fmt::format("cannot reach latticed at {}:{}: {} (is it running? see --addr)", host,
                                             port, ec.message())};
    if (!tls) return connection(std::move(stream));
    connection::tls_stream secured(std::move(stream), *tls);
    // The name (or address) in --addr is what the certificate must name.
    boost::system::error_code ip_ec;
    (void)asio::ip::make_address(host, ip_ec);
    if (ip_ec && !SSL_set_tlsext_host_name(secured.native_handle(), host.c_str()))
      throw failure{failed, "cannot set the TLS server name"};
    secured.set_verify_callback(asio::ssl::host_name_verification(host));
    secured.handshake(asio::ssl::stream_base::client, ec);
    if (ec)
      throw failure{unreachable, fmt::format("TLS with latticed at {}:{} failed: {} (see --ca, --cert, --key)", host,
                                             port, ec.message())};
    return connection(std::move(secured));
  }

  // One request; the body parsed as JSON. Non-2xx statuses become failures.
  json call(http::verb verb, const std::string& target, std::string body = {}) const {
    asio::io_context io;
    auto conn = connect(io);
    auto req = make(verb, target, std::move(body));
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    beast::error_code ec;
    conn.lowest().expires_after(std::chrono::seconds(30));
    conn.with([&](auto& stream) {
      http::write(stream, req, ec);
      if (!ec) http::read(stream, buffer, res, ec);
    });
    if (ec) throw failure{unreachable, fmt::format("latticed at {}:{} did not answer: {}", host, port, ec.message())};
    auto parsed = json::parse(res.body(), nullptr, false);
    const auto status = res.result_int();
    if (status >= 200 && status < 300) return parsed.is_discarded() ? json(res.body()) : parsed;
    const std::string message =
        !parsed.is_discarded() && parsed.contains("error") ? parsed["error"].get<std::string>() : res.body();
    const exit_code code = status == 404                   ? not_found
                           : status == 403                 ? denied
                           : status == 400 || status == 413 ? invalid
                                                           : failed;
    throw failure{code, fmt::format("{} ({})", message, status)};
  }

  // A Server-Sent Events stream: calls on_event(event, data) until the
  // daemon closes it.
  template <class F>
  void stream(const std::string& target, F on_event) const {
    asio::io_context io;
    auto conn = connect(io);
    auto req = make(http::verb::get, target);
    beast::error_code ec;
    beast::flat_buffer buffer;
    http::response_parser<http::empty_body> head;
    head.skip(true);  // the body is the stream itself
    conn.with([&](auto& stream) {
      http::write(stream, req, ec);
      if (!ec) http::read_header(stream, buffer, head, ec);
    });
    if (ec) throw failure{unreachable, fmt::format("latticed at {}:{}: {}", host, port, ec.message())};
    if (head.get().result() != http::status::ok) {
      // An error body: read what is left and report it.
      std::string rest = beast::buffers_to_string(buffer.data());
      throw failure{head.get().result_int() == 400 ? invalid : failed, fmt::format("watch refused: {}", rest)};
    }
    conn.lowest().expires_never();
    std::string pending = beast::buffers_to_string(buffer.data());
    std::string event, data;
    for (;;) {
      for (auto end = pending.find('\n'); end != std::string::npos; end = pending.find('\n')) {
        const std::string line = pending.substr(0, end);
        pending.erase(0, end + 1);
        if (line.empty()) {
          if (!data.empty()) on_event(event, data);
          event.clear();
          data.clear();
        } else if (line.starts_with("event: ")) {
          event = line.substr(7);
        } else if (line.starts_with("data: ")) {
          data += line.substr(6);
        }
      }
      char chunk[4096];
      const auto n = conn.with([&](auto& stream) { return stream.read_some(asio::buffer(chunk), ec); });
      if (ec) return;
      pending.append(chunk, n);
    }
  }
};

std::string escape_target(const std::string& text) {
  // Paths use only [A-Za-z0-9._~:@+-/]; the id query may hold anything.
  std::string out;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || std::string_view("-._~:@/").find(ch) != std::string_view::npos)
      out += ch;
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

void print_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(header.size());
  for (std::size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& r : rows)
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  const auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t i = 0; i < cells.size(); ++i)
      out += fmt::format("{:<{}}", cells[i], i + 1 == cells.size() ? 0 : width[i] + 2);
    std::cout << out << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

std::string text(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// A member's estimated clock offset: one message's send time against its
// receive time, so milliseconds are the honest precision; seconds past one.
std::string clock_offset(const json& us) {
  if (!us.is_number()) return "-";
  const double ms = us.get<double>() / 1000.0;
  return std::abs(ms) < 1000.0 ? fmt::format("{:+.1f} ms", ms) : fmt::format("{:+.1f} s", ms / 1000.0);
}

void print_instances(const json& view) {
  std::cout << fmt::format("{}  version {}\n", text(view["path"]), text(view["version"]));
  std::vector<std::vector<std::string>> rows;
  for (const char* kind : {"providers", "consumers"})
    for (const auto& i : view[kind]) {
      std::string tags;
      for (const auto& [k, v] : i["tags"].items()) tags += (tags.empty() ? "" : ",") + k + "=" + text(v);
      rows.push_back({text(i["id"]), text(i["address"]) + ":" + text(i["port"]), text(i["kind"]),
                      text(i["protocol"]), text(i["weight"]), text(i["role"]),
                      i.contains("in_flight") ? text(i["in_flight"]) : "-", tags});
    }
  print_table({"ID", "ADDRESS", "KIND", "PROTOCOL", "WEIGHT", "ROLE", "IN-FLIGHT", "TAGS"}, rows);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lattice: talk to a latticed (members, services, instances, watch, register, deregister, config)."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("lattice ") + lattice::version_string(),
                       "Print the version and source commit");
  std::string addr = std::getenv("LATTICE_HTTP_ADDR") ? std::getenv("LATTICE_HTTP_ADDR") : "127.0.0.1:8500";
  client c;
  if (const char* t = std::getenv("LATTICE_TOKEN")) c.token = t;
  bool as_json = false;
  app.add_option("--addr", addr,
                 "latticed HTTP address host:port, or https://host:port (env LATTICE_HTTP_ADDR)")
      ->capture_default_str();
  std::string ca_file, cert_file, key_file;
  app.add_option("--ca", ca_file, "HTTPS: PEM CA the daemon's certificate must chain to (default: the system's)")
      ->check(CLI::ExistingFile);
  auto* cert_opt = app.add_option("--cert", cert_file, "HTTPS: PEM client certificate (with --key)")
                       ->check(CLI::ExistingFile);
  auto* key_opt = app.add_option("--key", key_file, "HTTPS: PEM client key")->check(CLI::ExistingFile);
  cert_opt->needs(key_opt);
  key_opt->needs(cert_opt);
  app.add_option("--token", c.token, "Token for writes (env LATTICE_TOKEN)");
  app.add_flag("--json", as_json, "Print the daemon's JSON instead of tables");

  auto* health = app.add_subcommand(
      "health", "Whether the daemon answers (exit 0) and how many peers it reaches: a probe for systemd or Kubernetes");
  auto* members = app.add_subcommand("members", "Cluster members and their liveness");
  auto* services = app.add_subcommand("services", "Paths with instances");
  std::string path;
  auto* instances = app.add_subcommand("instances", "Instances registered under PATH");
  instances->add_option("PATH", path, "Service path, e.g. /HelloWorldService/1.0.0")->required();
  auto* watch = app.add_subcommand("watch", "Print every change under PATH until interrupted");
  watch->add_option("PATH", path, "Path prefix")->required();

  auto* reg = app.add_subcommand("register", "Register an instance (ephemeral: bound to the daemon's life)");
  json inst = json::object();
  std::string address, id, protocol, kind = "provider";
  int port = 0;
  unsigned weight = 100;
  std::vector<std::string> tags;
  bool persistent = false;
  reg->add_option("PATH", path, "Service path")->required();
  reg->add_option("--address", address, "Address consumers connect to")->required();
  reg->add_option("--port", port, "Port")->check(CLI::Range(0, 65535));
  reg->add_option("--id", id, "Instance id (default address:port)");
  reg->add_option("--protocol", protocol, "Protocol (http, grpc, ...)");
  reg->add_option("--weight", weight, "Weight (0 drains)")->capture_default_str();
  reg->add_option("--tag", tags, "Tag key=value (repeatable)");
  reg->add_option("--kind", kind, "provider or consumer")->check(CLI::IsMember({"provider", "consumer"}));
  reg->add_flag("--persistent", persistent, "Keep it until deregistered, whatever happens to the daemon");
  bool hold_session = false;
  reg->add_flag("--session", hold_session,
                "Hold a session and keep running: the instance is listed while this process runs, and removed "
                "everywhere once it exits or is killed (its connection is the session)");

  std::string dereg_id;
  auto* dereg = app.add_subcommand("deregister", "Remove an instance");
  dereg->add_option("PATH", path, "Service path")->required();
  dereg->add_option("ID", dereg_id, "Instance id")->required();
  dereg->add_option("--kind", kind, "provider or consumer")->check(CLI::IsMember({"provider", "consumer"}));

  auto* config = app.add_subcommand("config", "Config center: get, set, delete, list");
  config->require_subcommand(1);
  std::string key, value;
  auto* cget = config->add_subcommand("get", "Print one key's value");
  cget->add_option("KEY", key, "Key (a path)")->required();
  auto* cset = config->add_subcommand("set", "Set a key");
  cset->add_option("KEY", key, "Key (a path)")->required();
  cset->add_option("VALUE", value, "Value")->required();
  auto* cdel = config->add_subcommand("delete", "Delete a key");
  cdel->add_option("KEY", key, "Key (a path)")->required();
  bool recursive = false;
  cdel->add_flag("-r,--recursive", recursive,
                 "Also every key under KEY, including keys this daemon has not seen yet");
  auto* clist = config->add_subcommand("list", "Keys and values under a prefix");
  clist->add_option("PREFIX", key, "Prefix (a path)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? ok : usage;
  }
  const bool https = addr.starts_with("https://");
  if (https) addr.erase(0, 8);
  if (addr.starts_with("http://")) addr.erase(0, 7);
  const auto colon = addr.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "lattice: --addr must be host:port or https://host:port, got \"" << addr << "\"\n";
    return usage;
  }
  if (!https && (!ca_file.empty() || !cert_file.empty())) {
    std::cerr << "lattice: --ca, --cert and --key need an https:// --addr\n";
    return usage;
  }
  if (https) {
    c.tls = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    c.tls->set_options(asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    c.tls->set_verify_mode(asio::ssl::verify_peer);
    boost::system::error_code ec;
    if (ca_file.empty())
      c.tls->set_default_verify_paths(ec);
    else
      c.tls->load_verify_file(ca_file, ec);
    if (!ec && !cert_file.empty()) c.tls->use_certificate_chain_file(cert_file, ec);
    if (!ec && !key_file.empty()) c.tls->use_private_key_file(key_file, asio::ssl::context::pem, ec);
    if (ec) {
      std::cerr << "lattice: cannot load the TLS files: " << ec.message() << "\n";
      return usage;
    }
  }
  c.host = addr.substr(0, colon);
  c.port = addr.substr(colon + 1);

  // Paths and keys are absolute; say so here rather than have the daemon
  // answer for a different URL.
  for (const std::string* p : {&path, &key})
    if (!p->empty() && p->front() != '/') {
      std::cerr << "lattice: invalid path \"" << *p << "\": it must start with '/'\n";
      return invalid;
    }

  try {
    const auto show = [&](const json& j) { std::cout << j.dump(as_json ? -1 : 2) << "\n"; };
    if (*health) {
      // /health needs no token: a probe works whatever the daemon's tokens.
      const auto out = c.call(http::verb::get, "/health");
      if (as_json) return show(out), ok;
      std::cout << fmt::format("ok: replica {}, gossip on {}, {} of {} known peers reachable{}\n", text(out["id"]),
                               text(out["gossip_address"]), text(out["reachable_peers"]), text(out["known_peers"]),
                               out.value("isolated", false) ? " (isolated)" : "");
    } else if (*members) {
      const auto out = c.call(http::verb::get, "/v1/lattice/members");
      if (as_json) return show(out), ok;
      std::vector<std::vector<std::string>> rows;
      for (const auto& m : out) {
        rows.push_back({text(m["id"]) + (m["self"].get<bool>() ? " (this daemon)" : ""), text(m["address"]),
                        text(m["state"]), text(m["incarnation"]), clock_offset(m.value("clock_offset_us", json()))});
      }
      print_table({"ID", "ADDRESS", "STATE", "INCARNATION", "CLOCK OFFSET"}, rows);
    } else if (*services) {
      const auto out = c.call(http::verb::get, "/v1/lattice/services");
      if (as_json) return show(out), ok;
      std::vector<std::vector<std::string>> rows;
      for (const auto& s : out)
        rows.push_back({text(s["path"]), text(s["providers"]), text(s["consumers"]), text(s["version"])});
      print_table({"PATH", "PROVIDERS", "CONSUMERS", "VERSION"}, rows);
    } else if (*instances) {
      const auto out = c.call(http::verb::get, "/v1/lattice/instances" + escape_target(path));
      if (as_json) return show(out), ok;
      print_instances(out);
    } else if (*watch) {
      c.stream("/v1/lattice/watch" + escape_target(path), [&](const std::string& event, const std::string& data) {
        const auto j = json::parse(data, nullptr, false);
        if (event == "error") throw failure{invalid, j.is_discarded() ? data : text(j["error"])};
        if (as_json || j.is_discarded()) {
          std::cout << data << std::endl;
        } else {
          print_instances(j);
          std::cout << std::endl;
        }
      });
    } else if (*reg) {
      inst["address"] = address;
      inst["port"] = port;
      if (!id.empty()) inst["id"] = id;
      if (!protocol.empty()) inst["protocol"] = protocol;
      inst["weight"] = weight;
      inst["kind"] = kind;
      inst["ephemeral"] = !persistent;
      json tag_obj = json::object();
      for (const auto& t : tags) {
        const auto eq = t.find('=');
        if (eq == std::string::npos || eq == 0) throw failure{usage, "--tag must be key=value, got \"" + t + "\""};
        tag_obj[t.substr(0, eq)] = t.substr(eq + 1);
      }
      inst["tags"] = tag_obj;
      if (hold_session) {
        if (persistent) throw failure{usage, "--session and --persistent exclude each other"};
        // The stream is the session: it ends when this process does, however.
        c.stream("/v1/lattice/sessions/hold?name=lattice-register", [&](const std::string& event, const std::string& data) {
          if (event != "session") return;
          const auto session = json::parse(data, nullptr, false);
          if (session.is_discarded() || !session.contains("id")) throw failure{failed, "malformed session: " + data};
          const std::string session_id = text(session["id"]);
          const auto out = c.call(http::verb::put,
                                  "/v1/lattice/instances" + escape_target(path) + "?session=" + session_id, inst.dump());
          if (as_json)
            std::cout << out.dump() << std::endl;
          else
            std::cout << fmt::format("registered {} under {} while this runs (session {})", text(out["id"]), path,
                                     session_id)
                      << std::endl;
        });
        throw failure{unreachable, "latticed ended the session (did it stop?): the instance is no longer listed"};
      }
      const auto out = c.call(http::verb::put, "/v1/lattice/instances" + escape_target(path), inst.dump());
      if (as_json) return show(out), ok;
      std::cout << fmt::format("registered {} under {}\n", text(out["id"]), path);
    } else if (*dereg) {
      const auto out = c.call(http::verb::delete_, "/v1/lattice/instances" + escape_target(path) +
                                                       "?id=" + escape_target(dereg_id) + "&kind=" + kind);
      if (as_json) return show(out), ok;
      const bool known = out.value("known", true);
      std::cout << fmt::format("deregistered {} from {}{}\n", dereg_id, path,
                               known ? "" : " (not registered on this daemon; a tombstone was written anyway)");
    } else if (*cget) {
      const auto out = c.call(http::verb::get, "/v1/lattice/config" + escape_target(key));
      if (as_json) return show(out), ok;
      std::cout << text(out["value"]) << "\n";
    } else if (*cset) {
      const auto out = c.call(http::verb::put, "/v1/lattice/config" + escape_target(key), value);
      if (as_json) return show(out), ok;
      std::cout << fmt::format("set {}\n", key);
    } else if (*cdel) {
      const auto out = c.call(http::verb::delete_,
                              "/v1/lattice/config" + escape_target(key) + (recursive ? "?recurse" : ""));
      if (as_json) return show(out), ok;
      if (recursive) {
        std::cout << fmt::format("deleted {} and everything under it ({} keys set on this daemon)\n", key,
                                 out.value("known", 0));
      } else {
        const bool known = out.value("known", true);
        std::cout << fmt::format("deleted {}{}\n", key,
                                 known ? "" : " (not set on this daemon; a tombstone was written anyway)");
      }
    } else if (*clist) {
      const auto out = c.call(http::verb::get, "/v1/lattice/config" + escape_target(key) + "?recurse");
      if (as_json) return show(out), ok;
      std::vector<std::vector<std::string>> rows;
      for (const auto& [k, v] : out.items()) rows.push_back({k, text(v)});
      print_table({"KEY", "VALUE"}, rows);
    }
  } catch (const failure& f) {
    std::cerr << "lattice: " << f.message << "\n";
    return f.code;
  }
  return ok;
}
