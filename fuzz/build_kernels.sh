#!/usr/bin/env bash
# Builds the libFuzzer target fuzz/fuzz_kernels (ASan + UBSan + libFuzzer) with
# every x86 kernel implementation, each file with its own ISA flags as in CMakeLists.txt.
# Usage: fuzz/build_kernels.sh [output-binary]    (CXX=clang++-14 to pick a compiler)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="${1:-$here/fuzz_kernels}"
cxx="${CXX:-}"
if [[ -z "$cxx" ]]; then
  for c in clang++ clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    if command -v "$c" >/dev/null 2>&1; then cxx="$c"; break; fi
  done
fi
[[ -n "$cxx" ]] || { echo "no clang++ found (libFuzzer needs clang)" >&2; exit 1; }
obj="$(mktemp -d)"
trap 'rm -rf "$obj"' EXIT
# fuzzer-no-link: the kernels get libFuzzer's coverage instrumentation too
flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link
       -fno-sanitize-recover=all -Wall -Wextra -DCKPTSCAN_HAVE_X86=1 -I "$root/csrc" -I "$here")
k="$root/csrc/kernels"
"$cxx" "${flags[@]}" -c "$k/dispatch.cc" -o "$obj/dispatch.o"
"$cxx" "${flags[@]}" -c "$k/scalar.cc" -o "$obj/scalar.o"
"$cxx" "${flags[@]}" -mavx2 -mbmi -mbmi2 -mpopcnt -mfma -mf16c -c "$k/avx2.cc" -o "$obj/avx2.o"
"$cxx" "${flags[@]}" -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vbmi -mavx2 -mbmi -mbmi2 \
  -mpopcnt -mfma -mf16c -c "$k/avx512.cc" -o "$obj/avx512.o"
"$cxx" "${flags[@]}" -fsanitize=fuzzer -c "$here/fuzz_kernels.cc" -o "$obj/fuzz_kernels.o"
"$cxx" "${flags[@]}" -fsanitize=fuzzer "$obj"/*.o -o "$out"
echo "built $out with $cxx"
