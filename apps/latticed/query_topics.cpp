#include "query_topics.hpp"

#include <boost/asio/post.hpp>

namespace lattice::daemon {

std::string service_topic(std::string_view path) { return "service:" + std::string(path); }

std::string any_service_topic() { return "services"; }

std::string kv_key_topic(std::string_view key) { return "kv:" + std::string(key); }

std::string kv_prefix_topic(std::string_view prefix) { return "kv-prefix:" + std::string(prefix); }

result<std::unique_ptr<query_waker>> query_waker::start(registry::replica& replica, http_server& server,
                                                        boost::asio::io_context& io) {
  std::unique_ptr<query_waker> w(new query_waker);
  // The callbacks run after the publication (the replica sets the snapshot
  // first), on a replica thread; the wake is posted to the HTTP thread,
  // which owns the waiting queries. A query evaluated on that thread
  // before the wake runs sees the change already, so none is missed.
  auto services = replica.watch("/", [&server, &io](const registry::service_view& view) {
    boost::asio::post(io, [&server, path = view.path] {
      server.wake(service_topic(path));
      server.wake(any_service_topic());
    });
  });
  if (!services) return services.error();
  w->services_ = std::move(services).value();
  auto config = replica.watch_config("/", [&server, &io](const registry::config_change& change) {
    boost::asio::post(io, [&server, key = change.key] {
      server.wake(kv_key_topic(key));
      for (std::size_t n = 0; n <= key.size(); ++n) server.wake(kv_prefix_topic(std::string_view(key).substr(0, n)));
    });
  });
  if (!config) return config.error();
  w->config_ = std::move(config).value();
  return w;
}

}  // namespace lattice::daemon
