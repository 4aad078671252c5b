// AArch64 Advanced SIMD (NEON) implementation. NEON is mandatory on AArch64, so
// this table needs no feature bit beyond kNEON. It specialises the byte
// kernels (FP8 statistics, per-block absmax, the read probe) and reuses the
// scalar reference for the rest. Same results as scalar.cc, bit for bit.
#include "kernels/kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

namespace ckptscan::kernels::neon {
namespace {

template <Fp8Format F>
struct T;
template <>
struct T<Fp8Format::e4m3fn> {
  static constexpr bool fnuz = false, inf = false;
  static constexpr uint8_t sat = 0x7E, sub_max = 0x07, neg_max = 0xFE, nan_lo = 0x7F;
};
template <>
struct T<Fp8Format::e5m2> {
  static constexpr bool fnuz = false, inf = true;
  static constexpr uint8_t sat = 0x7B, sub_max = 0x03, neg_max = 0xFC, nan_lo = 0x7D;
};
template <>
struct T<Fp8Format::e4m3fnuz> {
  static constexpr bool fnuz = true, inf = false;
  static constexpr uint8_t sat = 0x7F, sub_max = 0x07, neg_max = 0xFF, nan_lo = 0x80;
};
template <>
struct T<Fp8Format::e5m2fnuz> {
  static constexpr bool fnuz = true, inf = false;
  static constexpr uint8_t sat = 0x7F, sub_max = 0x03, neg_max = 0xFF, nan_lo = 0x80;
};

// NaN mask and finite-magnitude key of 16 codes.
template <Fp8Format F>
inline void classify(uint8x16_t b, uint8x16_t mag, uint8x16_t* nan, uint8x16_t* inf,
                     uint8x16_t* key) {
  using t = T<F>;
  if constexpr (t::fnuz) {
    *nan = vceqq_u8(b, vdupq_n_u8(0x80));
    *inf = vdupq_n_u8(0);
    *key = mag;  // 0x80 (NaN) has magnitude 0
  } else if constexpr (t::inf) {
    *nan = vcgtq_u8(mag, vdupq_n_u8(0x7C));
    *inf = vceqq_u8(mag, vdupq_n_u8(0x7C));
    *key = vbicq_u8(mag, vorrq_u8(*nan, *inf));
  } else {
    *nan = vceqq_u8(mag, vdupq_n_u8(t::nan_lo));
    *inf = vdupq_n_u8(0);
    *key = vbicq_u8(mag, *nan);
  }
}

// Byte counters (masks are 0xFF, so c - mask counts), summed every 255 vectors.
template <Fp8Format F>
void fp8_stats_t(const uint8_t* p, size_t n, detail::Fp8Raw* out) {
  using t = T<F>;
  uint64_t nan = 0, inf = 0, zero = 0, negz = 0, zs = 0, sat = 0, neg = 0;
  uint8x16_t amax = vdupq_n_u8(0);
  const size_t nvec = n / 16;
  size_t v = 0;
  while (v < nvec) {
    const size_t stop = (nvec - v > 255) ? v + 255 : nvec;
    uint8x16_t c_nan = vdupq_n_u8(0), c_inf = c_nan, c_zero = c_nan, c_negz = c_nan,
               c_zs = c_nan, c_sat = c_nan, c_neg = c_nan;
    for (; v < stop; ++v) {
      const uint8x16_t b = vld1q_u8(p + 16 * v);
      const uint8x16_t mag = vandq_u8(b, vdupq_n_u8(0x7F));
      uint8x16_t mn, mi, key;
      classify<F>(b, mag, &mn, &mi, &key);
      const uint8x16_t mz = t::fnuz ? vceqq_u8(b, vdupq_n_u8(0)) : vceqq_u8(mag, vdupq_n_u8(0));
      c_nan = vsubq_u8(c_nan, mn);
      c_inf = vsubq_u8(c_inf, mi);
      c_zero = vsubq_u8(c_zero, mz);
      c_negz = vsubq_u8(c_negz, vceqq_u8(b, vdupq_n_u8(0x80)));
      c_zs = vsubq_u8(c_zs, vcleq_u8(mag, vdupq_n_u8(t::sub_max)));
      c_sat = vsubq_u8(c_sat, vceqq_u8(mag, vdupq_n_u8(t::sat)));
      c_neg = vsubq_u8(c_neg, vandq_u8(vcgeq_u8(b, vdupq_n_u8(0x80)),
                                       vcleq_u8(b, vdupq_n_u8(t::neg_max))));
      amax = vmaxq_u8(amax, key);
    }
    nan += vaddlvq_u8(c_nan);
    inf += vaddlvq_u8(c_inf);
    zero += vaddlvq_u8(c_zero);
    negz += vaddlvq_u8(c_negz);
    zs += vaddlvq_u8(c_zs);
    sat += vaddlvq_u8(c_sat);
    neg += vaddlvq_u8(c_neg);
  }
  // negz counted every 0x80 byte: -0 for sign-magnitude formats, NaN for fnuz.
  detail::Fp8Raw r{};
  r.nan = nan;
  r.inf = inf;
  r.zero = zero;
  r.neg_zero = t::fnuz ? 0 : negz;
  r.saturated = sat;
  r.subnormal = zs - zero - (t::fnuz ? nan : 0);
  r.negative = neg - negz;
  r.absmax_code = vmaxvq_u8(amax);
  const size_t done = nvec * 16;
  if (done < n) {
    detail::Fp8Raw tail{};
    scalar::fp8_stats(p + done, n - done, F, &tail);
    r.nan += tail.nan;
    r.inf += tail.inf;
    r.zero += tail.zero;
    r.neg_zero += tail.neg_zero;
    r.subnormal += tail.subnormal;
    r.saturated += tail.saturated;
    r.negative += tail.negative;
    if (tail.absmax_code > r.absmax_code) r.absmax_code = tail.absmax_code;
  }
  *out = r;
}

void fp8_stats(const uint8_t* p, size_t n, Fp8Format f, detail::Fp8Raw* out) {
  switch (f) {
    case Fp8Format::e4m3fn: return fp8_stats_t<Fp8Format::e4m3fn>(p, n, out);
    case Fp8Format::e5m2: return fp8_stats_t<Fp8Format::e5m2>(p, n, out);
    case Fp8Format::e4m3fnuz: return fp8_stats_t<Fp8Format::e4m3fnuz>(p, n, out);
    case Fp8Format::e5m2fnuz: return fp8_stats_t<Fp8Format::e5m2fnuz>(p, n, out);
  }
}

template <Fp8Format F>
void block_absmax_t(const uint8_t* q, size_t rows, size_t cols, size_t br, size_t bc,
                    uint8_t* absmax, uint64_t* nan_out) {
  const size_t nbr = (rows + br - 1) / br, nbc = (cols + bc - 1) / bc;
  for (size_t k = 0; k < nbr * nbc; ++k) {
    absmax[k] = 0;
    if (nan_out) nan_out[k] = 0;
  }
  for (size_t i = 0; i < rows; ++i) {
    const uint8_t* row = q + i * cols;
    uint8_t* am = absmax + (i / br) * nbc;
    uint64_t* nn = nan_out ? nan_out + (i / br) * nbc : nullptr;
    for (size_t bj = 0; bj < nbc; ++bj) {
      const size_t j0 = bj * bc, j1 = (j0 + bc < cols) ? j0 + bc : cols;
      size_t j = j0;
      uint8x16_t amax = vdupq_n_u8(0);
      uint64_t nans = 0;
      for (; j + 16 <= j1; j += 16) {
        const uint8x16_t b = vld1q_u8(row + j);
        uint8x16_t mn, mi, key;
        classify<F>(b, vandq_u8(b, vdupq_n_u8(0x7F)), &mn, &mi, &key);
        amax = vmaxq_u8(amax, key);
        nans += vaddvq_u8(vandq_u8(mn, vdupq_n_u8(1)));
      }
      uint8_t m = vmaxvq_u8(amax);
      if (j < j1) {  // tail through a zero-padded copy; padding is +0 (no NaN, key 0)
        uint8_t buf[16] = {0};
        for (size_t k = 0; k < j1 - j; ++k) buf[k] = row[j + k];
        const uint8x16_t b = vld1q_u8(buf);
        uint8x16_t mn, mi, key;
        classify<F>(b, vandq_u8(b, vdupq_n_u8(0x7F)), &mn, &mi, &key);
        const uint8_t mt = vmaxvq_u8(key);
        if (mt > m) m = mt;
        nans += vaddvq_u8(vandq_u8(mn, vdupq_n_u8(1)));
      }
      if (m > am[bj]) am[bj] = m;
      if (nn) nn[bj] += nans;
    }
  }
}

void block_absmax(const uint8_t* q, size_t rows, size_t cols, size_t br, size_t bc,
                  Fp8Format f, uint8_t* absmax, uint64_t* nan) {
  switch (f) {
    case Fp8Format::e4m3fn:
      return block_absmax_t<Fp8Format::e4m3fn>(q, rows, cols, br, bc, absmax, nan);
    case Fp8Format::e5m2:
      return block_absmax_t<Fp8Format::e5m2>(q, rows, cols, br, bc, absmax, nan);
    case Fp8Format::e4m3fnuz:
      return block_absmax_t<Fp8Format::e4m3fnuz>(q, rows, cols, br, bc, absmax, nan);
    case Fp8Format::e5m2fnuz:
      return block_absmax_t<Fp8Format::e5m2fnuz>(q, rows, cols, br, bc, absmax, nan);
  }
}

uint64_t read_probe(const uint8_t* p, size_t n) {
  uint64x2_t s0 = vdupq_n_u64(0), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    s0 = vaddq_u64(s0, vreinterpretq_u64_u8(vld1q_u8(p + i)));
    s1 = vaddq_u64(s1, vreinterpretq_u64_u8(vld1q_u8(p + i + 16)));
    s2 = vaddq_u64(s2, vreinterpretq_u64_u8(vld1q_u8(p + i + 32)));
    s3 = vaddq_u64(s3, vreinterpretq_u64_u8(vld1q_u8(p + i + 48)));
  }
  const uint64_t s = vaddvq_u64(vaddq_u64(vaddq_u64(s0, s1), vaddq_u64(s2, s3)));
  return s + scalar::read_probe(p + i, n - i);
}

}  // namespace

const detail::KernelTable table = {
    "neon",
    kNEON,
    &fp8_stats,
    &scalar::histogram,
    &block_absmax,
    &scalar::dequantize,
    &scalar::float_stats,
    &scalar::e8m0_stats,
    &read_probe,
};

}  // namespace ckptscan::kernels::neon

#endif  // __aarch64__
