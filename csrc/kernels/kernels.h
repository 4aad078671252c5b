// ckptscan kernels: FP8 / float statistics, histograms, per-block absmax and
// block dequantization over byte spans. Plain C++17, no Python.
//
// Every entry point below dispatches to the active implementation (scalar,
// avx2, avx512 or neon), chosen once from the CPU (cpuid + xgetbv on x86) or
// forced with CKPTSCAN_SIMD / select_simd(). All implementations return
// bit-identical results; scalar.cc is the reference.
//
// Entry points never throw and never allocate in hot loops; they return a
// Status (ok, or why the arguments or the SIMD selection are unusable). Every
// size derived from a shape and a block size is computed once, overflow-checked,
// by block_grid(); no loop ever sees a shape that did not pass it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ckptscan::kernels {

// ---- errors ------------------------------------------------------------------
enum class Status : int {
  ok = 0,
  simd_unknown,       // CKPTSCAN_SIMD / select_simd(): name not in the registry
  simd_unsupported,   // the named implementation needs features this CPU/OS lacks
  bad_length,         // byte length does not match shape / element size
  bad_block,          // block size with a zero dimension
  bad_scale_shape,    // scale_inv shape != [batch,] [ceil(rows/br), ceil(cols/bc)]
  bad_format,         // unknown format enum value
  too_large,          // a size computed from the shape and block overflows
  bad_buffer,         // an output buffer's length does not match the shape and block
};
const char* status_name(Status s);     // "ok", "simd_unknown", ...
const char* status_message(Status s);  // one sentence

// ---- formats -----------------------------------------------------------------
// Safetensors names: F8_E4M3 (= e4m3fn), F8_E5M2, F8_E4M3FNUZ, F8_E5M2FNUZ.
enum class Fp8Format : int { e4m3fn = 0, e5m2 = 1, e4m3fnuz = 2, e5m2fnuz = 3 };
enum class FloatFormat : int { bf16 = 0, f16 = 1, f32 = 2 };
enum class OutType : int { f32 = 0, bf16 = 1 };

// Facts per FP8 format (kFp8Traits below is the one table). Classification of a byte b, mag = b & 0x7F:
//   NaN       e4m3fn: mag == 0x7F; e5m2: mag >= 0x7D; fnuz: b == 0x80
//   Inf       e5m2 only: mag == 0x7C (+Inf 0x7C, -Inf 0xFC)
//   zero      sign-magnitude formats: mag == 0 (+0 0x00, -0 0x80); fnuz: b == 0x00
//   subnormal 1 <= mag <= sub_max (exponent field 0, mantissa != 0)
//   saturated mag == sat_code (largest finite magnitude, either sign)
//   negative  value < 0: sign bit set and neither NaN nor zero (-0 is not
//             negative; -Inf is), i.e. 0x81 <= b <= neg_max
struct Fp8Traits {
  int exp_bits, man_bits, bias;
  uint8_t sat_code;    // magnitude code of the largest finite value
  uint8_t sub_max;     // largest subnormal magnitude code
  uint8_t neg_max;     // largest byte that is a negative number
  bool fnuz;           // NaN is 0x80, no -0, no Inf
  bool has_inf;        // e5m2
  uint8_t nan_mag_lo;  // sign-magnitude formats: NaN iff mag >= this (0x80 = never)
  double max_finite;
};

// Indexed by Fp8Format. Plain constant data (no code), so ISA files may read it
// at compile time.
inline constexpr Fp8Traits kFp8Traits[4] = {
    // exp man bias sat  sub   neg_max fnuz  inf    nan_mag_lo max
    {4, 3, 7, 0x7E, 0x07, 0xFE, false, false, 0x7F, 448.0},    // e4m3fn
    {5, 2, 15, 0x7B, 0x03, 0xFC, false, true, 0x7D, 57344.0},  // e5m2
    {4, 3, 8, 0x7F, 0x07, 0xFF, true, false, 0x80, 240.0},     // e4m3fnuz
    {5, 2, 16, 0x7F, 0x03, 0xFF, true, false, 0x80, 57344.0},  // e5m2fnuz
};
const Fp8Traits& fp8_traits(Fp8Format f);

// ---- block geometry ----------------------------------------------------------
// A [batch, rows, cols] tensor cut into (br, bc) blocks; blocks never straddle
// two matrices of the batch, edge blocks are partial, and a block larger than
// the tensor is one partial block. Built only by block_grid(), which checks
// every count and product: all of them fit in ptrdiff_t (so they are valid
// numpy dimensions and pointer offsets).
struct BlockGrid {
  size_t batch = 0, rows = 0, cols = 0;
  size_t br = 1, bc = 1;
  size_t nbr = 0, nbc = 0;     // blocks per matrix: ceil(rows / br), ceil(cols / bc)
  size_t elems = 0;            // batch * rows * cols
  size_t blocks = 0;           // batch * nbr * nbc
  size_t block_elems = 0;      // elements of the largest block: min(br, rows) * min(bc, cols),
                               // 0 when there are no elements
};
// bad_block for a zero block dimension, too_large when a count overflows.
Status block_grid(size_t batch, size_t rows, size_t cols, size_t br, size_t bc, BlockGrid* out);

// Bytes per per-block count that always hold `block_elems`: 1, 2, 4 or 8.
int count_width(size_t block_elems);

// Exact decoding of one code (reference; NaN for NaN codes, +/-Inf for Inf).
double fp8_decode(uint8_t code, Fp8Format f);

// ---- results -----------------------------------------------------------------
struct Fp8Stats {
  uint64_t count = 0;      // elements (bytes)
  uint64_t nan = 0;
  uint64_t inf = 0;        // +Inf and -Inf (e5m2 only)
  uint64_t zero = 0;       // +0 and -0
  uint64_t neg_zero = 0;   // -0 only (0x80 in sign-magnitude formats; 0 for fnuz)
  uint64_t subnormal = 0;
  uint64_t saturated = 0;  // +/- largest finite magnitude
  uint64_t negative = 0;   // value < 0 (see Fp8Traits), -Inf included, -0 excluded
  uint8_t absmax_code = 0; // magnitude code (b & 0x7F) of the finite element of
                           // largest magnitude; 0 if there is none
  double absmax = 0.0;     // fp8_decode(absmax_code)
};

struct FloatStats {
  uint64_t count = 0;
  uint64_t nan = 0;
  uint64_t pos_inf = 0;
  uint64_t neg_inf = 0;
  uint64_t zero = 0;       // +0 and -0
  uint64_t subnormal = 0;
  uint64_t finite = 0;     // count - nan - pos_inf - neg_inf
  double absmax = 0.0;     // over finite elements; NaN if finite == 0
  double min = 0.0;        // finite min (-0 < +0); NaN if finite == 0
  double max = 0.0;        // finite max; NaN if finite == 0
};

// F8_E8M0 (ue8m0 scales): value 2^(b - 127), 0xFF is NaN, no zero, no sign.
struct E8m0Stats {
  uint64_t count = 0;
  uint64_t nan = 0;
  uint8_t min_code = 0xFF;  // over non-NaN codes; 0xFF / 0x00 when all are NaN
  uint8_t max_code = 0x00;
};

// Per-block results of fp8_block_stats for the grid's `blocks` blocks, in
// [batch, nbr, nbc] order. Any pointer may be null (not wanted); counts are
// unsigned integers of `width` bytes (at least count_width(block_elems)).
struct Fp8BlockOut {
  uint8_t* absmax = nullptr;   // largest finite magnitude code (b & 0x7F; 0 if none)
  void* nan = nullptr;         // NaN codes
  void* inf = nullptr;         // Inf codes (F8_E5M2; 0 elsewhere)
  void* saturated = nullptr;   // codes of magnitude sat_code, either sign
  int width = 8;
  size_t len = 0;              // entries of each array: must equal the grid's blocks
};

// ---- entry points (dispatching) ---------------------------------------------
Status fp8_stats(const uint8_t* data, size_t n, Fp8Format f, Fp8Stats* out);

// out[256] is overwritten with the count of each byte value.
Status histogram(const uint8_t* data, size_t n, uint64_t* out);

// q is a row-major [rows, cols] FP8 tensor (n == rows * cols bytes). For block
// (bi, bj) of size (br, bc) (see BlockGrid), writes the largest finite
// magnitude code (b & 0x7F; NaN/Inf excluded; 0 for an empty, all-zero or
// all-NaN block) to absmax[bi * nbc + bj] and its NaN count to nan[...].
// Both arrays hold out_len == nbr * nbc entries; nan may be null.
Status fp8_block_absmax(const uint8_t* q, size_t n, size_t rows, size_t cols, size_t br,
                        size_t bc, Fp8Format f, uint8_t* absmax, uint64_t* nan, size_t out_len);

// One pass over a row-major [batch, rows, cols] FP8 tensor (n == batch * rows *
// cols bytes): the whole tensor's Fp8Stats and, per (br, bc) block, what
// Fp8BlockOut holds.
Status fp8_block_stats(const uint8_t* q, size_t n, size_t batch, size_t rows, size_t cols,
                       size_t br, size_t bc, Fp8Format f, Fp8Stats* stats, const Fp8BlockOut& out);

// w[b, i, j] = decode(q[b, i, j]) * scale_inv[b, i / br, j / bc], product in
// float32; written as float32 or as bfloat16 bits (round to nearest even, NaN ->
// quiet NaN with its sign). scale_inv is row-major [batch, srows, scols] with
// scale_len floats; [srows, scols] must be [ceil(rows/br), ceil(cols/bc)]. out
// holds out_len == batch * rows * cols elements.
Status fp8_dequantize(const uint8_t* q, size_t n, size_t batch, size_t rows, size_t cols,
                      Fp8Format f, const float* scale_inv, size_t srows, size_t scols,
                      size_t scale_len, size_t br, size_t bc, OutType out_type, void* out,
                      size_t out_len);

// Packed FP4 E2M1 (two codes per byte, low nibble first; code c is
// (-1)^(c >> 3) * {0, 0.5, 1, 1.5, 2, 3, 4, 6}[c & 7]): q holds n == batch * rows
// * cols / 2 bytes, cols even (rows of whole bytes). w[b, i, j] = decode(q[b, i,
// j]) * scale[b, i / br, j / bc], product in float32 (a global multiplier is
// folded into the scale by the caller); scale, block, out as fp8_dequantize.
Status fp4_dequantize(const uint8_t* q, size_t n, size_t batch, size_t rows, size_t cols,
                      const float* scale, size_t srows, size_t scols, size_t scale_len,
                      size_t br, size_t bc, OutType out_type, void* out, size_t out_len);
float fp4_decode(uint8_t code);  // of the low nibble

// ---- dequantize and compare ----------------------------------------------------
// One pass over a quantized weight and the high-precision tensor it was made
// from (`ref`, row-major [batch, rows, cols] of BF16 / F16 / F32): per (br, bc)
// block, with c = decode(q) (unscaled), d = c * s (float32 product, s the
// block's scale), r the reference and e = d - r (float32),
//   ref_sq Σ r², code_sq Σ c², dot Σ c·r, err_sq Σ e²  (doubles),
//   max_err max |e|  (float),
//   clipped #{|r| > clip * s}, bad #{e not finite: d or r not finite, or their
//   difference overflows}, ref_bad #{r not finite},
//   bound_sq Σ b², b the largest error round to nearest into the format allows
//   for r under the block's scale (RoundBound),
// over the elements whose e is finite (the others are only counted in bad /
// ref_bad). Σc², Σc·r and Σr² give the error of any other scale s' for
// the block without reading it again: s'² Σc² - 2 s' Σc·r + Σr².
//
// Summation order, the same on every ISA (results are bit-identical): within a
// block's row segment [j0, j1) element j is added to float lane (j - j0) % 16
// with a fused multiply-add, in column order; every 128 columns and at the
// segment's end the 16 float lanes are added to 16 double lanes; at the block's
// end the double lanes l are reduced as t_l = D_l + D_{l+8}, then t_l + t_{l+4},
// t_l + t_{l+2}, t_0 + t_1.
// b for |r| = t under scale s, in float32 in this order: m = vmax * s, h = sub * s;
// b = t > m ? fma(slack, t, t - m) : max((rel + slack) * t, h), rel + slack
// rounded to float32 once. (vmax: the largest finite code value; rel: round to
// nearest's largest relative error over the normal range; sub: half the
// smallest subnormal step, the error of everything below the normal range;
// slack: relative allowance for roundings outside the quantizer, such as a
// scale stored in BF16.)
struct RoundBound {
  float vmax = 0.0f, rel = 0.0f, sub = 0.0f, slack = 0.0f;
};

struct CompareOut {
  double* bound_sq = nullptr;
  double* ref_sq = nullptr;
  double* code_sq = nullptr;
  double* dot = nullptr;
  double* err_sq = nullptr;
  float* max_err = nullptr;
  uint64_t* clipped = nullptr;
  uint64_t* bad = nullptr;
  uint64_t* ref_bad = nullptr;
  size_t len = 0;  // entries of each array (all required): the grid's blocks
};

// q: FP8 codes, n == batch * rows * cols bytes; scale as fp8_dequantize; ref
// holds ref_len == batch * rows * cols elements of format rf.
Status fp8_compare(const uint8_t* q, size_t n, size_t batch, size_t rows, size_t cols,
                   Fp8Format f, const float* scale, size_t srows, size_t scols, size_t scale_len,
                   size_t br, size_t bc, const uint8_t* ref, size_t ref_len, FloatFormat rf,
                   float clip, const RoundBound& bound, const CompareOut& out);
// The same for packed FP4 E2M1 (as fp4_dequantize: n == batch * rows * cols / 2, cols even).
Status fp4_compare(const uint8_t* q, size_t n, size_t batch, size_t rows, size_t cols,
                   const float* scale, size_t srows, size_t scols, size_t scale_len, size_t br,
                   size_t bc, const uint8_t* ref, size_t ref_len, FloatFormat rf, float clip,
                   const RoundBound& bound, const CompareOut& out);

// data holds nbytes of bf16/f16/f32 little-endian elements.
Status float_stats(const uint8_t* data, size_t nbytes, FloatFormat f, FloatStats* out);
Status e8m0_stats(const uint8_t* data, size_t n, E8m0Stats* out);

// Sum of the little-endian 64-bit words of data (tail bytes zero-extended):
// the memory-read probe, the benchmark's physical limit.
Status read_probe(const uint8_t* data, size_t n, uint64_t* out);

// ---- CPU features and implementation selection -------------------------------
enum Feature : uint32_t {
  kSSE2 = 1u << 0,
  kPOPCNT = 1u << 1,
  kAVX = 1u << 2,
  kAVX2 = 1u << 3,
  kBMI1 = 1u << 4,
  kBMI2 = 1u << 5,
  kFMA = 1u << 6,
  kF16C = 1u << 7,
  kOSYMM = 1u << 8,   // XCR0: OS saves SSE + AVX state
  kAVX512F = 1u << 9,
  kAVX512BW = 1u << 10,
  kAVX512VL = 1u << 11,
  kAVX512DQ = 1u << 12,
  kAVX512VBMI = 1u << 13,
  kOSZMM = 1u << 14,  // XCR0: OS saves opmask + ZMM state
  kNEON = 1u << 15,
};
constexpr int kFeatureCount = 16;
const char* feature_name(int bit);  // name of feature 1u << bit
uint32_t cpu_features();            // detected once

int implementation_count();                  // compiled in, best last
const char* implementation_name(int i);
uint32_t implementation_requires(int i);
bool implementation_supported(int i);        // this CPU/OS can run it

// Reads CKPTSCAN_SIMD at first use. If it names an unknown or unsupported
// implementation, every entry point returns that status until select_simd()
// succeeds. "" / "auto" / unset means the best supported implementation.
// select_simd() with a bad name returns the error and keeps the current choice.
Status select_simd(const char* name);        // "auto" / "" -> best
const char* active_simd();                   // name; "" if selection failed
Status simd_status();                        // status of the current selection
std::string simd_error();                    // message of a failed selection ("" if ok)
std::string simd_explain(const char* name);  // why select_simd(name) would fail ("" if ok)

// ---- implementation registry (internal) ----------------------------------------
namespace detail {

struct Fp8Raw {
  uint64_t nan, inf, zero, neg_zero, subnormal, saturated, negative;
  uint8_t absmax_code;
};

// Raw float results: counts plus bit patterns. absmax_bits is the largest
// finite |x| bit pattern (0 if none); min_key / max_key are the order-preserving
// keys (sign-flipped bits) of the finite min / max: min_key = all ones and
// max_key = 0 when there is no finite element.
struct FloatRaw {
  uint64_t nan, pos_inf, neg_inf, zero, subnormal;
  uint32_t absmax_bits, min_key, max_key;
};

// One [rows, cols] matrix of a checked BlockGrid, with rows, cols >= 1: dispatch
// folds the batch into the rows when blocks tile them (rows % br == 0) and
// otherwise calls a kernel once per matrix. Kernels take it as given.
struct Matrix {
  const uint8_t* q;
  size_t rows, cols, br, bc;
  size_t nbr, nbc;
};

// Per-block outputs of one Matrix (pointers at its first block); null = not wanted.
struct BlockOut {
  uint8_t* absmax;
  void* nan;
  void* inf;
  void* saturated;
  int width;  // bytes per count
};

struct DequantArgs {
  Matrix m;            // for FP4: rows of cols / 2 bytes
  Fp8Format fmt;       // (FP8 only)
  const float* scale;  // [m.nbr, m.nbc], 4-byte aligned
  OutType out_type;
  void* out;           // [m.rows, m.cols], aligned to its element
};

// One fp8_compare / fp4_compare call on one Matrix (pointers at its first block
// and first element; `fp4`: q holds packed nibbles, rows of cols / 2 bytes).
struct CompareArgs {
  Matrix m;
  bool fp4;
  Fp8Format fmt;       // (FP8 only)
  const float* scale;  // [m.nbr, m.nbc]
  const uint8_t* ref;  // [m.rows, m.cols] elements of rf
  FloatFormat rf;
  float clip;
  RoundBound bound;
  CompareOut out;      // at the matrix's first block
};

struct KernelTable {
  const char* name;
  uint32_t requires_features;
  void (*fp8_stats)(const uint8_t*, size_t, Fp8Format, Fp8Raw*);
  void (*histogram)(const uint8_t*, size_t, uint64_t*);
  // Adds the matrix's counts to *raw (absmax_code: max) and writes its blocks.
  // raw == nullptr: absmax and NaN outputs only (inf, saturated null).
  void (*block_stats)(const Matrix&, Fp8Format, Fp8Raw* raw, const BlockOut&);
  void (*dequantize)(const DequantArgs&);
  void (*fp4_dequantize)(const DequantArgs&);
  void (*compare)(const CompareArgs&);
  void (*float_stats)(const uint8_t*, size_t count, FloatFormat, FloatRaw*);
  void (*e8m0_stats)(const uint8_t*, size_t, E8m0Stats*);
  uint64_t (*read_probe)(const uint8_t*, size_t);
};

}  // namespace detail

namespace scalar {
extern const detail::KernelTable table;
// The reference functions, reusable by other tables for what they do not
// specialise.
void fp8_stats(const uint8_t*, size_t, Fp8Format, detail::Fp8Raw*);
void histogram(const uint8_t*, size_t, uint64_t*);
void block_stats(const detail::Matrix&, Fp8Format, detail::Fp8Raw*, const detail::BlockOut&);
void dequantize(const detail::DequantArgs&);
void fp4_dequantize(const detail::DequantArgs&);
void compare(const detail::CompareArgs&);
void float_stats(const uint8_t*, size_t, FloatFormat, detail::FloatRaw*);
void e8m0_stats(const uint8_t*, size_t, E8m0Stats*);
uint64_t read_probe(const uint8_t*, size_t);
}  // namespace scalar
#if defined(CKPTSCAN_HAVE_X86)
namespace avx2 {
extern const detail::KernelTable table;
}
namespace avx512 {
extern const detail::KernelTable table;
}
#endif
#if defined(CKPTSCAN_HAVE_NEON)
namespace neon {
extern const detail::KernelTable table;
}
#endif

}  // namespace ckptscan::kernels
