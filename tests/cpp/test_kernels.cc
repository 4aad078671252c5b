// Standalone differential test of the kernel implementations (no Python):
// every table this CPU can run against scalar on random data with planted
// special codes, all lengths 0..300 and offsets 0..63, odd block shapes.
// Build and run: tests/cpp/build.sh (optionally with -fsanitize=address,undefined).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/kernels.h"

using namespace ckptscan::kernels;

static int failures = 0;
#define CHECK(cond, ...)                                 \
  do {                                                   \
    if (!(cond)) {                                       \
      if (++failures < 20) {                             \
        std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
        std::printf(__VA_ARGS__);                        \
        std::printf("\n");                               \
      }                                                  \
    }                                                    \
  } while (0)

static std::vector<uint8_t> random_bytes(size_t n, std::mt19937_64& rng, int mode) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) {
    const uint64_t r = rng();
    if (mode == 0) b = static_cast<uint8_t>(r);
    else {
      static const uint8_t special[] = {0x00, 0x80, 0x7F, 0xFF, 0x7E, 0xFE, 0x7C, 0xFC,
                                        0x7D, 0xFD, 0x01, 0x81, 0x07, 0x87, 0x08, 0x7B};
      b = (r % 4 == 0) ? special[(r >> 8) % 16] : static_cast<uint8_t>(r >> 16);
    }
  }
  return v;
}

static bool same(const detail::Fp8Raw& a, const detail::Fp8Raw& b) {
  return a.nan == b.nan && a.inf == b.inf && a.zero == b.zero && a.neg_zero == b.neg_zero &&
         a.subnormal == b.subnormal && a.saturated == b.saturated && a.negative == b.negative &&
         a.absmax_code == b.absmax_code;
}
static bool same(const detail::FloatRaw& a, const detail::FloatRaw& b) {
  return a.nan == b.nan && a.pos_inf == b.pos_inf && a.neg_inf == b.neg_inf && a.zero == b.zero &&
         a.subnormal == b.subnormal && a.absmax_bits == b.absmax_bits &&
         a.min_key == b.min_key && a.max_key == b.max_key;
}

int main() {
  std::mt19937_64 rng(42);
  const detail::KernelTable* tables[3] = {&scalar::table, nullptr, nullptr};
  int nt = 1;
  for (int i = 1; i < implementation_count(); ++i) {
    if (!implementation_supported(i)) continue;
    const char* name = implementation_name(i);
#if defined(CKPTSCAN_HAVE_X86)
    tables[nt++] = std::strcmp(name, "avx2") == 0 ? &avx2::table : &avx512::table;
#elif defined(CKPTSCAN_HAVE_NEON)
    if (std::strcmp(name, "neon") == 0) tables[nt++] = &neon::table;
#endif
  }
  const std::vector<uint8_t> big = random_bytes(4096 + 64, rng, 1);
  for (int ti = 1; ti < nt; ++ti) {
    const detail::KernelTable& T = *tables[ti];
    for (int mode = 0; mode < 2; ++mode) {
      const std::vector<uint8_t> buf = random_bytes(300 + 64 + 64, rng, mode);
      for (size_t off = 0; off < 64; off += (mode ? 1 : 7)) {
        for (size_t n = 0; n <= 300; ++n) {
          const uint8_t* p = buf.data() + off;
          for (int f = 0; f < 4; ++f) {
            detail::Fp8Raw a{}, b{};
            if (n) scalar::fp8_stats(p, n, Fp8Format(f), &a);
            if (n) T.fp8_stats(p, n, Fp8Format(f), &b);
            CHECK(same(a, b), "%s fp8_stats fmt %d n %zu off %zu", T.name, f, n, off);
          }
          for (int f = 0; f < 3; ++f) {
            const size_t w = f == 2 ? 4 : 2;
            detail::FloatRaw a{0, 0, 0, 0, 0, 0, w == 4 ? 0xFFFFFFFFu : 0xFFFFu, 0}, b = a;
            if (n / w) scalar::float_stats(p, n / w, FloatFormat(f), &a);
            if (n / w) T.float_stats(p, n / w, FloatFormat(f), &b);
            CHECK(same(a, b), "%s float_stats fmt %d n %zu off %zu", T.name, f, n, off);
          }
          if (n) CHECK(scalar::read_probe(p, n) == T.read_probe(p, n), "%s probe n %zu", T.name, n);
          uint64_t h1[256], h2[256];
          if (n) {
            scalar::histogram(p, n, h1);
            T.histogram(p, n, h2);
            CHECK(std::memcmp(h1, h2, sizeof h1) == 0, "%s histogram n %zu", T.name, n);
          }
        }
      }
    }
    // Block shapes.
    const size_t shapes[][4] = {{1, 1, 1, 1},     {1, 300, 128, 128}, {300, 1, 128, 128},
                                {130, 257, 128, 128}, {7, 33, 3, 5},  {64, 64, 64, 64},
                                {17, 200, 1, 17}, {5, 129, 5, 33},    {33, 4000, 7, 999}};
    for (const auto& s : shapes) {
      const size_t rows = s[0], cols = s[1], br = s[2], bc = s[3];
      const std::vector<uint8_t> q = random_bytes(rows * cols, rng, 1);
      const size_t nbr = (rows + br - 1) / br, nbc = (cols + bc - 1) / bc;
      for (int f = 0; f < 4; ++f) {
        std::vector<uint8_t> am1(nbr * nbc), am2(nbr * nbc);
        std::vector<uint64_t> nn1(nbr * nbc), nn2(nbr * nbc);
        scalar::block_absmax(q.data(), rows, cols, br, bc, Fp8Format(f), am1.data(), nn1.data());
        T.block_absmax(q.data(), rows, cols, br, bc, Fp8Format(f), am2.data(), nn2.data());
        CHECK(am1 == am2 && nn1 == nn2, "%s block_absmax %zux%zu/%zux%zu fmt %d", T.name, rows,
              cols, br, bc, f);
        std::vector<float> sc(nbr * nbc);
        for (auto& x : sc) x = std::ldexp(float(rng() % 1000 + 1) / 997.0f, int(rng() % 40) - 20);
        for (int o = 0; o < 2; ++o) {
          const size_t es = o == 0 ? 4 : 2;
          std::vector<uint8_t> o1(rows * cols * es), o2(rows * cols * es);
          detail::DequantArgs a{q.data(), rows, cols, Fp8Format(f), sc.data(), nbc, br, bc,
                                OutType(o), o1.data()};
          scalar::dequantize(a);
          a.out = o2.data();
          T.dequantize(a);
          CHECK(o1 == o2, "%s dequant %zux%zu/%zux%zu fmt %d out %d", T.name, rows, cols, br, bc, f, o);
        }
      }
    }
  }
  std::printf("%d implementations checked, %d failures\n", nt, failures);
  return failures ? 1 : 0;
}
