// transport/src/asio_common.hpp: what the Asio driver's parts share
// (asio_driver.cpp, asio_inbound.hpp, asio_outbound.hpp, tls_context.cpp).
#pragma once

#include <chrono>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>

namespace lattice::transport {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;
using clock_type = std::chrono::steady_clock;

}  // namespace lattice::transport
