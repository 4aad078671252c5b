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

// n byte counts to base[k0 ...] in `width` bytes each; returns their sum.
inline uint64_t store_counts(void* base, size_t k0, const uint8_t* v, size_t n, int width) {
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += v[i];
  if (base == nullptr) return sum;
  if (width == 1) {
    std::memcpy(static_cast<uint8_t*>(base) + k0, v, n);
  } else {
    for (size_t i = 0; i < n; ++i) store_count(base, k0 + i, v[i], width);
  }
  return sum;
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
//   V, kW                      vector type, bytes per vector
//   Tensor                     whole-tensor counters (+/-0, zeros + subnormals,
//                              sign-set bytes); finish(Fp8Raw&) once r.nan is final
//   classify_full(p, Tensor&)  kW bytes -> Cls{key, nan, inf, sat}: key = the
//   classify_part(p, k, ...)   finite magnitudes (0 for NaN/Inf), the rest masks
//                              (or counts) that count(x) turns into a count
//   zero(), max(a, b), hmax(v) byte max
//   kFlat, tree<BC>(V*, uint32_t out[16])  optional: (1, BC) blocks packed in
//                              vectors, BC in 16 / 32 / 64 up to kW (see flat below)
struct BlockResult {
  uint8_t amax;
  uint64_t nan, inf, sat;
};

template <class L>
struct BlockStats {
  using V = typename L::V;
  using Tensor = typename L::Tensor;
  struct Acc {
    V amax;
    uint64_t nan, inf, sat;
  };

  const detail::BlockOut& out;
  Tensor t;
  detail::Fp8Raw r{};

  explicit BlockStats(const detail::BlockOut& o) : out(o) {}

  void put(size_t k, const BlockResult& b) {
    if (out.absmax) out.absmax[k] = b.amax;
    if (out.nan) store_count(out.nan, k, b.nan, out.width);
    if (out.inf) store_count(out.inf, k, b.inf, out.width);
    if (out.saturated) store_count(out.saturated, k, b.sat, out.width);
    r.nan += b.nan;
    r.inf += b.inf;
    r.saturated += b.sat;
    if (b.amax > r.absmax_code) r.absmax_code = b.amax;
  }

  static void add(Acc& a, const typename L::Cls& c) {
    a.amax = L::max(a.amax, c.key);
    a.nan += L::count(c.nan);
    if constexpr (L::f::inf) a.inf += L::count(c.inf);
    a.sat += L::count(c.sat);
  }

  // Any block shape: for each band of br rows and each group of up to kGroup
  // block columns, one accumulator per block while the band's rows stream by
  // (row-major, so memory is read in order); block k0 + bi * nbc + bj.
  void band(const detail::Matrix& m, size_t k0) {
    constexpr size_t kGroup = 128;
    Acc acc[kGroup];
    for (size_t bi = 0; bi < m.nbr; ++bi) {
      const size_t r0 = bi * m.br, r1 = end_of(r0, m.br, m.rows);
      for (size_t g0 = 0; g0 < m.nbc; g0 += kGroup) {
        const size_t g1 = end_of(g0, kGroup, m.nbc);
        for (size_t k = 0; k < g1 - g0; ++k) acc[k] = Acc{L::zero(), 0, 0, 0};
        for (size_t i = r0; i < r1; ++i) {
          const uint8_t* row = m.q + i * m.cols;
          for (size_t bj = g0; bj < g1; ++bj) {
            const size_t j0 = bj * m.bc, j1 = end_of(j0, m.bc, m.cols);
            Acc a = acc[bj - g0];
            size_t j = j0;
            for (; j1 - j >= L::kW; j += L::kW) add(a, L::classify_full(row + j, t));
            if (j < j1) add(a, L::classify_part(row + j, j1 - j, t));
            acc[bj - g0] = a;
          }
        }
        for (size_t k = 0; k < g1 - g0; ++k) {
          put(k0 + bi * m.nbc + g0 + k, {L::hmax(acc[k].amax), acc[k].nan, acc[k].inf, acc[k].sat});
        }
      }
    }
  }

  // (1, BC) blocks that tile whole rows are contiguous: block k is bytes
  // [k * BC, (k + 1) * BC). Each vector holds kW / BC of them; G vectors (16
  // blocks) reduce together through L::tree, and the blocks' counts are the
  // popcounts of BC-bit pieces of the masks. Which of the 16 dwords the tree
  // leaves each block in is found by running the tree once on block numbers.
  template <size_t BC>
  void flat(const detail::Matrix& m) {
    constexpr size_t P = L::kW / BC, G = 16 / P;
    constexpr uint64_t kPiece = BC >= 64 ? ~uint64_t{0} : (uint64_t{1} << (BC % 64)) - 1;
    const size_t total = m.rows * m.cols, nvec = total / L::kW;
    uint8_t slot[16];
    {
      V ids[G];
      alignas(64) uint8_t bytes[L::kW];
      for (size_t v = 0; v < G; ++v) {
        for (size_t b = 0; b < L::kW; ++b) bytes[b] = static_cast<uint8_t>(v * P + b / BC);
        ids[v] = L::load(bytes);
      }
      alignas(64) uint32_t pos[16];
      L::template tree<BC>(ids, pos);
      for (size_t k = 0; k < 16; ++k) slot[pos[k] & 0xFF] = static_cast<uint8_t>(k);
    }
    constexpr size_t kChunk = 256;  // blocks per output flush, a multiple of 16
    uint8_t am[kChunk], nn[kChunk], ni[kChunk], ns[kChunk];
    for (size_t v0 = 0; v0 < nvec; v0 += kChunk / P) {
      const size_t nv = end_of(v0, kChunk / P, nvec) - v0;
      for (size_t g0 = 0; g0 < nv; g0 += G) {
        V keys[G];
        for (size_t v = 0; v < G; ++v) {
          if (g0 + v >= nv) {
            keys[v] = L::zero();
            continue;
          }
          const typename L::Cls c = L::classify_full(m.q + (v0 + g0 + v) * L::kW, t);
          keys[v] = c.key;
          for (size_t s = 0; s < P; ++s) {
            const size_t b = (g0 + v) * P + s;
            nn[b] = static_cast<uint8_t>(L::count((c.nan >> (s * BC)) & kPiece));
            ni[b] = L::f::inf ? static_cast<uint8_t>(L::count((c.inf >> (s * BC)) & kPiece)) : 0;
            ns[b] = static_cast<uint8_t>(L::count((c.sat >> (s * BC)) & kPiece));
          }
        }
        alignas(64) uint32_t red[16];
        L::template tree<BC>(keys, red);
        for (size_t k = 0; k < 16; ++k) am[g0 * P + k] = static_cast<uint8_t>(red[slot[k]]);
      }
      const size_t nb = nv * P, k0 = v0 * P;
      if (out.absmax) std::memcpy(out.absmax + k0, am, nb);
      for (size_t b = 0; b < nb; ++b) {
        if (am[b] > r.absmax_code) r.absmax_code = am[b];
      }
      r.nan += store_counts(out.nan, k0, nn, nb, out.width);
      r.inf += store_counts(out.inf, k0, ni, nb, out.width);
      r.saturated += store_counts(out.saturated, k0, ns, nb, out.width);
    }
    // The last bytes (fewer than kW: whole blocks) as a one-row matrix.
    const size_t done = nvec * L::kW;
    if (done < total) {
      const size_t cols = total - done;
      band(detail::Matrix{m.q + done, 1, cols, 1, BC, 1, cols / BC}, done / BC);
    }
  }

  void run(const detail::Matrix& m) {
    if constexpr (L::kFlat) {
      if (m.br == 1 && m.cols % m.bc == 0) {
        if (m.bc == 16) return flat<16>(m);
        if (m.bc == 32) return flat<32>(m);
        if constexpr (L::kW >= 64) {
          if (m.bc == 64) return flat<64>(m);
        }
      }
    }
    band(m, 0);
  }
};

template <class L>
void block_stats_generic(const detail::Matrix& m, detail::Fp8Raw* raw, const detail::BlockOut& o) {
  BlockStats<L> s(o);
  s.run(m);
  s.t.finish(s.r);
  add_raw(*raw, s.r);
}
