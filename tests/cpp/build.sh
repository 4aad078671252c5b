#!/bin/sh
# Builds and runs the standalone kernel tests (x86-64): the differential test
# (test_kernels.cc) and the kernel fuzz checks (kernel_fuzz_driver.cc) over the
# seed corpus, the regression inputs and KERNEL_FUZZ_RANDOM generated inputs.
# Usage: tests/cpp/build.sh [extra flags]    (e.g. -fsanitize=address,undefined)
set -e
cd "$(dirname "$0")/../.."
O=${TMPDIR:-/tmp}/ckptscan-cpp-tests
N=${KERNEL_FUZZ_RANDOM:-4000}
mkdir -p "$O"
F="-std=c++17 -O2 -g -Wall -Wextra -Wpedantic -Werror -Icsrc -Ifuzz -DCKPTSCAN_HAVE_X86=1 $*"
# two compilers at a time (objects first, then the two programs)
g++ $F -c csrc/kernels/dispatch.cc -o "$O/dispatch.o" & p1=$!
g++ $F -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vbmi -mavx2 -mbmi -mbmi2 -mpopcnt -mfma -mf16c \
  -c csrc/kernels/avx512.cc -o "$O/avx512.o"
wait $p1
g++ $F -c csrc/kernels/scalar.cc -o "$O/scalar.o" & p1=$!
g++ $F -mavx2 -mbmi -mbmi2 -mpopcnt -mfma -mf16c -c csrc/kernels/avx2.cc -o "$O/avx2.o"
wait $p1
K="$O/dispatch.o $O/scalar.o $O/avx2.o $O/avx512.o"
g++ $F tests/cpp/test_kernels.cc $K -o "$O/test_kernels" & p1=$!
g++ $F tests/cpp/kernel_fuzz_driver.cc $K -o "$O/kernel_fuzz_driver"
wait $p1
"$O/test_kernels"
"$O/kernel_fuzz_driver" fuzz/kernel_corpus tests/data/kernel_fuzz_regressions -random "$N" 1
# On an x86 host with g++-aarch64-linux-gnu and qemu-user, the NEON path too:
if command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null; then
  A="-std=c++17 -O2 -Wall -Wextra -Wpedantic -Werror -Icsrc -Ifuzz -DCKPTSCAN_HAVE_NEON=1 -static"
  aarch64-linux-gnu-g++ $A -c csrc/kernels/dispatch.cc -o "$O/a64_dispatch.o" & p1=$!
  aarch64-linux-gnu-g++ $A -c csrc/kernels/neon.cc -o "$O/a64_neon.o"
  wait $p1
  aarch64-linux-gnu-g++ $A -c csrc/kernels/scalar.cc -o "$O/a64_scalar.o" & p1=$!
  aarch64-linux-gnu-g++ $A -c tests/cpp/test_kernels.cc -o "$O/a64_test.o"
  wait $p1
  S="$O/a64_dispatch.o $O/a64_scalar.o $O/a64_neon.o"
  aarch64-linux-gnu-g++ $A "$O/a64_test.o" $S -o "$O/test_kernels_aarch64" & p1=$!
  aarch64-linux-gnu-g++ $A tests/cpp/kernel_fuzz_driver.cc $S -o "$O/kernel_fuzz_driver_aarch64"
  wait $p1
  qemu-aarch64 "$O/test_kernels_aarch64"
  qemu-aarch64 "$O/kernel_fuzz_driver_aarch64" fuzz/kernel_corpus tests/data/kernel_fuzz_regressions \
    -random "$N" 1
fi
