#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz_header into fuzz/corpus/ (or argv[1]).

Valid files come from the real ``safetensors`` library (``pip install
safetensors numpy``); dtypes numpy has no type for (BF16, FP8, F4, F6) are
written by hand the way safetensors writes them. A few hand-made invalid
headers follow. Every file is a whole safetensors file with its (tiny) data, so
the fuzzer's whole-input parse sees a complete file. Kept small: the corpus is
committed (a few KB).
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save

HERE = Path(__file__).resolve().parent


def raw(header: bytes | str, data: bytes = b"", n: int | None = None) -> bytes:
    """A file from header bytes (length prefix computed unless ``n`` is given)."""
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h) if n is None else n) + h + data


def hand(
    tensors: dict[str, tuple[str, list[int], int]], metadata: dict[str, str] | None = None
) -> bytes:
    """A valid file written like safetensors does: tensors laid out in the given
    order, compact JSON, the header padded with spaces to 8-byte alignment."""
    header: dict[str, object] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    return raw(text, bytes(range(256)) * (offset // 256) + bytes(range(offset % 256)))


def valid_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    u8 = np.zeros(1, np.uint8)
    dtypes = [np.bool_, np.uint8, np.int8, np.int16, np.uint16, np.float16, np.int32, np.uint32,
              np.float32, np.float64, np.int64, np.uint64, np.complex64]
    layers = {
        f"model.layers.{i}.mlp.experts.{e}.w{k}.weight": np.zeros((2, 2), dtype=np.float16)
        for i in range(2)
        for e in (0, 11)
        for k in (1, 3)
    }
    layers["model.embed_tokens.weight"] = np.zeros((3, 2), dtype=np.float32)
    layers["lm_head.weight"] = np.zeros(2, np.float32)
    return {
        "valid_empty": save({}),
        "valid_f32_scalar": save({"x": np.array(1.5, dtype=np.float32)}),
        "valid_zero_size": save({"empty": np.zeros((0, 3), dtype=np.float16),
                                 "also_empty": np.zeros((4, 0), dtype=np.int32),
                                 "one": np.ones(1, dtype=np.uint8)}),
        # One key: safetensors writes several in hash order, which changes from run to run.
        "valid_metadata": save({"a": np.arange(4, dtype=np.int16)},
                               metadata={"note": "caf\u00e9 \u2603 \U0001f600"}),
        "valid_metadata_keys": hand({"a": ("I16", [4], 8)},
                                    metadata={"format": "pt", "k\u00e9y": 'v "q" \\ \n', "": ""}),
        "valid_all_numpy_dtypes": save(
            {f"t.{np.dtype(dt).name}": (rng.standard_normal(3) * 10).astype(dt) for dt in dtypes}
        ),
        "valid_layers": save(layers),
        "valid_unicode_names": save({"\u00e9.0": u8, "\u2603.01.x": u8, "\U0001f600": u8,
                                     'q"uo\\te\n': u8, "": u8}),
        "valid_fp8_blockscale": hand({
            "l.0.w.weight": ("F8_E4M3", [3, 5], 15),
            "l.0.w.weight_scale_inv": ("F32", [1, 1], 4),
            "l.1.w.weight": ("F8_E5M2", [2, 2], 4),
            "l.1.w.weight_scale_inv": ("F8_E8M0", [1, 1], 1),
            "fnuz.a": ("F8_E4M3FNUZ", [2], 2),
            "fnuz.b": ("F8_E5M2FNUZ", [2], 2),
        }),
        "valid_bf16_f4_f6": hand(
            {"b": ("BF16", [2, 3], 12), "f4": ("F4", [2, 3], 3), "f6a": ("F6_E2M3", [4], 3),
             "f6b": ("F6_E3M2", [2, 4], 6), "z": ("F4", [0], 0)},
            metadata={},
        ),
    }


def one(dtype: str = "U8", shape: str = "[1]", offsets: str = "[0,1]", extra: str = "") -> str:
    """A header with one tensor "a", from raw JSON fragments."""
    entry = f'"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}{extra}'
    return '{"a":{' + entry + "}}"


def invalid_files() -> dict[str, bytes]:
    e = '{"dtype":"U8","shape":[1],"data_offsets":[0,1]}'
    return {
        "bad_truncated": raw(one()),
        "bad_trailing": raw(one(), b"x\0\0\0"),
        "bad_lfs_pointer": b"version https://git-lfs.github.com/spec/v1\noid sha256:"
        + b"0" * 64
        + b"\nsize 1234\n",
        "bad_nul_padding": raw(b"{}\0\0\0\0\0\0"),
        "bad_duplicate_name": raw('{"a":' + e + ',"a":' + e.replace("[0,1]", "[1,2]") + "}", b"xy"),
        "bad_lone_surrogate": raw('{"\\ud800":' + e + "}", b"x"),
        "bad_big_number": raw(one(shape="[18446744073709551616]"), b"x"),
        "bad_deep": raw(one(extra=',"x":' + "[" * 200 + "]" * 200), b"x"),
        "bad_utf8": raw(b'{"\xc3\x28":' + e.encode() + b"}", b"x"),
        "bad_overlap": raw('{"a":' + e.replace("[1]", "[2]").replace("[0,1]", "[0,2]")
                           + ',"b":' + e.replace("[0,1]", "[1,2]") + "}", b"xy"),
        "bad_gap": raw(one(offsets="[1,2]"), b"xy"),
        "bad_size_mismatch": raw(one("F32", "[2]", "[0,4]"), b"wxyz"),
        "bad_f4_odd": raw(one("F4", "[3]", "[0,1]"), b"x"),
        "bad_dtype_e4m3fn": raw(one("F8_E4M3FN"), b"x"),
        "bad_header_too_large": raw(b"{}", n=100_000_001),
        "bad_header_length": raw(b"{}", n=3),
        "bad_too_small": b"\x02\0\0\0",
        "bad_size_overflow": raw(one("U64", "[4294967296,4294967296]", "[0,0]")),
    }


def limit_files() -> dict[str, bytes]:
    """The bounds on hostile input: names at and past the 4,096-byte limit (in
    the writers' layout and escaped), and faults repeated past the 16 problems
    of a code that are kept (the rest are counted)."""
    e = '{"dtype":"U8","shape":[1],"data_offsets":[%d,%d]}'
    at_limit = "1." * 2047 + "w."  # 4,096 bytes, 2,047 integers
    past = "1." * 2048 + "w"  # 4,097 bytes
    dup_meta = ",".join(['"k":"v"'] * 20)
    dup_names = ",".join(f'"a":{e % (i, i + 1)}' for i in range(20))
    overlaps = ",".join(f'"t{i}":{e % (0, 1)}' for i in range(20))
    # An index.json (the fuzz target reads the input past its first 8 bytes as
    # one): a name past the limit, then 20 values that are not file names.
    wm = ",".join([f'"{past}":"m.safetensors"', '"ok":"m.safetensors"']
                  + [f'"b{i}":{i}' for i in range(20)])
    return {
        "valid_name_at_limit": raw("{" + f'"{at_limit}":{e % (0, 1)}' + "}", b"x"),
        "bad_name_too_long": raw("{" + f'"{past}":{e % (0, 1)},"b":{e % (1, 2)}' + "}", b"xy"),
        "bad_name_too_long_escaped": raw('{"' + "\\u00e9" * 2048 + 'a":' + e % (0, 1) + "}", b"x"),
        "bad_repeats_past_the_cap": raw('{"__metadata__":{' + dup_meta + "}," + dup_names + "}",
                                        b"x" * 20),
        "bad_overlaps_past_the_cap": raw("{" + overlaps + "}", b"x"),
        "index_past_the_limits": b"\0" * 8 + ('{"weight_map":{' + wm + "}}").encode(),
    }


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "corpus"
    out.mkdir(parents=True, exist_ok=True)
    files = valid_files() | invalid_files() | limit_files()
    for name, data in files.items():
        (out / name).write_bytes(data)
    total = sum(len(d) for d in files.values())
    print(f"wrote {len(files)} files, {total} bytes, to {out}")


if __name__ == "__main__":
    main()
