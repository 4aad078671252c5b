#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz_kernels into fuzz/kernel_corpus/ (or argv[1]),
and the kernel regression inputs into tests/data/kernel_fuzz_regressions/.

Each input is the layout kernel_fuzz.h reads: a flags byte (format, output type,
length / count-width / scale-shape variants), the data offset, five sizes
(batch, rows, cols, block rows, block cols) and a payload of FP8 bytes. The
seeds cover the block geometries the kernels special-case (128 x 128, per
channel, packed 1 x 16/32/64 groups, batches whose rows the blocks do not tile,
blocks larger than the tensor) and the sizes whose arithmetic overflows.
Needs numpy only. Kept small: both directories are committed.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REGRESSIONS = HERE.parent / "tests" / "data" / "kernel_fuzz_regressions"
U64 = 2**64 - 1
SPECIAL = [0x00, 0x80, 0x7F, 0xFF, 0x7E, 0xFE, 0x7C, 0xFC, 0x7D, 0xFD, 0x01, 0x81, 0x07, 0x87]


def size(v: int) -> bytes:
    if v < 64:
        return bytes([v])
    if v < 16384:
        return bytes([0x40 | (v >> 8), v & 0xFF])
    return b"\xc0" + struct.pack("<Q", v)


def seed(fmt: int, shape: tuple[int, int, int], block: tuple[int, int], *, bf16: bool = False,
         offset: int = 0, length: int = 0, width: int = 0, bad_scale: bool = False,
         payload: int = 256, seed_: int = 0, fp4: bool = False) -> bytes:
    flags = fmt | (4 if bf16 else 0) | (length << 3) | (width << 5) | (0x80 if bad_scale else 0)
    offset |= 0x40 if fp4 else 0
    rng = np.random.default_rng(seed_)
    data = rng.integers(0, 256, payload, dtype=np.uint8)
    plant = rng.random(payload) < 0.3
    data[plant] = rng.choice(np.array(SPECIAL, np.uint8), int(plant.sum()))
    head = bytes([flags, offset]) + b"".join(size(v) for v in (*shape, *block))
    return head + data.tobytes()


SEEDS: dict[str, bytes] = {
    "block128_e4m3": seed(0, (1, 256, 384), (128, 128), payload=4096),
    "block128_partial_e5m2_bf16": seed(1, (1, 130, 257), (128, 128), bf16=True, offset=3),
    "per_channel_e4m3": seed(0, (1, 40, 700), (1, 700), offset=1),
    "group32_e4m3": seed(0, (1, 300, 64), (1, 32), payload=999),
    "group16_fnuz": seed(2, (1, 97, 48), (1, 16), offset=7),
    "group64_e5m2fnuz": seed(3, (1, 41, 192), (1, 64)),
    "group32_batch": seed(1, (3, 20, 96), (1, 32), bf16=True),
    "batch_rows_untiled": seed(0, (4, 7, 33), (3, 5), offset=63),
    "batch_tiled_experts": seed(0, (5, 256, 64), (128, 32), payload=777),
    "block_larger_than_tensor": seed(0, (1, 5, 9), (64, 1000)),
    "empty_rows": seed(0, (1, 0, 17), (2, 2)),
    "empty_batch": seed(0, (0, 4, 4), (2, 2)),
    "width_wide": seed(1, (1, 64, 64), (8, 8), width=1),
    "width_too_narrow": seed(0, (1, 64, 64), (32, 32), width=2),
    "length_short": seed(0, (1, 16, 16), (4, 4), length=2),
    "length_long": seed(2, (1, 16, 16), (4, 4), length=3),
    "scale_shape_wrong": seed(0, (1, 16, 16), (4, 4), bad_scale=True),
    "zero_block": seed(0, (1, 4, 4), (0, 4)),
    "rows_cols_overflow": seed(0, (1, 2**33, 2**33), (1, 1)),
    "batch_overflow": seed(0, (U64, 2, 1), (1, 1)),
    "blocks_past_ptrdiff": seed(0, (1, 1, 2**63), (1, 1)),
    "fp4_nvfp4_groups": seed(0, (1, 40, 96), (1, 16), fp4=True, payload=1999),
    "fp4_mxfp4_experts_bf16": seed(0, (3, 9, 64), (1, 32), fp4=True, bf16=True, offset=5),
    "fp4_row_tail": seed(0, (1, 7, 46), (1, 32), fp4=True),
    "fp4_odd_cols": seed(0, (1, 4, 7), (1, 16), fp4=True),
    "fp4_block_scalar_width": seed(0, (2, 11, 30), (3, 10), fp4=True),
    "fp4_huge_block": seed(0, (1, 6, 40), (U64, U64), fp4=True),
}

REGRESSION_INPUTS: dict[str, bytes] = {
    # (rows + br - 1) / br wrapped to 0: block_absmax wrote past its output and
    # dequantize read scale and wrote out of bounds (issue #10)
    "block_rows_2pow64m1": seed(0, (1, 8, 8), (U64, 1)),
    "block_cols_2pow64m1": seed(0, (1, 8, 8), (1, U64), bf16=True),
    "block_both_2pow64m1": seed(1, (1, 8, 8), (U64, U64)),
    "block_rows_2pow63": seed(0, (1, 8, 8), (2**63, 3)),
    "block_2pow64m1_batch": seed(0, (3, 5, 9), (U64 - 1, 2)),
    # a NaN code times a NaN scale: the NaN's sign depended on the operand order
    # the compiler chose, so the paths differed (found by the sanitizer driver)
    "dequant_nan_code_nan_scale": seed(0, (1, 43, 250), (6, 2), payload=600, seed_=5),
}


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "kernel_corpus"
    out.mkdir(parents=True, exist_ok=True)
    for name, data in SEEDS.items():
        (out / name).write_bytes(data)
    REGRESSIONS.mkdir(parents=True, exist_ok=True)
    for name, data in REGRESSION_INPUTS.items():
        (REGRESSIONS / name).write_bytes(data)
    print(f"wrote {len(SEEDS)} seeds to {out}, {len(REGRESSION_INPUTS)} inputs to {REGRESSIONS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
