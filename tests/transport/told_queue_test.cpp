// The detector's queue of news to piggy-back (detail/told_queue.hpp): it
// hands out the least told first and the newest first among equals, tells
// each entry `limit` times, and a new word replaces what it supersedes
// about the same member (all of them). Checked against a plain model (a deque per count
// of tellings) over random pushes and takes, and by hand.
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include "lattice/transport/detail/told_queue.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace told_queue_test {

using lattice::transport::detail::told_queue;

namespace {

struct word {
  std::uint64_t member = 0;
  int serial = 0;  // distinct per push
  bool confirmation = false;
  friend bool operator==(const word&, const word&) = default;
};

// A new word supersedes a queued one about the same member unless both
// are confirmations (which pile up, as suspicions' confirmations do).
bool supersedes(const word& fresh, const word& queued) { return !(fresh.confirmation && queued.confirmation); }

// The same rules, plainly: one deque per count of tellings, newest at the
// front.
struct model {
  std::vector<std::deque<word>> by_told;
  std::size_t bound = 0;  // 0: none

  void push(const word& w) {
    for (auto& level : by_told)
      std::erase_if(level, [&](const word& queued) { return queued.member == w.member && supersedes(w, queued); });
    if (by_told.empty()) by_told.resize(1);
    by_told.front().push_front(w);
    // Over the bound: the oldest of the most told goes.
    if (bound != 0 && size() > bound)
      for (auto level = by_told.rbegin(); level != by_told.rend(); ++level)
        if (!level->empty()) {
          level->pop_back();
          break;
        }
  }

  std::vector<word> take(std::size_t max, unsigned limit, const word* skip) {
    if (by_told.size() > limit) by_told.resize(limit);
    std::vector<word> out;
    std::vector<std::pair<word, unsigned>> moved;
    for (unsigned told = 0; told < by_told.size() && out.size() < max; ++told)
      for (auto it = by_told[told].begin(); it != by_told[told].end() && out.size() < max;) {
        if (skip != nullptr && *it == *skip) {
          ++it;
          continue;
        }
        out.push_back(*it);
        moved.emplace_back(*it, told + 1);
        it = by_told[told].erase(it);
      }
    for (auto m = moved.rbegin(); m != moved.rend(); ++m)
      if (m->second < limit) {
        if (by_told.size() <= m->second) by_told.resize(m->second + 1);
        by_told[m->second].push_front(m->first);
      }
    return out;
  }

  std::size_t size() const {
    std::size_t n = 0;
    for (const auto& level : by_told) n += level.size();
    return n;
  }
};

}  // namespace

TEST_CASE("told queue: least told first, newest first among equals, each told limit times, superseded words dropped, "
          "and past a bound the oldest of the most told",
          "[transport][swim]") {
  rc::prop("against a plain model", [] {
    told_queue<word> queue;
    model reference;
    // Unbounded half the time; otherwise a bound small enough to be hit.
    reference.bound = *rc::gen::arbitrary<bool>() ? 0 : *rc::gen::inRange<std::size_t>(1, 7);
    queue.set_max(reference.bound);
    int serial = 0;
    const auto steps = *rc::gen::inRange(1, 200);
    for (int step = 0; step < steps; ++step) {
      if (*rc::gen::inRange(0, 3) == 0) {
        const word w{*rc::gen::inRange<std::uint64_t>(1, 8), ++serial, *rc::gen::arbitrary<bool>()};
        queue.push(w, w.member, [&](const word& queued) { return supersedes(w, queued); });
        reference.push(w);
      } else {
        const auto max = *rc::gen::inRange<std::size_t>(0, 9);
        const auto limit = *rc::gen::inRange(1u, 6u);
        // Sometimes skip a word that is queued (a message's first word).
        std::optional<word> skip;
        if (*rc::gen::arbitrary<bool>() && !reference.by_told.empty() && !reference.by_told.front().empty())
          skip = reference.by_told.front().back();
        std::vector<word> got;
        queue.take(got, max, limit, skip ? &*skip : nullptr);
        RC_ASSERT(got == reference.take(max, limit, skip ? &*skip : nullptr));
      }
      RC_ASSERT(queue.size() == reference.size());
      RC_ASSERT(queue.empty() == (reference.size() == 0));
    }
  });
}

TEST_CASE("told queue: a word is told exactly limit times, and a newer word about its member starts over",
          "[transport][swim]") {
  told_queue<word> queue;
  const auto none_confirm = [](const word&) { return true; };
  queue.push(word{1, 1, false}, 1, none_confirm);
  queue.push(word{2, 2, false}, 2, none_confirm);
  std::vector<word> told;
  for (int message = 0; message < 10; ++message) queue.take(told, 1, 3, nullptr);
  // One per message, least told first, the newer of two equals first:
  // 2, 1, 2, 1, 2, 1, then nothing.
  REQUIRE(told.size() == 6);
  CHECK(told[0].member == 2);
  CHECK(told[1].member == 1);
  CHECK(told[4].member == 2);
  CHECK(told[5].member == 1);
  CHECK(queue.empty());

  queue.push(word{1, 3, false}, 1, none_confirm);
  told.clear();
  queue.take(told, 8, 3, nullptr);
  queue.push(word{1, 4, false}, 1, none_confirm);  // supersedes serial 3, told once
  told.clear();
  for (int message = 0; message < 10; ++message) queue.take(told, 8, 3, nullptr);
  REQUIRE(told.size() == 3);
  for (const auto& w : told) CHECK(w.serial == 4);

  // Confirmations pile up; a word that is not one drops them all.
  for (int accuser = 5; accuser < 8; ++accuser) {
    const word confirmation{3, accuser, true};
    queue.push(confirmation, 3, [&](const word& queued) { return supersedes(confirmation, queued); });
  }
  CHECK(queue.size() == 3);
  queue.push(word{3, 8, false}, 3, none_confirm);
  CHECK(queue.size() == 1);
}

}  // namespace told_queue_test
