// Sets of names for the header parser (header.cc): NameSet, a hash set (also
// used for __metadata__ keys), and SeenNames, the tensor names a header has
// shown so far, for rejecting a repeated one (sorted runs compared in order
// while the header is in the writers' order, a NameSet otherwise). The
// per-tensor path is always_inline: left to the inliner, it became an
// out-of-line call once these moved out of header.cc (2-4% of a parse).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "hash.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ckptscan {

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
[[gnu::always_inline]] inline int compare_names(std::string_view a, std::string_view b) {
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
  [[gnu::always_inline]] bool in_earlier_run(std::string_view key) {
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

}  // namespace ckptscan
