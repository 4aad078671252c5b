// AVX-512 implementation (F, BW, VL, DQ, VBMI on top of the AVX2 set). Only
// reached after dispatch has checked the CPU and that the OS saves opmask and
// ZMM state (XCR0). Everything is in an unnamed namespace and all vector
// constants are built inside functions: nothing here runs at load time.
// Tails are handled with masked loads/stores, so every path is one loop body.
// GCC 12's AVX-512 headers self-initialise "undefined" vectors (`__Y = __Y`)
// and then warn about them once inlined (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "kernels/kernels.h"

namespace ckptscan::kernels::avx512 {
namespace {

#include "kernels/per_isa.h"
#include "kernels/per_x86.h"

inline __mmask64 tail_mask64(size_t k) {  // k < 64 low bits set
  return _cvtu64_mask64(_bzhi_u64(~uint64_t{0}, static_cast<unsigned>(k)));
}

// (not _mm512_reduce_add_epi64: GCC adds as signed long long, which UBSan flags
// when the probe's wrapping sum overflows)
inline uint64_t hsum64(__m512i v) {
  alignas(64) uint64_t t[8];
  _mm512_store_si512(t, v);
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

inline uint8_t hmax_u8(__m512i v) {
  __m256i y = _mm256_max_epu8(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i x = _mm_max_epu8(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
  x = _mm_max_epu8(x, _mm_srli_si128(x, 8));
  x = _mm_max_epu8(x, _mm_srli_si128(x, 4));
  x = _mm_max_epu8(x, _mm_srli_si128(x, 2));
  x = _mm_max_epu8(x, _mm_srli_si128(x, 1));
  return static_cast<uint8_t>(_mm_cvtsi128_si32(x) & 0xFF);
}

inline __m512i sad(__m512i acc) { return _mm512_sad_epu8(acc, _mm512_setzero_si512()); }

// ---- FP8 statistics ------------------------------------------------------------
// Byte counters incremented under compare masks (acc - (-1)), flushed with
// vpsadbw every 255 vectors. "zs" counts mag <= sub_max and "neg" counts
// sign-set bytes up to neg_max including 0x80; corrected at the end (as avx2).
template <Fp8Format F>
void fp8_stats_t(const uint8_t* p, size_t n, detail::Fp8Raw* out) {
  using t = Fmt<F>;
  const __m512i k7f = _mm512_set1_epi8(0x7F);
  const __m512i k80 = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i kz = _mm512_setzero_si512();
  const __m512i km1 = _mm512_set1_epi8(-1);
  const __m512i knan = _mm512_set1_epi8(static_cast<char>(t::nan_lo == 0x80 ? 0x7F : t::nan_lo));
  const __m512i kinf = _mm512_set1_epi8(0x7C);
  const __m512i ksubmax = _mm512_set1_epi8(static_cast<char>(t::sub_max));
  const __m512i ksat = _mm512_set1_epi8(static_cast<char>(t::sat));
  const __m512i knegmax = _mm512_set1_epi8(static_cast<char>(t::neg_max));  // signed bound

  __m512i t_nan = kz, t_inf = kz, t_zero = kz, t_zs = kz, t_sat = kz, t_neg = kz, t_negz = kz,
          amax = kz;
  __m512i c_nan, c_inf, c_zero, c_zs, c_sat, c_neg, c_negz;
  auto reset = [&] { c_nan = c_inf = c_zero = c_zs = c_sat = c_neg = c_negz = kz; };
  auto flush = [&] {
    t_nan = _mm512_add_epi64(t_nan, sad(c_nan));
    t_inf = _mm512_add_epi64(t_inf, sad(c_inf));
    t_zero = _mm512_add_epi64(t_zero, sad(c_zero));
    t_zs = _mm512_add_epi64(t_zs, sad(c_zs));
    t_sat = _mm512_add_epi64(t_sat, sad(c_sat));
    t_neg = _mm512_add_epi64(t_neg, sad(c_neg));
    t_negz = _mm512_add_epi64(t_negz, sad(c_negz));
  };
  // One vector; m selects the valid bytes (all ones except for the tail).
  auto step = [&](__m512i b, __mmask64 m) {
    const __m512i mag = _mm512_and_si512(b, k7f);
    __mmask64 kn, kzr, kfin;
    if constexpr (t::fnuz) {
      kn = _mm512_mask_cmpeq_epi8_mask(m, b, k80);
      kzr = _mm512_mask_cmpeq_epi8_mask(m, b, kz);
      kfin = m;  // 0x80 (NaN) has magnitude 0
    } else {
      kzr = _mm512_mask_cmpeq_epi8_mask(m, mag, kz);
      c_negz = _mm512_mask_sub_epi8(c_negz, _mm512_mask_cmpeq_epi8_mask(m, b, k80), c_negz, km1);
      if constexpr (t::inf) {
        kn = _mm512_mask_cmpgt_epu8_mask(m, mag, kinf);
        const __mmask64 ki = _mm512_mask_cmpeq_epi8_mask(m, mag, kinf);
        c_inf = _mm512_mask_sub_epi8(c_inf, ki, c_inf, km1);
        kfin = _mm512_mask_cmplt_epu8_mask(m, mag, kinf);
      } else {
        kn = _mm512_mask_cmpeq_epi8_mask(m, mag, knan);
        kfin = _kandn_mask64(kn, m);
      }
    }
    c_nan = _mm512_mask_sub_epi8(c_nan, kn, c_nan, km1);
    c_zero = _mm512_mask_sub_epi8(c_zero, kzr, c_zero, km1);
    c_zs = _mm512_mask_sub_epi8(c_zs, _mm512_mask_cmple_epu8_mask(m, mag, ksubmax), c_zs, km1);
    c_sat = _mm512_mask_sub_epi8(c_sat, _mm512_mask_cmpeq_epi8_mask(m, mag, ksat), c_sat, km1);
    c_neg = _mm512_mask_sub_epi8(c_neg, _mm512_mask_cmple_epi8_mask(m, b, knegmax), c_neg, km1);
    amax = _mm512_mask_max_epu8(amax, kfin, amax, mag);
  };
  const __mmask64 all = ~__mmask64{0};
  const size_t nfull = n / 64;
  size_t v = 0;
  while (v < nfull) {  // byte counters: at most 255 vectors between flushes
    const size_t stop = (nfull - v > 255) ? v + 255 : nfull;
    reset();
    for (; v < stop; ++v) {
      prefetch_stream(p + 64 * v);
      step(_mm512_loadu_si512(p + 64 * v), all);
    }
    flush();
  }
  if (n % 64 != 0) {
    const __mmask64 m = tail_mask64(n % 64);
    reset();
    step(_mm512_maskz_loadu_epi8(m, p + 64 * nfull), m);
    flush();
  }
  detail::Fp8Raw r{};
  r.nan = hsum64(t_nan);
  r.inf = hsum64(t_inf);
  r.zero = hsum64(t_zero);
  r.neg_zero = hsum64(t_negz);
  r.saturated = hsum64(t_sat);
  const uint64_t zs = hsum64(t_zs), neg = hsum64(t_neg);
  r.subnormal = zs - r.zero - (t::fnuz ? r.nan : 0);
  r.negative = neg - (t::fnuz ? r.nan : r.neg_zero);
  r.absmax_code = hmax_u8(amax);
  *out = r;
}

void fp8_stats(const uint8_t* p, size_t n, Fp8Format f, detail::Fp8Raw* out) {
  with_format(f, [&](auto fmt) { fp8_stats_t<decltype(fmt)::value>(p, n, out); });
}

// ---- one pass of block statistics (per_isa.h's BlockStats) -------------------------
// Whole-tensor counters are byte counters under compare masks (acc - (-1)),
// summed every 255 vectors; a block's NaN / Inf / saturated counts are popcounts
// of the masks; partial vectors are masked loads.
template <Fp8Format F>
struct Fp8Lanes : Xmm16Results {  // V16 ops: per_x86.h
  using f = Fmt<F>;
  using V = __m512i;
  static constexpr size_t kW = 64;
  static constexpr bool kFlat = true;

  struct Tensor {
    __m512i c_zero = _mm512_setzero_si512(), c_negz = c_zero, c_zs = c_zero, c_neg = c_zero;
    unsigned steps = 0;
    uint64_t zero = 0, negz = 0, zs = 0, neg = 0;
    void flush() {
      zero += hsum64(sad(c_zero));
      negz += hsum64(sad(c_negz));
      zs += hsum64(sad(c_zs));
      neg += hsum64(sad(c_neg));
      c_zero = c_negz = c_zs = c_neg = _mm512_setzero_si512();
      steps = 0;
    }
    // "zs" counted mag <= sub_max, "neg" sign-set bytes up to neg_max (0x80 included).
    void finish(detail::Fp8Raw& r) {
      flush();
      r.zero = zero;
      r.neg_zero = negz;
      r.subnormal = zs - zero - (f::fnuz ? r.nan : 0);
      r.negative = neg - (f::fnuz ? r.nan : negz);
    }
  };

  struct Cls {
    __m512i mag;
    __mmask64 fin, nan, inf, sat;  // fin: finite (the magnitude counts for the max)
  };

  // S: also the whole-tensor counters and the saturated mask (block_absmax alone
  // needs neither).
  template <bool S>
  static inline Cls classify(__m512i b, __mmask64 m, Tensor& t) {
    const __m512i k7f = _mm512_set1_epi8(0x7F);
    const __m512i k80 = _mm512_set1_epi8(static_cast<char>(0x80));
    const __m512i kz = _mm512_setzero_si512();
    const __m512i km1 = _mm512_set1_epi8(-1);
    const __m512i kinf = _mm512_set1_epi8(0x7C);
    const __m512i mag = _mm512_and_si512(b, k7f);
    __mmask64 kn, ki = 0, kzr, kfin;
    if constexpr (f::fnuz) {
      kn = _mm512_mask_cmpeq_epi8_mask(m, b, k80);
      kzr = _mm512_mask_cmpeq_epi8_mask(m, b, kz);
      kfin = m;  // 0x80 (NaN) has magnitude 0
    } else {
      kzr = _mm512_mask_cmpeq_epi8_mask(m, mag, kz);
      if constexpr (S) {
        const __mmask64 knz = _mm512_mask_cmpeq_epi8_mask(m, b, k80);
        t.c_negz = _mm512_mask_sub_epi8(t.c_negz, knz, t.c_negz, km1);
      }
      if constexpr (f::inf) {
        kn = _mm512_mask_cmpgt_epu8_mask(m, mag, kinf);
        ki = _mm512_mask_cmpeq_epi8_mask(m, mag, kinf);
        kfin = _mm512_mask_cmplt_epu8_mask(m, mag, kinf);
      } else {
        kn = _mm512_mask_cmpeq_epi8_mask(m, mag, _mm512_set1_epi8(static_cast<char>(f::nan_lo)));
        kfin = _kandn_mask64(kn, m);
      }
    }
    if constexpr (!S) return {mag, kfin, kn, ki, 0};
    const __mmask64 kzs =
        _mm512_mask_cmple_epu8_mask(m, mag, _mm512_set1_epi8(static_cast<char>(f::sub_max)));
    const __mmask64 kneg =
        _mm512_mask_cmple_epi8_mask(m, b, _mm512_set1_epi8(static_cast<char>(f::neg_max)));
    const __mmask64 ksat =
        _mm512_mask_cmpeq_epi8_mask(m, mag, _mm512_set1_epi8(static_cast<char>(f::sat)));
    t.c_zero = _mm512_mask_sub_epi8(t.c_zero, kzr, t.c_zero, km1);
    t.c_zs = _mm512_mask_sub_epi8(t.c_zs, kzs, t.c_zs, km1);
    t.c_neg = _mm512_mask_sub_epi8(t.c_neg, kneg, t.c_neg, km1);
    if (++t.steps == 255) t.flush();
    return {mag, kfin, kn, ki, ksat};
  }
  template <bool S>
  static inline Cls classify_full(const uint8_t* p, Tensor& t) {
    prefetch_stream(p);
    return classify<S>(_mm512_loadu_si512(p), ~__mmask64{0}, t);
  }
  template <bool S>
  static inline Cls classify_part(const uint8_t* p, size_t k, Tensor& t) {
    const __mmask64 m = tail_mask64(k);
    return classify<S>(_mm512_maskz_loadu_epi8(m, p), m, t);
  }
  static inline uint64_t count(__mmask64 m) {
    return static_cast<uint64_t>(_mm_popcnt_u64(_cvtmask64_u64(m)));
  }
  static inline __m512i ones(__mmask64 m) { return _mm512_maskz_mov_epi8(m, _mm512_set1_epi8(1)); }
  static inline __m512i key(const Cls& c) { return _mm512_maskz_mov_epi8(c.fin, c.mag); }
  // A block's counts are popcounts of its masks (count()): the compares keep
  // the vector ports busy, the scalar ones are free.
  static constexpr bool kByteCounters = false;
  struct Counters {};
  static inline Counters counters() { return {}; }
  static inline __m512i max_key(__m512i a, const Cls& c) {
    return _mm512_mask_max_epu8(a, c.fin, a, c.mag);
  }
  static inline __m512i zero() { return _mm512_setzero_si512(); }
  static inline __m512i load(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static inline __m512i max(__m512i a, __m512i b) { return _mm512_max_epu8(a, b); }
  static inline uint8_t hmax(__m512i v) { return hmax_u8(v); }

  // Byte max (or sum) of each BC-byte block of G = 16 * BC / 64 vectors: the
  // two halves of every block paired until each block is one dword, then
  // within it; the 16 results, in block order: result[order[k]] at byte k.
  template <size_t BC, bool IS_MAX>
  static inline __m128i tree(__m512i* v, const uint8_t* order) {
    auto op = [](__m512i a, __m512i b) {
      return IS_MAX ? _mm512_max_epu8(a, b) : _mm512_add_epi8(a, b);
    };
    size_t n = 16 * BC / 64;
    if constexpr (BC >= 64) {  // 64 -> 32: 128-bit lanes {0,1} vs {2,3} of two vectors
      for (size_t i = 0; i < n / 2; ++i) {
        v[i] = op(_mm512_shuffle_i64x2(v[2 * i], v[2 * i + 1], 0x44),
                  _mm512_shuffle_i64x2(v[2 * i], v[2 * i + 1], 0xEE));
      }
      n /= 2;
    }
    if constexpr (BC >= 32) {  // 32 -> 16: lanes {0,2} vs {1,3}
      for (size_t i = 0; i < n / 2; ++i) {
        v[i] = op(_mm512_shuffle_i64x2(v[2 * i], v[2 * i + 1], 0x88),
                  _mm512_shuffle_i64x2(v[2 * i], v[2 * i + 1], 0xDD));
      }
      n /= 2;
    }
    for (size_t i = 0; i < n / 2; ++i) {  // 16 -> 8: low vs high qword of each lane
      v[i] = op(_mm512_unpacklo_epi64(v[2 * i], v[2 * i + 1]),
                _mm512_unpackhi_epi64(v[2 * i], v[2 * i + 1]));
    }
    // 8 -> 4: even vs odd dwords; then the 4 bytes of each dword
    const __m512 a = _mm512_castsi512_ps(v[0]), b = _mm512_castsi512_ps(v[1]);
    __m512i x = op(_mm512_castps_si512(_mm512_shuffle_ps(a, b, 0x88)),
                   _mm512_castps_si512(_mm512_shuffle_ps(a, b, 0xDD)));
    x = op(x, _mm512_srli_epi32(x, 16));
    x = op(x, _mm512_srli_epi32(x, 8));
    const __m128i idx = _mm_loadu_si128(reinterpret_cast<const __m128i*>(order));
    return _mm_shuffle_epi8(_mm512_cvtepi32_epi8(x), idx);
  }
};

void block_stats(const detail::Matrix& m, Fp8Format f, detail::Fp8Raw* raw,
                 const detail::BlockOut& o) {
  with_format(f, [&](auto fmt) { block_stats_generic<Fp8Lanes<decltype(fmt)::value>>(m, raw, o); });
}

// ---- dequantization ----------------------------------------------------------------
// 32 codes at a time through byte tables (AVX-512 VBMI): every FP8 value is
// exactly a bfloat16 (<= 3 mantissa bits, exponents in range), so two 128-entry
// vpermt2b lookups by magnitude give the low and high byte of bf16(decode(code)),
// the sign is OR-ed in, and a bf16 word shifted up 16 bits is the float32. The
// codes are first spread to both bytes of a word in the order that makes
// vpunpck{l,h}wd emit codes 0..15 and 16..31. NaN decodes to 0x7FC00000 | sign
// (F8_*FNUZ's 0x80: 0xFFC00000), as scalar.cc, avx2.cc and ml_dtypes.
template <Fp8Format F>
struct LutDecoder {
  using t = Fmt<F>;
  __m512i lo0, lo1, hi0, hi1, spread, odd80, k7f;
  explicit LutDecoder() {
    alignas(64) uint8_t lo[128], hi[128], sp[64], o80[64];
    for (int m = 0; m < 128; ++m) {
      const double d = fp8_decode(static_cast<uint8_t>(m), F);
      uint32_t u;
      if (d != d) {
        u = 0x7FC00000u;
      } else {
        const float x = static_cast<float>(d);
        std::memcpy(&u, &x, 4);
      }
      lo[m] = static_cast<uint8_t>(u >> 16);
      hi[m] = static_cast<uint8_t>(u >> 24);
    }
    for (int w = 0; w < 32; ++w) {
      const int lane = w / 8, j = w % 8;
      const int code = j < 4 ? 4 * lane + j : 16 + 4 * lane + (j - 4);
      sp[2 * w] = sp[2 * w + 1] = static_cast<uint8_t>(code);
      o80[2 * w] = 0;
      o80[2 * w + 1] = 0x80;
    }
    lo0 = _mm512_load_si512(lo);
    lo1 = _mm512_load_si512(lo + 64);
    hi0 = _mm512_load_si512(hi);
    hi1 = _mm512_load_si512(hi + 64);
    spread = _mm512_load_si512(sp);
    odd80 = _mm512_load_si512(o80);
    k7f = _mm512_set1_epi8(0x7F);
  }
  // bf16 bits of decode() for the 32 codes in the low half of x, spread order.
  inline __m512i operator()(__m512i x) const {
    const __m512i e = _mm512_permutexvar_epi8(spread, x);
    const __m512i mag = _mm512_and_si512(e, k7f);
    const __m512i lo = _mm512_permutex2var_epi8(lo0, mag, lo1);
    const __m512i hi = _mm512_permutex2var_epi8(hi0, mag, hi1);
    __m512i w = _mm512_mask_blend_epi8(_cvtu64_mask64(0xAAAAAAAAAAAAAAAAull), lo, hi);
    w = _mm512_ternarylogic_epi32(w, e, odd80, 0xF8);  // w | (e & odd80): the sign
    if constexpr (t::fnuz) {
      w = _mm512_mask_mov_epi16(w, _mm512_cmpeq_epi16_mask(e, _mm512_set1_epi16(-32640)),
                                _mm512_set1_epi16(-64));  // 0x8080 -> 0xFFC0
    }
    return w;
  }
};

// float32 -> bf16 bits (round to nearest even, NaN -> 0x7FC0 | sign), left in
// the high half of each 32-bit lane.
inline __m512i bf16_high(__m512 p) {
  const __m512i u = _mm512_castps_si512(p);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
  const __m512i q = _mm512_ternarylogic_epi32(u, _mm512_set1_epi32(static_cast<int>(0x80000000u)),
                                              _mm512_set1_epi32(0x7FC00000), 0xEA);  // (u & sign) | qnan
  return _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(p, p, _CMP_UNORD_Q), q);
}

// x * s, except that a NaN code keeps its own NaN (as scalar.cc: with two NaN
// operands the result would depend on the order the compiler picks).
inline __m512 scaled(__m512 x, __m512 s) {
  return _mm512_mask_mov_ps(_mm512_mul_ps(x, s), _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

template <Fp8Format F, OutType O>
void dequantize_t(const detail::DequantArgs& a) {
  using Out = std::conditional_t<O == OutType::f32, float, uint16_t>;
  const LutDecoder<F> dec;
  const __m512i kz = _mm512_setzero_si512();
  alignas(64) uint16_t hw[32];
  for (int k = 0; k < 32; ++k) hw[k] = static_cast<uint16_t>(k < 16 ? 2 * k + 1 : 32 + 2 * (k - 16) + 1);
  const __m512i khigh = _mm512_load_si512(hw);
  const detail::Matrix& g = a.m;
  for (size_t i = 0; i < g.rows; ++i) {
    const uint8_t* row = g.q + i * g.cols;
    const float* srow = a.scale + (i / g.br) * g.nbc;
    Out* orow = static_cast<Out*>(a.out) + i * g.cols;
    for (size_t bj = 0; bj < g.nbc; ++bj) {
      const size_t j0 = bj * g.bc, j1 = end_of(j0, g.bc, g.cols);
      const __m512 s = _mm512_set1_ps(srow[bj]);
      for (size_t j = j0; j < j1; j += 32) {
        const size_t k = j1 - j;
        const __mmask32 m = k >= 32 ? __mmask32(0xFFFFFFFFu) : _bzhi_u32(~0u, unsigned(k));
        if ((j & 32) == 0) prefetch_stream(row + j);  // once per 64-byte line
        const __m256i bytes = _mm256_maskz_loadu_epi8(m, row + j);
        const __m512i w = dec(_mm512_castsi256_si512(bytes));
        const __m512 p0 = scaled(_mm512_castsi512_ps(_mm512_unpacklo_epi16(kz, w)), s);
        const __m512 p1 = scaled(_mm512_castsi512_ps(_mm512_unpackhi_epi16(kz, w)), s);
        if constexpr (O == OutType::f32) {
          _mm512_mask_storeu_ps(orow + j, static_cast<__mmask16>(m), p0);
          _mm512_mask_storeu_ps(orow + j + 16, static_cast<__mmask16>(m >> 16), p1);
        } else {
          const __m512i packed = _mm512_permutex2var_epi16(bf16_high(p0), khigh, bf16_high(p1));
          _mm512_mask_storeu_epi16(orow + j, m, packed);
        }
      }
    }
  }
}

void dequantize(const detail::DequantArgs& a) {
  with_format_out(a.fmt, a.out_type, [&](auto fmt, auto out) {
    dequantize_t<decltype(fmt)::value, decltype(out)::value>(a);
  });
}

// Packed FP4 E2M1, 16 values (8 bytes) a step when every block column is a
// multiple of 16 wide (groups of 16 / 32): the bytes doubled and shifted by
// 0 / 4 give the codes in dwords, low nibble first; vpermps looks them up in
// the 16 values; one scale per step. Row tails and other block widths: scalar.
template <OutType O>
void fp4_dequantize_t(const detail::DequantArgs& a) {
  using Out = std::conditional_t<O == OutType::f32, float, uint16_t>;
  const detail::Matrix& g = a.m;
  if (g.bc % 16 != 0) return scalar::fp4_dequantize(a);
  alignas(64) float lut[16];
  alignas(64) uint32_t sh[16];
  for (int c = 0; c < 16; ++c) {
    lut[c] = fp4_decode(static_cast<uint8_t>(c));
    sh[c] = (c & 1) ? 4 : 0;
  }
  const __m512 table = _mm512_load_ps(lut);
  const __m512i shift = _mm512_load_si512(sh);
  const __m512i k0f = _mm512_set1_epi32(0xF);
  for (size_t i = 0; i < g.rows; ++i) {
    const uint8_t* row = g.q + i * (g.cols / 2);
    const float* srow = a.scale + (i / g.br) * g.nbc;
    Out* orow = static_cast<Out*>(a.out) + i * g.cols;
    size_t j = 0;
    for (; g.cols - j >= 16; j += 16) {
      if ((j & 127) == 0) prefetch_stream(row + j / 2);  // once per 64-byte line
      const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + j / 2));
      const __m512i c = _mm512_and_si512(
          _mm512_srlv_epi32(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b)), shift), k0f);
      const __m512 p = _mm512_mul_ps(_mm512_permutexvar_ps(c, table), _mm512_set1_ps(srow[j / g.bc]));
      if constexpr (O == OutType::f32) {
        _mm512_storeu_ps(orow + j, p);
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(orow + j),
                            _mm512_cvtepi32_epi16(_mm512_srli_epi32(bf16_high(p), 16)));
      }
    }
    for (; j < g.cols; ++j) {  // the last (fewer than 16) values of the row, as scalar.cc
      const float x = lut[(row[j / 2] >> (4 * (j & 1))) & 0xF] * srow[j / g.bc];
      if constexpr (O == OutType::f32) {
        orow[j] = x;
      } else {
        const __m512i h = bf16_high(_mm512_set1_ps(x));
        orow[j] = static_cast<uint16_t>(static_cast<uint32_t>(_mm512_cvtsi512_si32(h)) >> 16);
      }
    }
  }
}

void fp4_dequantize(const detail::DequantArgs& a) {
  if (a.out_type == OutType::f32) fp4_dequantize_t<OutType::f32>(a);
  else fp4_dequantize_t<OutType::bf16>(a);
}

// ---- dequantize and compare -------------------------------------------------------
// compare_generic (per_isa.h) on 16-float vectors; FP8 codes through LutDecoder
// (32 at a time), FP4 as fp4_dequantize, the reference widened to float32.
struct CmpLanes {
  using V = __m512;
  struct D {
    __m512d lo, hi;
  };
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V blend(V a, V b, uint32_t m) {
    return _mm512_mask_mov_ps(a, static_cast<__mmask16>(m), b);
  }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V abs(V a) { return _mm512_abs_ps(a); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  // QNaN (0x01), +Inf (0x08), -Inf (0x10), SNaN (0x80)
  static uint32_t nonfinite(V a) { return _mm512_fpclass_ps_mask(a, 0x99); }
  static uint32_t gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static V zero_where(V a, uint32_t m) {
    return _mm512_maskz_mov_ps(static_cast<__mmask16>(~m), a);
  }
  static D dzero() { return {_mm512_setzero_pd(), _mm512_setzero_pd()}; }
  static void fold(D& d, V v) {
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    d.lo = _mm512_add_pd(d.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    d.hi = _mm512_add_pd(d.hi, _mm512_cvtps_pd(hi));
  }
  static double reduce(const D& d) {
    const __m512d t8 = _mm512_add_pd(d.lo, d.hi);
    const __m256d t4 = _mm256_add_pd(_mm512_castpd512_pd256(t8), _mm512_extractf64x4_pd(t8, 1));
    const __m128d t2 = _mm_add_pd(_mm256_castpd256_pd128(t4), _mm256_extractf128_pd(t4, 1));
    return _mm_cvtsd_f64(t2) + _mm_cvtsd_f64(_mm_unpackhi_pd(t2, t2));
  }
  static float hmax(V v) { return _mm512_reduce_max_ps(v); }
};

inline __mmask32 first32(size_t k) {
  return k >= 32 ? static_cast<__mmask32>(0xFFFFFFFFu) : _bzhi_u32(~0u, static_cast<unsigned>(k));
}

template <Fp8Format F>
struct Fp8Codes {
  Fp8Codes() : dec() {}
  LutDecoder<F> dec;
  void load(const uint8_t* row, size_t j, size_t k, __m512& lo, __m512& hi) const {
    if ((j & 63) == 0) prefetch_stream(row + j);
    const __m256i bytes = _mm256_maskz_loadu_epi8(first32(k), row + j);
    const __m512i w = dec(_mm512_castsi256_si512(bytes));
    lo = _mm512_castsi512_ps(_mm512_unpacklo_epi16(_mm512_setzero_si512(), w));
    hi = _mm512_castsi512_ps(_mm512_unpackhi_epi16(_mm512_setzero_si512(), w));
  }
};

// (j even: rows of whole bytes and even block widths)
struct Fp4Codes {
  __m512 table;
  __m512i shift;
  Fp4Codes() {
    alignas(64) float lut[16];
    alignas(64) uint32_t sh[16];
    for (int c = 0; c < 16; ++c) {
      lut[c] = fp4_decode(static_cast<uint8_t>(c));
      sh[c] = (c & 1) ? 4 : 0;
    }
    table = _mm512_load_ps(lut);
    shift = _mm512_load_si512(sh);
  }
  __m512 decode(__m128i doubled) const {
    const __m512i c = _mm512_and_si512(_mm512_srlv_epi32(_mm512_cvtepu8_epi32(doubled), shift),
                                       _mm512_set1_epi32(0xF));
    return _mm512_permutexvar_ps(c, table);
  }
  void load(const uint8_t* row, size_t j, size_t k, __m512& lo, __m512& hi) const {
    if ((j & 127) == 0) prefetch_stream(row + j / 2);
    const __mmask16 m = static_cast<__mmask16>(first32((k + 1) / 2));
    const __m128i b = _mm_maskz_loadu_epi8(m, row + j / 2);
    lo = decode(_mm_unpacklo_epi8(b, b));
    hi = decode(_mm_unpackhi_epi8(b, b));
  }
};

struct RefBf16 {
  void load(const uint8_t* row, size_t j, size_t k, __m512& lo, __m512& hi) const {
    if ((j & 31) == 0) prefetch_stream(row + 2 * j);
    const __m512i w = _mm512_maskz_loadu_epi16(first32(k), row + 2 * j);
    lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(w)), 16));
    hi = _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(w, 1)), 16));
  }
};

struct RefF16 {
  void load(const uint8_t* row, size_t j, size_t k, __m512& lo, __m512& hi) const {
    if ((j & 31) == 0) prefetch_stream(row + 2 * j);
    const __m512i w = _mm512_maskz_loadu_epi16(first32(k), row + 2 * j);
    lo = _mm512_cvtph_ps(_mm512_castsi512_si256(w));
    hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(w, 1));
  }
};

struct RefF32 {
  void load(const uint8_t* row, size_t j, size_t k, __m512& lo, __m512& hi) const {
    if ((j & 15) == 0) prefetch_stream(row + 4 * j);
    const __mmask32 m = first32(k);
    lo = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), row + 4 * j);
    hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m >> 16), row + 4 * j + 64);
  }
};

template <class Codes>
void compare_with(const detail::CompareArgs& a, const Codes& codes) {
  switch (a.rf) {
    case FloatFormat::bf16: return compare_generic<CmpLanes>(a, codes, RefBf16{});
    case FloatFormat::f16: return compare_generic<CmpLanes>(a, codes, RefF16{});
    case FloatFormat::f32: return compare_generic<CmpLanes>(a, codes, RefF32{});
  }
}

void compare(const detail::CompareArgs& a) {
  if (a.fp4) {
    if (a.m.bc % 2 != 0) return scalar::compare(a);  // blocks starting inside a byte
    return compare_with(a, Fp4Codes{});
  }
  with_format(a.fmt, [&](auto fmt) {
    const Fp8Codes<decltype(fmt)::value> codes;
    compare_with(a, codes);
  });
}

// ---- BF16 / F16 / F32 statistics ------------------------------------------------
// Integer compares on bit patterns under masks; W = lane width in bits.
template <int W>
struct Lanes;
template <>
struct Lanes<16> {
  using Mask = __mmask32;
  static __m512i set1(uint32_t x) { return _mm512_set1_epi16(static_cast<short>(x)); }
  static Mask all() { return 0xFFFFFFFFu; }
  static Mask tail(size_t k) { return static_cast<Mask>(_bzhi_u32(~0u, static_cast<unsigned>(k))); }
  static __m512i load(Mask m, const uint8_t* p) { return _mm512_maskz_loadu_epi16(m, p); }
  static Mask eq(Mask m, __m512i a, __m512i b) { return _mm512_mask_cmpeq_epi16_mask(m, a, b); }
  static Mask gtu(Mask m, __m512i a, __m512i b) { return _mm512_mask_cmpgt_epu16_mask(m, a, b); }
  static Mask ltu(Mask m, __m512i a, __m512i b) { return _mm512_mask_cmplt_epu16_mask(m, a, b); }
  static __m512i inc(__m512i c, Mask k, __m512i m1) { return _mm512_mask_sub_epi16(c, k, c, m1); }
  static __m512i maxu(__m512i a, Mask k, __m512i b) { return _mm512_mask_max_epu16(a, k, a, b); }
  static __m512i minu(__m512i a, Mask k, __m512i b) { return _mm512_mask_min_epu16(a, k, a, b); }
  static __m512i sign_fill(__m512i a) { return _mm512_srai_epi16(a, 15); }
  static constexpr size_t kFlush = 32767;
};
template <>
struct Lanes<32> {
  using Mask = __mmask16;
  static __m512i set1(uint32_t x) { return _mm512_set1_epi32(static_cast<int>(x)); }
  static Mask all() { return 0xFFFF; }
  static Mask tail(size_t k) { return static_cast<Mask>((1u << k) - 1u); }
  static __m512i load(Mask m, const uint8_t* p) { return _mm512_maskz_loadu_epi32(m, p); }
  static Mask eq(Mask m, __m512i a, __m512i b) { return _mm512_mask_cmpeq_epi32_mask(m, a, b); }
  static Mask gtu(Mask m, __m512i a, __m512i b) { return _mm512_mask_cmpgt_epu32_mask(m, a, b); }
  static Mask ltu(Mask m, __m512i a, __m512i b) { return _mm512_mask_cmplt_epu32_mask(m, a, b); }
  static __m512i inc(__m512i c, Mask k, __m512i m1) { return _mm512_mask_sub_epi32(c, k, c, m1); }
  static __m512i maxu(__m512i a, Mask k, __m512i b) { return _mm512_mask_max_epu32(a, k, a, b); }
  static __m512i minu(__m512i a, Mask k, __m512i b) { return _mm512_mask_min_epu32(a, k, a, b); }
  static __m512i sign_fill(__m512i a) { return _mm512_srai_epi32(a, 31); }
  static constexpr size_t kFlush = size_t{1} << 30;
};

template <int W>
uint64_t lane_sum(__m512i v) {
  alignas(64) uint8_t buf[64];
  _mm512_store_si512(buf, v);
  uint64_t s = 0;
  for (int i = 0; i < 64; i += W / 8) {
    if constexpr (W == 16) {
      uint16_t x;
      std::memcpy(&x, buf + i, 2);
      s += x;
    } else {
      uint32_t x;
      std::memcpy(&x, buf + i, 4);
      s += x;
    }
  }
  return s;
}

template <int W>
uint32_t lane_reduce(__m512i v, bool want_max) {
  alignas(64) uint8_t buf[64];
  _mm512_store_si512(buf, v);
  uint32_t r = want_max ? 0u : 0xFFFFFFFFu;
  for (int i = 0; i < 64; i += W / 8) {
    uint32_t x;
    if constexpr (W == 16) {
      uint16_t h;
      std::memcpy(&h, buf + i, 2);
      x = h;
    } else {
      std::memcpy(&x, buf + i, 4);
    }
    if (want_max ? x > r : x < r) r = x;
  }
  return r;
}

template <int W, uint32_t INF, uint32_t MINN>
void float_stats_t(const uint8_t* p, size_t count, detail::FloatRaw* out) {
  using L = Lanes<W>;
  using Mask = typename L::Mask;
  constexpr uint32_t SIGN = W == 16 ? 0x8000u : 0x80000000u;
  constexpr uint32_t ALL = SIGN | (SIGN - 1);
  constexpr size_t kPer = 64 / (W / 8);
  const __m512i kabs = L::set1(ALL & ~SIGN);
  const __m512i kinf = L::set1(INF);
  const __m512i kninf = L::set1(INF | SIGN);
  const __m512i kminn = L::set1(MINN);
  const __m512i ksign = L::set1(SIGN);
  const __m512i km1 = _mm512_set1_epi32(-1);
  const __m512i kz = _mm512_setzero_si512();
  uint64_t nan = 0, pinf = 0, ninf = 0, zero = 0, zs = 0;
  __m512i amax = kz, maxk = kz, mink = km1;
  const size_t nvec = (count + kPer - 1) / kPer;
  size_t v = 0;
  while (v < nvec) {
    const size_t stop = (nvec - v > L::kFlush) ? v + L::kFlush : nvec;
    __m512i c_nan = kz, c_pinf = kz, c_ninf = kz, c_zero = kz, c_zs = kz;
    for (; v < stop; ++v) {
      const size_t e = v * kPer;
      const Mask m = (count - e >= kPer) ? L::all() : L::tail(count - e);
      const __m512i x = L::load(m, p + e * (W / 8));
      const __m512i a = _mm512_and_si512(x, kabs);
      const Mask fin = L::ltu(m, a, kinf);
      c_nan = L::inc(c_nan, L::gtu(m, a, kinf), km1);
      c_pinf = L::inc(c_pinf, L::eq(m, x, kinf), km1);
      c_ninf = L::inc(c_ninf, L::eq(m, x, kninf), km1);
      c_zero = L::inc(c_zero, L::eq(m, a, kz), km1);
      c_zs = L::inc(c_zs, L::ltu(m, a, kminn), km1);
      amax = L::maxu(amax, fin, a);
      const __m512i key = _mm512_xor_si512(x, _mm512_or_si512(L::sign_fill(x), ksign));
      maxk = L::maxu(maxk, fin, key);
      mink = L::minu(mink, fin, key);
    }
    nan += lane_sum<W>(c_nan);
    pinf += lane_sum<W>(c_pinf);
    ninf += lane_sum<W>(c_ninf);
    zero += lane_sum<W>(c_zero);
    zs += lane_sum<W>(c_zs);
  }
  detail::FloatRaw r{};
  r.nan = nan;
  r.pos_inf = pinf;
  r.neg_inf = ninf;
  r.zero = zero;
  r.subnormal = zs - zero;
  r.absmax_bits = lane_reduce<W>(amax, true);
  r.max_key = lane_reduce<W>(maxk, true);
  r.min_key = lane_reduce<W>(mink, false) & ALL;
  *out = r;
}

void float_stats(const uint8_t* p, size_t count, FloatFormat f, detail::FloatRaw* out) {
  switch (f) {
    case FloatFormat::bf16: return float_stats_t<16, 0x7F80u, 0x0080u>(p, count, out);
    case FloatFormat::f16: return float_stats_t<16, 0x7C00u, 0x0400u>(p, count, out);
    case FloatFormat::f32: return float_stats_t<32, 0x7F800000u, 0x00800000u>(p, count, out);
  }
}

// ---- memory-read probe -------------------------------------------------------------
uint64_t read_probe(const uint8_t* p, size_t n) {
  __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 256 <= n; i += 256) {
    s0 = _mm512_add_epi64(s0, _mm512_loadu_si512(p + i));
    s1 = _mm512_add_epi64(s1, _mm512_loadu_si512(p + i + 64));
    s2 = _mm512_add_epi64(s2, _mm512_loadu_si512(p + i + 128));
    s3 = _mm512_add_epi64(s3, _mm512_loadu_si512(p + i + 192));
  }
  const uint64_t s =
      hsum64(_mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3)));
  return s + scalar::read_probe(p + i, n - i);
}

}  // namespace

const detail::KernelTable table = {
    "avx512",
    kAVX | kAVX2 | kBMI1 | kBMI2 | kFMA | kF16C | kPOPCNT | kOSYMM | kAVX512F | kAVX512BW |
        kAVX512VL | kAVX512DQ | kAVX512VBMI | kOSZMM,
    &fp8_stats,
    &scalar::histogram,
    &block_stats,
    &dequantize,
    &fp4_dequantize,
    &compare,
    &float_stats,
    &scalar::e8m0_stats,
    &read_probe,
};

}  // namespace ckptscan::kernels::avx512
