// Runs the kernel fuzz checks (fuzz/kernel_fuzz.h) without libFuzzer, so the
// test suite can run them under g++ ASan/UBSan (tests/test_kernels_sanitized.py):
//
//   kernel_fuzz_driver [-random N SEED] PATH...
//
// Each PATH (a file, or a directory of files) is one input; -random adds N
// generated inputs: shapes drawn around the interesting sizes (vector widths,
// the packed (1, 16/32/64) blocks, partial blocks, blocks larger than the
// tensor, 2^64 - 1 and other overflowing values), half of them FP4, payloads of
// random bytes with the special FP8 codes planted. Aborts on the first violation; prints counts.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "kernel_fuzz.h"

namespace fs = std::filesystem;

namespace {

void put_size(std::vector<uint8_t>& v, uint64_t x) {
  if (x < 64) {
    v.push_back(static_cast<uint8_t>(x));
  } else if (x < 16384) {
    v.push_back(static_cast<uint8_t>(0x40 | (x >> 8)));
    v.push_back(static_cast<uint8_t>(x & 0xFF));
  } else {
    v.push_back(0xC0);
    for (int i = 0; i < 8; ++i) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
  }
}

std::vector<uint8_t> generate(std::mt19937_64& rng) {
  auto pick = [&](uint64_t n) { return rng() % n; };
  auto dim = [&]() -> uint64_t {
    switch (pick(10)) {
      case 0: return pick(4);
      case 1: case 2: return 1 + pick(40);
      case 3: { static const uint64_t v[] = {15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256};
                return v[pick(14)]; }
      case 4: return 1 + pick(700);
      case 5: return 1 + pick(3000);
      default: return 1 + pick(100);
    }
  };
  auto block = [&](uint64_t d) -> uint64_t {
    switch (pick(12)) {
      case 0: return ~uint64_t{0};
      case 1: return (uint64_t{1} << 63) + pick(3);
      case 2: return d + pick(3);           // larger than the tensor or equal
      case 3: return 1;
      case 4: case 5: { static const uint64_t v[] = {16, 32, 64, 128};
                        return v[pick(4)]; }
      case 6: return pick(50) == 0 ? 0 : 1 + pick(8);
      default: return 1 + pick(d + 1);
    }
  };
  std::vector<uint8_t> v;
  v.push_back(static_cast<uint8_t>(rng()));
  v.push_back(static_cast<uint8_t>(rng() & 0x7F));  // offset; bit 6: packed FP4
  const uint64_t batch = pick(4) == 0 ? 1 + pick(5) : 1;
  uint64_t rows = dim(), cols = dim();
  if (pick(3) == 0) {  // (1, bc) groups over whole rows: the packed path
    static const uint64_t g[] = {16, 32, 64};
    const uint64_t bc = g[pick(3)];
    cols = bc * (1 + pick(40));
    rows = 1 + pick(300);
    put_size(v, batch), put_size(v, rows), put_size(v, cols), put_size(v, 1), put_size(v, bc);
  } else if (pick(20) == 0) {  // products that overflow
    put_size(v, batch), put_size(v, uint64_t{1} << (32 + pick(8))), put_size(v, uint64_t{1} << (32 + pick(8)));
    put_size(v, block(4)), put_size(v, block(4));
  } else {
    put_size(v, batch), put_size(v, rows), put_size(v, cols), put_size(v, block(rows)), put_size(v, block(cols));
  }
  static const uint8_t special[] = {0x00, 0x80, 0x7F, 0xFF, 0x7E, 0xFE, 0x7C, 0xFC,
                                    0x7D, 0xFD, 0x01, 0x81, 0x07, 0x87, 0x08, 0x7B};
  const size_t plen = pick(5) == 0 ? 0 : 1 + pick(600);
  for (size_t i = 0; i < plen; ++i) {
    const uint64_t r = rng();
    v.push_back(r % 3 == 0 ? special[(r >> 8) % 16] : static_cast<uint8_t>(r >> 16));
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  size_t files = 0, generated = 0;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    if (arg == "-random" && a + 2 < argc) {
      const size_t n = std::strtoull(argv[a + 1], nullptr, 10);
      std::mt19937_64 rng(std::strtoull(argv[a + 2], nullptr, 10));
      for (size_t i = 0; i < n; ++i, ++generated) {
        const std::vector<uint8_t> in = generate(rng);
        ckptscan_fuzz::check_kernels(in.data(), in.size());
      }
      a += 2;
      continue;
    }
    std::vector<fs::path> paths;
    if (fs::is_directory(arg)) {
      for (const auto& e : fs::directory_iterator(arg)) {
        if (e.is_regular_file()) paths.push_back(e.path());
      }
    } else {
      paths.emplace_back(arg);
    }
    for (const auto& p : paths) {
      std::ifstream f(p, std::ios::binary);
      if (!f) {
        std::fprintf(stderr, "cannot read %s\n", p.c_str());
        return 2;
      }
      const std::vector<uint8_t> in((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      ckptscan_fuzz::check_kernels(in.data(), in.size());
      ++files;
    }
  }
  std::printf("kernel fuzz checks passed: %zu files, %zu generated inputs\n", files, generated);
  return 0;
}
