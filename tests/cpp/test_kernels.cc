// Standalone differential test of the kernel implementations (no Python):
// every table this CPU can run against scalar on random data with planted
// special codes, all lengths 0..300 and offsets 0..63, odd block shapes
// (packed (1, 16/32/64) groups included), every count width; and, through the
// dispatching entry points on every path, blocks of 2^64 - 1 and other shapes
// whose arithmetic used to wrap.
// Build and run: tests/cpp/build.sh (optionally with -fsanitize=address,undefined).
#include <algorithm>
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
    // Block shapes, each matrix compared with scalar block by block.
    const size_t shapes[][4] = {{1, 1, 1, 1},     {1, 300, 128, 128}, {300, 1, 128, 128},
                                {130, 257, 128, 128}, {7, 33, 3, 5},  {64, 64, 64, 64},
                                {17, 200, 1, 17}, {5, 129, 5, 33},    {33, 4000, 7, 999},
                                {300, 32, 1, 32}, {97, 48, 1, 16},    {41, 192, 1, 64},
                                {600, 64, 1, 32}, {3, 7168, 1, 7168}, {9, 160, 1, 32},
                                {2, 16, 1, 16},   {1, 48, 1, 16},     {257, 128, 1, 64}};
    for (const auto& s : shapes) {
      const size_t rows = s[0], cols = s[1], br = s[2], bc = s[3];
      const std::vector<uint8_t> q = random_bytes(rows * cols, rng, 1);
      const size_t nbr = (rows + br - 1) / br, nbc = (cols + bc - 1) / bc, nb = nbr * nbc;
      const detail::Matrix m{q.data(), rows, cols, br, bc, nbr, nbc};
      for (int f = 0; f < 4; ++f) {
        for (int width : {1, 2, 4, 8}) {
          if (width == 1 && std::min(br, rows) * std::min(bc, cols) > 255) continue;
          if (width == 2 && std::min(br, rows) * std::min(bc, cols) > 65535) continue;
          const size_t w = static_cast<size_t>(width);
          std::vector<uint8_t> am1(nb), am2(nb), c1(3 * nb * w), c2(3 * nb * w);
          detail::Fp8Raw r1{}, r2{};
          scalar::block_stats(m, Fp8Format(f), &r1,
                              {am1.data(), c1.data(), c1.data() + nb * w, c1.data() + 2 * nb * w, width});
          T.block_stats(m, Fp8Format(f), &r2,
                        {am2.data(), c2.data(), c2.data() + nb * w, c2.data() + 2 * nb * w, width});
          CHECK(same(r1, r2) && am1 == am2 && c1 == c2, "%s block_stats %zux%zu/%zux%zu fmt %d w %d",
                T.name, rows, cols, br, bc, f, width);
          // null outputs: same totals
          detail::Fp8Raw r3{};
          T.block_stats(m, Fp8Format(f), &r3, {nullptr, nullptr, nullptr, nullptr, width});
          CHECK(same(r1, r3), "%s block_stats (no outputs) %zux%zu/%zux%zu fmt %d", T.name, rows,
                cols, br, bc, f);
        }
        std::vector<float> sc(nb);
        for (auto& x : sc) x = std::ldexp(float(rng() % 1000 + 1) / 997.0f, int(rng() % 40) - 20);
        for (int o = 0; o < 2; ++o) {
          const size_t es = o == 0 ? 4 : 2;
          std::vector<uint8_t> o1(rows * cols * es), o2(rows * cols * es);
          detail::DequantArgs a{m, Fp8Format(f), sc.data(), OutType(o), o1.data()};
          scalar::dequantize(a);
          a.out = o2.data();
          T.dequantize(a);
          CHECK(o1 == o2, "%s dequant %zux%zu/%zux%zu fmt %d out %d", T.name, rows, cols, br, bc, f, o);
        }
      }
    }
  }

  // Shapes whose block count used to wrap ((rows + br - 1) / br == 0 for br =
  // 2^64 - 1): through the entry points on every path, outputs sized from
  // block_grid() exactly (ASan sees any write past them), results against a
  // count made here.
  const size_t kHuge = ~size_t{0};
  const size_t odd[][4] = {{8, 8, kHuge, 1},        {8, 8, 1, kHuge},         {8, 8, kHuge, kHuge},
                           {8, 8, size_t{1} << 63, 3}, {5, 9, kHuge - 1, 2},  {9, 5, 4, kHuge / 2 + 2},
                           {1, 64, 1, kHuge}};
  for (int i = 0; i < implementation_count(); ++i) {
    if (!implementation_supported(i)) continue;
    CHECK(select_simd(implementation_name(i)) == Status::ok, "select %s", implementation_name(i));
    for (const auto& s : odd) {
      const size_t rows = s[0], cols = s[1], br = s[2], bc = s[3];
      BlockGrid g;
      CHECK(block_grid(1, rows, cols, br, bc, &g) == Status::ok, "grid %zu %zu", br, bc);
      const size_t nbr = br >= rows ? 1 : (rows + br - 1) / br, nbc = bc >= cols ? 1 : (cols + bc - 1) / bc;
      CHECK(g.nbr == nbr && g.nbc == nbc && g.blocks == nbr * nbc, "grid counts %zu %zu", br, bc);
      const std::vector<uint8_t> q = random_bytes(rows * cols, rng, 1);
      std::vector<uint8_t> am(g.blocks);
      std::vector<uint64_t> nn(g.blocks);
      CHECK(fp8_block_absmax(q.data(), q.size(), rows, cols, br, bc, Fp8Format::e4m3fn, am.data(),
                             nn.data(), g.blocks) == Status::ok, "absmax %zu %zu", br, bc);
      for (size_t k = 0; k < g.blocks; ++k) {
        const size_t bi = k / nbc, bj = k % nbc;
        uint8_t want = 0;
        uint64_t nans = 0;
        for (size_t r = 0; r < rows; ++r) {
          for (size_t c = 0; c < cols; ++c) {
            if (r / br != bi || c / bc != bj) continue;
            const uint8_t b = q[r * cols + c], mag = b & 0x7F;
            if (mag == 0x7F) ++nans;
            else if (mag > want) want = mag;
          }
        }
        CHECK(am[k] == want && nn[k] == nans, "%s huge block (%zu, %zu) block %zu", active_simd(), br, bc, k);
      }
      std::vector<float> sc(g.blocks, 2.0f), out(rows * cols);
      CHECK(fp8_dequantize(q.data(), q.size(), 1, rows, cols, Fp8Format::e4m3fn, sc.data(), nbr, nbc,
                           sc.size(), br, bc, OutType::f32, out.data(), out.size()) == Status::ok,
            "dequant %zu %zu", br, bc);
      for (size_t e = 0; e < out.size(); ++e) {
        const float want = static_cast<float>(fp8_decode(q[e], Fp8Format::e4m3fn)) * 2.0f;
        CHECK(std::memcmp(&want, &out[e], 4) == 0 || (want != want && out[e] != out[e]),
              "%s huge block dequant (%zu, %zu) element %zu", active_simd(), br, bc, e);
      }
      // the old wrapped scale shape (0 rows) is refused, not read
      CHECK(fp8_dequantize(q.data(), q.size(), 1, rows, cols, Fp8Format::e4m3fn, sc.data(), 0, nbc, 0,
                           br, bc, OutType::f32, out.data(), out.size()) == Status::bad_scale_shape,
            "wrapped scale shape accepted");
    }
    // zero blocks and overflowing products are refused before any output is touched
    uint8_t one = 0;
    CHECK(fp8_block_absmax(&one, 1, 1, 1, 0, 1, Fp8Format::e4m3fn, nullptr, nullptr, 0) == Status::bad_block, "0 block");
    CHECK(fp8_block_absmax(&one, 1, size_t{1} << 33, size_t{1} << 33, 1, 1, Fp8Format::e4m3fn, nullptr,
                           nullptr, 0) == Status::too_large, "rows * cols overflow");
    Fp8Stats st;
    Fp8BlockOut none;
    CHECK(fp8_block_stats(&one, 1, kHuge, 2, 1, 1, 1, Fp8Format::e4m3fn, &st, none) == Status::too_large,
          "batch overflow");
    CHECK(fp8_block_stats(&one, 1, 1, 1, 1, 1, 1, Fp8Format::e4m3fn, &st, none) == Status::bad_buffer,
          "len 0 for 1 block");
  }
  select_simd("auto");
  std::printf("%d implementations checked, %d failures\n", nt, failures);
  return failures ? 1 : 0;
}
