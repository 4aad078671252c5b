// safetensors dtypes: the exact, case-sensitive strings of the format and their widths.
#pragma once
#include <cstdint>
#include <string_view>

namespace ckptscan {

enum class Dtype : uint8_t {
  BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ,
  F8_E5M2FNUZ, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64,
};
inline constexpr int kDtypeCount = 22;

struct DtypeInfo {
  std::string_view name;
  uint32_t bits;
};

// Indexed by Dtype; the order is the enum's.
inline constexpr DtypeInfo kDtypes[kDtypeCount] = {
    {"BOOL", 8},        {"F4", 4},     {"F6_E2M3", 6},     {"F6_E3M2", 6},
    {"U8", 8},          {"I8", 8},     {"F8_E5M2", 8},     {"F8_E4M3", 8},
    {"F8_E8M0", 8},     {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"I16", 16},
    {"U16", 16},        {"F16", 16},   {"BF16", 16},       {"I32", 32},
    {"U32", 32},        {"F32", 32},   {"C64", 64},        {"F64", 64},
    {"I64", 64},        {"U64", 64},
};

inline const DtypeInfo& dtype_info(Dtype d) { return kDtypes[static_cast<int>(d)]; }

// Returns false when `s` is not one of the 22 strings.
inline bool parse_dtype(std::string_view s, Dtype* out) {
  for (int i = 0; i < kDtypeCount; ++i) {
    if (kDtypes[i].name == s) {
      *out = static_cast<Dtype>(i);
      return true;
    }
  }
  return false;
}

}  // namespace ckptscan
