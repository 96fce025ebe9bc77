// The decoder as a boundary for untrusted bytes: a corruption table that
// asserts the exact error for each class of bad input, allocation bounds,
// and frozen wire vectors so that a format change fails a test.
#include <cstdint>
#include <string>

#include <catch2/catch.hpp>

#include "hex.hpp"
#include "lattice/crdt/codec.hpp"
#include "lattice/crdt/g_counter.hpp"
#include "lattice/crdt/lww_element_set.hpp"
#include "lattice/crdt/lww_map.hpp"
#include "lattice/crdt/or_set.hpp"
#include "lattice/crdt/two_phase_set.hpp"

// Everything here is in a namespace of its own so that the unity build
// (CMAKE_UNITY_BUILD, scripts/test.sh) can compile test files together.
namespace codec_test {

using namespace lattice::crdt;
using lattice::testing::from_hex;
using lattice::testing::to_hex;

namespace {

using config_map = lww_map<std::string, int>;

// Hand-built input: the marker, then whatever the test writes.
template <class... T>
std::vector<std::byte> bytes_of(const T&... values) {
  std::vector<std::byte> out;
  wire_output_archive archive(out);
  archive(values...);
  return out;
}

std::uint64_t count(std::uint64_t n) { return n; }  // a size tag is a u64 on the wire

template <class T>
std::error_code error_of(const std::vector<std::byte>& bytes) {
  const auto result = decode<T>(bytes);
  return result ? std::error_code{} : result.error();
}

}  // namespace

TEST_CASE("decode: corruption table", "[crdt][codec]") {
  const hlc_timestamp t{100, 0, 1};
  const auto valid = encode(config_map{}.put("a", 1, t));
  REQUIRE(decode<config_map>(valid));

  CHECK(error_of<config_map>({}) == errc::truncated);
  auto big_endian = valid;
  big_endian[0] = std::byte{0};
  CHECK(error_of<config_map>(big_endian) == errc::bad_endianness_marker);
  auto bad_marker = valid;
  bad_marker[0] = std::byte{7};
  CHECK(error_of<config_map>(bad_marker) == errc::bad_endianness_marker);
  CHECK(error_of<config_map>({valid.begin(), valid.end() - 1}) == errc::truncated);
  auto trailing = valid;
  trailing.push_back(std::byte{0});
  CHECK(error_of<config_map>(trailing) == errc::trailing_bytes);

  // A count far beyond the input is refused before anything is allocated.
  CHECK(error_of<config_map>(bytes_of(hlc_timestamp{}, count(1ull << 60))) == errc::oversized);
  // So is a string length.
  CHECK(error_of<config_map>(bytes_of(hlc_timestamp{}, count(1), count(~0ull))) == errc::oversized);
  // The hand-built entries below are (key, stamp, is_nullopt flag, value):
  // cereal writes an optional as "is it empty" and then the value if not.
  const bool present = false;
  const bool tombstone = true;
  REQUIRE(decode<config_map>(bytes_of(hlc_timestamp{}, count(1), std::string("a"), t, present, 1)));
  // A bool that is neither 0 nor 1 (the optional's flag).
  CHECK(error_of<config_map>(bytes_of(hlc_timestamp{}, count(1), std::string("a"), t,
                                      std::uint8_t{2}, 1)) == errc::malformed);
  // Keys out of canonical (key hash, key) order, and duplicated keys.
  const bool a_first = stable_hash(std::string("a")) < stable_hash(std::string("b"));
  const std::string first = a_first ? "a" : "b";
  const std::string second = a_first ? "b" : "a";
  REQUIRE(decode<config_map>(bytes_of(hlc_timestamp{}, count(2), first, t, present, 1, second, t,
                                      present, 1)));
  CHECK(error_of<config_map>(bytes_of(hlc_timestamp{}, count(2), second, t, present, 1, first, t,
                                      present, 1)) == errc::malformed);
  CHECK(error_of<config_map>(bytes_of(hlc_timestamp{}, count(2), std::string("a"), t, present, 1,
                                      std::string("a"), t, present, 2)) == errc::malformed);
  // A tombstone below the horizon cannot exist in a compacted map.
  REQUIRE(decode<config_map>(bytes_of(hlc_timestamp{50, 0, 0}, count(1), std::string("a"), t,
                                      tombstone)));
  CHECK(error_of<config_map>(bytes_of(hlc_timestamp{200, 0, 0}, count(1), std::string("a"), t,
                                      tombstone)) == errc::malformed);

  // Other types' invariants.
  CHECK(error_of<g_counter>(bytes_of(count(1), replica_id{1}, std::uint64_t{0}, std::uint64_t{5})) ==
        errc::malformed);  // a value without any update
  CHECK(error_of<two_phase_set<int>>(bytes_of(count(1), 3, count(1), 3)) ==
        errc::malformed);  // present and removed at once
  // or_set: a dot that its own context has not seen.
  CHECK(error_of<or_set<int>>(bytes_of(count(1), 42, count(1), dot{1, 1}, count(0), count(0))) ==
        errc::malformed);
  // dot_context: a cloud dot contiguous with the vector is not canonical.
  CHECK(error_of<dot_context>(bytes_of(count(1), replica_id{1}, std::uint64_t{2}, count(1),
                                       dot{1, 3})) == errc::malformed);
}

TEST_CASE("decode: every strict prefix of a valid encoding is rejected", "[crdt][codec]") {
  lww_element_set<std::string> set;
  set.insert("/HelloWorldService/1.0.0/10.0.0.1:8080", hlc_timestamp{1, 2, 3});
  set.remove("/HelloWorldService/1.0.0/10.0.0.2:8080", hlc_timestamp{4, 5, 6});
  const auto bytes = encode(set);
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    const auto prefix = decode<decltype(set)>(std::span(bytes).first(length));
    REQUIRE_FALSE(prefix);
    // Cut inside a fixed-size field: truncated. Cut after a length that
    // promises more than is left: oversized. Never malformed: the bytes
    // that are there are valid.
    INFO("prefix length " << length << ": " << prefix.error().message());
    CHECK((prefix.error() == errc::truncated || prefix.error() == errc::oversized));
    if (length == 0) CHECK(prefix.error() == errc::truncated);
  }
}

TEST_CASE("decode: a count larger than the input is refused before anything is read", "[crdt][codec]") {
  // A horizon, then a map claiming 2^40 entries with no bytes behind them:
  // refused as oversized, not attempted entry by entry. (That a refused
  // payload leaves the replica's state untouched is tested where payloads
  // meet the state: the protocol's "bad input" tests.)
  const auto incoming = decode<config_map>(bytes_of(hlc_timestamp{}, count(1ull << 40)));
  REQUIRE_FALSE(incoming);
  CHECK(incoming.error() == errc::oversized);
}

// Frozen vectors: the exact bytes of a few values. If one of these fails,
// the wire format changed: bump the protocol version and say so in
// docs/wire-format.md before updating the vector.
TEST_CASE("frozen wire vectors", "[crdt][codec]") {
  SECTION("hlc_timestamp") {
    CHECK(to_hex(encode(hlc_timestamp{0x0102030405060708, 9, 10})) ==
          "01" "0807060504030201" "09000000" "0a00000000000000");
  }
  SECTION("g_counter") {
    g_counter c;
    c.increment(1, 2);
    c.increment(1, 3);
    CHECK(to_hex(encode(c)) ==
          "01" "0100000000000000"                                      // one origin
          "0100000000000000" "0200000000000000" "0500000000000000");  // id 1: seq 2, value 5
  }
  SECTION("lww_element_set") {
    lww_element_set<std::string> s;
    s.insert("a", hlc_timestamp{100, 1, 7});
    s.remove("b", hlc_timestamp{200, 0, 7});
    const std::string expected =
        "01"
        "0000000000000000" "00000000" "0000000000000000"              // horizon
        "0200000000000000"                                            // two entries, in
                                                                      // key-hash order:
        "0100000000000000" "62"                                       // "b"
        "c800000000000000" "00000000" "0700000000000000" "01"         // stamp, nullopt
        "0100000000000000" "61"                                       // "a"
        "6400000000000000" "01000000" "0700000000000000" "00";        // stamp, not nullopt
    CHECK(to_hex(encode(s)) == expected);
    CHECK(decode<decltype(s)>(from_hex(expected)).value() == s);
  }
  SECTION("lww_map") {
    lww_map<std::string, std::string> m;
    m.put("k", "v", hlc_timestamp{1, 2, 3});
    CHECK(to_hex(encode(m)) ==
          "01" "0000000000000000" "00000000" "0000000000000000"
          "0100000000000000" "0100000000000000" "6b"
          "0100000000000000" "02000000" "0300000000000000" "00" "0100000000000000" "76");
  }
  SECTION("or_set") {
    or_set<int> s;
    s.insert(9, 42);
    CHECK(to_hex(encode(s)) ==
          "01" "0100000000000000" "2a000000"                           // {42:
          "0100000000000000" "0900000000000000" "0100000000000000"     //   [(9,1)]}
          "0100000000000000" "0900000000000000" "0100000000000000"     // vector {9: 1}
          "0000000000000000");                                         // empty cloud
  }
}

TEST_CASE("stable_hash is stable across runs and builds", "[crdt][codec]") {
  // XXH3-64 of the canonical encoding; a change here breaks mixed-version
  // anti-entropy, exactly like a wire change.
  // Frozen values, computed once: a hash compared with itself in one
  // process would pass whatever the function did.
  CHECK(stable_hash(std::string("lattice")) == 0x532b5b1412990c07ull);
  CHECK(stable_hash(std::string("lattice!")) == 0x609a748064efd095ull);
  CHECK(hash_bytes(from_hex("")) == 0x2d06800538d394c2ull);
}

}  // namespace codec_test
