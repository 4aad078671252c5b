// Format facts, CPU detection, the implementation registry and the checked
// entry points. Compiled without any ISA flag: nothing here may execute an
// instruction the baseline target lacks.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>

#include "kernels/kernels.h"

#if defined(CKPTSCAN_HAVE_X86) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#define CKPTSCAN_X86_DETECT 1
#endif

namespace ckptscan::kernels {

// ---- errors ------------------------------------------------------------------
const char* status_name(Status s) {
  switch (s) {
    case Status::ok: return "ok";
    case Status::simd_unknown: return "simd_unknown";
    case Status::simd_unsupported: return "simd_unsupported";
    case Status::bad_length: return "bad_length";
    case Status::bad_block: return "bad_block";
    case Status::bad_scale_shape: return "bad_scale_shape";
    case Status::bad_format: return "bad_format";
    case Status::too_large: return "too_large";
    case Status::bad_buffer: return "bad_buffer";
  }
  return "unknown_status";
}

const char* status_message(Status s) {
  switch (s) {
    case Status::ok: return "ok";
    case Status::simd_unknown: return "unknown SIMD implementation name";
    case Status::simd_unsupported:
      return "the SIMD implementation needs CPU features this machine lacks";
    case Status::bad_length: return "byte length does not match the shape and element size";
    case Status::bad_block: return "block size must be at least 1 x 1";
    case Status::bad_scale_shape:
      return "scale shape must be [batch,] ceil(rows / block_rows), ceil(cols / block_cols)";
    case Status::bad_format: return "unknown format";
    case Status::too_large:
      return "the shape and block size give a count or size that overflows";
    case Status::bad_buffer:
      return "an output buffer's length does not match the shape and block size";
  }
  return "unknown status";
}

// ---- formats -----------------------------------------------------------------
namespace {
bool valid(Fp8Format f) {
  const int v = static_cast<int>(f);
  return v >= 0 && v < 4;
}
bool valid(FloatFormat f) {
  const int v = static_cast<int>(f);
  return v >= 0 && v < 3;
}
}  // namespace

const Fp8Traits& fp8_traits(Fp8Format f) {
  return kFp8Traits[valid(f) ? static_cast<int>(f) : 0];
}

double fp8_decode(uint8_t code, Fp8Format f) {
  const Fp8Traits& t = fp8_traits(f);
  const int mag = code & 0x7F;
  const bool sign = (code & 0x80) != 0;
  if (t.fnuz && code == 0x80) return std::numeric_limits<double>::quiet_NaN();
  if (!t.fnuz && mag >= t.nan_mag_lo) return std::numeric_limits<double>::quiet_NaN();
  if (t.has_inf && mag == 0x7C) {
    return sign ? -std::numeric_limits<double>::infinity()
                : std::numeric_limits<double>::infinity();
  }
  const int e = mag >> t.man_bits;
  const int m = mag & ((1 << t.man_bits) - 1);
  const double v = e == 0 ? std::ldexp(m, 1 - t.bias - t.man_bits)
                          : std::ldexp((1 << t.man_bits) | m, e - t.bias - t.man_bits);
  return sign ? -v : v;
}

// ---- CPU features ------------------------------------------------------------
namespace {
constexpr const char* kFeatureNames[kFeatureCount] = {
    "sse2",     "popcnt",   "avx",      "avx2",       "bmi1",     "bmi2",
    "fma",      "f16c",     "os_ymm",   "avx512f",    "avx512bw", "avx512vl",
    "avx512dq", "avx512vbmi", "os_zmm", "neon",
};

uint32_t detect_features() {
  uint32_t f = 0;
#if defined(CKPTSCAN_X86_DETECT)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
  if (d & (1u << 26)) f |= kSSE2;
  if (c & (1u << 23)) f |= kPOPCNT;
  if (c & (1u << 12)) f |= kFMA;
  if (c & (1u << 29)) f |= kF16C;
  const bool osxsave = (c & (1u << 27)) != 0;
  const bool avx = (c & (1u << 28)) != 0;
  uint64_t xcr0 = 0;
  if (osxsave) {
    uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (uint64_t{hi} << 32) | lo;
  }
  const bool os_ymm = osxsave && (xcr0 & 0x6) == 0x6;            // XMM | YMM
  const bool os_zmm = os_ymm && (xcr0 & 0xE0) == 0xE0;            // opmask | ZMM_Hi256 | Hi16_ZMM
  if (os_ymm) f |= kOSYMM;
  if (os_zmm) f |= kOSZMM;
  if (avx) f |= kAVX;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    if (b & (1u << 3)) f |= kBMI1;
    if (b & (1u << 5)) f |= kAVX2;
    if (b & (1u << 8)) f |= kBMI2;
    if (b & (1u << 16)) f |= kAVX512F;
    if (b & (1u << 17)) f |= kAVX512DQ;
    if (b & (1u << 30)) f |= kAVX512BW;
    if (b & (1u << 31)) f |= kAVX512VL;
    if (c & (1u << 1)) f |= kAVX512VBMI;
  }
#elif defined(__aarch64__)
  f |= kNEON;  // Advanced SIMD is mandatory on AArch64
#endif
  return f;
}

const detail::KernelTable* const kRegistry[] = {
    &scalar::table,
#if defined(CKPTSCAN_HAVE_X86)
    &avx2::table,
    &avx512::table,
#endif
#if defined(CKPTSCAN_HAVE_NEON) && defined(__aarch64__)
    &neon::table,
#endif
};
constexpr int kRegistrySize = static_cast<int>(sizeof(kRegistry) / sizeof(kRegistry[0]));

struct State {
  std::atomic<const detail::KernelTable*> active{nullptr};
  std::atomic<int> status{0};
  std::mutex mu;          // guards error (written by select only)
  std::string error;
  uint32_t features = 0;
};

State& state() {
  static State s;
  return s;
}

bool supported(const detail::KernelTable* t) {
  return (t->requires_features & ~state().features) == 0;
}

// A failed selection from the environment leaves no implementation active (every
// entry point then reports it); a failed select_simd() keeps the previous one.
Status select_locked(State& s, const char* name, const char* origin, bool keep_on_error) {
  const bool want_auto = name == nullptr || name[0] == '\0' || std::strcmp(name, "auto") == 0;
  const detail::KernelTable* chosen = nullptr;
  Status st = Status::ok;
  std::string err;
  if (want_auto) {
    for (int i = kRegistrySize - 1; i >= 0; --i) {
      if (supported(kRegistry[i])) {
        chosen = kRegistry[i];
        break;
      }
    }
  } else {
    for (int i = 0; i < kRegistrySize; ++i) {
      if (std::strcmp(kRegistry[i]->name, name) == 0) chosen = kRegistry[i];
    }
    if (chosen == nullptr) {
      st = Status::simd_unknown;
      err = std::string(origin) + "=" + name + ": unknown SIMD implementation; this build has";
      for (int i = 0; i < kRegistrySize; ++i) err += std::string(" ") + kRegistry[i]->name;
    } else if (!supported(chosen)) {
      st = Status::simd_unsupported;
      err = std::string(origin) + "=" + name + ": this CPU/OS lacks";
      const uint32_t missing = chosen->requires_features & ~s.features;
      for (int b = 0; b < kFeatureCount; ++b) {
        if (missing & (1u << b)) err += std::string(" ") + kFeatureNames[b];
      }
      chosen = nullptr;
    }
  }
  if (st != Status::ok && keep_on_error) return st;
  s.error = err;
  s.active.store(chosen, std::memory_order_release);
  s.status.store(static_cast<int>(st), std::memory_order_release);
  return st;
}

std::once_flag g_init_once;

void ensure_init() {
  std::call_once(g_init_once, [] {
    State& s = state();
    s.features = detect_features();
    std::lock_guard<std::mutex> lock(s.mu);
    const char* env = std::getenv("CKPTSCAN_SIMD");
    select_locked(s, env, "CKPTSCAN_SIMD", false);
  });
}

// The active table, or the selection error.
Status active_table(const detail::KernelTable** out) {
  ensure_init();
  State& s = state();
  const detail::KernelTable* t = s.active.load(std::memory_order_acquire);
  if (t == nullptr) return static_cast<Status>(s.status.load(std::memory_order_acquire));
  *out = t;
  return Status::ok;
}

bool mul_ok(size_t a, size_t b, size_t* r) {
  if (a != 0 && b > std::numeric_limits<size_t>::max() / a) return false;
  *r = a * b;
  return true;
}

// ceil(a / b) for b >= 1, without computing a + b - 1.
size_t ceil_div(size_t a, size_t b) { return a / b + (a % b != 0 ? 1 : 0); }

// Calls fn(matrix, first block, first element) for the grid's matrices over q
// (elements of `bits` bits: 8, or 4 for packed FP4 with even cols): one call
// when blocks tile the rows (rows % br == 0: the batch folds into the rows), one
// per matrix otherwise. Nothing for a grid without elements.
template <class Fn>
void for_each_matrix(const uint8_t* q, const BlockGrid& g, size_t bits, Fn&& fn) {
  if (g.elems == 0) return;
  if (g.batch == 1 || g.rows % g.br == 0) {
    fn(detail::Matrix{q, g.batch * g.rows, g.cols, g.br, g.bc, g.batch * g.nbr, g.nbc}, 0, 0);
    return;
  }
  const size_t plane = g.rows * g.cols, bplane = g.nbr * g.nbc;
  for (size_t b = 0; b < g.batch; ++b) {
    fn(detail::Matrix{q + b * plane * bits / 8, g.rows, g.cols, g.br, g.bc, g.nbr, g.nbc},
       b * bplane, b * plane);
  }
}

Fp8Stats to_stats(const detail::Fp8Raw& r, size_t n, Fp8Format f) {
  Fp8Stats s;
  s.count = n;
  s.nan = r.nan;
  s.inf = r.inf;
  s.zero = r.zero;
  s.neg_zero = r.neg_zero;
  s.subnormal = r.subnormal;
  s.saturated = r.saturated;
  s.negative = r.negative;
  s.absmax_code = r.absmax_code;
  s.absmax = fp8_decode(r.absmax_code, f);
  return s;
}

uint32_t key_to_bits(uint32_t key, uint32_t sign, uint32_t all) {
  return (key & sign) ? (key & ~sign) : (~key & all);
}

double bits_to_double(uint32_t bits, FloatFormat f) {
  switch (f) {
    case FloatFormat::bf16: {
      const uint32_t u = bits << 16;
      float x;
      std::memcpy(&x, &u, 4);
      return x;
    }
    case FloatFormat::f16: {
      const int e = (bits >> 10) & 0x1F;
      const int m = bits & 0x3FF;
      double v;
      if (e == 0x1F) v = m ? std::numeric_limits<double>::quiet_NaN()
                           : std::numeric_limits<double>::infinity();
      else if (e == 0) v = std::ldexp(m, -24);
      else v = std::ldexp(0x400 | m, e - 25);
      return (bits & 0x8000) ? -v : v;
    }
    case FloatFormat::f32: break;
  }
  float x;
  std::memcpy(&x, &bits, 4);
  return x;
}

}  // namespace

Status block_grid(size_t batch, size_t rows, size_t cols, size_t br, size_t bc, BlockGrid* out) {
  if (br == 0 || bc == 0) return Status::bad_block;
  BlockGrid g;
  g.batch = batch;
  g.rows = rows;
  g.cols = cols;
  g.br = br;
  g.bc = bc;
  g.nbr = ceil_div(rows, br);
  g.nbc = ceil_div(cols, bc);
  size_t plane = 0, bplane = 0;
  if (!mul_ok(rows, cols, &plane) || !mul_ok(plane, batch, &g.elems) ||
      !mul_ok(g.nbr, g.nbc, &bplane) || !mul_ok(bplane, batch, &g.blocks)) {
    return Status::too_large;
  }
  constexpr size_t kMax = static_cast<size_t>(std::numeric_limits<std::ptrdiff_t>::max());
  for (size_t v : {batch, rows, cols, g.nbr, g.nbc, g.elems, g.blocks}) {
    if (v > kMax) return Status::too_large;
  }
  // <= rows * cols; a tensor without elements has no block (batch 0 included)
  g.block_elems = g.elems == 0 ? 0 : std::min(br, rows) * std::min(bc, cols);
  *out = g;
  return Status::ok;
}

int count_width(size_t block_elems) {
  if (block_elems <= 0xFF) return 1;
  if (block_elems <= 0xFFFF) return 2;
  if (block_elems <= 0xFFFFFFFFu) return 4;
  return 8;
}

const char* feature_name(int bit) {
  return bit >= 0 && bit < kFeatureCount ? kFeatureNames[bit] : "";
}

uint32_t cpu_features() {
  ensure_init();
  return state().features;
}

int implementation_count() { return kRegistrySize; }
const char* implementation_name(int i) {
  return i >= 0 && i < kRegistrySize ? kRegistry[i]->name : "";
}
uint32_t implementation_requires(int i) {
  return i >= 0 && i < kRegistrySize ? kRegistry[i]->requires_features : 0;
}
bool implementation_supported(int i) {
  ensure_init();
  return i >= 0 && i < kRegistrySize && supported(kRegistry[i]);
}

Status select_simd(const char* name) {
  ensure_init();
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return select_locked(s, name, "simd", true);
}

const char* active_simd() {
  ensure_init();
  const detail::KernelTable* t = state().active.load(std::memory_order_acquire);
  return t ? t->name : "";
}

Status simd_status() {
  ensure_init();
  return static_cast<Status>(state().status.load(std::memory_order_acquire));
}

std::string simd_error() {
  ensure_init();
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.error;
}

std::string simd_explain(const char* name) {
  ensure_init();
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  State probe;
  probe.features = s.features;
  select_locked(probe, name, "simd", false);
  return probe.error;
}

// ---- entry points -------------------------------------------------------------
Status fp8_stats(const uint8_t* data, size_t n, Fp8Format f, Fp8Stats* out) {
  if (!valid(f)) return Status::bad_format;
  const detail::KernelTable* t = nullptr;
  if (Status st = active_table(&t); st != Status::ok) return st;
  detail::Fp8Raw r{};
  if (n > 0) t->fp8_stats(data, n, f, &r);
  *out = to_stats(r, n, f);
  return Status::ok;
}

Status histogram(const uint8_t* data, size_t n, uint64_t* out) {
  const detail::KernelTable* t = nullptr;
  if (Status st = active_table(&t); st != Status::ok) return st;
  if (n == 0) {
    for (int i = 0; i < 256; ++i) out[i] = 0;
    return Status::ok;
  }
  t->histogram(data, n, out);
  return Status::ok;
}

Status fp8_block_absmax(const uint8_t* q, size_t n, size_t rows, size_t cols, size_t br,
                        size_t bc, Fp8Format f, uint8_t* absmax, uint64_t* nan, size_t out_len) {
  if (!valid(f)) return Status::bad_format;
  BlockGrid g;
  if (Status st = block_grid(1, rows, cols, br, bc, &g); st != Status::ok) return st;
  if (g.elems != n) return Status::bad_length;
  if (out_len != g.blocks) return Status::bad_buffer;
  const detail::KernelTable* t = nullptr;
  if (Status st = active_table(&t); st != Status::ok) return st;
  for_each_matrix(q, g, 8, [&](const detail::Matrix& m, size_t k0, size_t) {
    // no whole-tensor statistics: the lean pass
    t->block_stats(m, f, nullptr,
                   {absmax ? absmax + k0 : nullptr, nan ? nan + k0 : nullptr, nullptr, nullptr, 8});
  });
  return Status::ok;
}

Status fp8_block_stats(const uint8_t* q, size_t n, size_t batch, size_t rows, size_t cols,
                       size_t br, size_t bc, Fp8Format f, Fp8Stats* stats,
                       const Fp8BlockOut& out) {
  if (!valid(f)) return Status::bad_format;
  BlockGrid g;
  if (Status st = block_grid(batch, rows, cols, br, bc, &g); st != Status::ok) return st;
  if (g.elems != n) return Status::bad_length;
  const bool counts = out.nan != nullptr || out.inf != nullptr || out.saturated != nullptr;
  if (out.len != g.blocks || (counts && out.width != 1 && out.width != 2 && out.width != 4 &&
                              out.width != 8)) {
    return Status::bad_buffer;
  }
  if (counts && out.width < count_width(g.block_elems)) return Status::bad_buffer;
  const detail::KernelTable* t = nullptr;
  if (Status st = active_table(&t); st != Status::ok) return st;
  detail::Fp8Raw r{};
  const size_t w = static_cast<size_t>(out.width);
  for_each_matrix(q, g, 8, [&](const detail::Matrix& m, size_t k0, size_t) {
    auto at = [&](void* p) { return p ? static_cast<uint8_t*>(p) + k0 * w : nullptr; };
    const detail::BlockOut o{out.absmax ? out.absmax + k0 : nullptr, at(out.nan), at(out.inf),
                             at(out.saturated), out.width};
    t->block_stats(m, f, &r, o);
  });
  *stats = to_stats(r, n, f);
  return Status::ok;
}

Status fp8_dequantize(const uint8_t* q, size_t n, size_t batch, size_t rows, size_t cols,
                      Fp8Format f, const float* scale_inv, size_t srows, size_t scols,
                      size_t scale_len, size_t br, size_t bc, OutType out_type, void* out,
                      size_t out_len) {
  if (!valid(f)) return Status::bad_format;
  if (out_type != OutType::f32 && out_type != OutType::bf16) return Status::bad_format;
  BlockGrid g;
  if (Status st = block_grid(batch, rows, cols, br, bc, &g); st != Status::ok) return st;
  if (g.elems != n) return Status::bad_length;
  if (srows != g.nbr || scols != g.nbc || scale_len != g.blocks) return Status::bad_scale_shape;
  if (out_len != g.elems) return Status::bad_buffer;
  const detail::KernelTable* t = nullptr;
  if (Status st = active_table(&t); st != Status::ok) return st;
  const size_t width = out_type == OutType::f32 ? 4 : 2;
  for_each_matrix(q, g, 8, [&](const detail::Matrix& m, size_t k0, size_t e0) {
    t->dequantize(detail::DequantArgs{m, f, scale_inv + k0, out_type,
                                      static_cast<uint8_t*>(out) + e0 * width});
  });
  return Status::ok;
}

Status fp4_dequantize(const uint8_t* q, size_t n, size_t batch, size_t rows, size_t cols,
                      const float* scale, size_t srows, size_t scols, size_t scale_len,
                      size_t br, size_t bc, OutType out_type, void* out, size_t out_len) {
  if (out_type != OutType::f32 && out_type != OutType::bf16) return Status::bad_format;
  BlockGrid g;
  if (Status st = block_grid(batch, rows, cols, br, bc, &g); st != Status::ok) return st;
  if (cols % 2 != 0 || g.elems / 2 != n) return Status::bad_length;
  if (srows != g.nbr || scols != g.nbc || scale_len != g.blocks) return Status::bad_scale_shape;
  if (out_len != g.elems) return Status::bad_buffer;
  const detail::KernelTable* t = nullptr;
  if (Status st = active_table(&t); st != Status::ok) return st;
  const size_t width = out_type == OutType::f32 ? 4 : 2;
  for_each_matrix(q, g, 4, [&](const detail::Matrix& m, size_t k0, size_t e0) {
    t->fp4_dequantize(detail::DequantArgs{m, Fp8Format::e4m3fn, scale + k0, out_type,
                                          static_cast<uint8_t*>(out) + e0 * width});
  });
  return Status::ok;
}

namespace {

// The checks both compare entry points share; calls the kernel per matrix.
Status compare_checked(const uint8_t* q, size_t n, size_t batch, size_t rows, size_t cols,
                       bool fp4, Fp8Format f, const float* scale, size_t srows, size_t scols,
                       size_t scale_len, size_t br, size_t bc, const uint8_t* ref,
                       size_t ref_len, FloatFormat rf, float clip, const RoundBound& bound,
                       const CompareOut& out) {
  if (!fp4 && !valid(f)) return Status::bad_format;
  if (!valid(rf)) return Status::bad_format;
  BlockGrid g;
  if (Status st = block_grid(batch, rows, cols, br, bc, &g); st != Status::ok) return st;
  if (fp4 ? (cols % 2 != 0 || g.elems / 2 != n) : g.elems != n) return Status::bad_length;
  if (ref_len != g.elems) return Status::bad_length;
  if (srows != g.nbr || scols != g.nbc || scale_len != g.blocks) return Status::bad_scale_shape;
  if (out.len != g.blocks || !out.bound_sq || !out.ref_sq || !out.code_sq || !out.dot ||
      !out.err_sq ||
      !out.max_err || !out.clipped || !out.bad || !out.ref_bad) {
    return Status::bad_buffer;
  }
  const detail::KernelTable* t = nullptr;
  if (Status st = active_table(&t); st != Status::ok) return st;
  const size_t rwidth = rf == FloatFormat::f32 ? 4 : 2;
  for_each_matrix(q, g, fp4 ? 4 : 8, [&](const detail::Matrix& m, size_t k0, size_t e0) {
    CompareOut o = out;
    o.bound_sq += k0;
    o.ref_sq += k0;
    o.code_sq += k0;
    o.dot += k0;
    o.err_sq += k0;
    o.max_err += k0;
    o.clipped += k0;
    o.bad += k0;
    o.ref_bad += k0;
    o.len = m.nbr * m.nbc;
    t->compare(
        detail::CompareArgs{m, fp4, f, scale + k0, ref + e0 * rwidth, rf, clip, bound, o});
  });
  return Status::ok;
}

}  // namespace

Status fp8_compare(const uint8_t* q, size_t n, size_t batch, size_t rows, size_t cols,
                   Fp8Format f, const float* scale, size_t srows, size_t scols, size_t scale_len,
                   size_t br, size_t bc, const uint8_t* ref, size_t ref_len, FloatFormat rf,
                   float clip, const RoundBound& bound, const CompareOut& out) {
  return compare_checked(q, n, batch, rows, cols, false, f, scale, srows, scols, scale_len, br,
                         bc, ref, ref_len, rf, clip, bound, out);
}

Status fp4_compare(const uint8_t* q, size_t n, size_t batch, size_t rows, size_t cols,
                   const float* scale, size_t srows, size_t scols, size_t scale_len, size_t br,
                   size_t bc, const uint8_t* ref, size_t ref_len, FloatFormat rf, float clip,
                   const RoundBound& bound, const CompareOut& out) {
  return compare_checked(q, n, batch, rows, cols, true, Fp8Format::e4m3fn, scale, srows, scols,
                         scale_len, br, bc, ref, ref_len, rf, clip, bound, out);
}

float fp4_decode(uint8_t code) {
  static constexpr float kMag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float v = kMag[code & 7];
  return (code & 8) ? -v : v;
}

Status float_stats(const uint8_t* data, size_t nbytes, FloatFormat f, FloatStats* out) {
  if (!valid(f)) return Status::bad_format;
  const size_t width = f == FloatFormat::f32 ? 4 : 2;
  if (nbytes % width != 0) return Status::bad_length;
  const detail::KernelTable* t = nullptr;
  if (Status st = active_table(&t); st != Status::ok) return st;
  const size_t count = nbytes / width;
  const uint32_t sign = width == 4 ? 0x80000000u : 0x8000u;
  const uint32_t all = sign | (sign - 1);
  detail::FloatRaw r{0, 0, 0, 0, 0, 0, all, 0};
  if (count > 0) t->float_stats(data, count, f, &r);
  FloatStats s;
  s.count = count;
  s.nan = r.nan;
  s.pos_inf = r.pos_inf;
  s.neg_inf = r.neg_inf;
  s.zero = r.zero;
  s.subnormal = r.subnormal;
  s.finite = count - r.nan - r.pos_inf - r.neg_inf;
  if (s.finite == 0) {
    s.absmax = s.min = s.max = std::numeric_limits<double>::quiet_NaN();
  } else {
    s.absmax = bits_to_double(r.absmax_bits, f);
    s.min = bits_to_double(key_to_bits(r.min_key, sign, all), f);
    s.max = bits_to_double(key_to_bits(r.max_key, sign, all), f);
  }
  *out = s;
  return Status::ok;
}

Status e8m0_stats(const uint8_t* data, size_t n, E8m0Stats* out) {
  const detail::KernelTable* t = nullptr;
  if (Status st = active_table(&t); st != Status::ok) return st;
  E8m0Stats s;
  if (n > 0) t->e8m0_stats(data, n, &s);
  s.count = n;
  *out = s;
  return Status::ok;
}

Status read_probe(const uint8_t* data, size_t n, uint64_t* out) {
  const detail::KernelTable* t = nullptr;
  if (Status st = active_table(&t); st != Status::ok) return st;
  *out = n > 0 ? t->read_probe(data, n) : 0;
  return Status::ok;
}

}  // namespace ckptscan::kernels
