// make_tls_context (asio_driver.hpp): the TLS context the Asio driver's
// connections share.
#include "asio_common.hpp"
#include "lattice/transport/asio_driver.hpp"

namespace lattice::transport {

result<std::shared_ptr<asio::ssl::context>> make_tls_context(const std::string& cert_chain_file,
                                                              const std::string& key_file,
                                                              const std::string& ca_file) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls);
  boost::system::error_code ec;
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                           asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                           asio::ssl::context::no_tlsv1_1,
                       ec);
  if (!ec) context->use_certificate_chain_file(cert_chain_file, ec);
  if (!ec) context->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (!ec) context->load_verify_file(ca_file, ec);
  if (!ec) context->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert, ec);
  if (ec) return ec;
  return context;
}

}  // namespace lattice::transport
