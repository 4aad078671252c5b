#include "name_match.h"

#include <string_view>

#include "hash.h"

namespace ckptscan {
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

}  // namespace ckptscan
