// dns_fuzz: one DNS message, as a client sends it over UDP or TCP, into
// latticed's DNS answerer (dns_answer.hpp) with a replica holding a few
// services. Whatever the bytes, the answerer must return (no crash, leak
// or overrun under ASan+UBSan), answer nothing to a response, and answer
// within the UDP limit over UDP. Seeds (fuzz/corpus/dns_fuzz): queries as
// dig builds them, A, AAAA, SRV with EDNS0, ANY, tagged, node, addr, and one
// outside the domain, each after the transport byte (1 UDP, 0 TCP).
#include <cstdint>
#include <cstdlib>
#include <memory>

#include <spdlog/spdlog.h>

#include "dns_answer.hpp"
#include "lattice/registry/replica.hpp"

using namespace lattice;

namespace {

struct answerer_under_test {
  std::unique_ptr<registry::replica> replica;
  std::unique_ptr<daemon::dns_answerer> answerer;

  answerer_under_test() {
    spdlog::set_level(spdlog::level::off);
    registry::replica_options o;
    o.listen_host = "127.0.0.1";
    o.listen_port = 0;
    replica = registry::replica::open(o).value();
    for (int n = 1; n <= 40; ++n) {
      registry::instance i;
      i.address = n % 2 ? "10.0.0." + std::to_string(n) : "fd00::" + std::to_string(n);
      i.port = static_cast<std::uint16_t>(8000 + n);
      i.tags["consul:tags"] = n % 3 ? R"(["v1"])" : R"(["v2"])";
      (void)replica->register_instance("/web", i);
    }
    answerer = std::make_unique<daemon::dns_answerer>(*replica, daemon::dns_options{});
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static answerer_under_test d;  // lives for the whole run, as a daemon does
  if (size == 0) return 0;
  const bool udp = (data[0] & 1) != 0;  // the first byte picks the transport
  const std::span<const std::uint8_t> message(data + 1, size - 1);
  const auto out = d.answerer->answer(message, udp);
  if (message.size() >= 3 && (message[2] & 0x80) != 0 && !out.empty()) std::abort();  // answered a response
  if (udp && out.size() > 4096) std::abort();
  return 0;
}
