// config_center: a publisher changes config; subscribers on other replicas
// see every change through watches (seed 003's configuration center, with
// ZooKeeper's data watches replaced by Lattice's persistent prefix watches).
//
//   build/examples/config_center
//
// Three replicas: the publisher writes /config/shop/... keys (set, update,
// delete) one after another; two subscribers each watch /config/shop and
// print what they see. A subscriber's watch is coalescing: if changes to
// one key come faster than it reads them it gets the latest value, never
// a stale one after the last change. Ends with
//   Summary: changes=6 subscriber_1_final_ok=true subscriber_2_final_ok=true
// and exit code 0 only if both subscribers end with exactly the
// publisher's config.
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "lattice/registry/replica.hpp"
#include "narrate.hpp"

namespace reg = lattice::registry;
using lattice::examples::eventually;
using lattice::examples::open_replica;
using lattice::examples::say;
using namespace std::chrono_literals;

namespace {

struct subscriber {
  std::string name;
  std::unique_ptr<reg::replica> replica;
  std::mutex mutex;
  std::map<std::string, std::string> seen;  // what the watch told us
  reg::watch_handle watch;
};

}  // namespace

int main() {
  auto publisher = open_replica({});
  std::vector<std::unique_ptr<subscriber>> subscribers;
  for (int i = 1; i <= 2; ++i) {
    auto s = std::make_unique<subscriber>();
    s->name = fmt::format("subscriber {}", i);
    s->replica = open_replica({publisher->address()});
    auto* raw = s.get();
    s->watch = s->replica->watch_config("/config/shop", [raw](const reg::config_change& c) {
      say("{} sees {} = {}", raw->name, c.key, c.value ? *c.value : "(deleted)");
      std::lock_guard lock(raw->mutex);
      if (c.value) raw->seen[c.key] = *c.value; else raw->seen.erase(c.key);
    }).value();
    subscribers.push_back(std::move(s));
  }
  say("publisher {} and two subscribers watching /config/shop", publisher->address());

  const std::vector<std::pair<std::string, std::optional<std::string>>> changes = {
      {"/config/shop/db/url", "postgres://db1/shop"},
      {"/config/shop/feature/checkout-v2", "off"},
      {"/config/shop/timeout-ms", "500"},
      {"/config/shop/feature/checkout-v2", "on"},
      {"/config/shop/db/url", "postgres://db2/shop"},  // a failover
      {"/config/shop/timeout-ms", std::nullopt},       // back to the default
  };
  for (const auto& [key, value] : changes) {
    if (value) {
      say("publisher sets {} = {}", key, *value);
      if (!publisher->set_config(key, *value)) return 1;
    } else {
      say("publisher deletes {}", key);
      if (!publisher->erase_config(key)) return 1;
    }
    std::this_thread::sleep_for(300ms);
  }

  const std::map<std::string, std::string> expected = {{"/config/shop/db/url", "postgres://db2/shop"},
                                                       {"/config/shop/feature/checkout-v2", "on"}};
  std::vector<bool> ok;
  for (auto& s : subscribers) {
    std::chrono::milliseconds took{};
    ok.push_back(eventually([&] { std::lock_guard lock(s->mutex); return s->seen == expected; }, 3s, &took));
    say("{} ends with {} keys, {}", s->name, s->seen.size(), ok.back() ? "exactly the publisher's" : "WRONG");
  }
  std::printf("Summary: changes=%zu subscriber_1_final_ok=%s subscriber_2_final_ok=%s\n", changes.size(),
              ok[0] ? "true" : "false", ok[1] ? "true" : "false");
  for (auto& s : subscribers) s->watch.cancel();
  return ok[0] && ok[1] ? 0 : 1;
}
