// AArch64 Advanced SIMD (NEON) implementation. NEON is mandatory on AArch64, so
// this table needs no feature bit beyond kNEON. It specialises the byte
// kernels (FP8 statistics, block statistics, the read probe) and reuses the
// scalar reference for the rest. Same results as scalar.cc, bit for bit.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

namespace ckptscan::kernels::neon {
namespace {

#include "kernels/per_isa.h"

// NaN mask and finite-magnitude key of 16 codes.
template <Fp8Format F>
inline void classify(uint8x16_t b, uint8x16_t mag, uint8x16_t* nan, uint8x16_t* inf,
                     uint8x16_t* key) {
  using t = Fmt<F>;
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
  using t = Fmt<F>;
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
  with_format(f, [&](auto fmt) { fp8_stats_t<decltype(fmt)::value>(p, n, out); });
}

// ---- one pass of block statistics (per_isa.h's BlockStats) -------------------------
// As avx2.cc (a block's counts in byte counters, drained with vaddlvq), without
// the packed path for small blocks: vmaxvq reduces a block in one instruction.
template <Fp8Format F>
struct Fp8Lanes {
  using f = Fmt<F>;
  using V = uint8x16_t;
  static constexpr size_t kW = 16;
  static constexpr bool kFlat = false;

  struct Tensor {
    uint8x16_t c_zero = vdupq_n_u8(0), c_negz = c_zero, c_zs = c_zero, c_neg = c_zero;
    unsigned steps = 0;
    uint64_t zero = 0, negz = 0, zs = 0, neg = 0, pad = 0;
    void flush() {
      zero += vaddlvq_u8(c_zero);
      negz += vaddlvq_u8(c_negz);
      zs += vaddlvq_u8(c_zs);
      neg += vaddlvq_u8(c_neg);
      c_zero = c_negz = c_zs = c_neg = vdupq_n_u8(0);
      steps = 0;
    }
    // "zs" counted mag <= sub_max, "neg" sign-set bytes up to neg_max (0x80 included).
    void finish(detail::Fp8Raw& r) {
      flush();
      r.zero = zero - pad;
      r.neg_zero = negz;
      r.subnormal = zs - zero - (f::fnuz ? r.nan : 0);
      r.negative = neg - (f::fnuz ? r.nan : negz);
    }
  };

  struct Cls {
    uint8x16_t key, nan, inf, sat;  // compare masks: 0xFF per byte
  };

  // S: also the whole-tensor counters and the saturated mask (block_absmax alone
  // needs neither).
  template <bool S>
  static inline Cls classify(uint8x16_t b, Tensor& t) {
    const uint8x16_t mag = vandq_u8(b, vdupq_n_u8(0x7F));
    uint8x16_t nan, inf, key;
    neon::classify<F>(b, mag, &nan, &inf, &key);
    if constexpr (!S) return {key, nan, inf, vdupq_n_u8(0)};
    const uint8x16_t zero = f::fnuz ? vceqq_u8(b, vdupq_n_u8(0)) : vceqq_u8(mag, vdupq_n_u8(0));
    if constexpr (!f::fnuz) t.c_negz = vsubq_u8(t.c_negz, vceqq_u8(b, vdupq_n_u8(0x80)));
    t.c_zero = vsubq_u8(t.c_zero, zero);
    t.c_zs = vsubq_u8(t.c_zs, vcleq_u8(mag, vdupq_n_u8(f::sub_max)));
    t.c_neg = vsubq_u8(t.c_neg, vandq_u8(vcgeq_u8(b, vdupq_n_u8(0x80)),
                                         vcleq_u8(b, vdupq_n_u8(f::neg_max))));
    if (++t.steps == 255) t.flush();
    return {key, nan, inf, vceqq_u8(mag, vdupq_n_u8(f::sat))};
  }
  template <bool S>
  static inline Cls classify_full(const uint8_t* p, Tensor& t) {
    return classify<S>(vld1q_u8(p), t);
  }
  template <bool S>
  static inline Cls classify_part(const uint8_t* p, size_t k, Tensor& t) {
    uint8_t buf[16] = {0};
    std::memcpy(buf, p, k);
    t.pad += kW - k;
    return classify<S>(vld1q_u8(buf), t);
  }
  static constexpr bool kByteCounters = true;
  struct Counters {
    uint8x16_t v[f::inf ? 3 : 2];
  };
  static inline Counters counters() {
    Counters c;
    for (uint8x16_t& x : c.v) x = vdupq_n_u8(0);
    return c;
  }
  static inline void count_into(Counters& c, const Cls& x) {
    c.v[0] = vsubq_u8(c.v[0], x.nan);
    c.v[1] = vsubq_u8(c.v[1], x.sat);
    if constexpr (f::inf) c.v[2] = vsubq_u8(c.v[2], x.inf);
  }
  static inline void drain(Counters& c, uint64_t& nan, uint64_t& inf, uint64_t& sat) {
    nan += vaddlvq_u8(c.v[0]);
    sat += vaddlvq_u8(c.v[1]);
    if constexpr (f::inf) inf += vaddlvq_u8(c.v[2]);
    c = counters();
  }
  static inline uint8x16_t zero() { return vdupq_n_u8(0); }
  static inline uint8x16_t load(const uint8_t* p) { return vld1q_u8(p); }
  static inline uint8x16_t max(uint8x16_t a, uint8x16_t b) { return vmaxq_u8(a, b); }
  static inline uint8x16_t key(const Cls& c) { return c.key; }
  static inline uint8x16_t max_key(uint8x16_t a, const Cls& c) { return vmaxq_u8(a, c.key); }
  static inline uint8_t hmax(uint8x16_t v) { return vmaxvq_u8(v); }
};

void block_stats(const detail::Matrix& m, Fp8Format f, detail::Fp8Raw* raw,
                 const detail::BlockOut& o) {
  with_format(f, [&](auto fmt) { block_stats_generic<Fp8Lanes<decltype(fmt)::value>>(m, raw, o); });
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
    &block_stats,
    &scalar::dequantize,
    &scalar::fp4_dequantize,
    &scalar::compare,
    &scalar::float_stats,
    &scalar::e8m0_stats,
    &read_probe,
};

}  // namespace ckptscan::kernels::neon

#endif  // __aarch64__
