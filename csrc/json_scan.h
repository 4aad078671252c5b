// JSON scanning shared by the two grammars the core reads (a safetensors
// header, header.cc; a model.safetensors.index.json, index_json.cc): UTF-8,
// strings, numbers, skipping a value, walking an object's members or an
// array's elements, nesting depth. The pieces the grammars' hot loops call
// (plain_run, read_u64, after, the members / elements walks) are inline here
// so that those loops compile them in place.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "errors.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ckptscan {

// Nesting the reference (serde_json) accepts: 127 containers in all, the
// top-level object and the tensor entry included (depth counts from 1 there).
inline constexpr int kMaxJsonDepth = 126;

namespace json {

// Returns the index of the first byte that starts an invalid sequence, or n.
// Rejects overlongs, surrogates (ED A0..BF) and code points above U+10FFFF.
size_t first_invalid_utf8(const uint8_t* s, size_t n);

// True when any byte of w is '"', '\\' or below 0x20 (may also flag a few
// neighbours of such a byte: callers then go byte by byte).
inline bool word_needs_care(uint64_t w) {
  constexpr uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  const uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
  const uint64_t has_q = (q - ones) & ~q & highs;
  const uint64_t has_b = (b - ones) & ~b & highs;
  const uint64_t has_ctl = (w - ones * 0x20) & ~w & highs;
  return (has_q | has_b | has_ctl) != 0;
}

// Index of the first byte at or after i that is '"', '\\' or a control
// character (n if none): 16 bytes per step with SSE2 (baseline on x86-64),
// 8 with plain 64-bit words elsewhere. kAscii: stop at a byte >= 0x80 too.
template <bool kAscii = false>
inline size_t plain_run(const uint8_t* p, size_t n, size_t i) {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1F);
  while (i + 16 <= n) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash)),
                               _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));  // v <= 0x1F
    if (kAscii) hit = _mm_or_si128(hit, v);  // a byte's top bit
    const int mask = _mm_movemask_epi8(hit);
    if (mask != 0) return i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
    i += 16;
  }
#endif
  while (i + 8 <= n) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (word_needs_care(w) || (kAscii && (w & 0x8080808080808080ULL) != 0)) break;
    i += 8;
  }
  while (i < n && p[i] != '"' && p[i] != '\\' && p[i] >= 0x20 && (!kAscii || p[i] < 0x80)) ++i;
  return i;
}

// ---- numbers ---------------------------------------------------------------

inline constexpr uint64_t kPow10[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
// The word-at-a-time digit code reads the first byte as the lowest.
inline constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

// How many of the 8 bytes at p are ASCII digits before the first one that is
// not (0-8). Bytewise, with no carries between bytes.
inline unsigned leading_digits(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  const uint64_t x = w ^ 0x3030303030303030ULL;  // a digit's byte becomes 0..9
  const uint64_t not_digit = (x | ((x & 0x7F7F7F7F7F7F7F7FULL) + 0x0606060606060606ULL)) & 0xF0F0F0F0F0F0F0F0ULL;
  return not_digit == 0 ? 8 : static_cast<unsigned>(__builtin_ctzll(not_digit)) >> 3;
}

// The value of the n (1-8) digits at p: moved to the top of a word (leading
// zero digits below), then combined pairwise in three multiplies.
inline uint64_t digits_value(const uint8_t* p, unsigned n) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  w = ((w & 0x0F0F0F0F0F0F0F0FULL) << (8 * (8 - n)));
  w = (w * 10 + (w >> 8)) & 0x00FF00FF00FF00FFULL;
  w = (w * 100 + (w >> 16)) & 0x0000FFFF0000FFFFULL;
  return (w * 10000 + (w >> 32)) & 0xFFFFFFFFULL;
}

// digits_value for 1-4 digits, in 32 bits.
inline uint64_t short_digits_value(const uint8_t* p, unsigned n) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  w = (w & 0x0F0F0F0FU) << (8 * (4 - n));
  w = (w * 10 + (w >> 8)) & 0x00FF00FFU;
  return (w * 100 + (w >> 16)) & 0xFFFFU;
}

// Reads the JSON non-negative integer of at most 19 digits (so it fits in 64
// bits) at q, eight digits per step. Returns the position after it, or null
// when there is none (no digit, a leading zero, 20 digits or more): the
// general path then decides what is there.
const uint8_t* read_long_u64(const uint8_t* q, const uint8_t* end, uint64_t* v);

// read_long_u64 for the common cases inline: up to 15 digits (shapes and
// offsets), not at the input's very end.
[[gnu::always_inline]] inline const uint8_t* read_u64(const uint8_t* q, const uint8_t* end, uint64_t* v) {
  if (kLittleEndian && end - q >= 16) {
    const unsigned n = leading_digits(q);
    if (n - 1 < 4) {  // 1-4 digits (most dims): the low half of the word is enough
      if (*q == '0' && n > 1) return nullptr;
      *v = short_digits_value(q, n);
      return q + n;
    }
    if (n - 1 < 7) {  // 5-7 digits
      if (*q == '0') return nullptr;
      *v = digits_value(q, n);
      return q + n;
    }
    const unsigned m = n == 8 ? leading_digits(q + 8) : 8;
    if (m < 8 && *q != '0') {  // 8-15 digits
      *v = digits_value(q, 8) * kPow10[m] + (m != 0 ? digits_value(q + 8, m) : 0);
      return q + 8 + m;
    }
  }
  return read_long_u64(q, end, v);
}

// The position after the literal `lit` when the bytes at q are it, else null
// (a constant length: the comparison compiles to a few loads).
template <size_t N>
inline const uint8_t* after(const uint8_t* q, const uint8_t* end, const char (&lit)[N]) {
  return static_cast<size_t>(end - q) >= N - 1 && std::memcmp(q, lit, N - 1) == 0 ? q + (N - 1) : nullptr;
}

inline bool is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// ---- the scanner -------------------------------------------------------------

// A cursor over n bytes of JSON with the general (any layout) readers; a
// grammar derives from it. Problems carry file offsets: `base` is the offset
// of json[0] in its file. A syntax error is fatal: it records its problem and
// throws Stop, which the grammar catches; other problems are collected.
class Scanner {
 public:
  Scanner(const uint8_t* json, size_t n, uint64_t base, std::vector<Problem>* problems,
          SuppressedCounts* suppressed)
      : p_(json), n_(n), base_(base), sink_(problems, suppressed) {}

 protected:
  struct Stop {};

  uint64_t file_offset(size_t pos) const { return base_ + pos; }
  // `msg`: a string, or a callable making it (see ProblemSink::add).
  template <class Msg>
  void problem_at(ErrorCode code, uint64_t offset, std::string_view tensor, Msg&& msg) {
    sink_.add(code, offset, tensor, std::forward<Msg>(msg));
  }
  template <class Msg>
  void problem(ErrorCode code, size_t pos, std::string_view tensor, Msg&& msg) {
    sink_.add(code, file_offset(pos), tensor, std::forward<Msg>(msg));
  }
  [[noreturn]] void fatal(ErrorCode code, size_t pos, std::string msg);
  // A fatal syntax error naming what was expected at i_ and what is there.
  [[noreturn]] void expected(const char* what);

  void skip_ws() {
    while (i_ < n_ && is_ws(p_[i_])) ++i_;
  }
  bool peek(char c) {
    skip_ws();
    return i_ < n_ && p_[i_] == static_cast<uint8_t>(c);
  }
  void expect(char c, const char* what) {
    if (!peek(c)) expected(what);
    ++i_;
  }

  // Decodes the string at i_ into *out; last_plain_ then says whether it had
  // no escapes (its bytes are in the input as they are).
  void parse_string(std::string* out);
  // The object / array whose opening bracket is at i_, one callback per
  // member (key decoded into *key, i_ past the ':'; the callback gets the
  // key's position) or element; the callback consumes the value. Returns
  // after the closing bracket.
  template <class F>
  void members(std::string* key, F&& on_member) {
    members(key, [] { return false; }, std::forward<F>(on_member));
  }
  // The same, trying fast() first at each member: true when it read the
  // whole member itself.
  template <class Fast, class F>
  void members(std::string* key, Fast&& fast, F&& on_member);
  template <class F>
  void elements(F&& on_element);
  // Skips any value; `depth` is its nesting level (fatal past kMaxJsonDepth).
  void skip_value(int depth);
  // Skips a JSON number (fatal if malformed); true when its magnitude is
  // beyond the largest double, which the reference rejects even in ignored fields.
  bool skip_number();
  // Parses a JSON number that must be a non-negative integer fitting u64.
  // Returns false (after recording a kBadNumber problem) when it is a valid
  // JSON number of another kind; a malformed number is fatal.
  bool parse_u64(uint64_t* v, std::string_view tensor, const char* field);
  // An array of such numbers into *out; *ok = false (and a problem of `code`
  // or kBadNumber) when it is not one.
  void parse_u64_array(std::vector<uint64_t>* out, std::string_view tensor, const char* field, ErrorCode code,
                       bool* ok);

  const uint8_t* p_;
  size_t n_;
  size_t i_ = 0;
  uint64_t base_;
  ProblemSink sink_;
  bool last_plain_ = false;  // the last string had no escapes: its bytes are in p_
  std::string scratch_;

 private:
  void parse_hex4(uint32_t* cp);
};

template <class Fast, class F>
void Scanner::members(std::string* key, Fast&& fast, F&& on_member) {
  ++i_;
  if (peek('}')) {
    ++i_;
    return;
  }
  for (;;) {
    skip_ws();
    if (!fast()) {
      const size_t kpos = i_;
      parse_string(key);
      expect(':', "':'");
      on_member(kpos);
    }
    if (!peek(',')) break;
    ++i_;
  }
  expect('}', "',' or '}'");
}

template <class F>
void Scanner::elements(F&& on_element) {
  ++i_;
  if (peek(']')) {
    ++i_;
    return;
  }
  for (;;) {
    on_element();
    if (!peek(',')) break;
    ++i_;
  }
  expect(']', "',' or ']'");
}

}  // namespace json
}  // namespace ckptscan
