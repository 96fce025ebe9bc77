// lattice/transport/detail/op_dissemination.hpp: the `op` dissemination
// mode of a protocol core (CmRDT style, op_log.hpp).
//
// Each local change becomes an op numbered per origin and is pushed at once
// to `origin_fanout` peers, who deliver it exactly once in origin order and
// forward it once. Every anti-entropy round a replica sends one random
// peer its delivered vector (an op summary); the peer answers with the ops
// it lacks from a bounded log of recent ops, or, when its log no longer
// reaches back that far, asks for a range sync. Every
// `op_digest_check_every`-th round is a digest range sync instead, so a
// divergence the vectors cannot see (a lost range push) is still repaired.
//
// Internal: a part of protocol.hpp, which dispatches to it.
#pragma once

#include <algorithm>
#include <utility>
#include <vector>

#include "lattice/transport/detail/protocol_context.hpp"
#include "lattice/transport/op_log.hpp"

namespace lattice::transport::detail {

template <reconcilable S>
class op_dissemination {
 public:
  explicit op_dissemination(protocol_context<S>& context)
      : context_(context), ops_(context.options.op_limits) {}
  op_dissemination(const op_dissemination&) = delete;
  op_dissemination& operator=(const op_dissemination&) = delete;

  /// A local change, merged already: numbered and pushed.
  void local_change(const S& delta, steady_time now) {
    auto& c = context_;
    ops_.set_now(c.options.wall_clock());
    const auto& op = ops_.record_local(c.options.self, c.members.self_record().incarnation, delta);
    for (replica_id peer : c.pick_peers(c.options.origin_fanout, c.options.self, now))
      c.send(c.address_of(peer), message_type::op, op);
  }

  /// Every tick: ops kept past their age limit are forgotten.
  void tick() {
    ops_.set_now(context_.options.wall_clock());
    ops_.forget_expired();
  }

  /// An anti-entropy round is starting: whether it is a digest range sync
  /// (every op_digest_check_every-th round) rather than an op summary.
  bool next_round_is_digest() { return ++rounds_ % std::max(1u, context_.options.op_digest_check_every) == 0; }

  /// Starts an op-summary round with `peer`: our delivered vector.
  void send_summary(const std::string& peer) {
    context_.send(peer, message_type::op_summary, op_summary{context_.state.digest(), ops_.vector(), false});
  }

  void on_op(envelope<numbered_op<S>> m, steady_time now) {
    auto& c = context_;
    const auto origin = m.body.origin;
    std::vector<numbered_op<S>> ready;
    ops_.set_now(c.options.wall_clock());
    switch (ops_.accept(m.body, ready)) {
      case op_verdict::delivered:
      case op_verdict::buffered:
        // News either way: forward it once, to peers other than the sender
        // and the origin.
        for (replica_id peer : c.pick_peers(c.options.fanout, m.from, now, origin))
          c.send(c.address_of(peer), message_type::op, m.body);
        break;
      case op_verdict::duplicate: ++c.stats.ops_duplicate; break;
      case op_verdict::overflow: ++c.stats.ops_overflow; break;
      case op_verdict::expired: ++c.stats.ops_expired; break;
    }
    apply(ready);
  }

  void on_op_summary(const envelope<op_summary>& m) {
    auto& c = context_;
    auto catch_up = ops_.missing_from(m.body.delivered, c.options.op_repair_batch);
    const bool we_lag = ops_.behind(m.body.delivered);
    // Same ops delivered on both sides but different states: something the
    // vectors cannot see (a range sync that skipped ahead and lost its
    // push). Only a range sync repairs that.
    if (catch_up.ops.empty() && !we_lag && m.body.root != c.state.digest()) catch_up.needs_range_sync = true;
    if (!catch_up.ops.empty() || catch_up.needs_range_sync)
      c.send(m.from_address, message_type::op_repair,
             op_repair<S>{std::move(catch_up.ops), catch_up.needs_range_sync, ops_.vector()});
    if (we_lag && !m.body.is_reply)
      c.send(m.from_address, message_type::op_summary, op_summary{c.state.digest(), ops_.vector(), true});
  }

  void on_op_repair(envelope<op_repair<S>> m) {
    auto& c = context_;
    std::vector<numbered_op<S>> ready;
    ops_.set_now(c.options.wall_clock());
    for (auto& op : m.body.ops) switch (ops_.accept(std::move(op), ready)) {
        case op_verdict::duplicate: ++c.stats.ops_duplicate; break;
        case op_verdict::expired: ++c.stats.ops_expired; break;
        default: break;
      }
    if (m.body.needs_range_sync) {
      // The range sync brings the sender's state, which covers its vector;
      // if that exchange is lost, the periodic digest round repairs it.
      ops_.skip_to(m.body.sender_vector, ready);
      c.send(m.from_address, message_type::sync_request, make_sync_request(c.state));
    }
    apply(ready);
  }

 private:
  void apply(const std::vector<numbered_op<S>>& ready) {
    for (const auto& op : ready) context_.merge_in(op.delta);
  }

  protocol_context<S>& context_;
  op_log<S> ops_;
  unsigned rounds_ = 0;  // anti-entropy rounds started
};

}  // namespace lattice::transport::detail
