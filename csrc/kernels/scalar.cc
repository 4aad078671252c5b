// Portable reference implementation: the oracle every SIMD path must match
// bit for bit. Written for obviousness first; fast enough to be the fallback.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/kernels.h"

namespace ckptscan::kernels::scalar {
namespace {

#include "kernels/per_isa.h"

// One code's class, straight from the definitions in kernels.h.
struct CodeClass {
  bool nan, inf, zero, neg_zero, subnormal, saturated, negative, finite;
  uint8_t mag;
};

CodeClass classify(uint8_t b, const Fp8Traits& t) {
  CodeClass c{};
  c.mag = static_cast<uint8_t>(b & 0x7F);
  const bool sign = (b & 0x80) != 0;
  if (t.fnuz) {
    c.nan = b == 0x80;
    c.zero = b == 0x00;
  } else {
    c.nan = c.mag >= t.nan_mag_lo;
    c.inf = t.has_inf && c.mag == 0x7C;
    c.zero = c.mag == 0;
    c.neg_zero = b == 0x80;
  }
  c.finite = !c.nan && !c.inf;
  c.subnormal = c.mag >= 1 && c.mag <= t.sub_max && !c.nan;
  c.saturated = c.mag == t.sat_code && !c.nan;
  c.negative = sign && !c.nan && !c.zero;
  return c;
}

// 8 interleaved sub-histograms of uint32, so that runs of equal bytes do not
// serialise on one counter (store-to-load forwarding), fed by byte loads
// (measured faster than extracting bytes from 64-bit words: 2.7 vs 1.9 GB/s);
// flushed to uint64 every chunk.
void histogram_impl(const uint8_t* p, size_t n, uint64_t* out) {
  for (int i = 0; i < 256; ++i) out[i] = 0;
  constexpr size_t kChunk = size_t{1} << 30;  // < 2^32 per sub-histogram
  uint32_t h[8][256];
  while (n > 0) {
    const size_t m = n < kChunk ? n : kChunk;
    std::memset(h, 0, sizeof(h));
    size_t i = 0;
    for (; i + 8 <= m; i += 8) {
      ++h[0][p[i]];
      ++h[1][p[i + 1]];
      ++h[2][p[i + 2]];
      ++h[3][p[i + 3]];
      ++h[4][p[i + 4]];
      ++h[5][p[i + 5]];
      ++h[6][p[i + 6]];
      ++h[7][p[i + 7]];
    }
    for (; i < m; ++i) ++h[0][p[i]];
    for (int v = 0; v < 256; ++v) {
      uint64_t sum = 0;
      for (int t = 0; t < 8; ++t) sum += h[t][v];
      out[v] += sum;
    }
    p += m;
    n -= m;
  }
}

// NaN codes decode to the quiet NaN 0x7FC00000 with the code's sign bit (what
// ml_dtypes gives); everything else exactly.
float decode_f32(uint8_t code, Fp8Format f) {
  const double d = fp8_decode(code, f);
  if (d == d) return static_cast<float>(d);
  const uint32_t u = 0x7FC00000u | ((code & 0x80u) << 24);
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// x * s, except that a NaN code keeps its own NaN: with two NaN operands the
// hardware returns the first, and compilers order a commutative product freely.
float scaled(float x, float s) { return x != x ? x : x * s; }

uint16_t f32_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>(((u >> 16) & 0x8000u) | 0x7FC0u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Per float format: element width and the bit layout, as 32-bit numbers.
struct FloatLayout {
  int bytes;
  uint32_t sign, inf, min_normal;
};
FloatLayout layout(FloatFormat f) {
  switch (f) {
    case FloatFormat::bf16: return {2, 0x8000u, 0x7F80u, 0x0080u};
    case FloatFormat::f16: return {2, 0x8000u, 0x7C00u, 0x0400u};
    case FloatFormat::f32: break;
  }
  return {4, 0x80000000u, 0x7F800000u, 0x00800000u};
}

}  // namespace

void fp8_stats(const uint8_t* p, size_t n, Fp8Format f, detail::Fp8Raw* out) {
  uint64_t h[256];
  if (n < 2048) {  // small spans (and SIMD tails): skip the sub-histogram set-up
    for (int v = 0; v < 256; ++v) h[v] = 0;
    for (size_t i = 0; i < n; ++i) ++h[p[i]];
  } else {
    histogram_impl(p, n, h);
  }
  const Fp8Traits& t = fp8_traits(f);
  detail::Fp8Raw r{};
  for (int v = 0; v < 256; ++v) {
    if (h[v] == 0) continue;
    const CodeClass c = classify(static_cast<uint8_t>(v), t);
    r.nan += c.nan ? h[v] : 0;
    r.inf += c.inf ? h[v] : 0;
    r.zero += c.zero ? h[v] : 0;
    r.neg_zero += c.neg_zero ? h[v] : 0;
    r.subnormal += c.subnormal ? h[v] : 0;
    r.saturated += c.saturated ? h[v] : 0;
    r.negative += c.negative ? h[v] : 0;
    if (c.finite && c.mag > r.absmax_code) r.absmax_code = c.mag;
  }
  *out = r;
}

void histogram(const uint8_t* p, size_t n, uint64_t* out) { histogram_impl(p, n, out); }

// Block by block, element by element, through the classes of the 256 codes.
void block_stats(const detail::Matrix& m, Fp8Format f, detail::Fp8Raw* raw,
                 const detail::BlockOut& o) {
  const Fp8Traits& t = fp8_traits(f);
  CodeClass cls[256];
  for (int v = 0; v < 256; ++v) cls[v] = classify(static_cast<uint8_t>(v), t);
  detail::Fp8Raw r{};
  for (size_t bi = 0; bi < m.nbr; ++bi) {
    const size_t r0 = bi * m.br, r1 = end_of(r0, m.br, m.rows);
    for (size_t bj = 0; bj < m.nbc; ++bj) {
      const size_t j0 = bj * m.bc, j1 = end_of(j0, m.bc, m.cols);
      uint8_t amax = 0;
      uint64_t nan = 0, inf = 0, sat = 0;
      for (size_t i = r0; i < r1; ++i) {
        for (size_t j = j0; j < j1; ++j) {
          const CodeClass& c = cls[m.q[i * m.cols + j]];
          nan += c.nan;
          inf += c.inf;
          sat += c.saturated;
          r.zero += c.zero;
          r.neg_zero += c.neg_zero;
          r.subnormal += c.subnormal;
          r.negative += c.negative;
          if (c.finite && c.mag > amax) amax = c.mag;
        }
      }
      const size_t k = bi * m.nbc + bj;
      if (o.absmax) o.absmax[k] = amax;
      if (o.nan) store_count(o.nan, k, nan, o.width);
      if (o.inf) store_count(o.inf, k, inf, o.width);
      if (o.saturated) store_count(o.saturated, k, sat, o.width);
      r.nan += nan;
      r.inf += inf;
      r.saturated += sat;
      if (amax > r.absmax_code) r.absmax_code = amax;
    }
  }
  if (raw) add_raw(*raw, r);
}

void dequantize(const detail::DequantArgs& a) {
  float lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = decode_f32(static_cast<uint8_t>(v), a.fmt);
  const detail::Matrix& g = a.m;
  for (size_t i = 0; i < g.rows; ++i) {
    const uint8_t* row = g.q + i * g.cols;
    const float* srow = a.scale + (i / g.br) * g.nbc;
    if (a.out_type == OutType::f32) {
      float* o = static_cast<float*>(a.out) + i * g.cols;
      for (size_t j = 0; j < g.cols; ++j) o[j] = scaled(lut[row[j]], srow[j / g.bc]);
    } else {
      uint16_t* o = static_cast<uint16_t*>(a.out) + i * g.cols;
      for (size_t j = 0; j < g.cols; ++j) o[j] = f32_to_bf16(scaled(lut[row[j]], srow[j / g.bc]));
    }
  }
}

void fp4_dequantize(const detail::DequantArgs& a) {
  float lut[16];
  for (int c = 0; c < 16; ++c) lut[c] = fp4_decode(static_cast<uint8_t>(c));
  const detail::Matrix& g = a.m;
  for (size_t i = 0; i < g.rows; ++i) {
    const uint8_t* row = g.q + i * (g.cols / 2);
    const float* srow = a.scale + (i / g.br) * g.nbc;
    for (size_t j = 0; j < g.cols; ++j) {
      const float x = lut[(row[j / 2] >> (4 * (j & 1))) & 0xF] * srow[j / g.bc];
      if (a.out_type == OutType::f32) static_cast<float*>(a.out)[i * g.cols + j] = x;
      else static_cast<uint16_t*>(a.out)[i * g.cols + j] = f32_to_bf16(x);
    }
  }
}

// The reference of fp8_compare / fp4_compare: element by element, in the
// summation order kernels.h defines (float lanes by column within a row
// segment, folded into double lanes every 128 columns, reduced as a tree).
namespace {

float half_to_float(uint16_t h) {
  const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
  float v;
  if (e == 0x1F) {
    v = m ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else if (e == 0) {
    v = std::ldexp(static_cast<float>(m), -24);
  } else {
    v = std::ldexp(static_cast<float>(0x400 | m), e - 25);
  }
  return (h & 0x8000) ? -v : v;
}

float ref_value(const uint8_t* p, size_t i, FloatFormat f) {
  if (f == FloatFormat::f32) {
    float x;
    std::memcpy(&x, p + 4 * i, 4);
    return x;
  }
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  if (f == FloatFormat::f16) return half_to_float(h);
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

double reduce16(const double* d) {
  double t[8];
  for (int l = 0; l < 8; ++l) t[l] = d[l] + d[l + 8];
  for (int l = 0; l < 4; ++l) t[l] = t[l] + t[l + 4];
  for (int l = 0; l < 2; ++l) t[l] = t[l] + t[l + 2];
  return t[0] + t[1];
}

}  // namespace

void compare(const detail::CompareArgs& a) {
  float lut[256];
  if (a.fp4) {
    for (int v = 0; v < 16; ++v) lut[v] = fp4_decode(static_cast<uint8_t>(v));
  } else {
    for (int v = 0; v < 256; ++v) lut[v] = decode_f32(static_cast<uint8_t>(v), a.fmt);
  }
  const detail::Matrix& g = a.m;
  const size_t row_bytes = a.fp4 ? g.cols / 2 : g.cols;
  for (size_t bi = 0; bi < g.nbr; ++bi) {
    const size_t r0 = bi * g.br, r1 = end_of(r0, g.br, g.rows);
    for (size_t bj = 0; bj < g.nbc; ++bj) {
      const size_t j0 = bj * g.bc, j1 = end_of(j0, g.bc, g.cols);
      const size_t k = bi * g.nbc + bj;
      const float s = a.scale[k], lim = a.clip * s;
      const float bm = a.bound.vmax * s, bh = a.bound.sub * s;
      const float brel = a.bound.rel + a.bound.slack;
      double dl[5][16] = {};
      float fl[5][16] = {};
      float max_err = 0.0f;
      uint64_t clipped = 0, bad = 0, ref_bad = 0;
      for (size_t i = r0; i < r1; ++i) {
        const uint8_t* row = g.q + i * row_bytes;
        for (size_t j = j0; j < j1; ++j) {
          const size_t lane = (j - j0) % 16;
          const uint8_t code = a.fp4 ? static_cast<uint8_t>((row[j / 2] >> (4 * (j & 1))) & 0xF)
                                     : row[j];
          const float c = lut[code], r = ref_value(a.ref, i * g.cols + j, a.rf);
          const float d = c * s, e = d - r;
          if (!std::isfinite(e)) {
            ++bad;
            ref_bad += !std::isfinite(r);
          } else {
            fl[0][lane] = std::fma(r, r, fl[0][lane]);
            fl[1][lane] = std::fma(c, c, fl[1][lane]);
            fl[2][lane] = std::fma(c, r, fl[2][lane]);
            fl[3][lane] = std::fma(e, e, fl[3][lane]);
            const float t = std::fabs(r);
            const float b = t > bm ? std::fma(a.bound.slack, t, t - bm) : std::max(brel * t, bh);
            fl[4][lane] = std::fma(b, b, fl[4][lane]);
            max_err = std::max(max_err, std::fabs(e));
            clipped += std::fabs(r) > lim;
          }
          if ((j - j0) % 128 == 127 || j + 1 == j1) {
            for (int m = 0; m < 5; ++m) {
              for (int l = 0; l < 16; ++l) {
                dl[m][l] += fl[m][l];
                fl[m][l] = 0.0f;
              }
            }
          }
        }
      }
      const CompareOut& o = a.out;
      o.ref_sq[k] = reduce16(dl[0]);
      o.code_sq[k] = reduce16(dl[1]);
      o.dot[k] = reduce16(dl[2]);
      o.err_sq[k] = reduce16(dl[3]);
      o.bound_sq[k] = reduce16(dl[4]);
      o.max_err[k] = max_err;
      o.clipped[k] = clipped;
      o.bad[k] = bad;
      o.ref_bad[k] = ref_bad;
    }
  }
}

void float_stats(const uint8_t* p, size_t count, FloatFormat f, detail::FloatRaw* out) {
  const FloatLayout L = layout(f);
  const uint32_t all = L.sign | (L.sign - 1);  // all bits of the element
  detail::FloatRaw r{};
  r.min_key = all;
  r.max_key = 0;
  for (size_t i = 0; i < count; ++i) {
    uint32_t u = 0;
    if (L.bytes == 2) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      u = h;
    } else {
      std::memcpy(&u, p + 4 * i, 4);
    }
    const uint32_t a = u & ~L.sign & all;
    if (a > L.inf) {
      ++r.nan;
    } else if (a == L.inf) {
      if (u & L.sign) ++r.neg_inf; else ++r.pos_inf;
    } else {
      if (a == 0) ++r.zero;
      else if (a < L.min_normal) ++r.subnormal;
      if (a > r.absmax_bits) r.absmax_bits = a;
      const uint32_t key = (u & L.sign) ? (~u & all) : (u | L.sign);
      if (key < r.min_key) r.min_key = key;
      if (key > r.max_key) r.max_key = key;
    }
  }
  *out = r;
}

void e8m0_stats(const uint8_t* p, size_t n, E8m0Stats* out) {
  E8m0Stats s;
  s.count = n;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t b = p[i];
    if (b == 0xFF) {
      ++s.nan;
      continue;
    }
    if (b < s.min_code) s.min_code = b;
    if (b > s.max_code) s.max_code = b;
  }
  *out = s;
}

uint64_t read_probe(const uint8_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint64_t w[4];
    std::memcpy(w, p + i, 32);
    s0 += w[0];
    s1 += w[1];
    s2 += w[2];
    s3 += w[3];
  }
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    s0 += w;
  }
  if (i < n) {
    uint64_t w = 0;
    std::memcpy(&w, p + i, n - i);  // little-endian: zero-extended tail
    s0 += w;
  }
  return s0 + s1 + s2 + s3;
}

const detail::KernelTable table = {
    "scalar",        0u,       &fp8_stats,   &histogram,  &block_stats, &dequantize,
    &fp4_dequantize, &compare, &float_stats, &e8m0_stats, &read_probe,
};

}  // namespace ckptscan::kernels::scalar
