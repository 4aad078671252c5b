// Invariants every ParsedHeader and IndexTable must satisfy, whatever the
// input. Shared by the libFuzzer target (fuzz/fuzz_header.cc) and the
// sanitizer test driver (tests/cpp/parser_driver.cc). Each check returns ""
// when everything holds, else a description of the first violation.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "dtype.h"
#include "errors.h"
#include "header.h"
#include "index_json.h"
#include "name_match.h"
#include "name_template.h"

namespace ckptscan_fuzz {

using ckptscan::ErrorCode;
using ckptscan::ParsedHeader;
using ckptscan::TensorTable;

// Rebuilds a name from its template and integers: every dotted component that
// is exactly "{}" takes the next integer. A name that itself has a literal "{}"
// component is kept whole with no integers (see name_template.h).
inline bool rebuild_name(std::string_view tmpl, const int64_t* ints, size_t n_ints, std::string* out) {
  out->clear();
  size_t used = 0, start = 0;
  for (;;) {
    size_t dot = tmpl.find('.', start);
    if (dot == std::string_view::npos) dot = tmpl.size();
    const std::string_view part = tmpl.substr(start, dot - start);
    if (part == "{}" && n_ints > 0) {
      if (used == n_ints) return false;
      *out += std::to_string(ints[used++]);
    } else {
      *out += part;
    }
    if (dot == tmpl.size()) break;
    out->push_back('.');
    start = dot + 1;
  }
  return used == n_ints;
}

inline bool is_coverage_code(ErrorCode c) {
  return c == ErrorCode::kTruncated || c == ErrorCode::kTrailingBytes;
}

// Codes in range, messages present, at most kMaxProblemsPerCode of a code
// kept, and a code counted as suppressed only once that many are kept.
inline std::string check_problems(const std::vector<ckptscan::Problem>& problems,
                                  const ckptscan::SuppressedCounts& suppressed) {
  std::vector<uint32_t> kept(ckptscan::kErrorCodeCount, 0);
  for (const auto& p : problems) {
    const int c = static_cast<int>(p.code);
    if (c >= ckptscan::kErrorCodeCount) return "problem code out of range: " + std::to_string(c);
    if (p.message.empty()) return "problem with an empty message";
    if (++kept[c] > ckptscan::kMaxProblemsPerCode) {
      return "more than kMaxProblemsPerCode problems of " + std::string(ckptscan::kErrorNames[c]);
    }
  }
  for (int c = 0; c < ckptscan::kErrorCodeCount; ++c) {
    if (suppressed[c] != 0 && kept[c] != ckptscan::kMaxProblemsPerCode) {
      return std::string(ckptscan::kErrorNames[c]) + " problems suppressed before the cap was reached";
    }
  }
  return {};
}

template <class V>
std::string check_starts(const char* what, const V& starts, size_t n, size_t total) {
  if (starts.size() != n + 1) {
    return std::string(what) + ".size() is " + std::to_string(starts.size()) + ", expected n + 1 = " +
           std::to_string(n + 1);
  }
  if (starts[0] != 0) return std::string(what) + "[0] != 0";
  for (size_t i = 0; i < n; ++i) {
    if (starts[i] > starts[i + 1]) return std::string(what) + " decreases at row " + std::to_string(i);
  }
  if (starts[n] != total) return std::string(what) + "[n] does not match the column it indexes";
  return {};
}

// `file_size` is what the caller passed to the parser.
inline std::string check_header(const ParsedHeader& h, uint64_t file_size) {
  const TensorTable& t = h.table;
  const size_t n = t.size();
  auto row = [](size_t i) { return " (row " + std::to_string(i) + ")"; };

  std::string err = check_problems(h.problems, h.suppressed);
  if (!err.empty()) return err;
  if (h.ok() != h.problems.empty()) return "ok() disagrees with problems";
  if (h.file_size != file_size) return "file_size not the one passed in";

  // Column lengths.
  for (auto [len, what] : {std::pair{t.begin.size(), "begin"}, std::pair{t.end.size(), "end"},
                           std::pair{t.numel.size(), "numel"}, std::pair{t.dtype.size(), "dtype"}}) {
    if (len != n) return std::string(what) + ".size() != n";
  }
  if (!(err = check_starts("name_start", t.name_start, n, t.names.size())).empty()) return err;
  if (!(err = check_starts("shape_start", t.shape_start, n, t.dims.size())).empty()) return err;
  const ckptscan::NameTemplates nt = ckptscan::name_templates(t);
  if (nt.template_id.size() != n) return "template_id.size() != n";
  if (!(err = check_starts("ints_start", nt.ints_start, n, nt.ints.size())).empty()) return err;

  // Templates are distinct.
  std::unordered_set<std::string_view> tmpls;
  for (const auto& s : nt.templates) {
    if (!tmpls.insert(s).second) return "template \"" + s + "\" listed twice";
  }

  std::unordered_set<std::string_view> names;
  std::string tmpl, rebuilt, ref_tmpl;
  std::vector<int64_t> ints, ref_ints;
  for (size_t i = 0; i < n; ++i) {
    const std::string_view name = t.name(i);
    if (!names.insert(name).second) return "tensor name \"" + std::string(name) + "\" in the table twice";
    if (name.size() > ckptscan::kMaxNameBytes) return "a name longer than kMaxNameBytes in the table" + row(i);
    if (t.dtype[i] >= ckptscan::kDtypeCount) return "dtype out of range" + row(i);
    if (t.begin[i] > t.end[i]) return "begin > end" + row(i);
    if (t.begin[i] < h.data_start) return "begin before data_start" + row(i);
    if (t.end[i] > h.data_end) return "end past data_end" + row(i);
    if (i > 0 && (t.begin[i - 1] > t.begin[i] || (t.begin[i - 1] == t.begin[i] && t.end[i - 1] > t.end[i]))) {
      return "rows not sorted by (begin, end)" + row(i);
    }
    // numel is the product of the dims (it was computed with overflow checks).
    uint64_t numel = 1;
    for (uint64_t k = t.shape_start[i]; k < t.shape_start[i + 1]; ++k) {
      const uint64_t d = t.dims[k];
      if (d != 0 && numel > UINT64_MAX / d) return "numel overflows" + row(i);
      numel *= d;
    }
    if (numel != t.numel[i]) return "numel != prod(shape)" + row(i);
    // Template and integers: the table's are what name_template gives, which
    // is what the component-at-a-time reference gives, and they rebuild the name.
    if (nt.template_id[i] >= nt.templates.size()) return "template id out of range" + row(i);
    const std::string& stored = nt.templates[nt.template_id[i]];
    const int64_t* row_ints = nt.ints.data() + nt.ints_start[i];
    const size_t n_ints = nt.ints_start[i + 1] - nt.ints_start[i];
    ckptscan::name_template(name, &tmpl, &ints);
    ckptscan::name_template_reference(name, &ref_tmpl, &ref_ints);
    if (tmpl != ref_tmpl || ints != ref_ints) {
      return "name_template(\"" + std::string(name) + "\") differs from the reference" + row(i);
    }
    if (tmpl != stored) return "stored template \"" + stored + "\" != name_template(name) \"" + tmpl + "\"" + row(i);
    if (ints.size() != n_ints || (n_ints > 0 && std::memcmp(ints.data(), row_ints, n_ints * sizeof(int64_t)) != 0)) {
      return "stored integers differ from name_template(name)" + row(i);
    }
    for (int64_t v : ints) {
      if (v < 0) return "negative integer in a name" + row(i);
    }
    if (!rebuild_name(stored, row_ints, n_ints, &rebuilt) || rebuilt != name) {
      return "template \"" + stored + "\" + ints does not rebuild the name \"" + std::string(name) + "\"" + row(i);
    }
  }

  if (h.problems.empty()) {
    if (h.data_start != 8 + h.header_len) return "data_start != 8 + header_len";
    if (h.data_end != file_size) return "no problem reported but data_end != file_size";
    uint64_t cur = h.data_start;
    for (size_t i = 0; i < n; ++i) {
      if (t.begin[i] != cur) return "no problem reported but the data is not exactly covered" + row(i);
      const uint64_t bits = ckptscan::kDtypes[t.dtype[i]].bits;
      if (t.numel[i] > UINT64_MAX / bits || t.numel[i] * bits % 8 != 0 ||
          t.end[i] - t.begin[i] != t.numel[i] * bits / 8) {
        return "no problem reported but the size does not match the shape" + row(i);
      }
      cur = t.end[i];
    }
    if (cur != h.data_end) return "no problem reported but the rows do not end at data_end";
    if (!h.has_metadata && !h.metadata.empty()) return "metadata without has_metadata";
  }
  return {};
}

// Two parses of the same header bytes with different file sizes must agree on
// everything but the truncated / trailing-bytes verdict.
inline std::string check_same_header(const ParsedHeader& a, const ParsedHeader& b) {
  const TensorTable &x = a.table, &y = b.table;
  if (x.names != y.names || x.name_start != y.name_start || x.dtype != y.dtype || x.shape_start != y.shape_start ||
      x.dims != y.dims || x.begin != y.begin || x.end != y.end || x.numel != y.numel) {
    return "the table depends on the file size";
  }
  if (a.metadata != b.metadata || a.has_metadata != b.has_metadata || a.data_end != b.data_end ||
      a.data_start != b.data_start || a.header_len != b.header_len) {
    return "metadata / data_end depend on the file size";
  }
  std::vector<int> pa, pb;
  for (const auto& p : a.problems) {
    if (!is_coverage_code(p.code)) pa.push_back(static_cast<int>(p.code));
  }
  for (const auto& p : b.problems) {
    if (!is_coverage_code(p.code)) pb.push_back(static_cast<int>(p.code));
  }
  if (pa != pb) return "non-coverage problems depend on the file size";
  for (int c = 0; c < ckptscan::kErrorCodeCount; ++c) {
    if (!is_coverage_code(static_cast<ErrorCode>(c)) && a.suppressed[c] != b.suppressed[c]) {
      return "suppressed counts depend on the file size";
    }
  }
  return {};
}

// ---- index.json and the name join --------------------------------------------

// The same bytes read as a model.safetensors.index.json (`x`, parsed from
// `size` bytes), then joined with a header's table (every index shard taken
// as that header): columns agree, problems obey the cap, every index and row
// the join returns is in range and names the same name.
inline std::string check_index(const ckptscan::IndexTable& x, size_t size, const ParsedHeader& header) {
  std::string err = check_problems(x.problems, x.suppressed);
  if (!err.empty()) return "index: " + err;
  const size_t n = x.size();
  if (x.name_start.size() != n + 1 || x.offset.size() != n) return "index: column lengths";
  if (x.name_start.back() != x.names.size()) return "index: names buffer";
  for (size_t e = 0; e < n; ++e) {
    if (x.shard[e] >= x.shard_names.size()) return "index: shard id out of range";
    if (x.offset[e] >= size) return "index: entry offset past the input";
    if (x.name(e).size() > ckptscan::kMaxNameBytes) return "index: a name longer than kMaxNameBytes";
  }
  const std::vector<int64_t> pos(x.shard_names.size(), 0);
  const ckptscan::NameMatch m = ckptscan::match_names(&x, {&header.table}, pos);
  const int64_t rows = static_cast<int64_t>(header.table.size());
  if (m.entry_row.size() != n || m.row_entry.size() != static_cast<size_t>(rows)) return "match sizes";
  for (size_t e = 0; e < n; ++e) {
    const int64_t r = m.entry_row[e];
    if (r < -1 || r >= rows) return "entry_row out of range";
    if (r >= 0 && header.table.name(static_cast<size_t>(r)) != x.name(e)) return "entry matched to another name";
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t e = m.row_entry[r];
    if (e < -1 || e >= static_cast<int64_t>(n)) return "row_entry out of range";
    if (e >= 0 && x.name(static_cast<size_t>(e)) != header.table.name(static_cast<size_t>(r))) {
      return "row matched to another name";
    }
    if (m.dup_of[r] >= 0) return "duplicate within one header";
  }
  return {};
}

// ---- round trip -------------------------------------------------------------

inline void json_string(std::string* out, std::string_view s) {
  out->push_back('"');
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      static const char* hex = "0123456789abcdef";
      *out += "\\u00";
      out->push_back(hex[c >> 4]);
      out->push_back(hex[c & 15]);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
  out->push_back('"');
}

// Writes the header a well-behaved writer would produce for `h` (length prefix
// included, spaces to 8-byte alignment). Only meaningful when h.ok().
inline std::string canonical_header(const ParsedHeader& h) {
  const TensorTable& t = h.table;
  std::string json = "{";
  bool first = true;
  if (h.has_metadata) {
    json += "\"__metadata__\":{";
    for (size_t k = 0; k < h.metadata.size(); ++k) {
      if (k) json += ',';
      json_string(&json, h.metadata[k].first);
      json += ':';
      json_string(&json, h.metadata[k].second);
    }
    json += '}';
    first = false;
  }
  for (size_t i = 0; i < t.size(); ++i) {
    if (!first) json += ',';
    first = false;
    json_string(&json, t.name(i));
    json += ":{\"dtype\":\"";
    json += ckptscan::kDtypes[t.dtype[i]].name;
    json += "\",\"shape\":[";
    for (uint64_t k = t.shape_start[i]; k < t.shape_start[i + 1]; ++k) {
      if (k != t.shape_start[i]) json += ',';
      json += std::to_string(t.dims[k]);
    }
    json += "],\"data_offsets\":[" + std::to_string(t.begin[i] - h.data_start) + "," +
            std::to_string(t.end[i] - h.data_start) + "]}";
  }
  json += '}';
  while ((8 + json.size()) % 8 != 0) json += ' ';
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int k = 0; k < 8; ++k) out[k] = static_cast<char>((n >> (8 * k)) & 0xFF);
  return out + json;
}

// A valid header, rewritten canonically, parses to the same table.
inline std::string check_round_trip(const ParsedHeader& h) {
  if (!h.ok()) return {};
  const std::string bytes = canonical_header(h);
  const uint64_t size = bytes.size() + (h.data_end - h.data_start);
  const ParsedHeader r =
      ckptscan::parse_header_bytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), size);
  if (!r.ok()) {
    return "the canonical rewrite of a valid header is rejected: " + std::string(ckptscan::error_name(r.problems[0].code)) +
           ": " + r.problems[0].message;
  }
  const TensorTable &x = h.table, &y = r.table;
  if (x.names != y.names || x.name_start != y.name_start || x.dtype != y.dtype || x.dims != y.dims ||
      x.shape_start != y.shape_start || x.numel != y.numel) {
    return "the canonical rewrite of a valid header parses to another table";
  }
  for (size_t i = 0; i < x.size(); ++i) {
    if (x.begin[i] - h.data_start != y.begin[i] - r.data_start || x.end[i] - h.data_start != y.end[i] - r.data_start) {
      return "the canonical rewrite moves a tensor's offsets";
    }
  }
  if (h.metadata != r.metadata || h.has_metadata != r.has_metadata) return "the canonical rewrite changes __metadata__";
  return {};
}

}  // namespace ckptscan_fuzz
