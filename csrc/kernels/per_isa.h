// Kernel code written once and compiled once per instruction set (simdjson's
// habit). Each ISA file (scalar.cc, avx2.cc, avx512.cc, neon.cc) includes this
// header inside its own unnamed namespace, after <cstddef>, <cstdint>,
// <cstring>, <type_traits> and "kernels/kernels.h":
//
//   namespace ckptscan::kernels::avx2 { namespace {
//   #include "kernels/per_isa.h"
//   ... }}
//
// Everything here then has internal linkage and is compiled with that file's
// target flags: no copy built for AVX-512 can be picked by the linker for code
// that runs before dispatch has checked the CPU. No include guard on purpose;
// no vector types and no constants at namespace scope.

// ---- FP8 formats at compile time ---------------------------------------------
// The facts of kFp8Traits (kernels.h), as constants a template can fold.
template <Fp8Format F>
struct Fmt {
  static constexpr Fp8Traits t = kFp8Traits[static_cast<int>(F)];
  static constexpr bool fnuz = t.fnuz, inf = t.has_inf;
  static constexpr int man = t.man_bits, bias = t.bias;
  static constexpr uint8_t sat = t.sat_code, sub_max = t.sub_max, neg_max = t.neg_max;
  // sign-magnitude formats: NaN iff mag >= nan_lo (0x7F e4m3fn, 0x7D e5m2); 0x80 = fnuz
  static constexpr uint8_t nan_lo = t.nan_mag_lo;
};

template <Fp8Format F>
using FormatTag = std::integral_constant<Fp8Format, F>;
template <OutType O>
using OutTag = std::integral_constant<OutType, O>;

// The one runtime-to-template switch: fn(FormatTag<f>{}).
template <class Fn>
inline void with_format(Fp8Format f, Fn&& fn) {
  switch (f) {
    case Fp8Format::e4m3fn: fn(FormatTag<Fp8Format::e4m3fn>{}); return;
    case Fp8Format::e5m2: fn(FormatTag<Fp8Format::e5m2>{}); return;
    case Fp8Format::e4m3fnuz: fn(FormatTag<Fp8Format::e4m3fnuz>{}); return;
    case Fp8Format::e5m2fnuz: fn(FormatTag<Fp8Format::e5m2fnuz>{}); return;
  }
}

// fn(FormatTag<f>{}, OutTag<o>{}).
template <class Fn>
inline void with_format_out(Fp8Format f, OutType o, Fn&& fn) {
  with_format(f, [&](auto tag) {
    if (o == OutType::f32) fn(tag, OutTag<OutType::f32>{});
    else fn(tag, OutTag<OutType::bf16>{});
  });
}

// ---- ranges and counts -----------------------------------------------------------
// End of the range [start, start + len) clipped to limit, for start <= limit,
// without computing start + len when it would pass limit (or 2^64).
inline size_t end_of(size_t start, size_t len, size_t limit) {
  return len < limit - start ? start + len : limit;
}

inline void store_count(void* base, size_t k, uint64_t v, int width) {
  switch (width) {
    case 1: static_cast<uint8_t*>(base)[k] = static_cast<uint8_t>(v); return;
    case 2: static_cast<uint16_t*>(base)[k] = static_cast<uint16_t>(v); return;
    case 4: static_cast<uint32_t*>(base)[k] = static_cast<uint32_t>(v); return;
    default: static_cast<uint64_t*>(base)[k] = v; return;
  }
}

// n byte counts to base[k0 ...] in `width` bytes each (nothing for a null base).
inline void store_counts(void* base, size_t k0, const uint8_t* v, size_t n, int width) {
  if (base == nullptr) return;
  if (width == 1) {
    std::memcpy(static_cast<uint8_t*>(base) + k0, v, n);
  } else {
    for (size_t i = 0; i < n; ++i) store_count(base, k0 + i, v[i], width);
  }
}

inline void add_raw(detail::Fp8Raw& a, const detail::Fp8Raw& b) {
  a.nan += b.nan;
  a.inf += b.inf;
  a.zero += b.zero;
  a.neg_zero += b.neg_zero;
  a.subnormal += b.subnormal;
  a.saturated += b.saturated;
  a.negative += b.negative;
  if (b.absmax_code > a.absmax_code) a.absmax_code = b.absmax_code;
}

// ---- one pass of FP8 block statistics ------------------------------------------------
// Written once against an ISA's Fp8Lanes<F> (see avx512.cc for the reference set):
//   f, V, kW                   format facts, vector type, bytes per vector
//   Tensor                     whole-tensor counters (+/-0, zeros + subnormals,
//                              sign-set bytes); finish(Fp8Raw&) once r.nan is final
//   classify_full<S>(p, Tensor&)  kW bytes -> Cls: key(c) = the finite magnitudes
//   classify_part<S>(p, k, ...)   (0 for NaN / Inf), max_key(a, c) = max(a, key(c)),
//                              c.nan / c.inf / c.sat masks; S = false: no
//                              whole-tensor counters and no saturated mask
//   kByteCounters             per-block counts by byte counters of the masks
//                              (Counters, counters(), count_into(Counters&, c),
//                              drain(Counters&, nan, inf, sat): <= 255 adds), or
//                              by count(mask) (Counters empty)
//   zero(), load(p), max(a, b), hmax(v)   byte max
//   kFlat, ones(mask), V16 tree<BC, IS_MAX>(V* v, order) and V16 (16 bytes:
//                              zero16, max16, store16, sum16, hmax16)   optional:
//                              (1, BC) blocks packed in vectors, BC 16 / 32 / kW (flat)
// Each loop function keeps its Tensor and Fp8Raw as locals whose address never
// escapes, so that the counters stay in registers.
struct BlockResult {
  uint8_t amax;
  uint64_t nan, inf, sat;
};

// Block k's results to the outputs and the totals.
inline void put(const detail::BlockOut& out, detail::Fp8Raw& r, size_t k, const BlockResult& b) {
  if (out.absmax) out.absmax[k] = b.amax;
  if (out.nan) store_count(out.nan, k, b.nan, out.width);
  if (out.inf) store_count(out.inf, k, b.inf, out.width);
  if (out.saturated) store_count(out.saturated, k, b.sat, out.width);
  r.nan += b.nan;
  r.inf += b.inf;
  r.saturated += b.sat;
  if (b.amax > r.absmax_code) r.absmax_code = b.amax;
}

// One block's accumulator in the band path: the byte max of its finite
// magnitudes and, when the ISA counts with byte counters (L::kByteCounters),
// those of its NaN, (Inf,) saturated codes, drained into the 64-bit Counts
// before they can wrap; otherwise the counts are popcounts of the masks added
// once per row segment. Vectors only: copying a struct that mixes vectors and
// integers costs a store-forwarding stall.
template <class L>
struct Acc {
  typename L::V amax;
  typename L::Counters c;
};

struct Counts {
  uint64_t nan, inf, sat;
};

template <class L>
inline void drain(Acc<L>& a, Counts& n) {
  if constexpr (L::kByteCounters) L::drain(a.c, n.nan, n.inf, n.sat);
}

// Any block shape: for each band of br rows and each group of up to kGroup
// block columns, one accumulator per block while the band's rows stream by
// (row-major, so memory is read in order: feeding several rows side by side
// measured faster in cache but 2x slower from a mapping); block k0 + bi * nbc +
// bj. With byte counters, a row segment of a block is s vectors: counters are
// drained every 255 / s rows (`every`), or inside segments longer than 254
// vectors (every = 0).
template <class L, bool S>
void band(const detail::Matrix& m, size_t k0, const detail::BlockOut& out,
          detail::Fp8Raw& total) {
  constexpr size_t kGroup = 64;
  const size_t seg = m.bc < m.cols ? m.bc : m.cols;
  const size_t s = seg / L::kW + (seg % L::kW != 0);
  size_t every = ~size_t{0};  // popcounts: nothing to drain
  if constexpr (L::kByteCounters) every = s <= 255 ? 255 / s : 0;
  // every segment s full vectors: a plain pointer walk along the row
  const bool whole = m.cols % m.bc == 0 && m.bc % L::kW == 0 && every != 0;
  typename L::Tensor t;
  detail::Fp8Raw r{};
  Acc<L> acc[kGroup];
  Counts counts[kGroup];
  auto add = [&](Acc<L>& a, Counts& n, const typename L::Cls& x) {
    a.amax = L::max_key(a.amax, x);
    if constexpr (L::kByteCounters) {
      L::count_into(a.c, x);
    } else {
      n.nan += L::count(x.nan);
      if constexpr (L::f::inf) n.inf += L::count(x.inf);
      if constexpr (S) n.sat += L::count(x.sat);
    }
  };
  auto keep = [](Counts& c, const Counts& n) {
    c.nan += n.nan;
    c.inf += n.inf;
    c.sat += n.sat;
  };
  for (size_t bi = 0; bi < m.nbr; ++bi) {
    const size_t r0 = bi * m.br, r1 = end_of(r0, m.br, m.rows);
    for (size_t g0 = 0; g0 < m.nbc; g0 += kGroup) {
      const size_t g1 = end_of(g0, kGroup, m.nbc);
      for (size_t k = 0; k < g1 - g0; ++k) {
        acc[k] = Acc<L>{L::zero(), L::counters()};
        counts[k] = Counts{0, 0, 0};
      }
      for (size_t i = r0; i < r1; ++i) {
        if (every != 0 && (i - r0) % every == 0 && i != r0) {
          for (size_t k = 0; k < g1 - g0; ++k) drain(acc[k], counts[k]);
        }
        const uint8_t* row = m.q + i * m.cols;
        if (whole) {
          const uint8_t* p = row + g0 * m.bc;
          for (size_t k = 0; k < g1 - g0; ++k) {
            Acc<L> a = acc[k];
            Counts n{0, 0, 0};
            for (size_t v = 0; v < s; ++v, p += L::kW) {
              add(a, n, L::template classify_full<S>(p, t));
            }
            acc[k] = a;
            keep(counts[k], n);
          }
          continue;
        }
        for (size_t bj = g0; bj < g1; ++bj) {
          const size_t j0 = bj * m.bc, j1 = end_of(j0, m.bc, m.cols);
          Acc<L> a = acc[bj - g0];
          Counts n{0, 0, 0};
          size_t j = j0;
          while (j1 - j >= L::kW) {
            const size_t run = every != 0 ? (j1 - j) / L::kW : end_of(0, 254, (j1 - j) / L::kW);
            for (size_t v = 0; v < run; ++v, j += L::kW) {
              add(a, n, L::template classify_full<S>(row + j, t));
            }
            if (every == 0) drain(a, n);
          }
          if (j < j1) add(a, n, L::template classify_part<S>(row + j, j1 - j, t));
          if (every == 0) drain(a, n);
          acc[bj - g0] = a;
          keep(counts[bj - g0], n);
        }
      }
      for (size_t k = 0; k < g1 - g0; ++k) {
        drain(acc[k], counts[k]);
        put(out, r, k0 + bi * m.nbc + g0 + k,
            {L::hmax(acc[k].amax), counts[k].nan, counts[k].inf, counts[k].sat});
      }
    }
  }
  if constexpr (S) t.finish(r);
  add_raw(total, r);
}

// (1, BC) blocks that tile whole rows are contiguous: block k is bytes
// [k * BC, (k + 1) * BC). Each vector holds kW / BC of them; G vectors (16
// blocks) reduce together through L::tree, a max over the keys and a sum over
// the 0/1 bytes of each mask, which leaves the 16 results in an order of its
// own: running the tree once on block numbers tells which, and every tree
// after that reorders its 16 bytes with one byte shuffle. Whole-tensor counts
// are sums of those 16 bytes.
template <class L, size_t BC, bool S>
void flat(const detail::Matrix& m, const detail::BlockOut& out, detail::Fp8Raw& total) {
  using V = typename L::V;
  constexpr size_t P = L::kW / BC, G = 16 / P;
  const size_t bytes = m.rows * m.cols, nvec = bytes / L::kW;
  alignas(16) uint8_t order[16];
  {
    V ids[G];
    alignas(64) uint8_t b[L::kW];
    for (size_t v = 0; v < G; ++v) {
      for (size_t i = 0; i < L::kW; ++i) b[i] = static_cast<uint8_t>(v * P + i / BC);
      ids[v] = L::load(b);
    }
    alignas(16) uint8_t identity[16], pos[16];
    for (uint8_t k = 0; k < 16; ++k) identity[k] = k;
    L::store16(pos, L::template tree<BC, true>(ids, identity));
    for (uint8_t k = 0; k < 16; ++k) order[pos[k]] = k;
  }
  typename L::Tensor t;
  detail::Fp8Raw r{};
  typename L::V16 amax = L::zero16();
  constexpr size_t kChunk = 256;  // blocks per output flush, a multiple of 16
  alignas(64) uint8_t am[kChunk], nn[kChunk], ni[kChunk], ns[kChunk];
  for (size_t v0 = 0; v0 < nvec; v0 += kChunk / P) {
    const size_t nv = end_of(v0, kChunk / P, nvec) - v0;
    for (size_t g0 = 0; g0 < nv; g0 += G) {
      V keys[G], nans[G], infs[G], sats[G];
      for (size_t v = 0; v < G; ++v) {
        if (g0 + v >= nv) {
          keys[v] = nans[v] = infs[v] = sats[v] = L::zero();
          continue;
        }
        const typename L::Cls c = L::template classify_full<S>(m.q + (v0 + g0 + v) * L::kW, t);
        keys[v] = L::key(c);
        nans[v] = L::ones(c.nan);
        if constexpr (L::f::inf) infs[v] = L::ones(c.inf);
        if constexpr (S) sats[v] = L::ones(c.sat);
      }
      const typename L::V16 a = L::template tree<BC, true>(keys, order);
      const typename L::V16 n = L::template tree<BC, false>(nans, order);
      amax = L::max16(amax, a);
      L::store16(am + g0 * P, a);
      L::store16(nn + g0 * P, n);
      r.nan += L::sum16(n);
      if constexpr (S) {
        const typename L::V16 x = L::template tree<BC, false>(sats, order);
        L::store16(ns + g0 * P, x);
        r.saturated += L::sum16(x);
      }
      if constexpr (L::f::inf) {
        const typename L::V16 y = L::template tree<BC, false>(infs, order);
        L::store16(ni + g0 * P, y);
        r.inf += L::sum16(y);
      }
    }
    const size_t nb = nv * P, k0 = v0 * P;
    if (out.absmax) std::memcpy(out.absmax + k0, am, nb);
    store_counts(out.nan, k0, nn, nb, out.width);
    if (out.inf && !L::f::inf) std::memset(ni, 0, nb);
    store_counts(out.inf, k0, ni, nb, out.width);
    if constexpr (S) store_counts(out.saturated, k0, ns, nb, out.width);
  }
  r.absmax_code = L::hmax16(amax);
  if constexpr (S) t.finish(r);
  add_raw(total, r);
  // The last bytes (fewer than kW: whole blocks) as a one-row matrix.
  const size_t done = nvec * L::kW;
  if (done < bytes) {
    const size_t cols = bytes - done;
    band<L, S>(detail::Matrix{m.q + done, 1, cols, 1, BC, 1, cols / BC}, done / BC, out, total);
  }
}

// raw == nullptr: only the blocks' absmax and NaN counts are wanted (block_absmax):
// no whole-tensor counters, no saturated counts.
template <class L, bool S>
void block_stats_mode(const detail::Matrix& m, detail::Fp8Raw* raw, const detail::BlockOut& o) {
  detail::Fp8Raw total{};
  if constexpr (L::kFlat) {
    if (m.br == 1 && m.cols % m.bc == 0 && (m.bc == 16 || m.bc == 32 || m.bc == L::kW)) {
      if (m.bc == 16) flat<L, 16, S>(m, o, total);
      else if (m.bc == 32) flat<L, 32, S>(m, o, total);
      else flat<L, L::kW, S>(m, o, total);
      if (raw) add_raw(*raw, total);
      return;
    }
  }
  band<L, S>(m, 0, o, total);
  if (raw) add_raw(*raw, total);
}

template <class L>
void block_stats_generic(const detail::Matrix& m, detail::Fp8Raw* raw, const detail::BlockOut& o) {
  if (raw != nullptr) block_stats_mode<L, true>(m, raw, o);
  else block_stats_mode<L, false>(m, raw, o);
}

// ---- dequantize and compare (kernels.h: fp8_compare) ----------------------------------
// Written once against an ISA's CmpLanes C (16 floats per V, 16 doubles per D,
// lane masks as the low 16 bits of a uint32_t):
//   zero(), set1(x), add, mul, sub, fma(a, b, acc) (fused), abs, max, hmax(V)
//   nonfinite(V) and gt(a, b) -> mask, zero_where(V, mask), blend(a, b, mask) (b where set)
//   dzero(), fold(D&, V) (D_l += double(V_l)), reduce(const D&) (the tree of kernels.h)
// and a Source S for the quantized codes and one for the reference, each with
//   load(row pointer, j, k, V& lo, V& hi): elements j .. j + k - 1 (k <= 32) of a
//   row as floats, lanes past k zero.
template <class C>
struct CmpAcc {
  typename C::D sum[5];  // ref_sq, code_sq, dot, err_sq, bound_sq
  typename C::V max_err;
  uint64_t clipped, bad, ref_bad;
};

template <class C, class Codes, class Refs>
void compare_generic(const detail::CompareArgs& a, const Codes& codes, const Refs& refs) {
  using V = typename C::V;
  constexpr size_t kGroup = 16;  // blocks of a band accumulated side by side
  const detail::Matrix& g = a.m;
  const size_t q_row = a.fp4 ? g.cols / 2 : g.cols;
  const size_t r_row = g.cols * (a.rf == FloatFormat::f32 ? 4 : 2);
  CmpAcc<C> acc[kGroup];
  for (size_t bi = 0; bi < g.nbr; ++bi) {
    const size_t r0 = bi * g.br, r1 = end_of(r0, g.br, g.rows);
    for (size_t g0 = 0; g0 < g.nbc; g0 += kGroup) {
      const size_t g1 = end_of(g0, kGroup, g.nbc);
      for (size_t b = 0; b < g1 - g0; ++b) {
        CmpAcc<C>& x = acc[b];
        for (auto& d : x.sum) d = C::dzero();
        x.max_err = C::zero();
        x.clipped = x.bad = x.ref_bad = 0;
      }
      for (size_t i = r0; i < r1; ++i) {
        const uint8_t* qrow = g.q + i * q_row;
        const uint8_t* rrow = a.ref + i * r_row;
        for (size_t bj = g0; bj < g1; ++bj) {
          CmpAcc<C>& x = acc[bj - g0];
          const size_t j0 = bj * g.bc, j1 = end_of(j0, g.bc, g.cols);
          const float sv = a.scale[bi * g.nbc + bj];
          const V s = C::set1(sv), lim = C::set1(a.clip * sv);
          const V bm = C::set1(a.bound.vmax * sv), bh = C::set1(a.bound.sub * sv);
          const V brel = C::set1(a.bound.rel + a.bound.slack), bslack = C::set1(a.bound.slack);
          V f0 = C::zero(), f1 = f0, f2 = f0, f3 = f0, f4 = f0, me = f0;
          uint64_t clipped = 0;
          auto step = [&](V c, V r, uint32_t valid) {
            V e = C::sub(C::mul(c, s), r);
            // lanes past k hold zeros, whose product is NaN under a NaN or
            // infinite scale: zeroed too, but not counted
            const uint32_t out = C::nonfinite(e);
            uint32_t drop = ~valid;
            if (out != 0) {
              const uint32_t rbad = C::nonfinite(r);
              c = C::zero_where(c, out);
              r = C::zero_where(r, out);
              e = C::zero_where(e, out);
              x.bad += static_cast<uint64_t>(__builtin_popcount(out & valid));
              x.ref_bad += static_cast<uint64_t>(__builtin_popcount(rbad & valid));
              drop |= out;
            }
            f0 = C::fma(r, r, f0);
            f1 = C::fma(c, c, f1);
            f2 = C::fma(c, r, f2);
            f3 = C::fma(e, e, f3);
            const V ar = C::abs(r);
            const V b = C::zero_where(C::blend(C::max(C::mul(brel, ar), bh),
                                               C::fma(bslack, ar, C::sub(ar, bm)),
                                               C::gt(ar, bm)), drop);
            f4 = C::fma(b, b, f4);
            me = C::max(me, C::abs(e));
            clipped += static_cast<uint64_t>(__builtin_popcount(C::gt(ar, lim) & ~drop));
          };
          for (size_t j = j0; j < j1;) {
            const size_t k = j1 - j < 32 ? j1 - j : 32;
            V c0, c1, q0, q1;
            codes.load(qrow, j, k, c0, c1);
            refs.load(rrow, j, k, q0, q1);
            step(c0, q0, k >= 16 ? 0xFFFFu : (1u << k) - 1);
            if (k > 16) step(c1, q1, k >= 32 ? 0xFFFFu : (1u << (k - 16)) - 1);
            j += k;
            if ((j - j0) % 128 == 0 || j == j1) {
              C::fold(x.sum[0], f0);
              C::fold(x.sum[1], f1);
              C::fold(x.sum[2], f2);
              C::fold(x.sum[3], f3);
              C::fold(x.sum[4], f4);
              f0 = f1 = f2 = f3 = f4 = C::zero();
            }
          }
          x.max_err = C::max(x.max_err, me);
          x.clipped += clipped;
        }
      }
      const CompareOut& o = a.out;
      for (size_t bj = g0; bj < g1; ++bj) {
        const CmpAcc<C>& x = acc[bj - g0];
        const size_t k = bi * g.nbc + bj;
        o.ref_sq[k] = C::reduce(x.sum[0]);
        o.code_sq[k] = C::reduce(x.sum[1]);
        o.dot[k] = C::reduce(x.sum[2]);
        o.err_sq[k] = C::reduce(x.sum[3]);
        o.bound_sq[k] = C::reduce(x.sum[4]);
        o.max_err[k] = C::hmax(x.max_err);
        o.clipped[k] = x.clipped;
        o.bad[k] = x.bad;
        o.ref_bad[k] = x.ref_bad;
      }
    }
  }
}
