#include "header.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <numeric>
#include <random>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ckptscan {
namespace {

constexpr uint64_t kPrefixLen = 8;

std::string format_u64(uint64_t v) { return std::to_string(v); }

// ---- UTF-8 ----------------------------------------------------------------

// Returns the index of the first byte that starts an invalid sequence, or n.
// Rejects overlongs, surrogates (ED A0..BF) and code points above U+10FFFF.
size_t first_invalid_utf8(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    // ASCII fast path: 16 bytes at a time with SSE2, then 8.
#if defined(__SSE2__)
    while (i + 16 <= n &&
           _mm_movemask_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))) == 0) {
      i += 16;
    }
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

// Index of the first byte at or after i that is '"', '\\' or a control
// character (n if none): 16 bytes per step with SSE2 (baseline on x86-64),
// 8 with plain 64-bit words elsewhere.
inline size_t plain_run(const uint8_t* p, size_t n, size_t i) {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1F);
  while (i + 16 <= n) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash)),
                                     _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));  // v <= 0x1F
    const int mask = _mm_movemask_epi8(hit);
    if (mask != 0) return i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
    i += 16;
  }
#endif
  while (i + 8 <= n) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (word_needs_care(w)) break;
    i += 8;
  }
  while (i < n && p[i] != '"' && p[i] != '\\' && p[i] >= 0x20) ++i;
  return i;
}

// ---- name templates ------------------------------------------------------------

// Position of the first '.' in p[i, n), or n; 8 bytes per step.
inline size_t next_dot(const char* p, size_t i, size_t n) {
  constexpr uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  while (i + 8 <= n) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    const uint64_t x = w ^ (ones * '.');
    const uint64_t hit = (x - ones) & ~x & highs;  // exact for the lowest match
    if (hit != 0) return i + static_cast<size_t>(__builtin_ctzll(hit) >> 3);
    i += 8;
  }
  while (i < n && p[i] != '.') ++i;
  return i;
}

// Writes `name`'s template to out (room for 2 * size + 2 bytes: "{}" may
// replace a one-digit component) and its integers to ints; returns the length.
size_t template_into(std::string_view name, char* out, std::vector<int64_t>* ints) {
  ints->clear();
  const char* p = name.data();
  const size_t n = name.size();
  size_t w = 0;
  for (size_t start = 0;;) {
    const size_t end = next_dot(p, start, n);
    const size_t len = end - start;
    bool numeric = len > 0 && len <= 18 && static_cast<unsigned>(p[start]) - '0' < 10 &&
                   (len == 1 || p[start] != '0');
    int64_t v = 0;
    for (size_t k = start; numeric && k < end; ++k) {
      const unsigned d = static_cast<unsigned>(p[k]) - '0';
      numeric = d < 10;
      v = v * 10 + static_cast<int64_t>(d);
    }
    if (numeric) {
      out[w++] = '{';
      out[w++] = '}';
      ints->push_back(v);
    } else if (len == 2 && p[start] == '{' && p[start + 1] == '}') {
      // A literal "{}" component could not be told apart from a number's
      // ("{}.0" and "0.{}" would both be "{}.{}"): such a name is its own
      // template, with no integers.
      std::memcpy(out, p, n);
      ints->clear();
      return n;
    } else {
      std::memcpy(out + w, p + start, len);
      w += len;
    }
    if (end == n) return w;
    out[w++] = '.';
    start = end + 1;
  }
}

// ---- the tensor table under construction ----------------------------------

struct Entry {
  bool has_dtype = false, has_shape = false, has_offsets = false;
  bool valid = true;  // false once a field is present but unusable
  bool offsets_ok = false;
  Dtype dtype = Dtype::U8;
  std::vector<uint64_t> shape;
  uint64_t begin = 0, end = 0;
  // Reuses the shape's storage: one entry object serves the whole header.
  void reset() {
    has_dtype = has_shape = has_offsets = offsets_ok = false;
    valid = true;
    shape.clear();
    begin = end = 0;
  }
};

// A keyed hash for the two open-addressing tables below. The seed is drawn
// once per process so that a hostile header cannot precompute collisions
// (which would turn each insert into a long probe).
uint64_t hash_seed() {
  static const uint64_t seed = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ 0x9E3779B97F4A7C15ULL;
  }();
  return seed;
}

inline uint64_t hash_bytes(std::string_view s, uint64_t seed) {
  const char* p = s.data();
  size_t n = s.size();
  uint64_t h = seed ^ (n * 0x9E3779B97F4A7C15ULL);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdULL;
    h ^= h >> 32;
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  std::memcpy(&w, p, n);
  h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
  return h ^ (h >> 29);
}

// Template string -> id; the strings themselves live in the table's
// `templates` (looked up by id, so the table may grow freely).
class TemplateIndex {
 public:
  uint32_t find_or_add(std::string_view tmpl, std::vector<std::string>* templates) {
    if ((templates->size() + 1) * 2 > ids_.size()) grow(*templates);
    const uint64_t h = hash_bytes(tmpl, seed_);
    const size_t mask = ids_.size() - 1;
    size_t i = h & mask;
    for (; ids_[i] != kEmpty; i = (i + 1) & mask) {
      if (hashes_[i] == h && (*templates)[ids_[i]] == tmpl) return ids_[i];
    }
    ids_[i] = static_cast<uint32_t>(templates->size());
    hashes_[i] = h;
    templates->emplace_back(tmpl);
    return ids_[i];
  }

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;
  void grow(const std::vector<std::string>& templates) {
    const size_t size = std::max<size_t>(64, ids_.size() * 2);
    ids_.assign(size, kEmpty);
    hashes_.assign(size, 0);
    for (uint32_t id = 0; id < templates.size(); ++id) {
      const uint64_t h = hash_bytes(templates[id], seed_);
      size_t i = h & (size - 1);
      while (ids_[i] != kEmpty) i = (i + 1) & (size - 1);
      ids_[i] = id;
      hashes_[i] = h;
    }
  }
  uint64_t seed_ = hash_seed();
  std::vector<uint32_t> ids_;
  std::vector<uint64_t> hashes_;
};

// Open-addressing set of names. A name is kept by pointer when its bytes
// outlive the set (a key without escapes, read in place from the header),
// and copied otherwise.
class NameSet {
 public:
  // Sizes the table for n names up front (no rehashing on the way).
  void reserve(size_t n) {
    size_t cap = 64;
    while (cap < 2 * n) cap *= 2;
    if (cap > slots_.size()) rehash(cap);
  }
  // Returns false if the name was already present. `stable`: key's bytes
  // stay valid as long as the set.
  bool insert(std::string_view key, bool stable) {
    if ((count_ + 1) * 2 > slots_.size()) rehash(std::max<size_t>(64, slots_.size() * 2));
    const uint64_t h = hash_bytes(key, seed_);
    const size_t mask = slots_.size() - 1;
    size_t i = h & mask;
    for (; slots_[i].p != nullptr; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.hash == h && std::string_view(s.p, s.len) == key) return false;
    }
    if (!stable) key = copies_.emplace_back(key);
    slots_[i] = {h, key.data(), key.size()};
    ++count_;
    return true;
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    const char* p = nullptr;
    size_t len = 0;
  };
  void rehash(size_t cap) {
    std::vector<Slot> old(cap);
    old.swap(slots_);
    for (const Slot& s : old) {
      if (s.p == nullptr) continue;
      size_t i = s.hash & (cap - 1);
      while (slots_[i].p != nullptr) i = (i + 1) & (cap - 1);
      slots_[i] = s;
    }
  }
  uint64_t seed_ = hash_seed();
  std::vector<Slot> slots_;
  std::deque<std::string> copies_;  // a deque: its strings never move
  size_t count_ = 0;
};

// ---- the JSON parser -------------------------------------------------------

class Parser {
 public:
  Parser(const uint8_t* json, size_t n, ParsedHeader* out)
      : p_(json), n_(n), out_(out), problems_(&out->problems), base_(kPrefixLen) {}
  // For a model.safetensors.index.json: offsets are from the file's start.
  Parser(const uint8_t* json, size_t n, IndexTable* index)
      : p_(json), n_(n), index_(index), problems_(&index->problems), base_(0) {}

  void run();
  void run_index();

 private:
  // A fatal syntax problem: parsing stops; semantic ones are collected.
  struct Stop {};

  uint64_t file_offset(size_t pos) const { return base_ + pos; }
  void problem_at(ErrorCode code, uint64_t offset, std::string_view tensor, std::string msg) {
    problems_->push_back({code, offset, std::string(tensor), std::move(msg)});
  }
  void problem(ErrorCode code, size_t pos, std::string_view tensor, std::string msg) {
    problem_at(code, file_offset(pos), tensor, std::move(msg));
  }
  [[noreturn]] void fatal(ErrorCode code, size_t pos, std::string msg) {
    problem(code, pos, {}, std::move(msg));
    throw Stop{};
  }
  [[noreturn]] void expected(const char* what) {
    if (i_ >= n_) fatal(ErrorCode::kJsonSyntax, i_, std::string("unexpected end of header, expected ") + what);
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

  void skip_ws() {
    while (i_ < n_ && (p_[i_] == ' ' || p_[i_] == '\n' || p_[i_] == '\r' || p_[i_] == '\t')) ++i_;
  }
  bool peek(char c) {
    skip_ws();
    return i_ < n_ && p_[i_] == static_cast<uint8_t>(c);
  }
  void expect(char c, const char* what) {
    if (!peek(c)) expected(what);
    ++i_;
  }

  void parse_string(std::string* out);
  // The object / array whose opening bracket is at i_, one callback per
  // member (key decoded into *key, i_ past the ':') or element; the callback
  // consumes the value. Returns after the closing bracket.
  template <class F>
  void members(std::string* key, F&& on_member);
  template <class F>
  void elements(F&& on_element);
  void parse_hex4(uint32_t* cp);
  void skip_value(int depth);
  // Skips a JSON number (fatal if malformed); true when its magnitude is
  // beyond the largest double, which the reference rejects even in ignored fields.
  bool skip_number();
  // Parses a JSON number that must be a non-negative integer fitting u64.
  // Returns false (after recording a problem) when it is a valid JSON number
  // of another kind; a malformed number is fatal.
  bool parse_u64(uint64_t* v, std::string_view tensor, const char* field);
  void parse_u64_array(std::vector<uint64_t>* out, std::string_view tensor, const char* field,
                       ErrorCode code, bool* ok);
  void parse_metadata(size_t key_pos);
  void parse_entry(std::string_view name, Entry* e);
  // The entry exactly as safetensors writers lay it out, no whitespace:
  // {"dtype":"X","shape":[..],"data_offsets":[b,e]}. Returns false, leaving
  // the position unchanged, on any deviation: the general path then parses it
  // (and reports what is wrong), so both paths accept the same inputs.
  bool fast_entry(Entry* e);
  bool fast_u64(size_t* j, uint64_t* v) const;
  // parse_dtype, trying the previous entry's dtype first (headers repeat few).
  bool lookup_dtype(std::string_view s, Dtype* out) {
    if (dtype_info(last_dtype_).name == s) {
      *out = last_dtype_;
      return true;
    }
    if (!parse_dtype(s, out)) return false;
    last_dtype_ = *out;
    return true;
  }
  void tensor_member(size_t kpos, Entry* e);
  // Validates sizes and appends the row; false when the entry is unusable.
  bool finish_entry(std::string_view name, size_t pos, Entry& e);
  void check_coverage();
  void parse_weight_map();
  void parse_index_metadata();

  const uint8_t* p_;
  size_t n_;
  size_t i_ = 0;
  ParsedHeader* out_ = nullptr;
  IndexTable* index_ = nullptr;
  std::vector<Problem>* problems_;
  uint64_t base_;
  NameSet seen_;
  bool seen_metadata_ = false;
  bool last_plain_ = false;  // the last string had no escapes: its bytes are in p_
  std::string key_, scratch_;
  std::vector<char> tmpl_buf_;
  std::vector<int64_t> ints_;
  std::vector<uint64_t> offsets_;
  std::string name_;
  Dtype last_dtype_ = Dtype::F32;
  uint32_t last_template_ = UINT32_MAX;
  TemplateIndex template_ids_;
  struct Orphan {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Orphan> orphans_;  // entries with valid offsets but no table row
};

void Parser::parse_hex4(uint32_t* cp) {
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

void Parser::parse_string(std::string* out) {
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

bool Parser::skip_number() {
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

bool Parser::parse_u64(uint64_t* v, std::string_view tensor, const char* field) {
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
  const std::string text(reinterpret_cast<const char*>(p_ + start), i_ - start);
  problem(ErrorCode::kBadNumber, start, tensor,
          std::string(field) + " holds " + text +
              (overflow && plain ? ", which does not fit in 64 bits"
                                 : ", which is not a non-negative integer"));
  return false;
}

template <class F>
void Parser::members(std::string* key, F&& on_member) {
  ++i_;
  if (peek('}')) {
    ++i_;
    return;
  }
  for (;;) {
    skip_ws();
    const size_t kpos = i_;
    parse_string(key);
    expect(':', "':'");
    on_member(kpos);
    if (!peek(',')) break;
    ++i_;
  }
  expect('}', "',' or '}'");
}

template <class F>
void Parser::elements(F&& on_element) {
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

void Parser::skip_value(int depth) {
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
      problem(ErrorCode::kBadNumber, pos, {},
              "number " + std::string(reinterpret_cast<const char*>(p_ + pos), std::min<size_t>(i_ - pos, 40)) +
                  (i_ - pos > 40 ? "..." : "") + " is beyond the range of a 64-bit float");
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

void Parser::parse_u64_array(std::vector<uint64_t>* out, std::string_view tensor,
                             const char* field, ErrorCode code, bool* ok) {
  out->clear();
  skip_ws();
  if (i_ >= n_ || p_[i_] != '[') {
    const size_t pos = i_;
    skip_value(2);
    problem(code, pos, tensor,
            std::string(field) + " is not an array");
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
      problem(code, pos, tensor, std::string(field) + " holds a value that is not a number");
      *ok = false;
    }
  });
}

void Parser::parse_metadata(size_t key_pos) {
  if (seen_metadata_) {
    problem(ErrorCode::kDuplicateKey, key_pos, {}, "__metadata__ appears twice");
  }
  seen_metadata_ = true;
  skip_ws();
  if (i_ + 4 <= n_ && std::memcmp(p_ + i_, "null", 4) == 0) {
    i_ += 4;
    return;
  }
  if (i_ >= n_ || p_[i_] != '{') {
    const size_t pos = i_;
    skip_value(1);
    problem(ErrorCode::kMetadata, pos, {}, "__metadata__ is not an object of strings");
    return;
  }
  out_->has_metadata = true;
  NameSet keys;  // a set, not a list: 100 MB of metadata keys must stay linear
  std::string k, v;
  members(&k, [&](size_t kpos) {
    skip_ws();
    const size_t vpos = i_;
    if (i_ < n_ && p_[i_] == '"') {
      parse_string(&v);
      if (!keys.insert(k, false)) {
        problem(ErrorCode::kDuplicateKey, kpos, {}, "__metadata__ key \"" + k + "\" appears twice");
      } else {
        out_->metadata.emplace_back(k, v);
      }
    } else {
      skip_value(2);
      problem(ErrorCode::kMetadata, vpos, {}, "__metadata__ value of \"" + k + "\" is not a string");
    }
  });
}

bool Parser::fast_u64(size_t* j, uint64_t* v) const {
  const size_t start = *j;
  // At most 19 digits always fit in 64 bits; a longer number goes to the
  // general path, which decides whether it overflows.
  const size_t lim = std::min(n_, start + 19);
  size_t k = start;
  uint64_t acc = 0;
  for (unsigned d; k < lim && (d = static_cast<unsigned>(p_[k]) - '0') < 10; ++k) acc = acc * 10 + d;
  if (k == start || (k < n_ && static_cast<unsigned>(p_[k]) - '0' < 10)) return false;
  if (p_[start] == '0' && k - start > 1) return false;  // leading zero: not JSON
  *j = k;
  *v = acc;
  return true;
}

bool Parser::fast_entry(Entry* e) {
  size_t j = i_;
  auto lit = [&](const char* s, size_t len) {
    if (j + len > n_ || std::memcmp(p_ + j, s, len) != 0) return false;
    j += len;
    return true;
  };
  if (!lit("{\"dtype\":\"", 10)) return false;
  const size_t ds = j;
  while (j < n_ && j - ds < 16 && p_[j] > ' ' && p_[j] != '\\' && p_[j] != '"') ++j;
  if (j >= n_ || p_[j] != '"') return false;
  const std::string_view dt(reinterpret_cast<const char*>(p_ + ds), j - ds);
  Dtype dtype;
  if (!lookup_dtype(dt, &dtype)) return false;
  ++j;
  if (!lit(",\"shape\":[", 10)) return false;
  e->shape.clear();
  if (j < n_ && p_[j] == ']') {
    ++j;
  } else {
    for (;;) {
      uint64_t d;
      if (!fast_u64(&j, &d)) return false;
      e->shape.push_back(d);
      if (j < n_ && p_[j] == ',') {
        ++j;
        continue;
      }
      if (j < n_ && p_[j] == ']') {
        ++j;
        break;
      }
      return false;
    }
  }
  uint64_t b, end;
  if (!lit(",\"data_offsets\":[", 17) || !fast_u64(&j, &b) || !lit(",", 1) || !fast_u64(&j, &end) ||
      !lit("]}", 2) || b > end) {
    return false;
  }
  e->dtype = dtype;
  e->begin = b;
  e->end = end;
  e->has_dtype = e->has_shape = e->has_offsets = e->offsets_ok = true;
  i_ = j;
  return true;
}

void Parser::parse_entry(std::string_view name, Entry* e) {
  skip_ws();
  if (i_ >= n_ || p_[i_] != '{') {
    const size_t pos = i_;
    skip_value(1);
    problem(ErrorCode::kNotObject, pos, name, "tensor entry is not an object");
    e->valid = false;
    return;
  }
  members(&key_, [&](size_t kpos) {
    auto dup = [&](bool* has) {
      if (*has) {
        problem(ErrorCode::kDuplicateKey, kpos, name, "field \"" + key_ + "\" appears twice");
        e->valid = false;
      }
      *has = true;
    };
    if (std::string_view(key_) == "dtype") {
      dup(&e->has_dtype);
      skip_ws();
      const size_t vpos = i_;
      if (i_ < n_ && p_[i_] == '"') {
        parse_string(&scratch_);
        if (!lookup_dtype(scratch_, &e->dtype)) {
          problem(ErrorCode::kBadDtype, vpos, name, "unknown dtype \"" + scratch_ + "\"");
          e->valid = false;
        }
      } else {
        skip_value(2);
        problem(ErrorCode::kBadDtype, vpos, name, "dtype is not a string");
        e->valid = false;
      }
    } else if (std::string_view(key_) == "shape") {
      dup(&e->has_shape);
      bool ok = true;
      parse_u64_array(&e->shape, name, "shape", ErrorCode::kBadShape, &ok);
      e->valid &= ok;
    } else if (std::string_view(key_) == "data_offsets") {
      dup(&e->has_offsets);
      skip_ws();
      const size_t vpos = i_;
      bool ok = true;
      std::vector<uint64_t>& offs = offsets_;
      parse_u64_array(&offs, name, "data_offsets", ErrorCode::kBadOffsets, &ok);
      if (ok && offs.size() != 2) {
        problem(ErrorCode::kBadOffsets, vpos, name,
                "data_offsets has " + std::to_string(offs.size()) + " values, not 2");
        ok = false;
      } else if (ok && offs[0] > offs[1]) {
        problem(ErrorCode::kBadOffsets, vpos, name,
                "data_offsets begin " + format_u64(offs[0]) + " is after end " + format_u64(offs[1]));
        ok = false;
      }
      if (ok) {
        e->begin = offs[0];
        e->end = offs[1];
        e->offsets_ok = true;
      }
      e->valid &= ok;
    } else {
      skip_value(2);  // unknown fields are ignored, as the reference does
    }
  });
}

bool Parser::finish_entry(std::string_view name, size_t pos, Entry& e) {
  for (auto [has, field] : {std::pair{e.has_dtype, "dtype"}, std::pair{e.has_shape, "shape"},
                            std::pair{e.has_offsets, "data_offsets"}}) {
    if (!has) {
      problem(ErrorCode::kMissingField, pos, name, std::string("tensor entry has no ") + field);
      e.valid = false;
    }
  }
  if (!e.valid) return false;

  // Sizes with overflow checks: numel, then bits.
  uint64_t numel = 1;
  bool overflow = false;
  for (uint64_t d : e.shape) {
    if (d != 0 && numel > UINT64_MAX / d) overflow = true;
    numel *= d;
  }
  const uint64_t bits = dtype_info(e.dtype).bits;
  if (!overflow && numel > UINT64_MAX / bits) overflow = true;
  if (overflow) {
    problem(ErrorCode::kSizeOverflow, pos, name, "element count times dtype width overflows 64 bits");
    return false;
  }
  const uint64_t total_bits = numel * bits;
  if (total_bits % 8 != 0) {
    problem(ErrorCode::kNotByteAligned, pos, name,
            std::to_string(numel) + " elements of " + std::string(dtype_info(e.dtype).name) +
                " are " + std::to_string(total_bits) + " bits, not a whole number of bytes");
    return false;
  }
  const uint64_t data_start = kPrefixLen + out_->header_len;
  if (e.end > UINT64_MAX - data_start) {
    problem(ErrorCode::kBadOffsets, pos, name, "data_offsets overflow the file's address space");
    return false;
  }
  if (e.end - e.begin != total_bits / 8) {
    problem(ErrorCode::kSizeMismatch, pos, name,
            "data_offsets span " + format_u64(e.end - e.begin) + " bytes but " +
                std::string(dtype_info(e.dtype).name) + " shape needs " + format_u64(total_bits / 8));
  }

  TensorTable& t = out_->table;
  t.dtype.push_back(static_cast<uint8_t>(e.dtype));
  t.dims.insert(t.dims.end(), e.shape.begin(), e.shape.end());
  t.shape_start.push_back(t.dims.size());
  t.begin.push_back(data_start + e.begin);
  t.end.push_back(data_start + e.end);
  t.numel.push_back(numel);

  if (tmpl_buf_.size() < 2 * name.size() + 2) tmpl_buf_.resize(2 * name.size() + 2);
  const std::string_view tmpl(tmpl_buf_.data(), template_into(name, tmpl_buf_.data(), &ints_));
  if (last_template_ == UINT32_MAX || t.templates[last_template_] != tmpl) {
    last_template_ = template_ids_.find_or_add(tmpl, &t.templates);
  }
  t.template_id.push_back(last_template_);
  t.ints.insert(t.ints.end(), ints_.begin(), ints_.end());
  t.ints_start.push_back(t.ints.size());
  return true;
}

void Parser::run() {
  TensorTable& t = out_->table;
  // Real headers spend ~100-150 bytes per tensor: reserve once, not per push.
  const size_t guess = n_ / 96 + 1;
  for (auto* v : {&t.name_start, &t.shape_start, &t.begin, &t.end, &t.numel, &t.ints_start}) v->reserve(guess);
  t.dtype.reserve(guess);
  t.template_id.reserve(guess);
  t.dims.reserve(2 * guess);
  t.ints.reserve(2 * guess);
  t.names.reserve(n_ / 2);
  seen_.reserve(guess);
  const size_t bad = first_invalid_utf8(p_, n_);
  if (bad != n_) {
    problem(ErrorCode::kNotUtf8, bad, {}, "header is not valid UTF-8");
    return;
  }
  try {
    if (!peek('{')) expected("'{' opening the header");
    Entry e;
    members(&key_, [&](size_t kpos) {
      if (std::string_view(key_) == "__metadata__") {
        parse_metadata(kpos);
      } else {
        tensor_member(kpos, &e);
      }
    });
    // Only JSON whitespace may follow; writers pad with spaces.
    skip_ws();
    if (i_ < n_) {
      if (p_[i_] == 0) {
        fatal(ErrorCode::kHeaderPadding, i_,
              "header is padded with NUL bytes (" + std::to_string(n_ - i_) +
                  " bytes); only JSON whitespace is allowed");
      }
      fatal(ErrorCode::kJsonSyntax, i_, "unexpected bytes after the header's closing '}'");
    }
  } catch (const Stop&) {
    // The header is not valid JSON: drop the rows read before the error (they
    // are incomplete, unsorted and past data_end), keeping the table well formed.
    t = TensorTable{};
    return;
  }
  check_coverage();
}

// One "name": {...} member of the header: a row of the table when valid.
void Parser::tensor_member(size_t kpos, Entry* e) {
  TensorTable& t = out_->table;
  // The key was just read; without escapes its bytes sit in the header as is.
  const bool plain = last_plain_;
  const std::string_view key =
      plain ? std::string_view(reinterpret_cast<const char*>(p_ + kpos + 1), key_.size()) : key_;
  if (!seen_.insert(key, plain)) {
    problem(ErrorCode::kDuplicateKey, kpos, key_, "tensor name appears twice in the header");
    Entry ignored;
    parse_entry({}, &ignored);
    return;
  }
  e->reset();
  name_.swap(key_);
  const std::string& name = name_;
  skip_ws();
  if (!fast_entry(e)) {
    e->reset();
    parse_entry(name, e);
  }
  if (finish_entry(name, kpos, *e)) {
    t.names += name;
    t.name_start.push_back(t.names.size());
  } else if (e->offsets_ok && e->end <= UINT64_MAX - kPrefixLen - out_->header_len) {
    // Not a usable row, but its bytes are claimed: keep them in the coverage
    // check so one bad entry does not also read as a gap.
    const uint64_t base = kPrefixLen + out_->header_len;
    orphans_.push_back({base + e->begin, base + e->end, name});
  }
}

// Sorts rows by data offset and checks that the data is exactly covered.
void Parser::check_coverage() {
  TensorTable& t = out_->table;
  const size_t n = t.size();
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  const bool sorted = std::is_sorted(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return t.begin[a] < t.begin[b] || (t.begin[a] == t.begin[b] && t.end[a] < t.end[b]);
  });
  if (!sorted) {
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      return t.begin[a] < t.begin[b] || (t.begin[a] == t.begin[b] && t.end[a] < t.end[b]);
    });
    TensorTable s;
    s.templates = std::move(t.templates);
    s.name_start.reserve(n + 1);
    s.names.reserve(t.names.size());
    for (uint32_t r : order) {
      s.names += t.name(r);
      s.name_start.push_back(s.names.size());
      s.dtype.push_back(t.dtype[r]);
      s.dims.insert(s.dims.end(), t.dims.begin() + t.shape_start[r], t.dims.begin() + t.shape_start[r + 1]);
      s.shape_start.push_back(s.dims.size());
      s.begin.push_back(t.begin[r]);
      s.end.push_back(t.end[r]);
      s.numel.push_back(t.numel[r]);
      s.template_id.push_back(t.template_id[r]);
      s.ints.insert(s.ints.end(), t.ints.begin() + t.ints_start[r], t.ints.begin() + t.ints_start[r + 1]);
      s.ints_start.push_back(s.ints.size());
    }
    t = std::move(s);
  }

  // Coverage over the rows plus the orphans, merged in offset order.
  std::sort(orphans_.begin(), orphans_.end(), [](const Orphan& a, const Orphan& b) {
    return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
  });
  uint64_t expected = kPrefixLen + out_->header_len;
  std::string_view prev;
  size_t r = 0, o = 0;
  while (r < n || o < orphans_.size()) {
    const bool take_row = o == orphans_.size() ||
                          (r < n && (t.begin[r] < orphans_[o].begin ||
                                     (t.begin[r] == orphans_[o].begin && t.end[r] <= orphans_[o].end)));
    const uint64_t b = take_row ? t.begin[r] : orphans_[o].begin;
    const uint64_t e = take_row ? t.end[r] : orphans_[o].end;
    const std::string_view name = take_row ? t.name(r) : std::string_view(orphans_[o].name);
    take_row ? ++r : ++o;
    if (b > expected) {
      problem_at(ErrorCode::kOffsetGap, expected, name,
                 std::to_string(b - expected) + " unused bytes before this tensor's data");
    } else if (b < expected) {
      problem_at(ErrorCode::kOffsetOverlap, b, name,
                 "data overlaps the previous tensor's (" + std::string(prev) + ")");
    }
    expected = std::max(expected, e);
    prev = name;
  }
  out_->data_end = expected;
  const uint64_t size = out_->file_size;
  if (expected > size) {
    problem_at(ErrorCode::kTruncated, size, {},
               "file is truncated by " + format_u64(expected - size) + " bytes: the header describes " +
                   format_u64(expected) + " bytes, the file has " + format_u64(size));
  } else if (expected < size) {
    problem_at(ErrorCode::kTrailingBytes, expected, {},
               format_u64(size - expected) + " trailing bytes after the last tensor's data");
  }
}

void Parser::run_index() {
  IndexTable& x = *index_;
  const size_t bad = first_invalid_utf8(p_, n_);
  if (bad != n_) {
    problem(ErrorCode::kNotUtf8, bad, {}, "index is not valid UTF-8");
    return;
  }
  bool seen_map = false, seen_meta = false;
  try {
    if (!peek('{')) expected("'{' opening the index");
    members(&key_, [&](size_t kpos) {
      bool* seen = std::string_view(key_) == "weight_map" ? &seen_map
                   : std::string_view(key_) == "metadata" ? &seen_meta : nullptr;
      if (seen != nullptr && *seen) {
        problem(ErrorCode::kDuplicateKey, kpos, {}, "\"" + key_ + "\" appears twice");
        skip_value(1);
      } else if (seen == &seen_map) {
        seen_map = true;
        parse_weight_map();
      } else if (seen == &seen_meta) {
        seen_meta = true;
        parse_index_metadata();
      } else {
        skip_value(1);
      }
    });
    skip_ws();
    if (i_ < n_) fatal(ErrorCode::kJsonSyntax, i_, "unexpected bytes after the index's closing '}'");
  } catch (const Stop&) {
    std::vector<Problem> problems = std::move(x.problems);
    x = IndexTable{};  // no partial table
    x.problems = std::move(problems);
    return;
  }
  if (!seen_map) problem(ErrorCode::kMissingField, 0, {}, "index has no \"weight_map\"");
}

void Parser::parse_weight_map() {
  IndexTable& x = *index_;
  skip_ws();
  if (i_ >= n_ || p_[i_] != '{') {
    const size_t pos = i_;
    skip_value(1);
    problem(ErrorCode::kNotObject, pos, {}, "\"weight_map\" is not an object");
    return;
  }
  std::unordered_map<std::string, uint32_t> shard_ids;
  uint32_t last = UINT32_MAX;
  members(&key_, [&](size_t kpos) {
    skip_ws();
    const size_t vpos = i_;
    if (i_ >= n_ || p_[i_] != '"') {
      skip_value(2);
      problem(ErrorCode::kNotObject, vpos, key_, "weight_map value is not a file name");
      return;
    }
    parse_string(&scratch_);
    // Consecutive entries usually name the same shard.
    if (last == UINT32_MAX || x.shard_names[last] != scratch_) {
      auto it = shard_ids.find(scratch_);
      if (it == shard_ids.end()) {
        it = shard_ids.emplace(scratch_, static_cast<uint32_t>(x.shard_names.size())).first;
        x.shard_names.push_back(scratch_);
      }
      last = it->second;
    }
    x.names += key_;
    x.name_start.push_back(x.names.size());
    x.shard.push_back(last);
    x.offset.push_back(file_offset(kpos));
  });
}

// "metadata": only total_size matters; writers store it as an integer or a
// float, and other keys are free-form.
void Parser::parse_index_metadata() {
  skip_ws();
  if (i_ >= n_ || p_[i_] != '{') {
    skip_value(1);
    return;
  }
  members(&key_, [&](size_t) {
    skip_ws();
    uint64_t v;
    const size_t vpos = i_;
    if (std::string_view(key_) == "total_size" && fast_u64(&i_, &v) &&
        (i_ >= n_ || (p_[i_] != '.' && p_[i_] != 'e' && p_[i_] != 'E'))) {
      index_->has_total_size = true;
      index_->total_size = v;
    } else {
      i_ = vpos;
      skip_value(2);
    }
  });
}

}  // namespace

void name_template(std::string_view name, std::string* tmpl, std::vector<int64_t>* ints) {
  tmpl->resize(2 * name.size() + 2);
  tmpl->resize(template_into(name, tmpl->data(), ints));
}

ParsedHeader parse_header_json(const uint8_t* json, size_t n, uint64_t file_size) {
  ParsedHeader out;
  out.header_len = n;
  out.file_size = file_size;
  out.data_start = kPrefixLen + n;
  out.data_end = out.data_start;
  Parser(json, n, &out).run();
  return out;
}

IndexTable parse_index_json(const uint8_t* json, size_t n) {
  IndexTable out;
  Parser(json, n, &out).run_index();
  return out;
}

namespace {

// Open-addressing map from a name to an int64 payload, names kept by pointer
// (they live in the tables being joined). Sized once for n keys.
class NameIndex {
 public:
  explicit NameIndex(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    slots_.assign(cap, Slot{});
  }
  // The payload stored for `name`, inserting `value` when absent; `*found`
  // says which.
  int64_t& get(std::string_view name, int64_t value, bool* found) {
    const uint64_t h = hash_bytes(name, seed_);
    const size_t mask = slots_.size() - 1;
    size_t i = h & mask;
    for (; slots_[i].p != nullptr; i = (i + 1) & mask) {
      if (slots_[i].hash == h && std::string_view(slots_[i].p, slots_[i].len) == name) {
        *found = true;
        return slots_[i].value;
      }
    }
    slots_[i] = Slot{h, name.data(), name.size(), value};
    *found = false;
    return slots_[i].value;
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    const char* p = nullptr;
    size_t len = 0;
    int64_t value = -1;
  };
  uint64_t seed_ = hash_seed();
  std::vector<Slot> slots_;
};

}  // namespace

NameMatch match_names(const IndexTable* index, const std::vector<const TensorTable*>& shards,
                      const std::vector<int64_t>& shard_pos) {
  NameMatch m;
  std::vector<size_t> first_row{0};
  for (const TensorTable* t : shards) first_row.push_back(first_row.back() + t->size());
  const size_t rows = first_row.back();
  const size_t entries = index != nullptr ? index->size() : 0;
  m.entry_row.assign(entries, -1);
  m.row_entry.assign(rows, -1);
  m.dup_of.assign(rows, -1);

  // 1. Per shard, the entries the index places there against the shard's own
  //    rows: small tables that stay in cache, and the whole join when the
  //    index and the headers agree.
  if (entries > 0) {
    std::vector<std::vector<uint32_t>> by_shard(shards.size());
    for (size_t e = 0; e < entries; ++e) {
      const uint32_t id = index->shard[e];
      const int64_t pos = id < shard_pos.size() ? shard_pos[id] : -1;
      if (pos >= 0 && static_cast<size_t>(pos) < shards.size()) by_shard[pos].push_back(static_cast<uint32_t>(e));
    }
    for (size_t s = 0; s < shards.size(); ++s) {
      if (by_shard[s].empty()) continue;
      NameIndex names(by_shard[s].size());
      bool found;
      for (uint32_t e : by_shard[s]) names.get(index->name(e), e, &found);
      const TensorTable& t = *shards[s];
      for (size_t i = 0; i < t.size(); ++i) {
        const int64_t e = names.get(t.name(i), -1, &found);
        if (found && m.entry_row[e] < 0) {
          m.entry_row[e] = static_cast<int64_t>(first_row[s] + i);
          m.row_entry[first_row[s] + i] = e;
        }
      }
    }
  }
  // 2. What is left (rows the index does not place in their shard, or every
  //    row when there is no index): one table over all entries and those rows.
  std::vector<size_t> left;
  for (size_t r = 0; r < rows; ++r) {
    if (m.row_entry[r] < 0) left.push_back(r);
  }
  if (left.empty()) return m;
  NameIndex all(entries + left.size());
  bool found;
  for (size_t e = 0; e < entries; ++e) all.get(index->name(e), -2 - static_cast<int64_t>(e), &found);
  size_t s = 0;
  for (size_t r : left) {
    while (first_row[s + 1] <= r) ++s;
    int64_t& v = all.get(shards[s]->name(r - first_row[s]), static_cast<int64_t>(r), &found);
    if (!found) continue;  // first sighting of a name in no entry: v = r now
    if (v <= -2) {         // a name the index lists (elsewhere)
      const int64_t e = -2 - v;
      m.row_entry[r] = e;
      if (m.entry_row[e] < 0) {
        m.entry_row[e] = static_cast<int64_t>(r);
      } else {
        m.dup_of[r] = m.entry_row[e];
      }
    } else {
      m.dup_of[r] = v;
    }
  }
  // A listed name whose first copy was matched in its own shard and whose
  // other copy sits elsewhere: the second copy is a duplicate of the first.
  for (size_t r : left) {
    const int64_t e = m.row_entry[r];
    if (e >= 0 && m.dup_of[r] < 0 && m.entry_row[e] != static_cast<int64_t>(r)) m.dup_of[r] = m.entry_row[e];
  }
  return m;
}

ParsedHeader parse_header_bytes(const uint8_t* prefix, size_t prefix_len, uint64_t file_size) {
  ParsedHeader out;
  out.file_size = file_size;
  // An empty table still has its n + 1 start offsets, whichever way we return.
  out.table.name_start = out.table.shape_start = out.table.ints_start = {0};
  auto fail = [&](ErrorCode code, uint64_t offset, std::string msg) {
    out.problems.push_back({code, offset, {}, std::move(msg)});
    return out;
  };
  static constexpr char kLfs[] = "version https://git-lfs";
  if (prefix_len >= sizeof(kLfs) - 1 && std::memcmp(prefix, kLfs, sizeof(kLfs) - 1) == 0) {
    return fail(ErrorCode::kLfsPointer, 0,
                "this is a Git LFS pointer file, not the tensor data: fetch it with `git lfs pull`");
  }
  if (file_size < kPrefixLen || prefix_len < kPrefixLen) {
    return fail(ErrorCode::kHeaderTooSmall, 0,
                "file has " + format_u64(file_size) + " bytes, fewer than the 8-byte header length");
  }
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | prefix[k];
  out.header_len = n;
  if (n > kMaxHeaderLen) {
    std::string msg = "header length " + format_u64(n) + " exceeds the 100,000,000-byte limit";
    const bool printable = std::all_of(prefix, prefix + 8, [](uint8_t c) { return c >= 0x20 && c < 0x7F; });
    if (printable) {
      msg += " (the file starts with the text \"" + std::string(reinterpret_cast<const char*>(prefix), 8) +
             "\": not a safetensors file?)";
    }
    return fail(ErrorCode::kHeaderTooLarge, 0, std::move(msg));
  }
  if (kPrefixLen + n > file_size) {
    return fail(ErrorCode::kHeaderLength, 0,
                "header length " + format_u64(n) + " runs past the end of the " + format_u64(file_size) +
                    "-byte file");
  }
  if (prefix_len < kPrefixLen + n) {
    return fail(ErrorCode::kIo, kPrefixLen, "could not read the whole header");
  }
  return parse_header_json(prefix + kPrefixLen, n, file_size);
}

}  // namespace ckptscan
