// partition_balancing: a MetaQ/Kafka-style consumer group (seed 003).
//
//   build/examples/partition_balancing
//
// The 12 partitions of topic "orders" are shared by the live members of
// consumer group "billing". Each member registers itself under
// /metaq/orders/billing and, from its own snapshot alone, owns the
// partitions that rendezvous hashing (the consistent_hash balancer, key
// "orders-<n>") gives to it. No coordinator, no lock: when a member joins,
// leaves or is killed, every member's watch fires, each recomputes, and the
// assignment converges.
//
// Without a lock there is a window while members disagree: a partition
// can be briefly unowned (its new owner has not heard yet) or doubly owned
// (its old owner has not heard yet). The example measures both by
// sampling every member's claim every 2 ms, and prints per event how long
// convergence took. Consumers that must never process a partition twice
// need idempotent processing or a fencing token; this is the AP trade-off
// (README, "What Lattice will not do").
//
// Ends with
//   Summary: events=3 converged=true final_exactly_once=true
// and exit code 0 only if every event converged within 5 s and the final
// assignment gives each partition to exactly one live member.
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "lattice/registry/balancer.hpp"
#include "lattice/registry/replica.hpp"
#include "narrate.hpp"

namespace reg = lattice::registry;
using lattice::examples::say;
using namespace std::chrono_literals;

namespace {

constexpr const char* kGroup = "/metaq/orders/billing";
constexpr int kPartitions = 12;

class member {
 public:
  member(std::string name, const std::vector<std::string>& seeds) : name_(std::move(name)) {
    replica_ = lattice::examples::open_replica(seeds);
    reg::instance me;
    me.id = name_;
    me.address = "127.0.0.1";
    me.port = 1;  // a real consumer would put its admin endpoint here
    replica_->register_instance(kGroup, me).value();
    watch_ = replica_->watch(kGroup, [this](const reg::service_view& view) { recompute(view); }).value();
  }
  const std::string& name() const { return name_; }
  const std::string& address() const { return replica_->address(); }
  std::set<int> claims() const {
    std::lock_guard lock(mutex_);
    return owned_;
  }
  void leave() {
    watch_.cancel();
    replica_->stop();
    std::lock_guard lock(mutex_);
    owned_.clear();
  }
  void kill() {
    // A crash: it stops talking, and (being dead) processes nothing more.
    watch_.cancel();
    replica_->set_send_filter([](const std::string&) { return false; });
    std::lock_guard lock(mutex_);
    owned_.clear();
  }

 private:
  void recompute(const reg::service_view& view) {
    reg::consistent_hash hash;
    std::set<int> mine;
    for (int p = 0; p < kPartitions; ++p) {
      const std::string key = "orders-" + std::to_string(p);
      const auto* owner = hash.pick(view, reg::pick_options{std::nullopt, key});
      if (owner != nullptr && (*owner)->id() == name_) mine.insert(p);
    }
    std::lock_guard lock(mutex_);
    owned_ = std::move(mine);
  }

  std::string name_;
  std::unique_ptr<reg::replica> replica_;
  reg::watch_handle watch_;
  mutable std::mutex mutex_;
  std::set<int> owned_;
};

struct event_result {
  std::chrono::milliseconds converged_after{};
  bool converged = false;
  int max_unowned = 0;
  int max_doubly_owned = 0;
};

// Samples every live member's claims until each partition has exactly one
// owner and the owners agree with what rendezvous hashing over the live
// members gives (so no member is still on an old view).
event_result observe(const std::vector<member*>& live) {
  event_result r;
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < 5s) {
    std::map<int, int> owners;
    for (const auto* m : live)
      for (int p : m->claims()) ++owners[p];
    int unowned = 0, doubly = 0;
    for (int p = 0; p < kPartitions; ++p) {
      if (owners[p] == 0) ++unowned;
      if (owners[p] > 1) ++doubly;
    }
    r.max_unowned = std::max(r.max_unowned, unowned);
    r.max_doubly_owned = std::max(r.max_doubly_owned, doubly);
    if (unowned == 0 && doubly == 0) {
      // Stable for 100 ms: every member has settled on the same view.
      bool stable = true;
      const auto held = std::chrono::steady_clock::now();
      std::map<const member*, std::set<int>> snapshot;
      for (const auto* m : live) snapshot[m] = m->claims();
      while (stable && std::chrono::steady_clock::now() - held < 100ms) {
        std::this_thread::sleep_for(2ms);
        for (const auto* m : live) stable = stable && m->claims() == snapshot[m];
      }
      if (stable) {
        r.converged = true;
        r.converged_after = std::chrono::duration_cast<std::chrono::milliseconds>(held - start);
        return r;
      }
    }
    std::this_thread::sleep_for(2ms);
  }
  return r;
}

void report(const char* what, const event_result& r, const std::vector<member*>& live) {
  std::string assignment;
  for (const auto* m : live) {
    assignment += m->name() + ":{";
    for (int p : m->claims()) assignment += std::to_string(p) + ",";
    if (assignment.back() == ',') assignment.pop_back();
    assignment += "} ";
  }
  say("{}: {} after {} ms; at worst {} partitions unowned, {} doubly owned meanwhile", what,
      r.converged ? "converged" : "DID NOT CONVERGE", r.converged_after.count(), r.max_unowned,
      r.max_doubly_owned);
  say("  assignment: {}", assignment);
}

}  // namespace

int main() {
  std::vector<std::unique_ptr<member>> members;
  const auto live = [&] {
    std::vector<member*> out;
    for (auto& m : members)
      if (m) out.push_back(m.get());
    return out;
  };
  say("group billing of topic orders ({} partitions): starting members m1, m2, m3", kPartitions);
  members.push_back(std::make_unique<member>("m1", std::vector<std::string>{}));
  members.push_back(std::make_unique<member>("m2", std::vector<std::string>{members[0]->address()}));
  members.push_back(std::make_unique<member>("m3", std::vector<std::string>{members[0]->address()}));
  bool all_converged = true;
  int events = 0;
  // Waits for the group to settle after an event, and reports it.
  const auto settle = [&](const char* what) {
    const auto r = observe(live());
    report(what, r, live());
    all_converged &= r.converged;
    return r;
  };
  settle("start");

  say("m4 joins");
  members.push_back(std::make_unique<member>("m4", std::vector<std::string>{members[0]->address()}));
  const auto r1 = settle("join");
  ++events;

  say("m2 leaves gracefully");
  members[1]->leave();
  members[1].reset();
  const auto r2 = settle("leave");
  ++events;

  say("m3 is killed (no goodbye: the others notice through the failure detector)");
  members[2]->kill();
  auto killed = std::move(members[2]);
  const auto r3 = settle("kill");
  ++events;

  std::map<int, int> owners;
  for (const auto* m : live())
    for (int p : m->claims()) ++owners[p];
  bool exactly_once = static_cast<int>(owners.size()) == kPartitions;
  for (const auto& [p, n] : owners) exactly_once = exactly_once && n == 1;
  std::printf("Summary: events=%d converged=%s final_exactly_once=%s join_ms=%lld leave_ms=%lld kill_ms=%lld\n",
              events, all_converged ? "true" : "false", exactly_once ? "true" : "false",
              static_cast<long long>(r1.converged_after.count()), static_cast<long long>(r2.converged_after.count()),
              static_cast<long long>(r3.converged_after.count()));
  return all_converged && exactly_once ? 0 : 1;
}
