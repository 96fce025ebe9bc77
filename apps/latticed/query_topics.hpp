// apps/latticed/query_topics.hpp: what a blocking query waits on, and who
// wakes it.
//
// A blocking query names the topics it reads (http_server.hpp, wait_reply);
// query_waker follows the replica's publications and wakes, on the HTTP
// thread, the topics each change concerns. So a query is evaluated again
// only when something it reads may have changed (a KV query is not woken
// by a service registration), and at once: there is no polling interval.
//
// Topics:
//   service_topic(path)     the view of one service path
//   any_service_topic()     any path's view (service listings)
//   kv_key_topic(key)       one config key
//   kv_prefix_topic(prefix) any config key starting with `prefix`
//                           (characters, as Consul's ?recurse)
#pragma once

#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "http_server.hpp"
#include "lattice/registry/replica.hpp"

namespace lattice::daemon {

std::string service_topic(std::string_view path);
std::string any_service_topic();
std::string kv_key_topic(std::string_view key);
std::string kv_prefix_topic(std::string_view prefix);

/// Wakes `server`'s blocking queries when the replica publishes a change
/// to what they read. Construct after both, destroy before either.
class query_waker {
 public:
  /// Errors: the replica's watch errors (stopped).
  static result<std::unique_ptr<query_waker>> start(registry::replica& replica, http_server& server,
                                                    boost::asio::io_context& io);

 private:
  query_waker() = default;
  registry::watch_handle services_;
  registry::watch_handle config_;
};

}  // namespace lattice::daemon
