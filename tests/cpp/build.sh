#!/bin/sh
# Builds and runs the standalone kernel tests (x86-64). Usage: tests/cpp/build.sh [extra flags]
set -e
cd "$(dirname "$0")/../.."
O=${TMPDIR:-/tmp}/ckptscan-cpp-tests
mkdir -p "$O"
F="-std=c++17 -O2 -g -Wall -Wextra -Wpedantic -Werror -Icsrc -DCKPTSCAN_HAVE_X86=1 $*"
g++ $F -mavx2 -mbmi -mbmi2 -mpopcnt -mfma -mf16c -c csrc/kernels/avx2.cc -o "$O/avx2.o"
g++ $F -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vbmi -mavx2 -mbmi -mbmi2 -mpopcnt -mfma -mf16c \
  -c csrc/kernels/avx512.cc -o "$O/avx512.o"
g++ $F tests/cpp/test_kernels.cc csrc/kernels/dispatch.cc csrc/kernels/scalar.cc "$O/avx2.o" "$O/avx512.o" \
  -o "$O/test_kernels"
"$O/test_kernels"
# On an x86 host with g++-aarch64-linux-gnu and qemu-user, the NEON path too:
if command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null; then
  aarch64-linux-gnu-g++ -std=c++17 -O2 -Wall -Wextra -Wpedantic -Werror -Icsrc -DCKPTSCAN_HAVE_NEON=1 -static \
    tests/cpp/test_kernels.cc csrc/kernels/dispatch.cc csrc/kernels/scalar.cc csrc/kernels/neon.cc \
    -o "$O/test_kernels_aarch64"
  qemu-aarch64 "$O/test_kernels_aarch64"
fi
