// Checks of the kernels' entry points on one fuzz input, shared by the
// libFuzzer target (fuzz/fuzz_kernels.cc) and the sanitizer driver run in the
// test suite (tests/cpp/kernel_fuzz_driver.cc). Calls std::abort() after
// printing what failed.
//
// Input layout (every field optional: missing bytes read as 0):
//   byte 0   bits 0-1 FP8 format, bit 2 output type (f32 / bf16),
//            bits 3-4 data length: exact, exact, one short, one long,
//            bits 5-6 count width: chosen, 8, half of chosen, 1,
//            bit 7 scale shape one row too many
//   byte 1   offset of the data in its buffer (& 63): unaligned starts; bit 6:
//            the tensor is packed FP4 (fp4_dequantize) instead of FP8
//   then     batch, rows, cols, block rows, block cols, each one size():
//              0b00xxxxxx       x (0..63)
//              0b01xxxxxx y     x << 8 | y (0..16383)
//              0b10..xxxx       kSpecial[x] (2^64 - 1, 2^63, 2^32 ...)
//              0b11......  8 bytes little-endian
//   rest     payload: the tensor's bytes, repeated to the length asked for
//
// What must hold: every entry point gives the status block_grid() gives for
// the shape (and bad_length / bad_buffer / bad_scale_shape for mismatched
// buffers) without touching memory outside the buffers; on valid input every
// implementation this CPU runs returns what scalar returns, bit for bit; the
// block results add up to the whole-tensor ones, agree with fp8_stats and
// fp8_block_absmax, and a block picked from the input equals a count made here
// from fp8_decode().
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace ckptscan_fuzz {

namespace kk = ckptscan::kernels;

constexpr size_t kMaxElems = size_t{1} << 16;  // larger valid shapes: rejected lengths only

[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "KERNEL INVARIANT VIOLATED: %s (simd %s)\n", what.c_str(),
               kk::active_simd());
  std::abort();
}

inline void expect(bool ok, const std::string& what) {
  if (!ok) fail(what);
}

inline std::string st_name(kk::Status s) { return kk::status_name(s); }

struct Reader {
  const uint8_t* p;
  size_t n;
  uint8_t byte() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{byte()} << (8 * i);
    return v;
  }
  size_t size() {
    static constexpr uint64_t kSpecial[16] = {
        ~uint64_t{0},         ~uint64_t{0} - 1,         uint64_t{1} << 63,
        (uint64_t{1} << 63) - 1, (uint64_t{1} << 63) + 1, uint64_t{1} << 62,
        uint64_t{1} << 32,    (uint64_t{1} << 32) - 1,  (uint64_t{1} << 32) + 1,
        uint64_t{1} << 31,    255, 256, 65535, 65536, 128, 3};
    const uint8_t b = byte();
    switch (b >> 6) {
      case 0: return b & 63;
      case 1: return (size_t{b & 63u} << 8) | byte();
      case 2: return static_cast<size_t>(kSpecial[b & 15]);
      default: return static_cast<size_t>(u64());
    }
  }
};

// Per-block results of one fp8_block_stats call, widened to uint64.
struct BlockResults {
  kk::Status st = kk::Status::ok;
  kk::Fp8Stats stats;
  std::vector<uint8_t> absmax;
  std::vector<uint64_t> nan, inf, sat;
};

inline uint64_t read_count(const std::vector<uint8_t>& v, size_t k, int width) {
  switch (width) {
    case 1: return v[k];
    case 2: { uint16_t x; std::memcpy(&x, v.data() + 2 * k, 2); return x; }
    case 4: { uint32_t x; std::memcpy(&x, v.data() + 4 * k, 4); return x; }
    default: { uint64_t x; std::memcpy(&x, v.data() + 8 * k, 8); return x; }
  }
}

inline BlockResults block_stats(const uint8_t* q, size_t n, const kk::BlockGrid& g,
                                kk::Fp8Format f, int width, size_t len) {
  const size_t w = static_cast<size_t>(width);
  std::vector<uint8_t> am(len), nn(len * w), ni(len * w), ns(len * w);
  kk::Fp8BlockOut out;
  out.absmax = am.data();
  out.nan = nn.data();
  out.inf = ni.data();
  out.saturated = ns.data();
  out.width = width;
  out.len = len;
  BlockResults r;
  r.st = kk::fp8_block_stats(q, n, g.batch, g.rows, g.cols, g.br, g.bc, f, &r.stats, out);
  if (r.st != kk::Status::ok) return r;
  r.absmax = am;
  for (size_t k = 0; k < len; ++k) {
    r.nan.push_back(read_count(nn, k, width));
    r.inf.push_back(read_count(ni, k, width));
    r.sat.push_back(read_count(ns, k, width));
  }
  return r;
}

inline bool same(const kk::Fp8Stats& a, const kk::Fp8Stats& b) {
  return a.count == b.count && a.nan == b.nan && a.inf == b.inf && a.zero == b.zero &&
         a.neg_zero == b.neg_zero && a.subnormal == b.subnormal && a.saturated == b.saturated &&
         a.negative == b.negative && a.absmax_code == b.absmax_code;
}

inline bool same(const BlockResults& a, const BlockResults& b) {
  return a.st == b.st && same(a.stats, b.stats) && a.absmax == b.absmax && a.nan == b.nan &&
         a.inf == b.inf && a.sat == b.sat;
}

// Block k counted here from fp8_decode(): (absmax code, nan, inf, saturated).
inline void count_block(const uint8_t* q, const kk::BlockGrid& g, kk::Fp8Format f, size_t k,
                        uint8_t* amax, uint64_t* nan, uint64_t* inf, uint64_t* sat) {
  const double maxf = kk::fp8_traits(f).max_finite;
  const size_t per = g.nbr * g.nbc, b = k / per, bi = (k % per) / g.nbc, bj = k % g.nbc;
  *amax = 0;
  *nan = *inf = *sat = 0;
  double best = -1;
  for (size_t i = bi * g.br; i < g.rows && i - bi * g.br < g.br; ++i) {
    for (size_t j = bj * g.bc; j < g.cols && j - bj * g.bc < g.bc; ++j) {
      const uint8_t c = q[(b * g.rows + i) * g.cols + j];
      const double v = kk::fp8_decode(c, f);
      if (std::isnan(v)) ++*nan;
      else if (std::isinf(v)) ++*inf;
      else {
        if (std::fabs(v) == maxf) ++*sat;
        if (std::fabs(v) > best) {
          best = std::fabs(v);
          *amax = static_cast<uint8_t>(c & 0x7F);
        }
      }
    }
  }
}

// Every implementation this CPU runs, reference (scalar) first.
inline std::vector<std::string> implementations() {
  std::vector<std::string> v;
  for (int i = 0; i < kk::implementation_count(); ++i) {
    if (kk::implementation_supported(i)) v.emplace_back(kk::implementation_name(i));
  }
  return v;
}

inline void select(const std::string& name) {
  expect(kk::select_simd(name.c_str()) == kk::Status::ok, "select_simd(" + name + ")");
}

inline uint32_t f32_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

// The byte kernels on one span: every implementation equals scalar.
inline void check_byte_kernels(const uint8_t* p, size_t n, const std::vector<std::string>& impls) {
  struct Out {
    kk::Fp8Stats fp8[4];
    uint64_t hist[256];
    kk::E8m0Stats e8;
    kk::FloatStats fl[3];
    uint64_t probe;
  };
  std::vector<Out> outs(impls.size());
  for (size_t i = 0; i < impls.size(); ++i) {
    select(impls[i]);
    Out& o = outs[i];
    for (int f = 0; f < 4; ++f) {
      expect(kk::fp8_stats(p, n, kk::Fp8Format(f), &o.fp8[f]) == kk::Status::ok, "fp8_stats");
    }
    expect(kk::histogram(p, n, o.hist) == kk::Status::ok, "histogram");
    expect(kk::e8m0_stats(p, n, &o.e8) == kk::Status::ok, "e8m0_stats");
    for (int f = 0; f < 3; ++f) {
      const size_t w = f == 2 ? 4 : 2;
      expect(kk::float_stats(p, n - n % w, kk::FloatFormat(f), &o.fl[f]) == kk::Status::ok,
             "float_stats");
    }
    expect(kk::read_probe(p, n, &o.probe) == kk::Status::ok, "read_probe");
  }
  const Out& r = outs[0];
  uint64_t total = 0;
  for (uint64_t h : r.hist) total += h;
  expect(total == n, "histogram total");
  for (size_t i = 1; i < outs.size(); ++i) {
    const Out& o = outs[i];
    for (int f = 0; f < 4; ++f) expect(same(o.fp8[f], r.fp8[f]), impls[i] + " fp8_stats");
    expect(std::memcmp(o.hist, r.hist, sizeof r.hist) == 0, impls[i] + " histogram");
    expect(o.e8.nan == r.e8.nan && o.e8.min_code == r.e8.min_code &&
               o.e8.max_code == r.e8.max_code,
           impls[i] + " e8m0_stats");
    for (int f = 0; f < 3; ++f) {
      const kk::FloatStats &a = o.fl[f], &b = r.fl[f];
      auto eq = [](double x, double y) {
        return (std::isnan(x) && std::isnan(y)) || std::memcmp(&x, &y, sizeof x) == 0;
      };
      expect(a.nan == b.nan && a.pos_inf == b.pos_inf && a.neg_inf == b.neg_inf &&
                 a.zero == b.zero && a.subnormal == b.subnormal && eq(a.absmax, b.absmax) &&
                 eq(a.min, b.min) && eq(a.max, b.max),
             impls[i] + " float_stats");
    }
    expect(o.probe == r.probe, impls[i] + " read_probe");
  }
}

// Scales drawn from the payload: powers of two and mantissas, 0, negative,
// subnormal, huge, Inf, NaN.
inline std::vector<float> make_scales(size_t n, const uint8_t* payload, size_t plen) {
  static constexpr float kScales[8] = {1.0f, 0.0f, -2.5f, 1e-40f, 3e38f, INFINITY, NAN, 1.0f / 448};
  std::vector<float> scale(n);
  for (size_t k = 0; k < n; ++k) {
    const uint8_t b = plen ? payload[(k * 7) % plen] : 0;
    scale[k] = (b & 8) ? kScales[b & 7] : std::ldexp(1.0f + (b >> 4) / 16.0f, (b & 7) - 3);
  }
  return scale;
}

// Packed FP4 on a valid shape: every path equal to scalar, elements equal to
// fp4_decode() times the scale, the statuses of odd columns and wrong lengths.
inline void check_fp4(const kk::BlockGrid& g, const uint8_t* payload, size_t plen, int len_mode,
                      bool bad_scale, kk::OutType ot, size_t off,
                      const std::vector<std::string>& impls, const std::string& shape) {
  size_t n = g.elems / 2;
  if (len_mode == 2 && n > 0) --n;
  if (len_mode == 3) ++n;
  std::vector<uint8_t> buf(off + n);
  for (size_t i = 0; i < n; ++i) buf[off + i] = plen ? payload[i % plen] : 0;
  const uint8_t* q = buf.data() + off;
  const std::vector<float> scale = make_scales(g.blocks + 1, payload, plen);
  const size_t srows = g.nbr + (bad_scale ? 1 : 0);
  const size_t w = ot == kk::OutType::f32 ? 4 : 2;
  const kk::Status want = (g.cols % 2 != 0 || n != g.elems / 2) ? kk::Status::bad_length
                        : bad_scale ? kk::Status::bad_scale_shape
                                    : kk::Status::ok;
  std::vector<std::vector<uint8_t>> outs;
  for (const std::string& name : impls) {
    select(name);
    std::vector<uint8_t> o(g.elems * w + 1, 0xA5);  // one guard byte
    const kk::Status st = kk::fp4_dequantize(q, n, g.batch, g.rows, g.cols, scale.data(), srows,
                                             g.nbc, g.blocks, g.br, g.bc, ot, o.data(), g.elems);
    expect(st == want, name + " fp4_dequantize gave " + st_name(st) + " " + shape);
    expect(o.back() == 0xA5, "fp4_dequantize wrote past out " + shape);
    outs.push_back(std::move(o));
    expect(outs.back() == outs[0], name + " fp4_dequantize differs from scalar " + shape);
  }
  if (want == kk::Status::ok && ot == kk::OutType::f32) {
    for (size_t e : {size_t{0}, g.elems / 3, g.elems - 1}) {
      if (e >= g.elems) continue;
      const size_t b = e / (g.rows * g.cols), i = (e / g.cols) % g.rows, j = e % g.cols;
      const float s = scale[(b * g.nbr + i / g.br) * g.nbc + j / g.bc];
      const float want_v = kk::fp4_decode(static_cast<uint8_t>(q[e / 2] >> (4 * (e & 1)))) * s;
      float got;
      std::memcpy(&got, outs[0].data() + 4 * e, 4);
      expect((std::isnan(want_v) && std::isnan(got)) || f32_bits(want_v) == f32_bits(got),
             "FP4 element " + std::to_string(e) + " " + shape);
    }
  }
  select("auto");
}

inline void check_kernels(const uint8_t* data, size_t size) {
  Reader in{data, size};
  const uint8_t flags = in.byte();
  const auto f = kk::Fp8Format(flags & 3);
  const auto ot = (flags & 4) ? kk::OutType::bf16 : kk::OutType::f32;
  const int len_mode = (flags >> 3) & 3, width_mode = (flags >> 5) & 3;
  const bool bad_scale = (flags & 0x80) != 0;
  const uint8_t b1 = in.byte();
  const size_t off = b1 & 63;
  const bool fp4 = (b1 & 0x40) != 0;
  const size_t batch = in.size(), rows = in.size(), cols = in.size(), br = in.size(),
               bc = in.size();
  const uint8_t* payload = in.p;
  const size_t plen = in.n;
  const std::vector<std::string> impls = implementations();

  kk::BlockGrid g;
  const kk::Status gst = kk::block_grid(batch, rows, cols, br, bc, &g);
  kk::BlockGrid g1;
  const kk::Status g1st = kk::block_grid(1, rows, cols, br, bc, &g1);
  const std::string shape = "[" + std::to_string(batch) + ", " + std::to_string(rows) + ", " +
                            std::to_string(cols) + "] block (" + std::to_string(br) + ", " +
                            std::to_string(bc) + ")";
  if (gst == kk::Status::ok) {
    expect(g.nbr == rows / br + (rows % br != 0) && g.nbc == cols / bc + (cols % bc != 0),
           "block counts " + shape);
    expect(g.blocks <= g.elems || g.elems == 0, "more blocks than elements " + shape);
  } else {
    expect(gst == kk::Status::bad_block || gst == kk::Status::too_large, "grid status " + shape);
    expect((br == 0 || bc == 0) == (gst == kk::Status::bad_block), "bad_block iff zero " + shape);
  }

  // Shapes that fail, or are too large to hold here: every entry point says so
  // (with the payload as a too-short tensor) and touches nothing.
  if (gst != kk::Status::ok || g.elems > kMaxElems) {
    const kk::Status want = gst != kk::Status::ok ? gst : kk::Status::bad_length;
    for (const std::string& name : impls) {
      select(name);
      kk::Fp8Stats s;
      kk::Fp8BlockOut out;  // null outputs, len 0
      kk::Status st = kk::fp8_block_stats(payload, plen, batch, rows, cols, br, bc, f, &s, out);
      expect(st == want || (gst == kk::Status::ok && plen == g.elems),
             "fp8_block_stats " + shape + " gave " + st_name(st));
      st = kk::fp8_dequantize(payload, plen, batch, rows, cols, f, nullptr, 0, 0, 0, br, bc, ot,
                              nullptr, 0);
      expect(st == want || (gst == kk::Status::ok && plen == g.elems),
             "fp8_dequantize " + shape + " gave " + st_name(st));
      st = kk::fp4_dequantize(payload, plen, batch, rows, cols, nullptr, 0, 0, 0, br, bc, ot,
                              nullptr, 0);
      expect(st == want || (gst == kk::Status::ok && plen == g.elems / 2),
             "fp4_dequantize " + shape + " gave " + st_name(st));
      const kk::Status want1 =
          g1st != kk::Status::ok ? g1st : (g1.elems == plen ? kk::Status::bad_buffer
                                                            : kk::Status::bad_length);
      st = kk::fp8_block_absmax(payload, plen, rows, cols, br, bc, f, nullptr, nullptr,
                                g1st == kk::Status::ok ? g1.blocks + 1 : 0);
      expect(st == want1, "fp8_block_absmax " + shape + " gave " + st_name(st));
    }
    select("auto");
    return;
  }

  if (fp4) return check_fp4(g, payload, plen, len_mode, bad_scale, ot, off, impls, shape);

  // A valid shape: the tensor is the payload repeated, at an unaligned start.
  size_t n = g.elems;
  if (len_mode == 2 && n > 0) --n;
  if (len_mode == 3) ++n;
  std::vector<uint8_t> buf(off + n);
  for (size_t i = 0; i < n; ++i) buf[off + i] = plen ? payload[i % plen] : 0;
  const uint8_t* q = buf.data() + off;
  const int need = kk::count_width(g.block_elems);
  const int width = width_mode == 1 ? 8 : width_mode == 2 ? (need > 1 ? need / 2 : 1)
                  : width_mode == 3 ? 1 : need;

  std::vector<BlockResults> res;
  for (const std::string& name : impls) {
    select(name);
    res.push_back(block_stats(q, n, g, f, width, g.blocks));
    if (res.back().st == kk::Status::ok) {  // a wrong output length is refused
      expect(block_stats(q, n, g, f, width, g.blocks + 1).st == kk::Status::bad_buffer,
             "output length blocks + 1 accepted " + shape);
    }
  }
  const BlockResults& r = res[0];
  if (n != g.elems) {
    expect(r.st == kk::Status::bad_length, "length mismatch gave " + st_name(r.st));
  } else if (width < need) {
    expect(r.st == kk::Status::bad_buffer, "narrow counts gave " + st_name(r.st));
  } else {
    expect(r.st == kk::Status::ok, "valid block_stats gave " + st_name(r.st) + " " + shape);
  }
  for (size_t i = 1; i < res.size(); ++i) {
    expect(same(res[i], r), impls[i] + " block_stats differs from scalar " + shape);
  }
  if (r.st == kk::Status::ok) {
    uint64_t nan = 0, inf = 0, sat = 0;
    uint8_t amax = 0;
    for (size_t k = 0; k < g.blocks; ++k) {
      nan += r.nan[k];
      inf += r.inf[k];
      sat += r.sat[k];
      if (r.absmax[k] > amax) amax = r.absmax[k];
      expect(r.absmax[k] <= 0x7F && r.nan[k] + r.inf[k] + r.sat[k] <= g.block_elems,
             "block bounds " + shape);
    }
    expect(nan == r.stats.nan && inf == r.stats.inf && sat == r.stats.saturated &&
               amax == r.stats.absmax_code && r.stats.count == n,
           "blocks do not add up to the tensor " + shape);
    select("scalar");
    kk::Fp8Stats whole;
    expect(kk::fp8_stats(q, n, f, &whole) == kk::Status::ok && same(whole, r.stats),
           "fp8_block_stats stats != fp8_stats " + shape);
    for (size_t k : {size_t{0}, g.blocks / 2, g.blocks - 1}) {
      if (k >= g.blocks) continue;
      uint8_t am;
      uint64_t bn, bi, bs;
      count_block(q, g, f, k, &am, &bn, &bi, &bs);
      expect(am == r.absmax[k] && bn == r.nan[k] && bi == r.inf[k] && bs == r.sat[k],
             "block " + std::to_string(k) + " != its count from fp8_decode " + shape);
    }
    if (batch == 1) {
      std::vector<uint8_t> am(g.blocks);
      std::vector<uint64_t> nn(g.blocks);
      for (const std::string& name : impls) {
        select(name);
        expect(kk::fp8_block_absmax(q, n, rows, cols, br, bc, f, am.data(), nn.data(),
                                    g.blocks) == kk::Status::ok &&
                   am == r.absmax && nn == r.nan,
               "fp8_block_absmax != fp8_block_stats " + shape);
      }
    }
  }

  // Dequantization: scales drawn from the payload, every path equal to scalar.
  const size_t srows = g.nbr + (bad_scale ? 1 : 0);  // nbc may be huge when rows == 0
  const std::vector<float> scale = make_scales(g.blocks + 1, payload, plen);
  const size_t width_out = ot == kk::OutType::f32 ? 4 : 2;
  std::vector<std::vector<uint8_t>> outs;
  std::vector<kk::Status> dst;
  for (const std::string& name : impls) {
    select(name);
    std::vector<uint8_t> o(g.elems * width_out + 1, 0xA5);  // one guard byte
    dst.push_back(kk::fp8_dequantize(q, n, batch, rows, cols, f, scale.data(), srows, g.nbc,
                                     g.blocks, br, bc, ot, o.data(), g.elems));
    expect(o.back() == 0xA5, "dequantize wrote past out " + shape);
    outs.push_back(std::move(o));
  }
  const kk::Status want = n != g.elems ? kk::Status::bad_length
                        : bad_scale    ? kk::Status::bad_scale_shape
                                       : kk::Status::ok;
  for (size_t i = 0; i < impls.size(); ++i) {
    expect(dst[i] == want, impls[i] + " dequantize gave " + st_name(dst[i]) + " " + shape);
    expect(outs[i] == outs[0], impls[i] + " dequantize differs from scalar " + shape);
  }
  if (want == kk::Status::ok && ot == kk::OutType::f32) {
    for (size_t e : {size_t{0}, g.elems / 3, g.elems - 1}) {
      if (e >= g.elems) continue;
      const size_t b = e / (rows * cols), i = (e / cols) % rows, j = e % cols;
      const float s = scale[(b * g.nbr + i / br) * g.nbc + j / bc];
      const float want_v = static_cast<float>(kk::fp8_decode(q[e], f)) * s;
      float got;
      std::memcpy(&got, outs[0].data() + 4 * e, 4);
      expect((std::isnan(want_v) && std::isnan(got)) || f32_bits(want_v) == f32_bits(got),
             "dequantized element " + std::to_string(e) + " " + shape);
    }
  }

  check_byte_kernels(q, n, impls);
  select("auto");
}

}  // namespace ckptscan_fuzz
