// Frame codec: round trips, every split of a stream, the corruption table
// (each error asserted, nothing delivered after it), authentication, and
// frozen bytes.
#include <string>

#include <catch2/catch.hpp>

#include "hex.hpp"
#include "lattice/transport/frame.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace frame_test {

using namespace lattice::transport;
using lattice::testing::to_hex;

namespace {

std::vector<std::byte> bytes_of(const std::string& text) {
  std::vector<std::byte> out;
  for (char c : text) out.push_back(static_cast<std::byte>(c));
  return out;
}

std::shared_ptr<const cluster_key> key_of(const std::string& secret) {
  return std::make_shared<const cluster_key>(bytes_of(secret));
}

// Decodes everything `stream` holds, fed in one piece.
struct decoded {
  std::vector<frame> frames;
  std::error_code error;
};
decoded decode_all(const std::vector<std::byte>& stream, const frame_options& options) {
  frame_decoder decoder(options);
  decoder.feed(stream);
  decoded out;
  for (int guard = 0; guard < 1000; ++guard) {
    auto next = decoder.next();
    if (!next) {
      out.error = next.error();
      break;
    }
    if (!next.value()) break;
    out.frames.push_back(std::move(*next.value()));
  }
  return out;
}

std::vector<std::byte> three_frames(const frame_options& options) {
  std::vector<std::byte> stream;
  encode_frame_into(stream, 1, bytes_of("hello"), options);
  encode_frame_into(stream, 2, {}, options);
  encode_frame_into(stream, 3, bytes_of(std::string(300, 'x')), options);
  return stream;
}

void check_three(const std::vector<frame>& frames) {
  REQUIRE(frames.size() == 3);
  CHECK(frames[0].type == 1);
  CHECK(frames[0].payload == bytes_of("hello"));
  CHECK(frames[1].type == 2);
  CHECK(frames[1].payload.empty());
  CHECK(frames[2].type == 3);
  CHECK(frames[2].payload.size() == 300);
}

}  // namespace

TEST_CASE("crc32c matches the Castagnoli check value", "[transport][frame]") {
  CHECK(crc32c(bytes_of("123456789")) == 0xE3069283u);
  CHECK(crc32c({}) == 0u);
}

TEST_CASE("frames round-trip, with and without a cluster key", "[transport][frame]") {
  frame_options plain;
  frame_options keyed;
  keyed.key = key_of("0123456789abcdef-cluster");
  for (const auto* options : {&plain, &keyed}) {
    const auto result = decode_all(three_frames(*options), *options);
    CHECK_FALSE(result.error);
    check_three(result.frames);
  }
  CHECK(encode_frame(1, {}, keyed).size() == frame_header_size + frame_mac_size);
}

TEST_CASE("a stream split at every byte decodes to the same frames", "[transport][frame]") {
  frame_options options;
  options.key = key_of("0123456789abcdef-cluster");
  const auto stream = three_frames(options);
  for (std::size_t split = 0; split <= stream.size(); ++split) {
    frame_decoder decoder(options);
    std::vector<frame> frames;
    auto drain = [&] {
      while (true) {
        auto next = decoder.next();
        REQUIRE(next);
        if (!next.value()) return;
        frames.push_back(std::move(*next.value()));
      }
    };
    decoder.feed(std::span(stream).first(split));
    drain();
    decoder.feed(std::span(stream).subspan(split));
    drain();
    check_three(frames);
    CHECK(decoder.buffered() == 0);
  }
  // And one byte at a time.
  frame_decoder decoder(options);
  std::vector<frame> frames;
  for (std::byte b : stream) {
    decoder.feed(std::span(&b, 1));
    auto next = decoder.next();
    REQUIRE(next);
    if (next.value()) frames.push_back(std::move(*next.value()));
  }
  check_three(frames);
}

TEST_CASE("frame corruption table", "[transport][frame]") {
  frame_options plain;
  frame_options keyed;
  keyed.key = key_of("0123456789abcdef-cluster");
  const auto good = encode_frame(9, bytes_of("payload"), plain);
  const auto good_keyed = encode_frame(9, bytes_of("payload"), keyed);

  struct row {
    const char* what;
    std::vector<std::byte> bytes;
    const frame_options* options;
    errc expected;
  };
  auto with = [](std::vector<std::byte> b, std::size_t at, std::uint8_t value) {
    b[at] = std::byte{value};
    return b;
  };
  auto flip = [](std::vector<std::byte> b, std::size_t at) {
    b[at] ^= std::byte{0x40};
    return b;
  };
  frame_options small = plain;
  small.max_frame_size = 4;
  frame_options other_key;
  other_key.key = key_of("another-cluster-key-entirely");

  const std::vector<row> table{
      {"bad magic", with(good, 0, 'X'), &plain, errc::bad_magic},
      {"bad version (the previous one)", with(good, 4, 1), &plain, errc::unsupported_version},
      {"unknown flag", with(good, 6, 0x80), &plain, errc::malformed_header},
      {"reserved byte", with(good, 7, 1), &plain, errc::malformed_header},
      {"oversize", good, &small, errc::frame_too_large},
      {"flipped payload byte", flip(good, frame_header_size + 2), &plain, errc::bad_checksum},
      {"flipped type byte", flip(good, 5), &plain, errc::bad_checksum},
      {"bad crc", flip(good, 13), &plain, errc::bad_checksum},
      {"flipped MAC byte", flip(good_keyed, good_keyed.size() - 1), &keyed, errc::bad_mac},
      {"wrong key", good_keyed, &other_key, errc::bad_mac},
      {"no MAC in a keyed cluster", good, &keyed, errc::missing_mac},
      {"MAC without a cluster key", good_keyed, &plain, errc::unexpected_mac},
  };
  for (const auto& r : table) {
    INFO(r.what);
    // A good frame first: it is delivered; the bad one after it is not,
    // and nothing after the bad one either.
    auto stream = encode_frame(1, bytes_of("ok"), *r.options);
    stream.insert(stream.end(), r.bytes.begin(), r.bytes.end());
    const auto after = encode_frame(2, bytes_of("after"), *r.options);
    stream.insert(stream.end(), after.begin(), after.end());
    const auto result = decode_all(stream, *r.options);
    CHECK(result.error == r.expected);
    REQUIRE(result.frames.size() == 1);
    CHECK(result.frames[0].payload == bytes_of("ok"));
  }
}

TEST_CASE("an oversized frame is refused from its header alone", "[transport][frame]") {
  frame_options options;
  options.max_frame_size = 1024;
  const auto big = encode_frame(1, std::vector<std::byte>(2048), frame_options{});
  frame_decoder decoder(options);
  decoder.feed(std::span(big).first(frame_header_size));  // the payload never arrives
  auto next = decoder.next();
  REQUIRE_FALSE(next);
  CHECK(next.error() == errc::frame_too_large);
  CHECK(decoder.failed());
  CHECK(decoder.buffered() == 0);
}

TEST_CASE("a failed decoder stays failed and ignores further bytes", "[transport][frame]") {
  frame_decoder decoder(frame_options{});
  decoder.feed(bytes_of("GET / HTTP/1.1\r\n"));
  auto first = decoder.next();
  REQUIRE_FALSE(first);
  CHECK(first.error() == errc::bad_magic);
  decoder.feed(encode_frame(1, bytes_of("late"), frame_options{}));
  auto again = decoder.next();
  REQUIRE_FALSE(again);
  CHECK(again.error() == errc::bad_magic);
  CHECK(decoder.buffered() == 0);
}

TEST_CASE("a truncated frame waits for more bytes without failing", "[transport][frame]") {
  const auto good = encode_frame(3, bytes_of("abc"), frame_options{});
  for (std::size_t length = 0; length < good.size(); ++length) {
    frame_decoder decoder(frame_options{});
    decoder.feed(std::span(good).first(length));
    auto next = decoder.next();
    REQUIRE(next);
    CHECK_FALSE(next.value());
  }
}

TEST_CASE("cluster keys shorter than 16 bytes are refused", "[transport][frame]") {
  CHECK_THROWS_AS(cluster_key(bytes_of("short")), std::invalid_argument);
}

// Frozen bytes: a change here is a protocol change; bump protocol_version
// and update docs/wire-format.md with it.
TEST_CASE("frozen frame vectors", "[transport][frame]") {
  // magic "LATC", version 3, type 7, no flags, reserved 0, length 2,
  // CRC32C, payload "hi".
  CHECK(to_hex(encode_frame(7, bytes_of("hi"), frame_options{})) ==
        "4c415443" "03" "07" "00" "00" "02000000" "a9b226ce" "6869");
  // The CRC covers the 12 header bytes before it, then the payload.
  const auto covered = bytes_of(std::string("LATC\x03\x07\x00\x00\x02\x00\x00\x00hi", 14));
  CHECK(crc32c(covered) == 0xce26b2a9u);
}

TEST_CASE("a datagram decodes only as exactly one whole frame", "[transport][frame][udp]") {
  frame_options keyed;
  keyed.key = key_of("a-cluster-key-of-some-length");
  const auto payload = bytes_of("probe");
  const auto whole = encode_frame(5, payload, keyed);

  const auto ok = decode_datagram(whole, keyed);
  REQUIRE(ok);
  CHECK(ok.value().type == 5);
  CHECK(std::equal(ok.value().payload.begin(), ok.value().payload.end(), payload.begin(), payload.end()));

  auto cut = whole;
  cut.pop_back();
  auto padded = whole;
  padded.push_back(std::byte{0});
  auto two = whole;
  two.insert(two.end(), whole.begin(), whole.end());
  auto damaged = whole;
  damaged[frame_header_size] ^= std::byte{1};
  const struct {
    const char* name;
    std::vector<std::byte> bytes;
    errc expected;
  } cases[] = {
      {"cut short by one byte", cut, errc::bad_datagram},
      {"header only", std::vector<std::byte>(whole.begin(), whole.begin() + frame_header_size), errc::bad_datagram},
      {"a byte after the frame", padded, errc::bad_datagram},
      {"two frames", two, errc::bad_datagram},
      {"empty", {}, errc::bad_datagram},
      {"payload damaged", damaged, errc::bad_checksum},
      {"not a frame", bytes_of("hello, world, hello"), errc::bad_magic},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const auto result = decode_datagram(c.bytes, keyed);
    REQUIRE_FALSE(result);
    CHECK(result.error() == c.expected);
  }
  // Without the key the MAC is unexpected, as on a stream.
  const auto unkeyed = decode_datagram(whole, frame_options{});
  REQUIRE_FALSE(unkeyed);
  CHECK(unkeyed.error() == errc::unexpected_mac);
}

}  // namespace frame_test
