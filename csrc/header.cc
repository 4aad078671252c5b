#include "header.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <optional>

#include "json_scan.h"
#include "seen_names.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ckptscan {
namespace {

using json::after;
using json::first_invalid_utf8;
using json::plain_run;
using json::read_u64;

constexpr uint64_t kPrefixLen = 8;

std::string format_u64(uint64_t v) { return std::to_string(v); }

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

// ---- the parser --------------------------------------------------------------

// The safetensors header grammar over json::Scanner: the writers' layout read
// in place (fast_member), any other layout through the general readers
// (tensor_member), rows appended to the table as they come, then the coverage
// check over the rows sorted by offset.
class HeaderParser : public json::Scanner {
 public:
  HeaderParser(const uint8_t* json, size_t n, ParsedHeader* out)
      : Scanner(json, n, kPrefixLen, &out->problems, &out->suppressed), out_(out) {}

  void run();

 private:
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
  // An entry whose name is longer than kMaxNameBytes: reported, read for its
  // problems and its claim on the data, kept out of the table.
  void long_name_member(size_t kpos);
  // Checks the entry's sizes and appends its row (its dims are already at
  // the end of the table's, from dims_start). An unusable entry leaves no row.
  void append_row(std::string_view name, size_t pos, Dtype dtype, size_t dims_start, uint64_t begin,
                  uint64_t end);
  // Records the problem that keeps an entry out of the table.
  [[gnu::noinline]] void reject_row(std::string_view name, size_t pos, Dtype dtype, size_t dims_start,
                                    uint64_t begin, uint64_t end, bool overflow, uint64_t numel,
                                    uint64_t total_bits);
  // An entry with usable offsets but no row: its bytes are still claimed.
  void add_orphan(const Entry& e, std::string name);
  void check_coverage();
  // Replaces everything found by the one problem: invalid UTF-8 at pos.
  void not_utf8(size_t pos);
  // Where the header says the data ends against the file's size.
  void check_file_end(uint64_t data_end);

  ParsedHeader* out_;
  std::optional<TableBuilder> rows_;
  SeenNames seen_;
  bool seen_metadata_ = false;
  std::string key_;
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

void HeaderParser::parse_metadata(size_t key_pos) {
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
        problem(ErrorCode::kDuplicateKey, kpos, {}, [&] { return "__metadata__ key \"" + shown(k) + "\" appears twice"; });
      } else {
        out_->metadata.emplace_back(k, v);
      }
    } else {
      skip_value(2);
      problem(ErrorCode::kMetadata, vpos, {}, [&] { return "__metadata__ value of \"" + shown(k) + "\" is not a string"; });
    }
  });
}

const uint8_t* HeaderParser::read_dtype(const uint8_t* q, const uint8_t* end, Dtype* dtype) {
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

// The writers' layout, read in place: "name":{"dtype":"X","shape":[..],
// "data_offsets":[b,e]} with no whitespace and an ASCII name without escapes
// (so every byte read here is ASCII: no UTF-8 check needed). Returns
// false, leaving the position unchanged, on any deviation: the general path
// then reads the member (and reports what is wrong), so both paths accept the
// same inputs.
bool HeaderParser::fast_member() {
  const uint8_t* const end = p_ + n_;
  const size_t kpos = i_;
  if (kpos >= n_ || p_[kpos] != '"') return false;
  const size_t close = plain_run<true>(p_, n_, kpos + 1);  // an ASCII name, or the general path
  const uint8_t* q = after(p_ + close, end, "\":{\"dtype\":\"");
  const std::string_view key(reinterpret_cast<const char*>(p_ + kpos + 1), close - kpos - 1);
  if (q == nullptr || key == "__metadata__" || key.size() > kMaxNameBytes) return false;
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

void HeaderParser::parse_entry(std::string_view name, Entry* e) {
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
        problem(ErrorCode::kDuplicateKey, kpos, name, [&] { return "field \"" + shown(key_) + "\" appears twice"; });
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
          problem(ErrorCode::kBadDtype, vpos, name, [&] { return "unknown dtype \"" + shown(scratch_) + "\""; });
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
                [&] { return "data_offsets has " + std::to_string(offs.size()) + " values, not 2"; });
        ok = false;
      } else if (ok && offs[0] > offs[1]) {
        problem(ErrorCode::kBadOffsets, vpos, name, [&] {
          return "data_offsets begin " + format_u64(offs[0]) + " is after end " + format_u64(offs[1]);
        });
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

[[gnu::always_inline]] inline void HeaderParser::append_row(std::string_view name, size_t pos, Dtype dtype,
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
    problem(ErrorCode::kSizeMismatch, pos, name, [&] {
      return "data_offsets span " + format_u64(end - begin) + " bytes but " + std::string(dtype_info(dtype).name) +
             " shape needs " + format_u64(total_bits / 8);
    });
  }
  rows_->add(dtype, data_start + begin, data_start + end, numel, name);
}

void HeaderParser::reject_row(std::string_view name, size_t pos, Dtype dtype, size_t dims_start,
                              uint64_t begin, uint64_t end, bool overflow, uint64_t numel, uint64_t total_bits) {
  const uint64_t data_start = kPrefixLen + out_->header_len;
  if (overflow) {
    problem(ErrorCode::kSizeOverflow, pos, name, "element count times dtype width overflows 64 bits");
  } else if (total_bits % 8 != 0) {
    problem(ErrorCode::kNotByteAligned, pos, name, [&] {
      return std::to_string(numel) + " elements of " + std::string(dtype_info(dtype).name) + " are " +
             std::to_string(total_bits) + " bits, not a whole number of bytes";
    });
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
void HeaderParser::run() {
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

void HeaderParser::not_utf8(size_t pos) {
  sink_.clear();
  out_->table = TensorTable{};
  out_->metadata.clear();
  out_->has_metadata = false;
  problem(ErrorCode::kNotUtf8, pos, {}, "header is not valid UTF-8");
}

// One "name": {...} member of the header, its key just read into key_.
void HeaderParser::tensor_member(size_t kpos, Entry* e) {
  if (key_.size() > kMaxNameBytes) return long_name_member(kpos);
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
  if (e->valid) {
    const size_t dims_start = rows_->dims_size();
    for (uint64_t d : e->shape) rows_->push_dim(d);
    append_row(name_, kpos, e->dtype, dims_start, e->begin, e->end);
  } else {
    add_orphan(*e, name_);
  }
}

// Not a duplicate check, a row or missing-field problems for it: the name is
// shown cut short in the problems about the entry and in the coverage check.
void HeaderParser::long_name_member(size_t kpos) {
  const std::string label = shown(key_);
  problem(ErrorCode::kNameTooLong, kpos, label, [&] {
    return "tensor name of " + std::to_string(key_.size()) + " bytes, more than the " +
           std::to_string(kMaxNameBytes) + "-byte limit (real names are under 300): entry not read";
  });
  Entry e;
  parse_entry(label, &e);
  add_orphan(e, label);
}

void HeaderParser::add_orphan(const Entry& e, std::string name) {
  const uint64_t data_start = kPrefixLen + out_->header_len;
  if (e.offsets_ok && e.end <= UINT64_MAX - data_start) {
    orphans_.push_back({data_start + e.begin, data_start + e.end, std::move(name)});
  }
}

// Sorts rows by data offset and checks that the data is exactly covered.
void HeaderParser::check_coverage() {
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
                 [&] { return std::to_string(b - expected) + " unused bytes before this tensor's data"; });
    } else if (b < expected) {
      problem_at(ErrorCode::kOffsetOverlap, b, name,
                 [&] { return "data overlaps the previous tensor's (" + std::string(prev) + ")"; });
    }
    expected = std::max(expected, e);
    prev = name;
  }
  check_file_end(expected);
}

void HeaderParser::check_file_end(uint64_t expected) {
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

}  // namespace

ParsedHeader parse_header_json(const uint8_t* json, size_t n, uint64_t file_size) {
  ParsedHeader out;
  out.header_len = n;
  out.file_size = file_size;
  out.data_start = kPrefixLen + n;
  out.data_end = out.data_start;
  HeaderParser(json, n, &out).run();
  return out;
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
