// A keyed byte-string hash for the open-addressing tables of the parser and
// the name join. The seed is drawn once per process so that a hostile header
// cannot precompute collisions (which would turn each insert into a long probe).
#pragma once
#include <cstdint>
#include <cstring>
#include <random>
#include <string_view>

namespace ckptscan {

inline uint64_t hash_seed() {
  static const uint64_t seed = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ 0x9E3779B97F4A7C15ULL;
  }();
  return seed;
}

inline uint64_t hash_mix(uint64_t x) {
  x *= 0xff51afd7ed558ccdULL;
  return x ^ (x >> 32);
}

// Two independent lanes of 8 bytes: tensor names are 40-80 bytes, and one
// multiply chain over them is latency-bound. The last 16 (or 8) bytes are
// read in one step, overlapping the previous one, instead of byte by byte.
inline uint64_t hash_bytes(std::string_view s, uint64_t seed) {
  const char* p = s.data();
  const size_t n = s.size();
  uint64_t a = seed ^ (n * 0x9E3779B97F4A7C15ULL), b = seed * 0xc4ceb9fe1a85ec53ULL + n;
  auto load = [](const char* at) {
    uint64_t w;
    std::memcpy(&w, at, 8);
    return w;
  };
  if (n >= 16) {
    for (size_t i = 0; i + 16 < n; i += 16) {
      a = hash_mix(a ^ load(p + i));
      b = hash_mix(b ^ load(p + i + 8));
    }
    a = hash_mix(a ^ load(p + n - 16));
    b = hash_mix(b ^ load(p + n - 8));
  } else if (n >= 8) {
    a = hash_mix(a ^ load(p));
    b = hash_mix(b ^ load(p + n - 8));
  } else {
    uint64_t w = 0;
    for (size_t i = 0; i < n; ++i) w |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
    b = hash_mix(b ^ w);
  }
  const uint64_t h = (a ^ ((b << 23) | (b >> 41))) * 0xc4ceb9fe1a85ec53ULL;
  return h ^ (h >> 29);
}

}  // namespace ckptscan
