// The name join across an index.json and the shards' tables: which row each
// index entry names, which entry names each row, and which rows repeat a name
// held by another shard. Per shard first (cache-sized hash tables), then one
// table over what is left.
#pragma once
#include <cstdint>
#include <vector>

#include "header.h"
#include "index_json.h"

namespace ckptscan {

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

}  // namespace ckptscan
