// apps/latticed/check_probe.hpp: runs one HTTP or TCP health check probe,
// asynchronously, on the HTTP thread's io_context.
//
//   HTTP: a request with the check's method, headers and body; 2xx is
//   passing, 429 warning, anything else (or no answer within the timeout)
//   critical. Output as Consul words it: "HTTP GET <url>: 200 OK Output:
//   <body>" (the body cut to max_check_output). https:// verifies the
//   server's certificate against the system's CAs and the URL's host (or
//   TLSServerName) unless TLSSkipVerify. Redirects are not followed: a 3xx
//   is critical.
//   TCP: a connection within the timeout is passing, else critical.
//
// At most `max_in_flight` probes run at once; the rest wait in order, so a
// thousand checks falling due together cannot open a thousand sockets.
//
// Thread safety: the io_context's thread only.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>

#include "consul_check.hpp"

namespace lattice::daemon {

struct probe_result {
  std::string status;  // passing | warning | critical
  std::string output;
};

class check_prober {
 public:
  check_prober(boost::asio::io_context& io, std::size_t max_in_flight = 32);
  ~check_prober();
  check_prober(const check_prober&) = delete;
  check_prober& operator=(const check_prober&) = delete;

  /// Probes `check` (HTTP or TCP) once; `done` runs on the io_context's
  /// thread with the result, exactly once, unless the prober is destroyed
  /// first.
  void run(const consul::check_definition& check, std::function<void(probe_result)> done);
  std::size_t in_flight() const noexcept { return running_; }
  std::size_t queued() const noexcept { return waiting_.size(); }

 private:
  struct job {
    consul::check_definition check;
    std::function<void(probe_result)> done;
  };
  void start(job j);
  void finish();

  boost::asio::io_context& io_;
  boost::asio::ssl::context verify_, no_verify_;
  std::size_t max_in_flight_;
  std::size_t running_ = 0;
  std::deque<job> waiting_;
  // Probes in flight hold a weak reference: after destruction their
  // completions are dropped.
  std::shared_ptr<check_prober*> self_;
};

}  // namespace lattice::daemon
