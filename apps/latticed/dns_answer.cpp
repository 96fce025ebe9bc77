#include "dns_answer.hpp"

// ldns's common.h defines bool, true and false as macros unless
// <stdbool.h> came first (it does by accident under g++, not clang++).
#include <stdbool.h>  // NOLINT(modernize-deprecated-headers)
#include <ldns/ldns.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <optional>
#include <random>

#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>

#include "consul_codec.hpp"

namespace lattice::daemon {

namespace reg = lattice::registry;

namespace {

struct pkt_free {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
struct rr_free {
  void operator()(ldns_rr* r) const { ldns_rr_free(r); }
};
using pkt_ptr = std::unique_ptr<ldns_pkt, pkt_free>;
using rr_ptr = std::unique_ptr<ldns_rr, rr_free>;

std::string ascii_lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::vector<std::string> labels_of(const std::string& name) {
  std::vector<std::string> out;
  std::size_t from = 0;
  while (from < name.size()) {
    const auto dot = name.find('.', from);
    const auto to = dot == std::string::npos ? name.size() : dot;
    if (to > from) out.push_back(name.substr(from, to - from));
    from = to + 1;
  }
  return out;
}

// A record of `type` for `owner` with one rdata field given as text
// (addresses), or nullptr if ldns refuses the text.
rr_ptr address_record(const ldns_rdf* owner, const boost::asio::ip::address& address, std::uint32_t ttl) {
  const bool v4 = address.is_v4();
  ldns_rdf* data = ldns_rdf_new_frm_str(v4 ? LDNS_RDF_TYPE_A : LDNS_RDF_TYPE_AAAA, address.to_string().c_str());
  if (data == nullptr) return nullptr;
  rr_ptr rr(ldns_rr_new());
  ldns_rr_set_owner(rr.get(), ldns_rdf_clone(owner));
  ldns_rr_set_type(rr.get(), v4 ? LDNS_RR_TYPE_A : LDNS_RR_TYPE_AAAA);
  ldns_rr_set_class(rr.get(), LDNS_RR_CLASS_IN);
  ldns_rr_set_ttl(rr.get(), ttl);
  ldns_rr_push_rdf(rr.get(), data);
  return rr;
}

// "<hex of the address's bytes>.addr.<dc>.<domain>.", as Consul names an
// SRV target that is an address.
std::string addr_name(const boost::asio::ip::address& address, const dns_options& o) {
  std::string hex;
  if (address.is_v4()) {
    for (const auto b : address.to_v4().to_bytes()) hex += fmt::format("{:02x}", b);
  } else {
    for (const auto b : address.to_v6().to_bytes()) hex += fmt::format("{:02x}", b);
  }
  return fmt::format("{}.addr.{}.{}.", hex, o.datacenter, o.domain);
}

std::optional<boost::asio::ip::address> addr_of_hex(const std::string& hex) {
  if (hex.size() != 8 && hex.size() != 32) return std::nullopt;
  std::vector<unsigned char> bytes;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    unsigned value = 0;
    for (std::size_t j = i; j < i + 2; ++j) {
      const char c = hex[j];
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) return std::nullopt;
      value = value * 16 + static_cast<unsigned>(d);
    }
    bytes.push_back(static_cast<unsigned char>(value));
  }
  if (bytes.size() == 4) {
    boost::asio::ip::address_v4::bytes_type b;
    std::copy(bytes.begin(), bytes.end(), b.begin());
    return boost::asio::ip::address(boost::asio::ip::address_v4(b));
  }
  boost::asio::ip::address_v6::bytes_type b;
  std::copy(bytes.begin(), bytes.end(), b.begin());
  return boost::asio::ip::address(boost::asio::ip::address_v6(b));
}

std::optional<boost::asio::ip::address> ip_of(const std::string& text) {
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(text, ec);
  if (ec) return std::nullopt;
  return address;
}

bool wanted(ldns_rr_type qtype, const boost::asio::ip::address& a) {
  return qtype == LDNS_RR_TYPE_ANY || (qtype == LDNS_RR_TYPE_A && a.is_v4()) ||
         (qtype == LDNS_RR_TYPE_AAAA && a.is_v6());
}

// What a question resolves to: its records, or that the name is not there.
struct resolution {
  ldns_pkt_rcode rcode = LDNS_RCODE_NOERROR;
  std::vector<rr_ptr> answers;
  // additional[i]: the records that go with answers[i] (an SRV target's address).
  std::vector<std::vector<rr_ptr>> additional;
  bool soa = false;  // the domain's SOA in the authority section

  void add(rr_ptr rr, std::vector<rr_ptr> extra = {}) {
    if (rr == nullptr) return;
    answers.push_back(std::move(rr));
    additional.push_back(std::move(extra));
  }
};

}  // namespace

dns_answerer::dns_answerer(reg::replica& replica, dns_options options)
    : replica_(replica), options_(std::move(options)) {
  options_.domain = ascii_lower(options_.domain);
  while (!options_.domain.empty() && options_.domain.back() == '.') options_.domain.pop_back();
}

std::vector<std::uint8_t> dns_answerer::answer(std::span<const std::uint8_t> query, bool udp) const {
  if (query.size() < 12) return {};               // no room for an id: nothing to answer to
  if ((query[2] & 0x80) != 0) return {};          // a response: answering it could start a loop
  const auto id = static_cast<std::uint16_t>(query[0] << 8 | query[1]);
  const bool rd = (query[2] & 0x01) != 0;

  pkt_ptr reply_pkt(ldns_pkt_new());
  ldns_pkt_set_id(reply_pkt.get(), id);
  ldns_pkt_set_qr(reply_pkt.get(), true);
  ldns_pkt_set_rd(reply_pkt.get(), rd);
  ldns_pkt_set_ra(reply_pkt.get(), false);
  const auto encode = [](const ldns_pkt* p) {
    std::uint8_t* wire = nullptr;
    std::size_t size = 0;
    if (ldns_pkt2wire(&wire, p, &size) != LDNS_STATUS_OK) return std::vector<std::uint8_t>();
    std::vector<std::uint8_t> out(wire, wire + size);
    LDNS_FREE(wire);
    return out;
  };
  const auto fail = [&](ldns_pkt_rcode rcode) {
    ldns_pkt_set_rcode(reply_pkt.get(), static_cast<std::uint8_t>(rcode));
    return encode(reply_pkt.get());
  };

  ldns_pkt* parsed = nullptr;
  if (ldns_wire2pkt(&parsed, query.data(), query.size()) != LDNS_STATUS_OK) return fail(LDNS_RCODE_FORMERR);
  const pkt_ptr query_pkt(parsed);
  ldns_pkt_set_opcode(reply_pkt.get(), ldns_pkt_get_opcode(query_pkt.get()));
  if (ldns_pkt_get_opcode(query_pkt.get()) != LDNS_PACKET_QUERY) return fail(LDNS_RCODE_NOTIMPL);
  const ldns_rr_list* questions = ldns_pkt_question(query_pkt.get());
  if (ldns_rr_list_rr_count(questions) != 1) return fail(LDNS_RCODE_FORMERR);
  const ldns_rr* question = ldns_rr_list_rr(questions, 0);
  ldns_pkt_push_rr(reply_pkt.get(), LDNS_SECTION_QUESTION, ldns_rr_clone(question));
  std::size_t limit = 65535;
  if (udp) {
    limit = 512;
    if (ldns_pkt_edns(query_pkt.get())) limit = std::clamp<std::size_t>(ldns_pkt_edns_udp_size(query_pkt.get()), 512, 4096);
  }
  if (ldns_pkt_edns(query_pkt.get())) ldns_pkt_set_edns_udp_size(reply_pkt.get(), 4096);

  const ldns_rdf* qname = ldns_rr_owner(question);
  const ldns_rr_type qtype = ldns_rr_get_type(question);
  char* text = ldns_rdf2str(qname);
  if (text == nullptr) return fail(LDNS_RCODE_FORMERR);
  const std::string name = ascii_lower(text);
  LDNS_FREE(text);

  // Inside our domain? Then the labels before it.
  auto labels = labels_of(name);
  const auto domain = labels_of(options_.domain);
  if (labels.size() < domain.size() || !std::equal(domain.rbegin(), domain.rend(), labels.rbegin()))
    return fail(LDNS_RCODE_REFUSED);  // not ours, and we do not recurse
  ldns_pkt_set_aa(reply_pkt.get(), true);
  labels.resize(labels.size() - domain.size());
  // An optional datacenter label: ours, or no such name.
  bool other_dc = false;
  if (labels.size() >= 2 && labels.back() != "service" && labels.back() != "node" && labels.back() != "addr") {
    other_dc = labels.back() != ascii_lower(options_.datacenter);
    labels.pop_back();
  }

  resolution out;
  const auto nxdomain = [&] {
    out.rcode = LDNS_RCODE_NXDOMAIN;
    out.soa = true;
  };
  const auto table = replica_.status();
  if (other_dc || labels.empty()) {
    if (other_dc) nxdomain(); else out.soa = true;  // the domain itself: no records of ours but its SOA
  } else if (labels.back() == "service" && (labels.size() == 2 || labels.size() == 3)) {
    std::string service = labels[labels.size() - 2];
    std::optional<std::string> tag;
    if (labels.size() == 3) {
      tag = labels[0];
      if (service.starts_with('_') && tag->starts_with('_')) {  // RFC 2782: _service._tag
        std::swap(service, *tag);
        service.erase(0, 1);
        tag->erase(0, 1);
        if (*tag == "tcp" || *tag == "udp") tag.reset();
      }
    } else if (service.starts_with('_')) {
      service.erase(0, 1);
    }
    const auto list = replica_.lookup(consul::service_path_of(service));
    const auto up = consul::live_nodes(*table);
    std::vector<const reg::instance_view*> passing;
    for (const auto& i : list.providers())
      if (up.contains(i->owner()) && consul::service_status(*i) == "passing" && (!tag || consul::has_tag(*i, *tag)))
        passing.push_back(&i);
    if (passing.empty()) {
      nxdomain();
    } else {
      static thread_local std::mt19937 rng{std::random_device{}()};
      std::shuffle(passing.begin(), passing.end(), rng);
      for (const auto* i : passing) {
        const auto& record = *(*i);
        const auto address = ip_of(std::string(record.address()));
        if (qtype == LDNS_RR_TYPE_SRV) {
          const std::string target = address ? addr_name(*address, options_) : std::string(record.address()) + ".";
          ldns_rdf* target_rdf = ldns_dname_new_frm_str(target.c_str());
          if (target_rdf == nullptr) continue;
          rr_ptr srv(ldns_rr_new());
          ldns_rr_set_owner(srv.get(), ldns_rdf_clone(qname));
          ldns_rr_set_type(srv.get(), LDNS_RR_TYPE_SRV);
          ldns_rr_set_class(srv.get(), LDNS_RR_CLASS_IN);
          ldns_rr_set_ttl(srv.get(), options_.ttl);
          ldns_rr_push_rdf(srv.get(), ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, 1));  // priority
          ldns_rr_push_rdf(srv.get(), ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, 1));  // weight
          ldns_rr_push_rdf(srv.get(), ldns_native2rdf_int16(LDNS_RDF_TYPE_INT16, record.port()));
          ldns_rr_push_rdf(srv.get(), target_rdf);
          std::vector<rr_ptr> extra;
          if (address) extra.push_back(address_record(target_rdf, *address, options_.ttl));
          if (!extra.empty() && extra.back() == nullptr) extra.clear();
          out.add(std::move(srv), std::move(extra));
        } else if (address && wanted(qtype, *address)) {
          out.add(address_record(qname, *address, options_.ttl));
        }
      }
      if (out.answers.empty()) out.soa = true;  // there, but no record of this type
    }
  } else if (labels.size() == 2 && labels.back() == "node") {
    const auto member = std::find_if(table->members.begin(), table->members.end(), [&](const reg::member_info& m) {
      return ascii_lower(consul::node_name(m.id)) == labels[0];
    });
    if (member == table->members.end()) {
      nxdomain();
    } else if (const auto address = ip_of(consul::host_of(member->address)); address && wanted(qtype, *address)) {
      out.add(address_record(qname, *address, options_.ttl));
    } else {
      out.soa = true;
    }
  } else if (labels.size() == 2 && labels.back() == "addr") {
    const auto address = addr_of_hex(labels[0]);
    if (!address) {
      nxdomain();
    } else if (wanted(qtype, *address)) {
      out.add(address_record(qname, *address, options_.ttl));
    } else {
      out.soa = true;
    }
  } else {
    nxdomain();
  }

  // Everything that fits the client's limit; if not all of it, TC tells
  // it to ask again over TCP.
  ldns_rr* soa = nullptr;
  const std::string soa_text = fmt::format("{0}. {1} IN SOA ns.{0}. hostmaster.{0}. 1 3600 600 86400 0", options_.domain,
                                           options_.ttl);
  if (out.soa && ldns_rr_new_frm_str(&soa, soa_text.c_str(), 0, nullptr, nullptr) != LDNS_STATUS_OK) soa = nullptr;
  const rr_ptr soa_owner(soa);
  ldns_pkt_set_rcode(reply_pkt.get(), static_cast<std::uint8_t>(out.rcode));
  for (std::size_t keep = out.answers.size();; --keep) {
    pkt_ptr attempt(ldns_pkt_clone(reply_pkt.get()));
    for (std::size_t i = 0; i < keep; ++i) {
      ldns_pkt_push_rr(attempt.get(), LDNS_SECTION_ANSWER, ldns_rr_clone(out.answers[i].get()));
      for (const auto& extra : out.additional[i])
        ldns_pkt_push_rr(attempt.get(), LDNS_SECTION_ADDITIONAL, ldns_rr_clone(extra.get()));
    }
    if (soa != nullptr) ldns_pkt_push_rr(attempt.get(), LDNS_SECTION_AUTHORITY, ldns_rr_clone(soa));
    ldns_pkt_set_tc(attempt.get(), keep < out.answers.size());
    auto wire = encode(attempt.get());
    if (wire.size() <= limit || keep == 0) return wire;
  }
}

}  // namespace lattice::daemon
