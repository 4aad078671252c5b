// libFuzzer target over the kernels' entry points: shapes, blocks, lengths,
// offsets, formats, every SIMD implementation this CPU runs against scalar.
// The checks and the input layout are in kernel_fuzz.h. Build: fuzz/build_kernels.sh.
#include <cstddef>
#include <cstdint>

#include "kernel_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ckptscan_fuzz::check_kernels(data, size);
  return 0;
}
