#!/usr/bin/env bash
# Builds the libFuzzer target fuzz/fuzz_header (ASan + UBSan + libFuzzer).
# Usage: fuzz/build.sh [output-binary]    (CXX=clang++-14 to pick a compiler)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="${1:-$here/fuzz_header}"
cxx="${CXX:-}"
if [[ -z "$cxx" ]]; then
  for c in clang++ clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    if command -v "$c" >/dev/null 2>&1; then cxx="$c"; break; fi
  done
fi
[[ -n "$cxx" ]] || { echo "no clang++ found (libFuzzer needs clang)" >&2; exit 1; }
"$cxx" -std=c++17 -O1 -g -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -Wall -Wextra \
  -I "$root/csrc" -I "$here" \
  "$here/fuzz_header.cc" "$root/csrc/json_scan.cc" "$root/csrc/header.cc" "$root/csrc/index_json.cc" \
  "$root/csrc/name_match.cc" "$root/csrc/name_template.cc" "$root/csrc/column.cc" \
  -o "$out"
echo "built $out with $cxx"
