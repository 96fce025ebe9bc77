#include "lattice/transport/frame.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <boost/crc.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace lattice::transport {
namespace {

// CRC-32C (Castagnoli): reflected, init and final xor 0xFFFFFFFF.
using crc32c_engine = boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true>;

void put_u32(std::byte* at, std::uint32_t value) noexcept {
  for (int i = 0; i < 4; ++i) at[i] = static_cast<std::byte>(value >> (8 * i));
}

std::uint32_t get_u32(const std::byte* at) noexcept {
  std::uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value |= std::to_integer<std::uint32_t>(at[i]) << (8 * i);
  return value;
}

// The CRC covers the header up to (not including) the CRC field, then the payload.
std::uint32_t frame_crc(const std::byte* header, std::span<const std::byte> payload) noexcept {
  crc32c_engine crc;
  crc.process_bytes(header, 12);
  crc.process_bytes(payload.data(), payload.size());
  return crc.checksum();
}

}  // namespace

std::uint32_t crc32c(std::span<const std::byte> bytes) noexcept {
  crc32c_engine crc;
  crc.process_bytes(bytes.data(), bytes.size());
  return crc.checksum();
}

cluster_key::cluster_key(std::vector<std::byte> secret) : secret_(std::move(secret)) {
  if (secret_.size() < 16) throw std::invalid_argument("cluster key must be at least 16 bytes");
}

std::array<std::byte, frame_mac_size> cluster_key::mac(std::span<const std::byte> data) const {
  std::array<std::byte, frame_mac_size> out{};
  unsigned int length = 0;
  const auto* result =
      HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(),
           reinterpret_cast<unsigned char*>(out.data()), &length);
  if (result == nullptr || length != frame_mac_size) std::abort();  // OpenSSL broken: invariant
  return out;
}

bool cluster_key::verify(std::span<const std::byte> data,
                         std::span<const std::byte> expected) const {
  if (expected.size() != frame_mac_size) return false;
  const auto actual = mac(data);
  return CRYPTO_memcmp(actual.data(), expected.data(), frame_mac_size) == 0;
}

void encode_frame_into(std::vector<std::byte>& out, std::uint8_t type,
                       std::span<const std::byte> payload, const frame_options& options) {
  const std::size_t start = out.size();
  out.resize(start + frame_header_size);
  std::byte* header = out.data() + start;
  std::copy(frame_magic.begin(), frame_magic.end(), header);
  header[4] = std::byte{protocol_version};
  header[5] = std::byte{type};
  header[6] = std::byte{options.key ? frame_flag_mac : std::uint8_t{0}};
  header[7] = std::byte{0};
  put_u32(header + 8, static_cast<std::uint32_t>(payload.size()));
  put_u32(header + 12, frame_crc(header, payload));
  out.insert(out.end(), payload.begin(), payload.end());
  if (options.key) {
    const auto mac = options.key->mac(std::span(out).subspan(start));
    out.insert(out.end(), mac.begin(), mac.end());
  }
}

std::vector<std::byte> encode_frame(std::uint8_t type, std::span<const std::byte> payload,
                                    const frame_options& options) {
  std::vector<std::byte> out;
  out.reserve(frame_header_size + payload.size() + (options.key ? frame_mac_size : 0));
  encode_frame_into(out, type, payload, options);
  return out;
}

frame_decoder::frame_decoder(frame_options options) : options_(std::move(options)) {}

void frame_decoder::feed(std::span<const std::byte> bytes) {
  if (error_) return;
  // Drop what was already returned before growing, so the buffer holds at
  // most one partial frame plus what this call adds.
  if (consumed_ > 0 && consumed_ * 2 >= buffer_.size()) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(consumed_));
    consumed_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

result<std::optional<frame>> frame_decoder::fail(errc code) {
  error_ = code;
  buffer_.clear();
  buffer_.shrink_to_fit();
  consumed_ = 0;
  return error_;
}

namespace {

// Checks the frame at the start of `available`: the size of the whole
// frame (header, payload and MAC) once every byte of it is there and it
// verifies, 0 while more bytes are needed, or why it is refused. The magic
// is checked on whatever prefix has arrived, so a foreign stream is
// refused at its first bytes.
result<std::size_t> check_frame(std::span<const std::byte> available, const frame_options& options) {
  const std::size_t magic_seen = std::min(available.size(), frame_magic.size());
  if (!std::equal(available.begin(), available.begin() + static_cast<std::ptrdiff_t>(magic_seen),
                  frame_magic.begin()))
    return errc::bad_magic;
  if (available.size() < frame_header_size) return std::size_t{0};

  const std::byte* header = available.data();
  if (std::to_integer<std::uint8_t>(header[4]) != protocol_version) return errc::unsupported_version;
  const auto flags = std::to_integer<std::uint8_t>(header[6]);
  if ((flags & ~frame_flag_mac) != 0 || header[7] != std::byte{0}) return errc::malformed_header;
  const bool has_mac = (flags & frame_flag_mac) != 0;
  if (options.key && !has_mac) return errc::missing_mac;
  if (!options.key && has_mac) return errc::unexpected_mac;
  const std::size_t length = get_u32(header + 8);
  if (length > options.max_frame_size) return errc::frame_too_large;

  const std::size_t total = frame_header_size + length + (has_mac ? frame_mac_size : 0);
  if (available.size() < total) return std::size_t{0};

  const auto payload = available.subspan(frame_header_size, length);
  if (get_u32(header + 12) != frame_crc(header, payload)) return errc::bad_checksum;
  if (has_mac && !options.key->verify(available.first(frame_header_size + length),
                                      available.subspan(frame_header_size + length, frame_mac_size)))
    return errc::bad_mac;
  return total;
}

frame_view view_of(std::span<const std::byte> whole_frame) {
  return {std::to_integer<std::uint8_t>(whole_frame[5]),
          whole_frame.subspan(frame_header_size, get_u32(whole_frame.data() + 8))};
}

}  // namespace

result<std::optional<frame>> frame_decoder::next() {
  if (error_) return error_;
  const std::span<const std::byte> available = std::span(buffer_).subspan(consumed_);
  const auto checked = check_frame(available, options_);
  if (!checked) return fail(static_cast<errc>(checked.error().value()));
  if (checked.value() == 0) return std::optional<frame>{};
  const auto view = view_of(available.first(checked.value()));
  frame result{view.type, {view.payload.begin(), view.payload.end()}};
  consumed_ += checked.value();
  return std::optional<frame>{std::move(result)};
}

result<frame_view> decode_datagram(std::span<const std::byte> bytes, const frame_options& options) {
  const auto checked = check_frame(bytes, options);
  if (!checked) return checked.error();
  if (checked.value() == 0 || checked.value() != bytes.size()) return errc::bad_datagram;
  return view_of(bytes);
}

}  // namespace lattice::transport
