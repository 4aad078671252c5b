// AVX2 implementation (compiled with -mavx2 -mbmi -mbmi2 -mpopcnt -mfma -mf16c).
// Only reached after dispatch has checked the CPU and XCR0. Everything lives in
// an unnamed namespace (internal linkage), so no inline function compiled here
// can be merged by the linker into code that runs before the check; vector
// constants are built inside the functions, never at namespace scope.
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "kernels/kernels.h"

namespace ckptscan::kernels::avx2 {
namespace {

#include "kernels/per_isa.h"
#include "kernels/per_x86.h"

inline __m256i load(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// Sum of the bytes of a byte-counter vector into 4 x u64 lanes.
inline __m256i sad(__m256i acc) { return _mm256_sad_epu8(acc, _mm256_setzero_si256()); }

inline uint64_t hsum64(__m256i v) {
  alignas(32) uint64_t t[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), v);
  return t[0] + t[1] + t[2] + t[3];
}

inline uint8_t hmax_u8(__m256i v) {
  __m128i x = _mm_max_epu8(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  x = _mm_max_epu8(x, _mm_srli_si128(x, 8));
  x = _mm_max_epu8(x, _mm_srli_si128(x, 4));
  x = _mm_max_epu8(x, _mm_srli_si128(x, 2));
  x = _mm_max_epu8(x, _mm_srli_si128(x, 1));
  return static_cast<uint8_t>(_mm_cvtsi128_si32(x) & 0xFF);
}

// ---- FP8 statistics ------------------------------------------------------------
// Byte counters (compare masks are -1, so acc - mask counts) flushed with
// vpsadbw every 255 vectors. "zs" counts mag <= sub_max (zeros + subnormals,
// and 0x80 for fnuz); "neg" counts sign-set bytes up to neg_max, 0x80 included;
// both are corrected at the end.
template <Fp8Format F>
void fp8_stats_t(const uint8_t* p, size_t n, detail::Fp8Raw* out) {
  using t = Fmt<F>;
  const __m256i k7f = _mm256_set1_epi8(0x7F);
  const __m256i k80 = _mm256_set1_epi8(static_cast<char>(0x80));
  const __m256i kzero = _mm256_setzero_si256();
  const __m256i knan = _mm256_set1_epi8(static_cast<char>(t::nan_lo == 0x80 ? 0x7F : t::nan_lo));
  const __m256i kinf = _mm256_set1_epi8(0x7C);
  const __m256i ksub1 = _mm256_set1_epi8(static_cast<char>(t::sub_max + 1));
  const __m256i ksat = _mm256_set1_epi8(static_cast<char>(t::sat));
  const __m256i kneg1 = _mm256_set1_epi8(static_cast<char>(t::neg_max + 1));  // signed bound

  __m256i t_nan = kzero, t_inf = kzero, t_zero = kzero, t_zs = kzero, t_sat = kzero,
          t_neg = kzero, t_negz = kzero, amax = kzero;
  const size_t nvec = n / 32;
  size_t v = 0;
  while (v < nvec) {
    const size_t stop = (nvec - v > 255) ? v + 255 : nvec;
    __m256i c_nan = kzero, c_inf = kzero, c_zero = kzero, c_zs = kzero, c_sat = kzero,
            c_neg = kzero, c_negz = kzero;
    for (; v < stop; ++v) {
      if ((v & 1) == 0) prefetch_stream(p + 32 * v);  // once per 64-byte line
      const __m256i b = load(p + 32 * v);
      const __m256i mag = _mm256_and_si256(b, k7f);
      __m256i nan, zero, key;
      if constexpr (t::fnuz) {
        nan = _mm256_cmpeq_epi8(b, k80);
        zero = _mm256_cmpeq_epi8(b, kzero);
        key = mag;  // 0x80 (NaN) has magnitude 0
      } else {
        zero = _mm256_cmpeq_epi8(mag, kzero);
        c_negz = _mm256_sub_epi8(c_negz, _mm256_cmpeq_epi8(b, k80));
        if constexpr (t::inf) {
          nan = _mm256_cmpgt_epi8(mag, kinf);
          const __m256i inf = _mm256_cmpeq_epi8(mag, kinf);
          c_inf = _mm256_sub_epi8(c_inf, inf);
          key = _mm256_andnot_si256(_mm256_or_si256(nan, inf), mag);
        } else {
          nan = _mm256_cmpeq_epi8(mag, knan);
          key = _mm256_andnot_si256(nan, mag);
        }
      }
      c_nan = _mm256_sub_epi8(c_nan, nan);
      c_zero = _mm256_sub_epi8(c_zero, zero);
      c_zs = _mm256_sub_epi8(c_zs, _mm256_cmpgt_epi8(ksub1, mag));
      c_sat = _mm256_sub_epi8(c_sat, _mm256_cmpeq_epi8(mag, ksat));
      c_neg = _mm256_sub_epi8(c_neg, _mm256_cmpgt_epi8(kneg1, b));
      amax = _mm256_max_epu8(amax, key);
    }
    t_nan = _mm256_add_epi64(t_nan, sad(c_nan));
    t_inf = _mm256_add_epi64(t_inf, sad(c_inf));
    t_zero = _mm256_add_epi64(t_zero, sad(c_zero));
    t_zs = _mm256_add_epi64(t_zs, sad(c_zs));
    t_sat = _mm256_add_epi64(t_sat, sad(c_sat));
    t_neg = _mm256_add_epi64(t_neg, sad(c_neg));
    t_negz = _mm256_add_epi64(t_negz, sad(c_negz));
  }
  detail::Fp8Raw r{};
  r.nan = hsum64(t_nan);
  r.inf = hsum64(t_inf);
  r.zero = hsum64(t_zero);
  r.neg_zero = hsum64(t_negz);
  r.saturated = hsum64(t_sat);
  const uint64_t zs = hsum64(t_zs), neg = hsum64(t_neg);
  // mag == 0 bytes: +/-0, and for fnuz also the NaN 0x80. 0x80 bytes: -0 or NaN.
  r.subnormal = zs - r.zero - (t::fnuz ? r.nan : 0);
  r.negative = neg - (t::fnuz ? r.nan : r.neg_zero);
  r.absmax_code = hmax_u8(amax);
  const size_t done = nvec * 32;
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
// As avx512.cc with compare vectors instead of masks: a block's counts are
// popcounts of movemasks; a partial vector goes through a zero-padded copy
// (+0 codes: key 0, no NaN / Inf / saturated) whose padding is taken back out
// of the zero counts at the end.
template <Fp8Format F>
struct Fp8Lanes : Xmm16Results {  // V16 ops: per_x86.h
  using f = Fmt<F>;
  using V = __m256i;
  static constexpr size_t kW = 32;
  static constexpr bool kFlat = true;

  struct Tensor {
    __m256i c_zero = _mm256_setzero_si256(), c_negz = c_zero, c_zs = c_zero, c_neg = c_zero;
    unsigned steps = 0;
    uint64_t zero = 0, negz = 0, zs = 0, neg = 0, pad = 0;
    void flush() {
      zero += hsum64(sad(c_zero));
      negz += hsum64(sad(c_negz));
      zs += hsum64(sad(c_zs));
      neg += hsum64(sad(c_neg));
      c_zero = c_negz = c_zs = c_neg = _mm256_setzero_si256();
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
    __m256i key, nan, inf, sat;  // compare masks: 0xFF per byte
  };

  // S: also the whole-tensor counters and the saturated mask (block_absmax alone
  // needs neither).
  template <bool S>
  static inline Cls classify(__m256i b, Tensor& t) {
    const __m256i k7f = _mm256_set1_epi8(0x7F);
    const __m256i k80 = _mm256_set1_epi8(static_cast<char>(0x80));
    const __m256i kz = _mm256_setzero_si256();
    const __m256i kinf = _mm256_set1_epi8(0x7C);
    const __m256i mag = _mm256_and_si256(b, k7f);
    __m256i nan, inf = kz, zero, key;
    if constexpr (f::fnuz) {
      nan = _mm256_cmpeq_epi8(b, k80);
      zero = _mm256_cmpeq_epi8(b, kz);
      key = mag;  // 0x80 (NaN) has magnitude 0
    } else {
      zero = _mm256_cmpeq_epi8(mag, kz);
      if constexpr (S) t.c_negz = _mm256_sub_epi8(t.c_negz, _mm256_cmpeq_epi8(b, k80));
      if constexpr (f::inf) {
        nan = _mm256_cmpgt_epi8(mag, kinf);
        inf = _mm256_cmpeq_epi8(mag, kinf);
        key = _mm256_andnot_si256(_mm256_or_si256(nan, inf), mag);
      } else {
        nan = _mm256_cmpeq_epi8(mag, _mm256_set1_epi8(static_cast<char>(f::nan_lo)));
        key = _mm256_andnot_si256(nan, mag);
      }
    }
    if constexpr (!S) return {key, nan, inf, kz};
    const __m256i ksub1 = _mm256_set1_epi8(static_cast<char>(f::sub_max + 1));
    const __m256i kneg1 = _mm256_set1_epi8(static_cast<char>(f::neg_max + 1));  // signed bound
    t.c_zero = _mm256_sub_epi8(t.c_zero, zero);
    t.c_zs = _mm256_sub_epi8(t.c_zs, _mm256_cmpgt_epi8(ksub1, mag));
    t.c_neg = _mm256_sub_epi8(t.c_neg, _mm256_cmpgt_epi8(kneg1, b));
    if (++t.steps == 255) t.flush();
    const __m256i sat = _mm256_cmpeq_epi8(mag, _mm256_set1_epi8(static_cast<char>(f::sat)));
    return {key, nan, inf, sat};
  }
  template <bool S>
  static inline Cls classify_full(const uint8_t* p, Tensor& t) {
    if ((reinterpret_cast<uintptr_t>(p) & 32) == 0) prefetch_stream(p);  // once per line
    return classify<S>(load(p), t);
  }
  template <bool S>
  static inline Cls classify_part(const uint8_t* p, size_t k, Tensor& t) {
    alignas(32) uint8_t buf[32] = {};
    std::memcpy(buf, p, k);
    t.pad += kW - k;
    return classify<S>(load(buf), t);
  }
  static inline uint64_t count(__m256i m) {
    return static_cast<uint64_t>(_mm_popcnt_u32(static_cast<uint32_t>(_mm256_movemask_epi8(m))));
  }
  static inline __m256i ones(__m256i m) { return _mm256_and_si256(m, _mm256_set1_epi8(1)); }
  static inline __m256i zero() { return _mm256_setzero_si256(); }
  static inline __m256i load(const uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static inline __m256i max(__m256i a, __m256i b) { return _mm256_max_epu8(a, b); }
  static inline __m256i key(const Cls& c) { return c.key; }
  // A block's byte counters: NaN, saturated (and Inf for E5M2); measured
  // faster here than movemask + popcount.
  static constexpr bool kByteCounters = true;
  struct Counters {
    __m256i v[f::inf ? 3 : 2];
  };
  static inline Counters counters() {
    Counters c;
    for (__m256i& x : c.v) x = _mm256_setzero_si256();
    return c;
  }
  static inline void count_into(Counters& c, const Cls& x) {
    c.v[0] = _mm256_sub_epi8(c.v[0], x.nan);
    c.v[1] = _mm256_sub_epi8(c.v[1], x.sat);
    if constexpr (f::inf) c.v[2] = _mm256_sub_epi8(c.v[2], x.inf);
  }
  static inline void drain(Counters& c, uint64_t& nan, uint64_t& inf, uint64_t& sat) {
    nan += hsum64(sad(c.v[0]));
    sat += hsum64(sad(c.v[1]));
    if constexpr (f::inf) inf += hsum64(sad(c.v[2]));
    c = counters();
  }
  static inline __m256i max_key(__m256i a, const Cls& c) { return _mm256_max_epu8(a, c.key); }
  static inline uint8_t hmax(__m256i v) { return hmax_u8(v); }

  // Byte max (or sum) of each BC-byte block of G = 16 * BC / 32 vectors: the
  // two halves of every block paired until each block is one dword, then
  // within it; the 16 results, in block order: result[order[k]] at byte k.
  template <size_t BC, bool IS_MAX>
  static inline __m128i tree(__m256i* v, const uint8_t* order) {
    auto op = [](__m256i a, __m256i b) {
      return IS_MAX ? _mm256_max_epu8(a, b) : _mm256_add_epi8(a, b);
    };
    size_t n = 16 * BC / 32;
    if constexpr (BC >= 32) {  // 32 -> 16: low vs high 128-bit lane of two vectors
      for (size_t i = 0; i < n / 2; ++i) {
        v[i] = op(_mm256_permute2x128_si256(v[2 * i], v[2 * i + 1], 0x20),
                  _mm256_permute2x128_si256(v[2 * i], v[2 * i + 1], 0x31));
      }
      n /= 2;
    }
    for (size_t i = 0; i < n / 2; ++i) {  // 16 -> 8: low vs high qword of each lane
      v[i] = op(_mm256_unpacklo_epi64(v[2 * i], v[2 * i + 1]),
                _mm256_unpackhi_epi64(v[2 * i], v[2 * i + 1]));
    }
    __m256i x[2];
    for (size_t i = 0; i < 2; ++i) {  // 8 -> 4: even vs odd dwords; then within each dword
      const __m256 a = _mm256_castsi256_ps(v[2 * i]), b = _mm256_castsi256_ps(v[2 * i + 1]);
      __m256i y = op(_mm256_castps_si256(_mm256_shuffle_ps(a, b, 0x88)),
                     _mm256_castps_si256(_mm256_shuffle_ps(a, b, 0xDD)));
      y = op(y, _mm256_srli_epi32(y, 16));
      y = op(y, _mm256_srli_epi32(y, 8));
      x[i] = _mm256_and_si256(y, _mm256_set1_epi32(0xFF));
    }
    // 16 dwords -> 16 bytes (lane-wise packs), then into block order
    const __m256i w = _mm256_packus_epi32(x[0], x[1]);
    const __m256i b8 = _mm256_permute4x64_epi64(_mm256_packus_epi16(w, w), 0x08);
    const __m128i idx = _mm_loadu_si128(reinterpret_cast<const __m128i*>(order));
    return _mm_shuffle_epi8(_mm256_castsi256_si128(b8), idx);
  }
};

void block_stats(const detail::Matrix& m, Fp8Format f, detail::Fp8Raw* raw,
                 const detail::BlockOut& o) {
  with_format(f, [&](auto fmt) { block_stats_generic<Fp8Lanes<decltype(fmt)::value>>(m, raw, o); });
}

// ---- dequantization ----------------------------------------------------------------
// decode(b) for 8 codes in 32-bit lanes, exactly: normal magnitudes by moving
// the exponent/mantissa bits into place and rebiasing, subnormals as
// int(mag) * 2^(1 - bias - man) (no denormal float is ever an input, so DAZ
// cannot change the result), then sign, Inf and NaN (0x7FC00000 | sign, as
// ml_dtypes and scalar.cc).
template <Fp8Format F>
struct Decoder {
  using t = Fmt<F>;
  __m256i k7f = _mm256_set1_epi32(0x7F);
  __m256i kbias = _mm256_set1_epi32((127 - t::bias) << 23);
  __m256i ksubn = _mm256_set1_epi32(1 << t::man);
  __m256 ksubscale = _mm256_castsi256_ps(_mm256_set1_epi32((127 + 1 - t::bias - t::man) << 23));
  __m256i ksign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  __m256i knan = _mm256_set1_epi32(t::fnuz ? 0x80 : t::nan_lo);
  __m256i kinfcode = _mm256_set1_epi32(0x7C);
  __m256i kinfbits = _mm256_set1_epi32(0x7F800000);
  __m256i kqnan = _mm256_set1_epi32(0x7FC00000);

  inline __m256 operator()(__m256i b) const {
    const __m256i mag = _mm256_and_si256(b, k7f);
    const __m256 normal =
        _mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(mag, 23 - t::man), kbias));
    const __m256 sub = _mm256_mul_ps(_mm256_cvtepi32_ps(mag), ksubscale);
    const __m256 is_sub = _mm256_castsi256_ps(_mm256_cmpgt_epi32(ksubn, mag));
    __m256i x = _mm256_castps_si256(_mm256_blendv_ps(normal, sub, is_sub));
    const __m256i sign = _mm256_and_si256(_mm256_slli_epi32(b, 24), ksign);
    x = _mm256_or_si256(x, sign);
    const __m256i qnan = _mm256_or_si256(sign, kqnan);
    if constexpr (t::fnuz) {
      x = _mm256_blendv_epi8(x, qnan, _mm256_cmpeq_epi32(b, knan));
    } else if constexpr (t::inf) {
      const __m256i inf = _mm256_cmpeq_epi32(mag, kinfcode);
      x = _mm256_blendv_epi8(x, _mm256_or_si256(sign, kinfbits), inf);
      x = _mm256_blendv_epi8(x, qnan, _mm256_cmpgt_epi32(mag, kinfcode));
    } else {
      x = _mm256_blendv_epi8(x, qnan, _mm256_cmpeq_epi32(mag, knan));
    }
    return _mm256_castsi256_ps(x);
  }
};

// float32 -> bfloat16 bits in the low half of each 32-bit lane, RNE; NaN ->
// 0x7FC0 with its sign (as ml_dtypes).
inline __m256i to_bf16(__m256 p) {
  const __m256i u = _mm256_castps_si256(p);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r =
      _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
  const __m256i q = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x8000)),
                                    _mm256_set1_epi32(0x7FC0));
  const __m256i isnan = _mm256_castps_si256(_mm256_cmp_ps(p, p, _CMP_UNORD_Q));
  return _mm256_blendv_epi8(r, q, isnan);
}

// x * s, except that a NaN code keeps its own NaN (as scalar.cc: with two NaN
// operands the result would depend on the order the compiler picks).
inline __m256 scaled(__m256 x, __m256 s) {
  return _mm256_blendv_ps(_mm256_mul_ps(x, s), x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// Dequantizes 16 codes (from p, already in a readable 16-byte window) to out.
template <Fp8Format F, OutType O>
inline void dq16(const Decoder<F>& dec, const uint8_t* p, __m256 s, void* out) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256 a = scaled(dec(_mm256_cvtepu8_epi32(bytes)), s);
  const __m256 b = scaled(dec(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8))), s);
  if constexpr (O == OutType::f32) {
    float* o = static_cast<float*>(out);
    _mm256_storeu_ps(o, a);
    _mm256_storeu_ps(o + 8, b);
  } else {
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(to_bf16(a), to_bf16(b)),
                                                    0xD8);
    _mm256_storeu_si256(static_cast<__m256i*>(out), packed);
  }
}

template <Fp8Format F, OutType O>
void dequantize_t(const detail::DequantArgs& a) {
  using Out = std::conditional_t<O == OutType::f32, float, uint16_t>;
  const Decoder<F> dec;
  const detail::Matrix& g = a.m;
  for (size_t i = 0; i < g.rows; ++i) {
    const uint8_t* row = g.q + i * g.cols;
    const float* srow = a.scale + (i / g.br) * g.nbc;
    Out* orow = static_cast<Out*>(a.out) + i * g.cols;
    for (size_t bj = 0; bj < g.nbc; ++bj) {
      const size_t j0 = bj * g.bc, j1 = end_of(j0, g.bc, g.cols);
      const __m256 s = _mm256_set1_ps(srow[bj]);
      size_t j = j0;
      for (; j1 - j >= 16; j += 16) dq16<F, O>(dec, row + j, s, orow + j);
      if (j < j1) {  // tail: through zero-padded buffers, same arithmetic
        alignas(32) uint8_t in[16] = {};
        alignas(32) Out tmp[16];
        std::memcpy(in, row + j, j1 - j);
        dq16<F, O>(dec, in, s, tmp);
        std::memcpy(orow + j, tmp, (j1 - j) * sizeof(Out));
      }
    }
  }
}

void dequantize(const detail::DequantArgs& a) {
  with_format_out(a.fmt, a.out_type, [&](auto fmt, auto out) {
    dequantize_t<decltype(fmt)::value, decltype(out)::value>(a);
  });
}

// ---- dequantize and compare -------------------------------------------------------
// compare_generic (per_isa.h) on 16 floats held as two YMM; the 16 double lanes
// as four, in the order kernels.h's reduction tree needs.
struct CmpLanes {
  struct V {
    __m256 lo, hi;
  };
  struct D {
    __m256d d[4];
  };
  static V zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  static V set1(float x) { return {_mm256_set1_ps(x), _mm256_set1_ps(x)}; }
  static V add(V a, V b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
  static V sub(V a, V b) { return {_mm256_sub_ps(a.lo, b.lo), _mm256_sub_ps(a.hi, b.hi)}; }
  static V mul(V a, V b) { return {_mm256_mul_ps(a.lo, b.lo), _mm256_mul_ps(a.hi, b.hi)}; }
  static V fma(V a, V b, V c) {
    return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
  }
  static __m256 abs1(__m256 x) {
    return _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
  }
  static V abs(V a) { return {abs1(a.lo), abs1(a.hi)}; }
  static V max(V a, V b) { return {_mm256_max_ps(a.lo, b.lo), _mm256_max_ps(a.hi, b.hi)}; }
  static uint32_t bits(__m256 lo, __m256 hi) {
    return static_cast<uint32_t>(_mm256_movemask_ps(lo)) |
           (static_cast<uint32_t>(_mm256_movemask_ps(hi)) << 8);
  }
  static __m256 nonfinite1(__m256 x) {
    const __m256i e = _mm256_set1_epi32(0x7F800000);
    return _mm256_castsi256_ps(
        _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(x), e), e));
  }
  static uint32_t nonfinite(V a) { return bits(nonfinite1(a.lo), nonfinite1(a.hi)); }
  static uint32_t gt(V a, V b) {
    return bits(_mm256_cmp_ps(a.lo, b.lo, _CMP_GT_OQ), _mm256_cmp_ps(a.hi, b.hi, _CMP_GT_OQ));
  }
  // lanes of 8 mask bits as all-ones / zero floats
  static __m256 lanes(uint32_t m) {
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(
        _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(m & 0xFF)), sel), sel));
  }
  static V zero_where(V a, uint32_t m) {
    return {_mm256_andnot_ps(lanes(m), a.lo), _mm256_andnot_ps(lanes(m >> 8), a.hi)};
  }
  static V blend(V a, V b, uint32_t m) {
    return {_mm256_blendv_ps(a.lo, b.lo, lanes(m)), _mm256_blendv_ps(a.hi, b.hi, lanes(m >> 8))};
  }
  static D dzero() {
    const __m256d z = _mm256_setzero_pd();
    return {{z, z, z, z}};
  }
  static void fold(D& d, V v) {
    d.d[0] = _mm256_add_pd(d.d[0], _mm256_cvtps_pd(_mm256_castps256_ps128(v.lo)));
    d.d[1] = _mm256_add_pd(d.d[1], _mm256_cvtps_pd(_mm256_extractf128_ps(v.lo, 1)));
    d.d[2] = _mm256_add_pd(d.d[2], _mm256_cvtps_pd(_mm256_castps256_ps128(v.hi)));
    d.d[3] = _mm256_add_pd(d.d[3], _mm256_cvtps_pd(_mm256_extractf128_ps(v.hi, 1)));
  }
  static double reduce(const D& d) {
    // lanes l + l+8 (0-3: d0 + d2, 4-7: d1 + d3), then l + l+4, l + l+2, l + l+1
    const __m256d t4 = _mm256_add_pd(_mm256_add_pd(d.d[0], d.d[2]), _mm256_add_pd(d.d[1], d.d[3]));
    const __m128d t2 = _mm_add_pd(_mm256_castpd256_pd128(t4), _mm256_extractf128_pd(t4, 1));
    return _mm_cvtsd_f64(t2) + _mm_cvtsd_f64(_mm_unpackhi_pd(t2, t2));
  }
  static float hmax(V v) {
    const __m256 m = _mm256_max_ps(v.lo, v.hi);
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
  }
};

// n bytes of p, zero-padded to 64 (the partial vectors at a row's end)
struct Tail {
  alignas(32) uint8_t b[64];
  const uint8_t* at(const uint8_t* p, size_t n) {
    std::memset(b, 0, sizeof(b));
    std::memcpy(b, p, n);
    return b;
  }
};

template <Fp8Format F>
struct Fp8Codes {
  Decoder<F> dec;
  void load(const uint8_t* row, size_t j, size_t k, CmpLanes::V& lo, CmpLanes::V& hi) const {
    Tail t;
    const uint8_t* p = k >= 32 ? row + j : t.at(row + j, k);
    if (k >= 32 && (j & 63) == 0) prefetch_stream(row + j);
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
    lo = {dec(_mm256_cvtepu8_epi32(a)), dec(_mm256_cvtepu8_epi32(_mm_srli_si128(a, 8)))};
    hi = {dec(_mm256_cvtepu8_epi32(b)), dec(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)))};
  }
};

// (j even: rows of whole bytes and even block widths)
struct Fp4Codes {
  // 8 values from 4 bytes: each byte doubled, shifted by 0 / 4, magnitude looked up
  static __m256 eight(const uint8_t* p) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    const __m128i b = _mm_cvtsi32_si128(static_cast<int>(w));
    const __m256i c = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_cvtepu8_epi32(_mm_unpacklo_epi8(b, b)),
                          _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4)),
        _mm256_set1_epi32(0xF));
    const __m256 mag = _mm256_permutevar8x32_ps(
        _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f), c);
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(8)), 28);
    return _mm256_or_ps(mag, _mm256_castsi256_ps(sign));
  }
  void load(const uint8_t* row, size_t j, size_t k, CmpLanes::V& lo, CmpLanes::V& hi) const {
    Tail t;
    const uint8_t* p = k >= 32 ? row + j / 2 : t.at(row + j / 2, (k + 1) / 2);
    if (k >= 32 && (j & 127) == 0) prefetch_stream(row + j / 2);
    lo = {eight(p), eight(p + 4)};
    hi = {eight(p + 8), eight(p + 12)};
  }
};

// A 16-bit reference, eight values at a time widened to float32 by Widen.
template <class Widen>
struct Ref16 {
  void load(const uint8_t* row, size_t j, size_t k, CmpLanes::V& lo, CmpLanes::V& hi) const {
    Tail t;
    const uint8_t* p = k >= 32 ? row + 2 * j : t.at(row + 2 * j, 2 * k);
    if (k >= 32 && (j & 31) == 0) prefetch_stream(row + 2 * j);
    lo = {Widen::eight(p), Widen::eight(p + 16)};
    hi = {Widen::eight(p + 32), Widen::eight(p + 48)};
  }
};

struct Bf16Widen {  // bfloat16 is float32's top half
  static __m256 eight(const uint8_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
};

struct F16Widen {
  static __m256 eight(const uint8_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
};

using RefBf16 = Ref16<Bf16Widen>;
using RefF16 = Ref16<F16Widen>;

struct RefF32 {
  void load(const uint8_t* row, size_t j, size_t k, CmpLanes::V& lo, CmpLanes::V& hi) const {
    if (k >= 32) {
      const float* p = reinterpret_cast<const float*>(row + 4 * j);
      if ((j & 15) == 0) prefetch_stream(row + 4 * j);
      lo = {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
      hi = {_mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 24)};
      return;
    }
    alignas(32) float b[32] = {};
    std::memcpy(b, row + 4 * j, 4 * k);
    lo = {_mm256_load_ps(b), _mm256_load_ps(b + 8)};
    hi = {_mm256_load_ps(b + 16), _mm256_load_ps(b + 24)};
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
    const Fp8Codes<decltype(fmt)::value> codes{};
    compare_with(a, codes);
  });
}

// ---- BF16 / F16 / F32 statistics ------------------------------------------------
// Integer compares on the bit patterns (exact, and immune to DAZ/FTZ).
// W = lane width in bits (16 or 32); INF = bits of +Inf; MINN = smallest normal.
template <int W>
struct Lanes;
template <>
struct Lanes<16> {
  static __m256i set1(uint32_t x) { return _mm256_set1_epi16(static_cast<short>(x)); }
  static __m256i eq(__m256i a, __m256i b) { return _mm256_cmpeq_epi16(a, b); }
  static __m256i gt(__m256i a, __m256i b) { return _mm256_cmpgt_epi16(a, b); }
  static __m256i maxu(__m256i a, __m256i b) { return _mm256_max_epu16(a, b); }
  static __m256i minu(__m256i a, __m256i b) { return _mm256_min_epu16(a, b); }
  static __m256i sub(__m256i a, __m256i b) { return _mm256_sub_epi16(a, b); }
  static __m256i sign_fill(__m256i a) { return _mm256_srai_epi16(a, 15); }
  static constexpr size_t kFlush = 32767;  // vectors per 16-bit counter flush
};
template <>
struct Lanes<32> {
  static __m256i set1(uint32_t x) { return _mm256_set1_epi32(static_cast<int>(x)); }
  static __m256i eq(__m256i a, __m256i b) { return _mm256_cmpeq_epi32(a, b); }
  static __m256i gt(__m256i a, __m256i b) { return _mm256_cmpgt_epi32(a, b); }
  static __m256i maxu(__m256i a, __m256i b) { return _mm256_max_epu32(a, b); }
  static __m256i minu(__m256i a, __m256i b) { return _mm256_min_epu32(a, b); }
  static __m256i sub(__m256i a, __m256i b) { return _mm256_sub_epi32(a, b); }
  static __m256i sign_fill(__m256i a) { return _mm256_srai_epi32(a, 31); }
  static constexpr size_t kFlush = size_t{1} << 30;
};

template <int W>
uint64_t lane_sum(__m256i v) {
  alignas(32) uint8_t buf[32];
  _mm256_store_si256(reinterpret_cast<__m256i*>(buf), v);
  uint64_t s = 0;
  for (int i = 0; i < 32; i += W / 8) {
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
uint32_t lane_reduce(__m256i v, bool want_max) {
  alignas(32) uint8_t buf[32];
  _mm256_store_si256(reinterpret_cast<__m256i*>(buf), v);
  uint32_t r = want_max ? 0u : 0xFFFFFFFFu;
  for (int i = 0; i < 32; i += W / 8) {
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
void float_stats_t(const uint8_t* p, size_t count, FloatFormat f, detail::FloatRaw* out) {
  using L = Lanes<W>;
  constexpr uint32_t SIGN = W == 16 ? 0x8000u : 0x80000000u;
  constexpr uint32_t ALL = SIGN | (SIGN - 1);
  constexpr size_t kPer = 32 / (W / 8);  // elements per vector
  const __m256i kabs = L::set1(ALL & ~SIGN);
  const __m256i kinf = L::set1(INF);
  const __m256i kninf = L::set1(INF | SIGN);
  const __m256i kminn = L::set1(MINN);
  const __m256i ksign = L::set1(SIGN);
  const __m256i kones = _mm256_set1_epi32(-1);
  const __m256i kzero = _mm256_setzero_si256();
  uint64_t nan = 0, pinf = 0, ninf = 0, zero = 0, zs = 0;
  __m256i amax = kzero, maxk = kzero, mink = kones;
  const size_t nvec = count / kPer;
  size_t v = 0;
  while (v < nvec) {
    const size_t stop = (nvec - v > L::kFlush) ? v + L::kFlush : nvec;
    __m256i c_nan = kzero, c_pinf = kzero, c_ninf = kzero, c_zero = kzero, c_zs = kzero;
    for (; v < stop; ++v) {
      const __m256i x = load(p + 32 * v);
      const __m256i a = _mm256_and_si256(x, kabs);
      const __m256i fin = L::gt(kinf, a);
      c_nan = L::sub(c_nan, L::gt(a, kinf));
      c_pinf = L::sub(c_pinf, L::eq(x, kinf));
      c_ninf = L::sub(c_ninf, L::eq(x, kninf));
      c_zero = L::sub(c_zero, L::eq(a, kzero));
      c_zs = L::sub(c_zs, L::gt(kminn, a));
      amax = L::maxu(amax, _mm256_and_si256(a, fin));
      const __m256i key = _mm256_xor_si256(x, _mm256_or_si256(L::sign_fill(x), ksign));
      maxk = L::maxu(maxk, _mm256_and_si256(key, fin));
      mink = L::minu(mink, _mm256_or_si256(key, _mm256_xor_si256(fin, kones)));
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
  const size_t done = nvec * kPer;
  if (done < count) {
    detail::FloatRaw tail{};
    scalar::float_stats(p + done * (W / 8), count - done, f, &tail);
    r.nan += tail.nan;
    r.pos_inf += tail.pos_inf;
    r.neg_inf += tail.neg_inf;
    r.zero += tail.zero;
    r.subnormal += tail.subnormal;
    if (tail.absmax_bits > r.absmax_bits) r.absmax_bits = tail.absmax_bits;
    if (tail.max_key > r.max_key) r.max_key = tail.max_key;
    if (tail.min_key < r.min_key) r.min_key = tail.min_key;
  }
  *out = r;
}

void float_stats(const uint8_t* p, size_t count, FloatFormat f, detail::FloatRaw* out) {
  switch (f) {
    case FloatFormat::bf16: return float_stats_t<16, 0x7F80u, 0x0080u>(p, count, f, out);
    case FloatFormat::f16: return float_stats_t<16, 0x7C00u, 0x0400u>(p, count, f, out);
    case FloatFormat::f32: return float_stats_t<32, 0x7F800000u, 0x00800000u>(p, count, f, out);
  }
}

// ---- memory-read probe -------------------------------------------------------------
uint64_t read_probe(const uint8_t* p, size_t n) {
  __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    s0 = _mm256_add_epi64(s0, load(p + i));
    s1 = _mm256_add_epi64(s1, load(p + i + 32));
    s2 = _mm256_add_epi64(s2, load(p + i + 64));
    s3 = _mm256_add_epi64(s3, load(p + i + 96));
  }
  uint64_t s = hsum64(_mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3)));
  return s + scalar::read_probe(p + i, n - i);
}

}  // namespace

const detail::KernelTable table = {
    "avx2",
    kAVX | kAVX2 | kBMI1 | kBMI2 | kFMA | kF16C | kPOPCNT | kOSYMM,
    &fp8_stats,
    &scalar::histogram,
    &block_stats,
    &dequantize,
    &scalar::fp4_dequantize,
    &compare,
    &float_stats,
    &scalar::e8m0_stats,
    &read_probe,
};

}  // namespace ckptscan::kernels::avx2
