#include "digest.h"

#include <cstring>

namespace ckptscan {
namespace {

constexpr uint64_t kMul0 = 0x9E3779B97F4A7C15ULL;  // 2^64 / golden ratio
constexpr uint64_t kMul1 = 0xD6E8FEB86659FD93ULL;
constexpr uint64_t kMul2 = 0xA0761D6478BD642FULL;
constexpr uint64_t kMul3 = 0xE7037ED1A0B428DBULL;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline uint64_t load_le64(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = __builtin_bswap64(w);
#endif
  return w;
}

// One word into one lane: every step is invertible (odd multipliers).
inline uint64_t round(uint64_t lane, uint64_t word) {
  lane += word * kMul1;
  lane = rotl(lane, 29);
  return lane * kMul0;
}

// Spreads every input bit over the whole word (shift-xor-multiply steps).
inline uint64_t finish(uint64_t x) {
  x ^= x >> 32;
  x *= kMul2;
  x ^= x >> 29;
  x *= kMul3;
  x ^= x >> 32;
  return x;
}

}  // namespace

Digest128 digest128(const uint8_t* p, size_t n) {
  uint64_t v[4] = {kMul0, kMul1, kMul2, kMul3};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) v[k] = round(v[k], load_le64(p + i + 8 * k));
  }
  int lane = 0;
  for (; i + 8 <= n; i += 8, ++lane) v[lane] = round(v[lane], load_le64(p + i));
  if (i < n) {  // the last 1-7 bytes, with their count so that zeros count too
    uint64_t w = 0;
    for (size_t j = 0; i + j < n; ++j) w |= static_cast<uint64_t>(p[i + j]) << (8 * j);
    v[lane] = round(v[lane], w ^ (static_cast<uint64_t>(n - i) << 56));
  }
  const uint64_t len = static_cast<uint64_t>(n);
  const uint64_t a = v[0] + rotl(v[1], 17) + rotl(v[2], 31) + rotl(v[3], 47) + len * kMul2;
  const uint64_t b = v[1] ^ rotl(v[2], 13) ^ rotl(v[3], 23) ^ rotl(v[0], 41) ^ (len * kMul3);
  const uint64_t lo = finish(a ^ rotl(b, 32));
  const uint64_t hi = finish(b + lo * kMul1);
  return Digest128{lo, hi};
}

}  // namespace ckptscan
