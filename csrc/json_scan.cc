#include "json_scan.h"

#include <algorithm>

namespace ckptscan {
namespace json {
namespace {

void append_utf8(std::string* out, uint32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// True when the (valid) JSON number text s[0, n) is beyond the largest double
// (1.7976931348623157e308, compared to 17 significant digits): serde_json, so
// the reference, rejects such a number ("number out of range") wherever it is.
bool beyond_double(const uint8_t* s, size_t n) {
  size_t i = (n > 0 && s[0] == '-') ? 1 : 0;
  int64_t int_len = 0, seen = 0, first = -1;  // first: index of the first non-zero digit
  std::string lead;                           // up to 17 digits from there
  bool frac = false;
  for (; i < n && s[i] != 'e' && s[i] != 'E'; ++i) {
    if (s[i] == '.') {
      frac = true;
      continue;
    }
    if (!frac) ++int_len;
    if (first < 0 && s[i] != '0') first = seen;
    if (first >= 0 && lead.size() < 17) lead.push_back(static_cast<char>(s[i]));
    ++seen;
  }
  if (first < 0) return false;  // zero
  int64_t x = 0;
  if (i < n) {
    ++i;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    for (; i < n; ++i) x = std::min<int64_t>(x * 10 + (s[i] - '0'), 1'000'000'000);
    if (neg) x = -x;
  }
  const int64_t e = int_len - 1 - first + x;  // decimal exponent of the first digit
  if (e != 308) return e > 308;
  lead.resize(17, '0');
  return lead > "17976931348623158";
}

}  // namespace

// Returns the index of the first byte that starts an invalid sequence, or n.
// Rejects overlongs, surrogates (ED A0..BF) and code points above U+10FFFF.
size_t first_invalid_utf8(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    // ASCII fast path: 64 bytes at a time with SSE2, then 8.
#if defined(__SSE2__)
    auto load = [&](size_t k) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + k)); };
    while (i + 64 <= n &&
           _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(load(i), load(i + 16)),
                                          _mm_or_si128(load(i + 32), load(i + 48)))) == 0) {
      i += 64;
    }
    while (i + 16 <= n && _mm_movemask_epi8(load(i)) == 0) i += 16;
    if (i >= n) break;
#endif
    if (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, s + i, 8);
      if ((w & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    const uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (i + len > n) return i;
    if (s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
    }
    i += len;
  }
  return n;
}

const uint8_t* read_long_u64(const uint8_t* q, const uint8_t* end, uint64_t* v) {
  const uint8_t* const start = q;
  uint64_t acc = 0;
  for (;;) {
    if (!kLittleEndian || end - q < 8) {  // the header's last bytes: one at a time
      for (unsigned d; q < end && q - start <= 19 && (d = static_cast<unsigned>(*q) - '0') < 10; ++q) {
        acc = acc * 10 + d;
      }
      break;
    }
    const unsigned n = leading_digits(q);
    if (n == 0) break;
    acc = acc * kPow10[n] + digits_value(q, n);
    q += n;
    if (n < 8 || q - start > 19) break;
  }
  const ptrdiff_t len = q - start;
  if (len == 0 || len > 19 || (*start == '0' && len > 1)) return nullptr;
  *v = acc;
  return q;
}

void Scanner::fatal(ErrorCode code, size_t pos, std::string msg) {
  problem(code, pos, {}, std::move(msg));
  throw Stop{};
}

void Scanner::expected(const char* what) {
  if (i_ >= n_) fatal(ErrorCode::kJsonSyntax, i_, std::string("unexpected end of the JSON, expected ") + what);
  std::string msg = std::string("expected ") + what + ", found ";
  const uint8_t c = p_[i_];
  if (c >= 0x20 && c < 0x7F) {
    msg += '\'';
    msg += static_cast<char>(c);
    msg += '\'';
  } else {
    msg += "byte 0x";
    const char* hex = "0123456789abcdef";
    msg += hex[c >> 4];
    msg += hex[c & 15];
  }
  fatal(ErrorCode::kJsonSyntax, i_, std::move(msg));
}

void Scanner::parse_hex4(uint32_t* cp) {
  if (i_ + 4 > n_) fatal(ErrorCode::kJsonSyntax, i_, "truncated \\u escape");
  uint32_t v = 0;
  for (int k = 0; k < 4; ++k) {
    const uint8_t c = p_[i_ + k];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else fatal(ErrorCode::kJsonSyntax, i_ + k, "invalid hex digit in \\u escape");
  }
  i_ += 4;
  *cp = v;
}

void Scanner::parse_string(std::string* out) {
  out->clear();
  last_plain_ = false;
  if (i_ >= n_ || p_[i_] != '"') expected("a string");
  const size_t start = ++i_;
  // Fast path: runs of plain bytes (UTF-8 was validated up front).
  for (;;) {
    i_ = plain_run(p_, n_, i_);
    if (i_ >= n_) fatal(ErrorCode::kJsonSyntax, start - 1, "unterminated string");
    const uint8_t c = p_[i_];
    if (c == '"') {
      out->append(reinterpret_cast<const char*>(p_ + start), i_ - start);
      last_plain_ = true;
      ++i_;
      return;
    }
    if (c == '\\') break;
    if (c < 0x20) fatal(ErrorCode::kJsonSyntax, i_, "control character in string");
    ++i_;
  }
  // Slow path: escapes.
  out->append(reinterpret_cast<const char*>(p_ + start), i_ - start);
  while (i_ < n_) {
    const uint8_t c = p_[i_];
    if (c == '"') {
      ++i_;
      return;
    }
    if (c < 0x20) fatal(ErrorCode::kJsonSyntax, i_, "control character in string");
    if (c != '\\') {
      out->push_back(static_cast<char>(c));
      ++i_;
      continue;
    }
    const size_t esc = i_++;
    if (i_ >= n_) break;
    switch (p_[i_++]) {
      case '"': out->push_back('"'); break;
      case '\\': out->push_back('\\'); break;
      case '/': out->push_back('/'); break;
      case 'b': out->push_back('\b'); break;
      case 'f': out->push_back('\f'); break;
      case 'n': out->push_back('\n'); break;
      case 'r': out->push_back('\r'); break;
      case 't': out->push_back('\t'); break;
      case 'u': {
        uint32_t cp;
        parse_hex4(&cp);
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
          fatal(ErrorCode::kJsonSyntax, esc, "lone low surrogate in \\u escape");
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (i_ + 2 > n_ || p_[i_] != '\\' || p_[i_ + 1] != 'u') {
            fatal(ErrorCode::kJsonSyntax, esc, "high surrogate not followed by a low surrogate");
          }
          i_ += 2;
          uint32_t lo;
          parse_hex4(&lo);
          if (lo < 0xDC00 || lo > 0xDFFF) {
            fatal(ErrorCode::kJsonSyntax, esc, "high surrogate not followed by a low surrogate");
          }
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        append_utf8(out, cp);
        break;
      }
      default:
        fatal(ErrorCode::kJsonSyntax, esc, "invalid escape in string");
    }
  }
  fatal(ErrorCode::kJsonSyntax, start - 1, "unterminated string");
}

bool Scanner::skip_number() {
  const size_t start = i_;
  if (i_ < n_ && p_[i_] == '-') ++i_;
  if (i_ >= n_ || p_[i_] < '0' || p_[i_] > '9') fatal(ErrorCode::kJsonSyntax, start, "invalid number");
  if (p_[i_] == '0') {
    ++i_;
  } else {
    while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') ++i_;
  }
  if (i_ < n_ && p_[i_] == '.') {
    ++i_;
    if (i_ >= n_ || p_[i_] < '0' || p_[i_] > '9') fatal(ErrorCode::kJsonSyntax, start, "invalid number");
    while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') ++i_;
  }
  if (i_ < n_ && (p_[i_] == 'e' || p_[i_] == 'E')) {
    ++i_;
    if (i_ < n_ && (p_[i_] == '+' || p_[i_] == '-')) ++i_;
    if (i_ >= n_ || p_[i_] < '0' || p_[i_] > '9') fatal(ErrorCode::kJsonSyntax, start, "invalid number");
    while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') ++i_;
  }
  if (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') fatal(ErrorCode::kJsonSyntax, start, "invalid number (leading zero)");
  return beyond_double(p_ + start, i_ - start);
}

bool Scanner::parse_u64(uint64_t* v, std::string_view tensor, const char* field) {
  skip_ws();
  const size_t start = i_;
  uint64_t acc = 0;
  bool overflow = false;
  while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') {
    const uint64_t d = p_[i_] - '0';
    if (acc > (UINT64_MAX - d) / 10) overflow = true;
    acc = acc * 10 + d;
    ++i_;
  }
  const bool plain = i_ > start && (i_ == start + 1 || p_[start] != '0') &&
                     (i_ >= n_ || (p_[i_] != '.' && p_[i_] != 'e' && p_[i_] != 'E'));
  if (plain && !overflow) {
    *v = acc;
    return true;
  }
  i_ = start;
  skip_number();  // fatal if not a JSON number at all
  problem(ErrorCode::kBadNumber, start, tensor, [&] {
    return std::string(field) + " holds " + shown({reinterpret_cast<const char*>(p_ + start), i_ - start}) +
           (overflow && plain ? ", which does not fit in 64 bits" : ", which is not a non-negative integer");
  });
  return false;
}

void Scanner::skip_value(int depth) {
  if (depth > kMaxJsonDepth) {
    fatal(ErrorCode::kJsonDepth, i_, "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  skip_ws();
  if (i_ >= n_) expected("a value");
  const uint8_t c = p_[i_];
  if (c == '"') {
    parse_string(&scratch_);
  } else if (c == '{') {
    members(&scratch_, [&](size_t) { skip_value(depth + 1); });
  } else if (c == '[') {
    elements([&] { skip_value(depth + 1); });
  } else if (c == '-' || (c >= '0' && c <= '9')) {
    const size_t pos = i_;
    if (skip_number()) {
      problem(ErrorCode::kBadNumber, pos, {}, [&] {
        return "number " + shown({reinterpret_cast<const char*>(p_ + pos), i_ - pos}) +
               " is beyond the range of a 64-bit float";
      });
    }
  } else {
    for (const char* lit : {"true", "false", "null"}) {
      const size_t len = std::strlen(lit);
      if (i_ + len <= n_ && std::memcmp(p_ + i_, lit, len) == 0) {
        i_ += len;
        return;
      }
    }
    expected("a value");
  }
}

void Scanner::parse_u64_array(std::vector<uint64_t>* out, std::string_view tensor, const char* field,
                              ErrorCode code, bool* ok) {
  out->clear();
  skip_ws();
  if (i_ >= n_ || p_[i_] != '[') {
    const size_t pos = i_;
    skip_value(2);
    problem(code, pos, tensor, [&] { return std::string(field) + " is not an array"; });
    *ok = false;
    return;
  }
  elements([&] {
    skip_ws();
    const uint8_t c = i_ < n_ ? p_[i_] : 0;
    if (c == '-' || (c >= '0' && c <= '9')) {
      uint64_t v;
      if (parse_u64(&v, tensor, field)) out->push_back(v);
      else *ok = false;
    } else {
      const size_t pos = i_;
      skip_value(3);
      problem(code, pos, tensor, [&] { return std::string(field) + " holds a value that is not a number"; });
      *ok = false;
    }
  });
}

}  // namespace json
}  // namespace ckptscan
