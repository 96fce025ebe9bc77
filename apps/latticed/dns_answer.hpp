// apps/latticed/dns_answer.hpp: latticed's DNS interface, as Consul's
// agent answers it: one DNS message in, one out, no I/O (dns_server.hpp
// carries them over UDP and TCP; the fuzz target drives this directly).
//
//   web.service.consul             A/AAAA of web's passing instances, random order
//   v1.web.service.consul          those tagged v1
//   _web._v1.service.consul        RFC 2782 SRV (_tcp/_udp: no tag filter); each
//                                  target <hex ip>.addr.dc1.consul. with its A/AAAA
//                                  in the additional section
//   lattice-<id>.node.consul       A/AAAA of a member
//   <hex ip>.addr.dc1.consul       the address it encodes
//
// A service, node or address that is not there (or has no passing
// instance) is NXDOMAIN, with the domain's SOA in the authority section;
// one that is there but has no record of the asked type answers NOERROR
// with none. Names outside the domain are REFUSED: there is no recursion,
// so the server cannot be used to amplify traffic elsewhere. Messages
// ldns cannot parse, or with other than one question, get FORMERR;
// responses and other opcodes (NOTIMP) are not answered with data. ldns
// parses and encodes every message: no packet code of our own.
//
// Thread safety: answer() reads immutable snapshots; call it from any
// thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lattice/registry/replica.hpp"

namespace lattice::daemon {

struct dns_options {
  /// The domain answered for, without the trailing dot.
  std::string domain = "consul";
  std::string datacenter = "dc1";
  /// TTL of service, node and address records, in seconds (Consul's
  /// default: 0, so that resolvers do not keep a failed instance).
  std::uint32_t ttl = 0;
};

class dns_answerer {
 public:
  dns_answerer(registry::replica& replica, dns_options options);

  /// The response to `query`, or empty when nothing should be sent (the
  /// message was itself a response, or too short to carry an id). Over
  /// UDP a response longer than the client's limit (512 bytes, or its
  /// EDNS0 size) is cut to the records that fit, with TC set, so the
  /// client retries over TCP.
  std::vector<std::uint8_t> answer(std::span<const std::uint8_t> query, bool udp) const;

 private:
  registry::replica& replica_;
  dns_options options_;
};

}  // namespace lattice::daemon
