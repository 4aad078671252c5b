// model.safetensors.index.json: its weight_map (tensor name -> shard file) and
// metadata.total_size, read by the JSON scanner of json_scan.h. Problems are
// capped per code as a header's are (kMaxProblemsPerCode); names longer than
// kMaxNameBytes (header.h) are reported and not read.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "column.h"
#include "errors.h"

namespace ckptscan {

// The weight_map as columns: entry i maps name i to shard_names[shard[i]].
// Problems (offsets from the file's start) say what is wrong; a syntax error
// leaves no entries.
struct IndexTable {
  Column<char> names;
  Column<uint64_t> name_start{0};
  Column<uint32_t> shard;
  Column<uint64_t> offset;  // of each entry's name in the file
  std::vector<std::string> shard_names;
  bool has_total_size = false;
  uint64_t total_size = 0;
  std::vector<Problem> problems;  // at most kMaxProblemsPerCode of each code
  SuppressedCounts suppressed{};  // per code, the problems beyond those

  size_t size() const { return shard.size(); }
  std::string_view name(size_t i) const {
    return std::string_view(names.data() + name_start[i], name_start[i + 1] - name_start[i]);
  }
};

IndexTable parse_index_json(const uint8_t* json, size_t n);

}  // namespace ckptscan
