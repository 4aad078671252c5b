"""synth: FP8/BF16 codecs against ml_dtypes, files against the real safetensors
library, planted defects where the record says they are."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import safetensors
import safetensors.numpy
from ckptscan.synth import (
    PLANTS,
    SENTINEL_SCALE,
    bf16_from_f32,
    decode_e4m3fn,
    dequantize_blockwise,
    encode_e4m3fn,
    f32_from_bf16,
    quantize_blockwise,
    write_safetensors,
    write_small_minimax,
)

F8 = ml_dtypes.float8_e4m3fn
BF = ml_dtypes.bfloat16
ALL_CODES = np.arange(256, dtype=np.uint8)


def ref_codes(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/overflow casts warn
        return np.asarray(x, np.float32).astype(F8).view(np.uint8)


def e4m3_test_values(rng: np.random.Generator) -> np.ndarray:
    vals = decode_e4m3fn(ALL_CODES).astype(np.float64)
    finite = np.unique(vals[np.isfinite(vals)])  # sorted
    mids = (finite[:-1] + finite[1:]) / 2  # exact ties (representable in f32)
    parts = [
        finite, mids,
        np.nextafter(mids.astype(np.float32), np.float32(np.inf)),
        np.nextafter(mids.astype(np.float32), np.float32(-np.inf)),
        rng.standard_normal(20000) * 10.0 ** rng.uniform(-4, 3, 20000),  # wide range
        rng.uniform(-2.0**-6, 2.0**-6, 5000),  # subnormal range
        rng.uniform(-2.0**-10, 2.0**-10, 2000),  # below half the smallest subnormal
        [448, 449, 463.99, 464, 464.01, 465, 479, 480, 500, 1e6, 3.4e38, 2.0**-10,
         2.0**-10 * 3, 1e-30, 1e-45, 0.0, -0.0],
    ]
    x = np.concatenate([np.asarray(p, np.float64).ravel() for p in parts]).astype(np.float32)
    return np.concatenate([x, -x])


def test_decode_all_codes_matches_ml_dtypes() -> None:
    mine = decode_e4m3fn(ALL_CODES)
    ref = ALL_CODES.view(F8).astype(np.float32)
    np.testing.assert_array_equal(mine, ref)  # NaN positions compare equal
    assert set(np.flatnonzero(np.isnan(mine))) == {0x7F, 0xFF}
    assert mine[0x7E] == 448 and mine[0x01] == 2.0**-9 and mine[0x08] == 2.0**-6
    assert mine[0x80] == 0 and np.signbit(mine[0x80])


def test_encode_roundtrips_every_code() -> None:
    ok = (ALL_CODES & 0x7F) != 0x7F
    assert np.array_equal(encode_e4m3fn(decode_e4m3fn(ALL_CODES[ok])), ALL_CODES[ok])


def test_encode_matches_ml_dtypes_cast() -> None:
    x = e4m3_test_values(np.random.default_rng(1))
    x = np.concatenate([x, np.float32([np.inf, -np.inf, np.nan, -np.nan])])
    # saturate=False is a plain cast: identical codes everywhere
    np.testing.assert_array_equal(encode_e4m3fn(x, saturate=False), ref_codes(x))
    # saturate=True: identical except overflow, which clamps to +/-448
    sat = encode_e4m3fn(x)
    ref = ref_codes(x)
    over = ~np.isnan(x) & ((ref & 0x7F) == 0x7F)
    assert over.sum() > 10
    np.testing.assert_array_equal(sat[~over], ref[~over])
    np.testing.assert_array_equal(sat[over], np.where(np.signbit(x[over]), 0xFE, 0x7E))


def test_encode_shape_and_ties() -> None:
    x = np.float32([[1.0625, 1.1875], [2.0**-10, 3 * 2.0**-10]])  # ties between codes
    got = encode_e4m3fn(x)
    assert got.shape == (2, 2)
    np.testing.assert_array_equal(got, ref_codes(x))
    # 1.0625 is halfway 1.0 (0x38, even) / 1.125 (0x39): to even
    assert got[0, 0] == 0x38 and got[0, 1] == 0x3A
    assert got[1, 0] == 0x00 and got[1, 1] == 0x02


def test_bf16_matches_ml_dtypes() -> None:
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    ties = (rng.integers(0, 2**16, 5000, dtype=np.uint32) << 16) | np.uint32(0x8000)
    special = np.float32([0, -0.0, 1, np.inf, -np.inf, np.nan, 3.4028235e38, 1e-45,
                          1.00390625, 1.01171875]).view(np.uint32)
    x = np.concatenate([bits, ties, special]).view(np.float32)
    mine = bf16_from_f32(x)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = x.astype(BF).view(np.uint16)
    nan = np.isnan(x)
    np.testing.assert_array_equal(mine[~nan], ref[~nan])
    assert np.isnan(f32_from_bf16(mine[nan])).all()
    np.testing.assert_array_equal(f32_from_bf16(mine), mine.view(BF).astype(np.float32))


def test_quantize_blockwise_against_reference() -> None:
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((300, 200)) * 0.02).astype(np.float32)
    w[128:256, 0:128] = 0  # an all-zero block
    codes, s = quantize_blockwise(w)
    assert codes.dtype == np.uint8 and codes.shape == w.shape
    assert s.dtype == np.float32 and s.shape == (3, 2)
    # reference: absmax per block with numpy loops, cast with ml_dtypes
    for i in range(3):
        for j in range(2):
            blk = w[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
            am = np.abs(blk).max()
            want = np.float32(am) / np.float32(448) if am else np.float32(1.0)
            assert s[i, j] == want
            np.testing.assert_array_equal(codes[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128],
                                          ref_codes(blk / want))
            if am:
                assert (codes[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128] & 0x7F).max() == 0x7E
    assert not codes[128:256, 0:128].any() and s[1, 0] == 1.0
    # reconstruction within FP8 precision: 2^-4 relative (3-bit mantissa, RNE)
    # or half a subnormal step in absolute terms
    deq = dequantize_blockwise(codes, s)
    full = np.repeat(np.repeat(s, 128, 0), 128, 1)[:300, :200]
    err = np.abs(deq - w)
    assert (err <= np.maximum(np.abs(w) * 2.0**-4, full * 2.0**-10) * (1 + 1e-6)).all()
    assert np.abs(deq - w).mean() / np.abs(w).mean() < 0.03


def test_write_safetensors_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    f32 = rng.standard_normal((5, 3)).astype(np.float32)
    bf = bf16_from_f32(rng.standard_normal(17).astype(np.float32))
    f8 = encode_e4m3fn(rng.standard_normal((4, 6)).astype(np.float32))
    i64 = np.arange(-3, 4, dtype=np.int64)
    tensors = {
        "w.scale": ("F32", f32.shape, f32),
        "n.weight": ("BF16", bf.shape, bf.tobytes()),
        "q.weight": ("F8_E4M3", f8.shape, bytearray(f8.tobytes())),
        "ids": ("I64", i64.shape, i64),
        "scalar": ("F32", (), np.float32(2.5).tobytes()),
        "empty": ("BF16", (0, 4), b""),
    }
    p = write_safetensors(tmp_path / "t.safetensors", tensors, {"format": "pt"})
    raw = p.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0
    hdr = json.loads(raw[8:8 + n])
    assert list(hdr)[1:] == list(tensors)  # insertion order
    got = dict(safetensors.deserialize(raw))
    for name, (d, s, b) in tensors.items():
        assert got[name]["dtype"] == d and got[name]["shape"] == list(s)
        assert bytes(got[name]["data"]) == bytes(memoryview(b).cast("B") if not isinstance(
            b, np.ndarray) else b.tobytes())
    with safetensors.safe_open(str(p), "numpy") as f:
        assert f.metadata() == {"format": "pt"}
        np.testing.assert_array_equal(f.get_tensor("w.scale"), f32)
        np.testing.assert_array_equal(f.get_tensor("ids"), i64)
    with pytest.raises(ValueError, match="needs"):
        write_safetensors(tmp_path / "x.safetensors", {"a": ("F32", (3,), b"\0" * 8)})


def test_write_safetensors_writer_order_equals_library(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    arrs = {
        "b.weight": rng.standard_normal((4, 4)).astype(np.float32),
        "a.weight": rng.standard_normal((3,)).astype(np.float32).astype(BF),
        "c.weight": rng.standard_normal((2, 8)).astype(np.float32).astype(F8),
        "a.bias": np.arange(3, dtype=np.int64),
    }
    ref = tmp_path / "ref.safetensors"
    safetensors.numpy.save_file(arrs, str(ref), metadata={"format": "pt"})
    dt = {np.dtype(np.float32): "F32", np.dtype(BF): "BF16", np.dtype(F8): "F8_E4M3",
          np.dtype(np.int64): "I64"}
    mine = write_safetensors(
        tmp_path / "mine.safetensors",
        {k: (dt[v.dtype], v.shape, v) for k, v in arrs.items()},  # ml_dtypes arrays as-is
        {"format": "pt"}, order="writer")
    assert mine.read_bytes() == ref.read_bytes()


# ------------------------------------------------------------------ small MiniMax


def load_dir(d: Path) -> dict[str, tuple[str, list[int], bytes, str]]:
    out = {}
    for p in sorted(d.glob("*.safetensors")):
        for name, t in safetensors.deserialize(p.read_bytes()):
            assert name not in out
            out[name] = (t["dtype"], t["shape"], bytes(t["data"]), p.name)
    return out


def as_array(t: tuple[str, list[int], bytes, str]) -> np.ndarray:
    dt = {"F8_E4M3": np.uint8, "F32": np.float32, "BF16": np.uint16}[t[0]]
    return np.frombuffer(t[2], dt).reshape(t[1])


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d, planted = write_small_minimax(tmp_path_factory.mktemp("clean"), seed=7)
    assert planted == {}
    return d


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return write_small_minimax(tmp_path_factory.mktemp("dirty"), seed=7, plant="all")


def test_small_minimax_clean(clean: Path) -> None:
    t = load_dir(clean)
    names = sorted(p.name for p in clean.glob("*.safetensors"))
    assert names == ["model-00000-of-00002.safetensors", "model-00001-of-00002.safetensors"]
    idx = json.loads((clean / "model.safetensors.index.json").read_text())
    assert idx["weight_map"] == {k: v[3] for k, v in t.items()}
    assert idx["metadata"]["total_size"] == sum(len(v[2]) for v in t.values())
    cfg = json.loads((clean / "config.json").read_text())
    assert cfg["model_type"] == "minimax_m2"
    assert cfg["quantization_config"]["weight_block_size"] == [128, 128]
    assert "gate" in cfg["quantization_config"]["modules_to_not_convert"]
    # 2 layers x (4 attn pairs + 4 norms + gate + bias + 4 experts x 3 pairs) + 3
    assert len(t) == 2 * (8 + 4 + 2 + 24) + 3
    w1 = "model.layers.0.block_sparse_moe.experts.0.w1.weight"
    assert t[w1][1] == [192, 320] and t[w1 + "_scale_inv"][1] == [2, 3]
    assert t["model.layers.0.block_sparse_moe.gate.weight"][0] == "F32"
    assert t["model.embed_tokens.weight"][0] == "BF16"
    for name, v in t.items():
        if v[0] == "F8_E4M3":
            codes, s = as_array(v), as_array(t[name + "_scale_inv"])
            assert list(s.shape) == [-(-codes.shape[0] // 128), -(-codes.shape[1] // 128)]
            assert (s > 0).all() and np.isfinite(s).all()
            assert not ((codes & 0x7F) == 0x7F).any()
            deq = dequantize_blockwise(codes, s)
            assert 0.015 < deq.std() < 0.025  # N(0, 0.02)
            for i in range(s.shape[0]):  # absmax scaling: every block reaches 448
                for j in range(s.shape[1]):
                    blk = codes[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
                    assert (blk & 0x7F).max() == 0x7E
        elif v[0] == "BF16":
            assert not np.isnan(f32_from_bf16(as_array(v))).any()
    # deterministic
    d2, _ = write_small_minimax(clean.parent / "again", seed=7)
    for p in clean.iterdir():
        assert (d2 / p.name).read_bytes() == p.read_bytes()


def test_small_minimax_plants(clean: Path, dirty: tuple[Path, dict]) -> None:
    d, rec = dirty
    assert set(rec) == set(PLANTS)
    c, t = load_dir(clean), load_dir(d)
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    assert idx["weight_map"] == {k: v[3] for k, v in t.items()}
    for r in rec.values():
        assert r["file"] == (t[r["tensor"]][3] if r["tensor"] in t else None)
    # only the recorded tensors differ from the clean build
    touched = {r["tensor"] for r in rec.values()}
    touched |= {rec["stale_scale"]["detail"]["weight"],
                rec["all_zero_block"]["tensor"] + "_scale_inv"}
    differ = {k for k in c if k not in t or t[k][:3] != c[k][:3]}
    assert differ <= touched and set(t) <= set(c)

    r = rec["nan_code"]
    assert as_array(t[r["tensor"]])[tuple(r["detail"]["index"])] == 0x7F
    r = rec["sentinel_scale"]
    assert as_array(t[r["tensor"]])[tuple(r["detail"]["block"])] == SENTINEL_SCALE
    r = rec["zero_scale"]
    assert as_array(t[r["tensor"]])[tuple(r["detail"]["block"])] == 0
    r = rec["bf16_nan"]
    assert np.isnan(f32_from_bf16(as_array(t[r["tensor"]]))[3])
    r = rec["dropped_scale"]
    assert r["tensor"] not in t and r["tensor"] not in idx["weight_map"]
    assert r["detail"]["weight"] in t and r["file"] is None
    r = rec["scale_shape"]
    assert t[r["tensor"]][1] == r["detail"]["shape"] == [2, 1]
    assert r["detail"]["expected"] == [3, 2]
    r = rec["stale_scale"]
    s_new, s_old = as_array(t[r["tensor"]]), as_array(c[r["tensor"]])
    assert s_new[0, 1] == s_old[0, 1] * 64
    blk = as_array(t[r["detail"]["weight"]])[0:128, 128:256]
    assert (blk & 0x7F).max() < 0x50  # ~7.0, far below 448
    old_blk = as_array(c[r["detail"]["weight"]])[0:128, 128:256]
    np.testing.assert_allclose(decode_e4m3fn(blk) * s_new[0, 1],
                               decode_e4m3fn(old_blk) * s_old[0, 1], atol=s_new[0, 1] / 8)
    r = rec["all_zero_block"]
    codes = as_array(t[r["tensor"]])
    assert not codes[128:256, 0:128].any() and codes[0:128, 0:128].any()


def test_small_minimax_rejects_unknown_plant(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown"):
        write_small_minimax(tmp_path, plant="nope")
