// libFuzzer target over ckptscan::parse_header_bytes. The input is the first
// bytes of a file. Each input is parsed twice:
//   1. the whole input as a complete file (file_size = size);
//   2. when the input has at least 8 bytes, all but its last 8 as the file's
//      first bytes, with the last 8 choosing the file's size (larger: trailing
//      bytes or a header the prefix does not hold; smaller: truncation; huge:
//      overflow paths).
// After each parse the invariants of fuzz/invariants.h are checked; a valid
// header must survive a canonical rewrite; and two parses of the same complete
// header bytes must agree on everything but truncation / trailing bytes.
// The input past its first 8 bytes is also read as an index.json and joined
// with the header's table (fuzz/invariants.h: check_index).
// Any violation prints a line and abort()s.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "header.h"
#include "index_json.h"
#include "invariants.h"

namespace {

void check(const ckptscan::ParsedHeader& h, uint64_t file_size, const char* which) {
  std::string err = ckptscan_fuzz::check_header(h, file_size);
  if (err.empty()) err = ckptscan_fuzz::check_round_trip(h);
  if (!err.empty()) {
    std::fprintf(stderr, "INVARIANT VIOLATION (%s parse, file_size=%llu): %s\n", which,
                 static_cast<unsigned long long>(file_size), err.c_str());
    std::abort();
  }
}

uint64_t le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];
  return v;
}

// True when parse_header_bytes got past the length prefix (the JSON was parsed).
bool reached_json(const uint8_t* prefix, size_t len, uint64_t file_size) {
  if (len < 8 || file_size < 8) return false;
  const uint64_t n = le64(prefix);
  return n <= ckptscan::kMaxHeaderLen && 8 + n <= file_size && 8 + n <= len;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ckptscan::ParsedHeader whole = ckptscan::parse_header_bytes(data, size, size);
  check(whole, size, "whole-input");
  if (size > 8) {  // the same bytes as an index.json, joined with the header's table
    const std::string err =
        ckptscan_fuzz::check_index(ckptscan::parse_index_json(data + 8, size - 8), size - 8, whole);
    if (!err.empty()) {
      std::fprintf(stderr, "INDEX INVARIANT VIOLATION: %s\n", err.c_str());
      std::abort();
    }
  }
  if (size < 8) return 0;

  const size_t plen = size - 8;
  const uint64_t x = le64(data + plen);
  const uint64_t arg = x >> 2;
  uint64_t file_size = 0;
  switch (x & 3) {
    case 0: file_size = plen + (arg & 0xFFFFF); break;                        // a little larger
    case 1: file_size = plen - std::min<uint64_t>(plen, arg & 0xFFF); break;  // a little smaller
    case 2: file_size = arg; break;                                           // anything up to 2^62
    case 3: file_size = UINT64_MAX - (arg & 0xFFFF); break;                   // near the top
  }
  const ckptscan::ParsedHeader sized = ckptscan::parse_header_bytes(data, plen, file_size);
  check(sized, file_size, "sized");

  // The same header bytes with the prefix as the whole file: only the coverage
  // verdict may change.
  if (reached_json(data, plen, file_size) && reached_json(data, plen, plen)) {
    const ckptscan::ParsedHeader exact = ckptscan::parse_header_bytes(data, plen, plen);
    check(exact, plen, "prefix-as-file");
    const std::string err = ckptscan_fuzz::check_same_header(sized, exact);
    if (!err.empty()) {
      std::fprintf(stderr, "INVARIANT VIOLATION (file_size %llu vs %zu): %s\n",
                   static_cast<unsigned long long>(file_size), plen, err.c_str());
      std::abort();
    }
  }
  return 0;
}
