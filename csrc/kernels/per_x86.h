// x86 kernel code shared by avx2.cc and avx512.cc, written once and compiled
// with each file's target flags: included, as per_isa.h is, inside the file's
// unnamed namespace (internal linkage), after <immintrin.h> and per_isa.h. No
// include guard on purpose; no vector constants at namespace scope (a constexpr
// integer is fine).

// Software prefetch for streaming kernels, at two distances: into L1 shortly
// before use and into L2 four times further ahead, so that enough lines are in
// flight to reach the memory bandwidth. Measured on one Sapphire Rapids thread
// (AVX-512 FP8 statistics over 1 GiB): no prefetch 10 GB/s, L1 only 10-13 GB/s
// (65-86% of the read probe), both 13.5 GB/s (93%).
constexpr size_t kPrefetch = 2048;
inline void prefetch_stream(const uint8_t* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetch), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(p + 4 * kPrefetch), _MM_HINT_T1);
}

// The 16 per-block results of a block-statistics step (per_isa.h's BlockStats:
// V16, zero16, max16, store16, sum16, hmax16) in one XMM register, where the
// byte trees of both wide paths end.
struct Xmm16Results {
  using V16 = __m128i;
  static inline __m128i zero16() { return _mm_setzero_si128(); }
  static inline __m128i max16(__m128i a, __m128i b) { return _mm_max_epu8(a, b); }
  static inline void store16(uint8_t* p, __m128i x) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), x);
  }
  static inline uint64_t sum16(__m128i x) {
    const __m128i s = _mm_sad_epu8(x, _mm_setzero_si128());
    return static_cast<uint64_t>(_mm_cvtsi128_si64(s)) +
           static_cast<uint64_t>(_mm_extract_epi64(s, 1));
  }
  static inline uint8_t hmax16(__m128i x) {
    x = _mm_max_epu8(x, _mm_srli_si128(x, 8));
    x = _mm_max_epu8(x, _mm_srli_si128(x, 4));
    x = _mm_max_epu8(x, _mm_srli_si128(x, 2));
    x = _mm_max_epu8(x, _mm_srli_si128(x, 1));
    return static_cast<uint8_t>(_mm_cvtsi128_si32(x) & 0xFF);
  }
};
