// embedding: the README's embedding sample, compiled and run as part of
// the build (tests/examples/readme_sample.py checks that the README shows
// exactly the lines between the markers below).
//
//   build/examples/embedding
//
// One replica, alone: it registers a provider, looks it up, balances a
// call, watches the service, sets config and stops. Prints
//   Summary: providers=1 picked=10.0.0.7:20880 watch_fired=true config=5s
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>

#include "lattice/registry/balancer.hpp"
#include "lattice/registry/replica.hpp"

int main() {
  std::atomic<bool> watch_fired{false};
  std::string picked;
  // README:begin
  using namespace lattice::registry;

  replica_options o;                        // every field documented in replica.hpp
  o.listen_port = 0;                        // any free port (7946 in production)
  o.seeds = {};                             // e.g. {"10.0.0.1:7946"}
  o.data_dir = "";                          // e.g. "/var/lib/my-service/lattice": survives restarts
  auto r = replica::open(o).value();        // joins, gossips on its own thread

  instance hello;                           // provider side
  hello.address = "10.0.0.7";
  hello.port = 20880;
  hello.protocol = "dubbo";
  r->register_instance("/HelloWorldService/1.0.0", hello).value();  // id: 10.0.0.7:20880
  auto served = r->count_serving("/HelloWorldService/1.0.0", "10.0.0.7:20880").value();
  { serve_guard serving(*served); }         // per request served: one load entry for all callers

  least_loaded lb;                          // consumer side
  auto list = r->lookup("/HelloWorldService/1.0.0");                // local read, no lock
  if (const instance_view* target = lb.pick(*list)) {
    call_guard call(*target);               // cluster-wide in-flight counter
    picked = (*target)->id();               // call (*target)->address(), (*target)->port()
  }
  auto w = r->watch("/HelloWorldService", [&](const service_view& v) {
    watch_fired = v.providers.size() == 1;  // full list and version, after every change
  }).value();
  r->set_config("/HelloWorldService/timeout", "5s").value();
  // README:end
  for (int i = 0; i < 200 && !watch_fired; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto config = r->get_config("/HelloWorldService/timeout").value_or("");
  w.cancel();
  r->stop();                                // removes our ephemeral instances, leaves
  std::printf("Summary: providers=%zu picked=%s watch_fired=%s config=%s\n", list.providers().size(),
              picked.c_str(), watch_fired ? "true" : "false", config.c_str());
  return watch_fired && picked == "10.0.0.7:20880" && config == "5s" ? 0 : 1;
}
