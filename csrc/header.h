// Strict parser for a safetensors header: 8-byte little-endian length N, then N
// bytes of UTF-8 JSON describing each tensor's dtype, shape and data offsets.
// It checks everything the reference implementation checks and more (duplicate
// names, exact coverage, trailing bytes), and reports every problem it finds.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "column.h"
#include "dtype.h"
#include "errors.h"

namespace ckptscan {

inline constexpr uint64_t kMaxHeaderLen = 100'000'000;  // the reference's bound
// Nesting the reference (serde_json) accepts: 127 containers in all, the
// top-level object and the tensor entry included (depth counts from 1 there).
inline constexpr int kMaxJsonDepth = 126;

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
  std::vector<Problem> problems;
  bool ok() const { return problems.empty(); }
};

// A model.safetensors.index.json's weight_map as columns: entry i maps name i
// to shard_names[shard[i]]. Problems (offsets from the file's start) say what
// is wrong; a syntax error leaves no entries.
struct IndexTable {
  Column<char> names;
  Column<uint64_t> name_start{0};
  Column<uint32_t> shard;
  Column<uint64_t> offset;  // of each entry's name in the file
  std::vector<std::string> shard_names;
  bool has_total_size = false;
  uint64_t total_size = 0;
  std::vector<Problem> problems;

  size_t size() const { return shard.size(); }
  std::string_view name(size_t i) const {
    return std::string_view(names.data() + name_start[i], name_start[i + 1] - name_start[i]);
  }
};

IndexTable parse_index_json(const uint8_t* json, size_t n);

// Joins names across an index (may be null) and the shards' tables, rows
// numbered across the shards in order. shard_pos[id] is the position in
// `shards` of the index's shard_names[id] (-1: not among them). entry_row[e]
// is the row matched to entry e (-1: in no shard); row_entry[r] the entry
// naming row r (-1: not in the index); dup_of[r] another row with the same
// name (-1: none).
struct NameMatch {
  std::vector<int64_t> entry_row, row_entry, dup_of;
};
NameMatch match_names(const IndexTable* index, const std::vector<const TensorTable*>& shards,
                      const std::vector<int64_t>& shard_pos);

// Parses the N JSON bytes of a header whose file is `file_size` bytes long.
// Never throws on bad input; every problem lands in `problems`.
ParsedHeader parse_header_json(const uint8_t* json, size_t n, uint64_t file_size);

// Parses a whole header from its first bytes: `prefix` holds the first
// `prefix_len` bytes of the file (at least min(file_size, 8 + N) when
// available). Checks the length prefix, then calls parse_header_json.
ParsedHeader parse_header_bytes(const uint8_t* prefix, size_t prefix_len, uint64_t file_size);

}  // namespace ckptscan
