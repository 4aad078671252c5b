// Strict parser for a safetensors header: 8-byte little-endian length N, then N
// bytes of UTF-8 JSON describing each tensor's dtype, shape and data offsets.
// It checks everything the reference implementation checks and more (duplicate
// names, exact coverage, trailing bytes, name length), and reports what it
// finds (at most kMaxProblemsPerCode problems of each code, the rest counted).
// The JSON reading is json_scan.h's; index.json is index_json.h, the name
// join across shards name_match.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "column.h"
#include "dtype.h"
#include "errors.h"

namespace ckptscan {

inline constexpr uint64_t kMaxHeaderLen = 100'000'000;  // the reference's bound

// The longest tensor name read (in bytes of UTF-8), in a header or an index.
// Real names are module paths well under 300 bytes: the longest in the
// MiniMax-M2, DeepSeek-V3, Qwen3-MoE and Llama-3 layouts (replica.py) are
// 47-64 bytes. 4,096 leaves a factor of 60 for deeper nesting or long custom
// prefixes. Past it a name is a payload, not a name (one of 90 MB would cost
// every later stage: its template, each message and report line naming it):
// the entry is reported (kNameTooLong) and left out of the table.
inline constexpr size_t kMaxNameBytes = 4096;

// The parsed tensors as columns (struct of arrays): a 96k-tensor checkpoint
// must not cost 96k heap objects. Row i is tensor i, ordered by data offset.
struct TensorTable {
  Column<char> names;                // all names, concatenated
  Column<uint64_t> name_start{0};    // size n + 1: name i = names[start[i], start[i+1])
  Column<uint8_t> dtype;             // Dtype
  Column<uint64_t> shape_start{0};   // size n + 1, into dims
  Column<uint64_t> dims;
  Column<uint64_t> begin;            // absolute byte offsets in the file
  Column<uint64_t> end;
  Column<uint64_t> numel;

  size_t size() const { return dtype.size(); }
  std::string_view name(size_t i) const {
    return std::string_view(names.data() + name_start[i], name_start[i + 1] - name_start[i]);
  }
};

struct ParsedHeader {
  uint64_t header_len = 0;   // N
  uint64_t file_size = 0;
  uint64_t data_start = 0;   // 8 + N
  uint64_t data_end = 0;     // where the header says data ends (absolute)
  bool has_metadata = false;
  std::vector<std::pair<std::string, std::string>> metadata;
  TensorTable table;
  std::vector<Problem> problems;  // at most kMaxProblemsPerCode of each code
  SuppressedCounts suppressed{};  // per code, the problems beyond those
  bool ok() const { return problems.empty(); }
};

// Parses the N JSON bytes of a header whose file is `file_size` bytes long.
// Never throws on bad input; every problem lands in `problems`.
ParsedHeader parse_header_json(const uint8_t* json, size_t n, uint64_t file_size);

// Parses a whole header from its first bytes: `prefix` holds the first
// `prefix_len` bytes of the file (at least min(file_size, 8 + N) when
// available). Checks the length prefix, then calls parse_header_json.
ParsedHeader parse_header_bytes(const uint8_t* prefix, size_t prefix_len, uint64_t file_size);

}  // namespace ckptscan
