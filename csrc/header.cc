#include "header.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <numeric>
#include <optional>

#include "hash.h"

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

constexpr uint64_t kPow10[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
// The word-at-a-time digit code reads the first byte as the lowest.
constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

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
[[gnu::noinline]] const uint8_t* read_long_u64(const uint8_t* q, const uint8_t* end, uint64_t* v) {
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

// read_long_u64 for the common cases inline: up to 15 digits (shapes and
// offsets), not at the header's very end.
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

// Open-addressing set of names: 8-byte slots (a hash tag and the key's
// index in keys_) so that sizing it per shard costs little. A key is kept by pointer
// when its bytes outlive the set (a name read in place from the header), and
// copied otherwise.
class NameSet {
 public:
  // Sizes the table for n names up front (no rehashing on the way).
  void reserve(size_t n) {
    keys_.reserve(n);
    size_t cap = 64;
    while (cap < 2 * n) cap *= 2;
    if (cap > slots_.size()) rehash(cap);
  }
  // Returns false if the name was already present. `stable`: key's bytes
  // stay valid as long as the set.
  bool insert(std::string_view key, bool stable) {
    if ((keys_.size() + 1) * 2 > slots_.size()) rehash(std::max<size_t>(64, slots_.size() * 2));
    const uint64_t h = hash_bytes(key, seed_);
    const uint32_t tag = static_cast<uint32_t>(h >> 32) | 1;  // 0 marks an empty slot
    const size_t mask = slots_.size() - 1;
    size_t i = h & mask;
    for (; slots_[i].tag != 0; i = (i + 1) & mask) {
      if (slots_[i].tag == tag && keys_[slots_[i].key] == key) return false;
    }
    if (!stable) key = copies_.emplace_back(key);
    slots_[i] = {tag, static_cast<uint32_t>(keys_.size())};
    keys_.push_back(key);
    return true;
  }

 private:
  struct Slot {
    uint32_t tag = 0;
    uint32_t key = 0;  // index into keys_
  };
  void rehash(size_t cap) {
    slots_.assign(cap, Slot{});
    for (size_t k = 0; k < keys_.size(); ++k) {
      const uint64_t h = hash_bytes(keys_[k], seed_);
      size_t i = h & (cap - 1);
      while (slots_[i].tag != 0) i = (i + 1) & (cap - 1);
      slots_[i] = {static_cast<uint32_t>(h >> 32) | 1, static_cast<uint32_t>(k)};
    }
  }
  uint64_t seed_ = hash_seed();
  std::vector<Slot> slots_;
  std::vector<std::string_view> keys_;
  std::deque<std::string> copies_;  // a deque: its strings never move
};

// memcmp-style order of two names, inline: names are compared once or twice
// per tensor, and mostly share a long prefix.
inline int compare_names(std::string_view a, std::string_view b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
#if defined(__SSE2__)
  for (; i + 16 <= n; i += 16) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.data() + i));
    const __m128i y = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.data() + i));
    const unsigned same = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(x, y)));
    if (same != 0xFFFF) {
      const unsigned k = static_cast<unsigned>(__builtin_ctz(~same));
      return static_cast<uint8_t>(a[i + k]) - static_cast<uint8_t>(b[i + k]);
    }
  }
#endif
  for (; i < n; ++i) {
    if (a[i] != b[i]) return static_cast<uint8_t>(a[i]) - static_cast<uint8_t>(b[i]);
  }
  return a.size() < b.size() ? -1 : (a.size() > b.size() ? 1 : 0);
}

// The set of tensor names seen so far, for rejecting a repeated one. Writers
// emit names in a few sorted runs (safetensors: by dtype, then by name), so
// while there are few runs a name is checked by comparing it with its
// neighbours: the previous name, and a cursor in each earlier run that only
// moves forward while the current run ascends. Past kMaxRuns (an unsorted
// header) every name goes through a hash set instead.
class SeenNames {
 public:
  void reserve(size_t n) { keys_.reserve(n); }

  // Returns false if the name was already present. `stable`: key's bytes
  // stay valid as long as this object.
  [[gnu::always_inline]] bool insert(std::string_view key, bool stable) {
    if (hashed_) return insert_hashed(key, stable);
    // The cursors need the names asked about, repeats included, to ascend
    // within a run: a run ends where a name is not above the previous one.
    const int order = asked_ ? compare_names(last_, key) : -1;
    if (order == 0) return false;
    if (order > 0) {
      runs_.push_back({run_start_, keys_.size(), 0});
      run_start_ = keys_.size();
      if (runs_.size() > kMaxRuns) return switch_to_hash(key, stable);
      for (Run& r : runs_) r.cursor = r.first;
    }
    const bool repeat = in_earlier_run(key);
    if (!stable) key = copies_.emplace_back(key);
    last_ = key;
    asked_ = true;
    if (repeat) return false;
    keys_.push_back(key);
    return true;
  }

 private:
  static constexpr size_t kMaxRuns = 8;
  struct Run {
    size_t first, last, cursor;
  };
  bool in_earlier_run(std::string_view key) {
    for (Run& r : runs_) {
      int order = 1;
      while (r.cursor < r.last && (order = compare_names(keys_[r.cursor], key)) < 0) ++r.cursor;
      if (order == 0) return true;
    }
    return false;
  }
  [[gnu::noinline]] bool insert_hashed(std::string_view key, bool stable) { return set_.insert(key, stable); }
  [[gnu::noinline]] bool switch_to_hash(std::string_view key, bool stable) {
    hashed_ = true;
    set_.reserve(2 * keys_.size() + 64);
    for (std::string_view k : keys_) set_.insert(k, true);  // keys_ and copies_ stay alive
    return set_.insert(key, stable);
  }

  std::vector<std::string_view> keys_;  // in arrival order, each run ascending
  std::vector<Run> runs_;               // the closed runs
  size_t run_start_ = 0;
  std::string_view last_;               // the name asked about last
  bool asked_ = false;
  bool hashed_ = false;
  NameSet set_;
  std::deque<std::string> copies_;  // a deque: its strings never move
};

// Appends rows to a TensorTable through columns sized ahead and written by
// index: push_back's capacity check and its out-of-line growth path cost as
// much as reading the entry. finish() trims the columns to their contents.
class TableBuilder {
 public:
  TableBuilder(TensorTable* t, size_t rows, size_t name_bytes, uint64_t data_start)
      : t_(t), next_(data_start) {
    resize_rows(rows);
    t_->dims.resize(2 * rows + 16);
    t_->names.resize(name_bytes);
  }

  size_t dims_size() const { return dims_; }
  uint64_t dim(size_t k) const { return t_->dims[k]; }
  void push_dim(uint64_t d) {
    if (dims_ == t_->dims.size()) t_->dims.resize(2 * dims_ + 16);
    t_->dims[dims_++] = d;
  }
  void truncate_dims(size_t n) { dims_ = n; }

  // A row whose dims are the last pushed ones.
  [[gnu::always_inline]] void add(Dtype dtype, uint64_t begin, uint64_t end, uint64_t numel, std::string_view name) {
    if (rows_ == t_->dtype.size()) resize_rows(2 * rows_ + 16);
    if (names_ + name.size() > t_->names.size()) t_->names.resize(2 * (names_ + name.size()));
    TensorTable& t = *t_;
    contiguous_ &= begin == next_;  // each tensor starting where the last one ended
    next_ = end;
    t.dtype[rows_] = static_cast<uint8_t>(dtype);
    t.begin[rows_] = begin;
    t.end[rows_] = end;
    t.numel[rows_] = numel;
    std::memcpy(&t.names[names_], name.data(), name.size());
    names_ += name.size();
    ++rows_;
    t.shape_start[rows_] = dims_;
    t.name_start[rows_] = names_;
  }

  // True when the rows came in data order with no gap or overlap: the
  // coverage check then has nothing to sort or report but the file's end.
  bool contiguous() const { return contiguous_; }
  uint64_t data_end() const { return next_; }

  void finish() {
    resize_rows(rows_);
    t_->dims.resize(dims_);
    t_->names.resize(names_);
  }

 private:
  void resize_rows(size_t n) {
    TensorTable& t = *t_;
    for (auto* v : {&t.begin, &t.end, &t.numel}) v->resize(n);
    t.dtype.resize(n);
    t.shape_start.resize(n + 1);
    t.name_start.resize(n + 1);
  }
  TensorTable* t_;
  size_t rows_ = 0, dims_ = 0, names_ = 0;
  uint64_t next_;
  bool contiguous_ = true;
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
  void members(std::string* key, F&& on_member) {
    members(key, [] { return false; }, std::forward<F>(on_member));
  }
  // The same, trying fast() first at each member: true when it read the
  // whole member itself.
  template <class Fast, class F>
  void members(std::string* key, Fast&& fast, F&& on_member);
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
  // parse_dtype, trying the previous entry's dtype first (headers repeat few).
  bool lookup_dtype(std::string_view s, Dtype* out) {
    if (dtype_info(last_dtype_).name == s) {
      *out = last_dtype_;
      return true;
    }
    if (!parse_dtype(s, out)) return false;
    remember_dtype(*out);
    return true;
  }
  bool fast_u64(size_t* j, uint64_t* v) const;
  // The dtype string at q (after its opening quote) in the writers' layout:
  // returns the position after its closing quote, or null.
  const uint8_t* read_dtype(const uint8_t* q, const uint8_t* end, Dtype* dtype);
  void remember_dtype(Dtype d) {
    last_dtype_ = d;
    const std::string_view name = dtype_info(d).name;
    std::memset(last_dtype_text_, 0, sizeof(last_dtype_text_));
    std::memcpy(last_dtype_text_, name.data(), name.size());
    last_dtype_text_[name.size()] = '"';
  }
  bool fast_member();
  void tensor_member(size_t kpos, Entry* e);
  // Checks the entry's sizes and appends its row (its dims are already at
  // the end of the table's, from dims_start). An unusable entry leaves no row.
  void append_row(std::string_view name, size_t pos, Dtype dtype, size_t dims_start, uint64_t begin,
                  uint64_t end);
  // Records the problem that keeps an entry out of the table.
  [[gnu::noinline]] void reject_row(std::string_view name, size_t pos, Dtype dtype, size_t dims_start,
                                    uint64_t begin, uint64_t end, bool overflow, uint64_t numel,
                                    uint64_t total_bits);
  void check_coverage();
  // Replaces everything found by the one problem: invalid UTF-8 at pos.
  void not_utf8(size_t pos);
  // Where the header says the data ends against the file's size.
  void check_file_end(uint64_t data_end);
  void parse_weight_map();
  bool plain_entry(std::string_view* name, std::string_view* file);
  void parse_index_metadata();

  const uint8_t* p_;
  size_t n_;
  size_t i_ = 0;
  ParsedHeader* out_ = nullptr;
  std::optional<TableBuilder> rows_;
  IndexTable* index_ = nullptr;
  std::vector<Problem>* problems_;
  uint64_t base_;
  SeenNames seen_;
  bool seen_metadata_ = false;
  bool last_plain_ = false;  // the last string had no escapes: its bytes are in p_
  std::string key_, scratch_;
  std::vector<uint64_t> offsets_;
  std::string name_;
  Dtype last_dtype_ = Dtype::F32;
  char last_dtype_text_[16] = "F32\"";  // its name and closing quote, for read_dtype
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

template <class Fast, class F>
void Parser::members(std::string* key, Fast&& fast, F&& on_member) {
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

const uint8_t* Parser::read_dtype(const uint8_t* q, const uint8_t* end, Dtype* dtype) {
  const uint8_t* const start = q;
#if defined(__SSE2__)
  // Mostly the same as the previous entry's: compared as 16 bytes at once.
  if (end - q >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    const unsigned quotes = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('"'))));
    if (quotes == 0) return nullptr;
    const unsigned len = static_cast<unsigned>(__builtin_ctz(quotes));
    const unsigned want = (2u << len) - 1;  // the name and its closing quote
    const unsigned same = static_cast<unsigned>(
        _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(last_dtype_text_)))));
    if ((same & want) == want) {
      *dtype = last_dtype_;
      return q + len + 1;
    }
  }
#endif
  while (q < end && q - start < 16 && *q != '"' && *q > ' ' && *q != '\\') ++q;
  if (q >= end || *q != '"' ||
      !lookup_dtype({reinterpret_cast<const char*>(start), static_cast<size_t>(q - start)}, dtype)) {
    return nullptr;
  }
  return q + 1;
}

bool Parser::fast_u64(size_t* j, uint64_t* v) const {
  const uint8_t* q = read_u64(p_ + *j, p_ + n_, v);
  if (q == nullptr) return false;
  *j = static_cast<size_t>(q - p_);
  return true;
}

// The writers' layout, read in place: "name":{"dtype":"X","shape":[..],
// "data_offsets":[b,e]} with no whitespace and an ASCII name without escapes
// (so every byte read here is ASCII: no UTF-8 check needed). Returns
// false, leaving the position unchanged, on any deviation: the general path
// then reads the member (and reports what is wrong), so both paths accept the
// same inputs.
bool Parser::fast_member() {
  const uint8_t* const end = p_ + n_;
  const size_t kpos = i_;
  if (kpos >= n_ || p_[kpos] != '"') return false;
  const size_t close = plain_run<true>(p_, n_, kpos + 1);  // an ASCII name, or the general path
  const uint8_t* q = after(p_ + close, end, "\":{\"dtype\":\"");
  const std::string_view key(reinterpret_cast<const char*>(p_ + kpos + 1), close - kpos - 1);
  if (q == nullptr || key == "__metadata__") return false;
  Dtype dtype;
  if ((q = read_dtype(q, end, &dtype)) == nullptr || (q = after(q, end, ",\"shape\":[")) == nullptr) return false;
  const size_t dims_start = rows_->dims_size();
  auto fail = [&] {
    rows_->truncate_dims(dims_start);
    return false;
  };
  if (q < end && *q == ']') {
    ++q;
  } else {
    for (;;) {
      uint64_t d;
      q = read_u64(q, end, &d);
      if (q == nullptr || q == end) return fail();
      rows_->push_dim(d);
      if (*q++ == ']') break;
      if (q[-1] != ',') return fail();
    }
  }
  uint64_t b, e;
  if ((q = after(q, end, ",\"data_offsets\":[")) == nullptr || (q = read_u64(q, end, &b)) == nullptr ||
      q == end || *q != ',' || (q = read_u64(q + 1, end, &e)) == nullptr || (q = after(q, end, "]}")) == nullptr ||
      b > e) {
    return fail();
  }
  i_ = static_cast<size_t>(q - p_);
  if (!seen_.insert(key, true)) {
    problem(ErrorCode::kDuplicateKey, kpos, key, "tensor name appears twice in the header");
    rows_->truncate_dims(dims_start);
    return true;
  }
  append_row(key, kpos, dtype, dims_start, b, e);
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

[[gnu::always_inline]] inline void Parser::append_row(std::string_view name, size_t pos, Dtype dtype,
                                                      size_t dims_start, uint64_t begin, uint64_t end) {
  // Sizes with overflow checks (no division: this runs once per tensor).
  uint64_t numel = 1, total_bits;
  bool overflow = false;
  for (size_t k = dims_start; k < rows_->dims_size(); ++k) overflow |= __builtin_mul_overflow(numel, rows_->dim(k), &numel);
  overflow |= __builtin_mul_overflow(numel, uint64_t{dtype_info(dtype).bits}, &total_bits);
  const uint64_t data_start = kPrefixLen + out_->header_len;
  if (overflow || total_bits % 8 != 0 || end > UINT64_MAX - data_start) {
    return reject_row(name, pos, dtype, dims_start, begin, end, overflow, numel, total_bits);
  }
  if (end - begin != total_bits / 8) {
    problem(ErrorCode::kSizeMismatch, pos, name,
            "data_offsets span " + format_u64(end - begin) + " bytes but " +
                std::string(dtype_info(dtype).name) + " shape needs " + format_u64(total_bits / 8));
  }
  rows_->add(dtype, data_start + begin, data_start + end, numel, name);
}

void Parser::reject_row(std::string_view name, size_t pos, Dtype dtype, size_t dims_start, uint64_t begin,
                        uint64_t end, bool overflow, uint64_t numel, uint64_t total_bits) {
  const uint64_t data_start = kPrefixLen + out_->header_len;
  if (overflow) {
    problem(ErrorCode::kSizeOverflow, pos, name, "element count times dtype width overflows 64 bits");
  } else if (total_bits % 8 != 0) {
    problem(ErrorCode::kNotByteAligned, pos, name,
            std::to_string(numel) + " elements of " + std::string(dtype_info(dtype).name) + " are " +
                std::to_string(total_bits) + " bits, not a whole number of bytes");
  } else {
    problem(ErrorCode::kBadOffsets, pos, name, "data_offsets overflow the file's address space");
  }
  rows_->truncate_dims(dims_start);
  // Not a row, but its bytes are claimed: keep them in the coverage check so
  // that one bad entry does not also read as a gap.
  if (end <= UINT64_MAX - data_start) orphans_.push_back({data_start + begin, data_start + end, std::string(name)});
}

// UTF-8 is checked where the general path reads: the fast path reads ASCII
// only, and the bytes between members can only be ASCII. A header with
// invalid UTF-8 reports that alone, wherever it is (as the reference, which
// decodes the whole header first).
void Parser::run() {
  TensorTable& t = out_->table;
  // Real headers spend ~100-150 bytes per tensor, half of it on the name.
  // Beyond a first 64k rows the columns grow as rows come, so that a large
  // hostile header costs memory only for what it really holds.
  const size_t guess = std::min<size_t>(n_ / 96 + 1, size_t{1} << 16);
  rows_.emplace(&t, guess, std::min<size_t>(n_ / 2, guess * 96) + 64, kPrefixLen + out_->header_len);
  seen_.reserve(guess);
  try {
    if (!peek('{')) expected("'{' opening the header");
    Entry e;
    ++i_;
    if (peek('}')) {
      ++i_;
    } else {
      for (;;) {
        if (i_ >= n_ || p_[i_] != '"') skip_ws();
        if (!fast_member()) {
          const size_t kpos = i_;
          parse_string(&key_);
          expect(':', "':'");
          if (std::string_view(key_) == "__metadata__") {
            parse_metadata(kpos);
          } else {
            tensor_member(kpos, &e);
          }
          const size_t bad = first_invalid_utf8(p_ + kpos, i_ - kpos);
          if (bad != i_ - kpos) return not_utf8(kpos + bad);  // the first one: all before is valid
        }
        if (i_ < n_ && p_[i_] == ',') {  // the writers' layout: no whitespace
          ++i_;
          continue;
        }
        if (!peek(',')) break;
        ++i_;
      }
      expect('}', "',' or '}'");
    }
    rows_->finish();
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
    const size_t bad = first_invalid_utf8(p_, n_);
    if (bad != n_) return not_utf8(bad);
    // The header is not valid JSON: drop the rows read before the error (they
    // are incomplete, unsorted and past data_end), keeping the table well formed.
    t = TensorTable{};
    return;
  }
  check_coverage();
}

void Parser::not_utf8(size_t pos) {
  out_->problems.clear();
  out_->table = TensorTable{};
  out_->metadata.clear();
  out_->has_metadata = false;
  problem(ErrorCode::kNotUtf8, pos, {}, "header is not valid UTF-8");
}

// One "name": {...} member of the header, its key just read into key_.
void Parser::tensor_member(size_t kpos, Entry* e) {
  // Without escapes, the key's bytes sit in the header as they are.
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
  parse_entry(name_, e);
  for (auto [has, field] : {std::pair{e->has_dtype, "dtype"}, std::pair{e->has_shape, "shape"},
                            std::pair{e->has_offsets, "data_offsets"}}) {
    if (!has) {
      problem(ErrorCode::kMissingField, kpos, name_, std::string("tensor entry has no ") + field);
      e->valid = false;
    }
  }
  const uint64_t data_start = kPrefixLen + out_->header_len;
  if (e->valid) {
    const size_t dims_start = rows_->dims_size();
    for (uint64_t d : e->shape) rows_->push_dim(d);
    append_row(name_, kpos, e->dtype, dims_start, e->begin, e->end);
  } else if (e->offsets_ok && e->end <= UINT64_MAX - data_start) {
    orphans_.push_back({data_start + e->begin, data_start + e->end, name_});
  }
}

// Sorts rows by data offset and checks that the data is exactly covered.
void Parser::check_coverage() {
  if (rows_->contiguous() && orphans_.empty()) return check_file_end(rows_->data_end());
  TensorTable& t = out_->table;
  const size_t n = t.size();
  auto before = [&](size_t a, size_t b) {
    return t.begin[a] < t.begin[b] || (t.begin[a] == t.begin[b] && t.end[a] < t.end[b]);
  };
  bool sorted = true;
  for (size_t i = 1; i < n && sorted; ++i) sorted = !before(i, i - 1);
  if (!sorted) {
    std::vector<uint32_t> order(n);
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), before);
    TensorTable s;
    s.name_start.reserve(n + 1);
    s.names.reserve(t.names.size());
    for (uint32_t r : order) {
      const std::string_view name = t.name(r);
      s.names.insert(s.names.end(), name.begin(), name.end());
      s.name_start.push_back(s.names.size());
      s.dtype.push_back(t.dtype[r]);
      s.dims.insert(s.dims.end(), t.dims.begin() + t.shape_start[r], t.dims.begin() + t.shape_start[r + 1]);
      s.shape_start.push_back(s.dims.size());
      s.begin.push_back(t.begin[r]);
      s.end.push_back(t.end[r]);
      s.numel.push_back(t.numel[r]);
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
  check_file_end(expected);
}

void Parser::check_file_end(uint64_t expected) {
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
  // Real indexes spend ~100 bytes per entry, ~60 of them on the name.
  const size_t guess = std::min<size_t>(n_ / 100 + 1, size_t{1} << 20);
  x.names.reserve(guess * 64);
  for (auto* v : {&x.name_start, &x.offset}) v->reserve(guess + 1);
  x.shard.reserve(guess);
  std::unordered_map<std::string, uint32_t> shard_ids;
  uint32_t last = UINT32_MAX;
  auto add = [&](std::string_view name, std::string_view file, size_t kpos) {
    // Consecutive entries usually name the same shard.
    if (last == UINT32_MAX || x.shard_names[last] != file) {
      auto it = shard_ids.find(std::string(file));
      if (it == shard_ids.end()) {
        it = shard_ids.emplace(std::string(file), static_cast<uint32_t>(x.shard_names.size())).first;
        x.shard_names.emplace_back(file);
      }
      last = it->second;
    }
    x.names.insert(x.names.end(), name.begin(), name.end());
    x.name_start.push_back(x.names.size());
    x.shard.push_back(last);
    x.offset.push_back(file_offset(kpos));
  };
  auto plain = [&] {
    const size_t kpos = i_;
    std::string_view name, file;
    if (!plain_entry(&name, &file)) return false;
    add(name, file, kpos);
    return true;
  };
  members(&key_, plain, [&](size_t kpos) {  // escapes, or not a string value
    skip_ws();
    const size_t vpos = i_;
    if (i_ >= n_ || p_[i_] != '"') {
      skip_value(2);
      problem(ErrorCode::kNotObject, vpos, key_, "weight_map value is not a file name");
      return;
    }
    parse_string(&scratch_);
    add(key_, scratch_, kpos);
  });
}

// "name": "file" with neither string escaped, read in place (the index was
// checked for UTF-8 as a whole). False, leaving the position unchanged, otherwise.
bool Parser::plain_entry(std::string_view* name, std::string_view* file) {
  auto plain_string = [&](size_t at, std::string_view* out) -> size_t {
    if (at >= n_ || p_[at] != '"') return 0;
    const size_t close = plain_run(p_, n_, at + 1);
    if (close >= n_ || p_[close] != '"') return 0;
    *out = {reinterpret_cast<const char*>(p_ + at + 1), close - at - 1};
    return close + 1;
  };
  auto ws = [&](size_t at) {
    while (at < n_ && (p_[at] == ' ' || p_[at] == '\n' || p_[at] == '\r' || p_[at] == '\t')) ++at;
    return at;
  };
  size_t j = plain_string(i_, name);
  if (j == 0) return false;
  j = ws(j);
  if (j >= n_ || p_[j] != ':') return false;
  j = plain_string(ws(j + 1), file);
  if (j == 0) return false;
  i_ = j;
  return true;
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
  out.table.name_start = out.table.shape_start = {0};
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
