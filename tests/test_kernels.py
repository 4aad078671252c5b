"""Every kernel on every SIMD path this CPU runs equals the scalar reference, and
the scalar reference equals an independent numpy / ml_dtypes computation:
lengths 0..300, offsets 0..63, planted special codes, counter-overflow lengths,
odd block shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ckptscan import _core
from ckptscan import kernels as K

ml_dtypes = pytest.importorskip("ml_dtypes")

FP8 = {
    "F8_E4M3": ml_dtypes.float8_e4m3fn,
    "F8_E5M2": ml_dtypes.float8_e5m2,
    "F8_E4M3FNUZ": ml_dtypes.float8_e4m3fnuz,
    "F8_E5M2FNUZ": ml_dtypes.float8_e5m2fnuz,
}
PATHS = K.available_simd()
SIMD_PATHS = [p for p in PATHS if p != "scalar"]
SPECIAL = np.array([0x00, 0x80, 0x7F, 0xFF, 0x7E, 0xFE, 0x7C, 0xFC, 0x7D, 0xFD, 0x01, 0x81,
                    0x07, 0x87, 0x08, 0x7B, 0xFB], np.uint8)


def on(path: str, fn, *args, **kw):  # type: ignore[no-untyped-def]
    with K.using_simd(path):
        return fn(*args, **kw)


def planted(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, n, dtype=np.uint8)
    k = rng.random(n) < 0.3
    a[k] = rng.choice(SPECIAL, int(k.sum()))
    return a


# ---- independent truth (numpy + ml_dtypes, no ckptscan) ------------------------------
def fp8_code_table(fmt: str) -> dict[str, np.ndarray]:
    v = np.arange(256, dtype=np.uint8).view(FP8[fmt]).astype(np.float64)
    fi = ml_dtypes.finfo(FP8[fmt])
    fin = np.isfinite(v)
    a = np.abs(np.where(fin, v, 0))
    return {
        "nan": np.isnan(v), "inf": np.isinf(v), "zero": fin & (v == 0),
        "neg_zero": fin & (v == 0) & np.signbit(v),
        "subnormal": fin & (v != 0) & (a < float(fi.smallest_normal)),
        "saturated": fin & (a == float(fi.max)), "negative": ~np.isnan(v) & (v < 0),
        "key": np.where(fin, np.arange(256) & 0x7F, 0), "abs": a, "finite": fin,
    }


def fp8_truth(data: np.ndarray, fmt: str) -> dict[str, int]:
    t = fp8_code_table(fmt)
    h = np.bincount(data, minlength=256)
    out = {k: int((h * t[k]).sum()) for k in
           ("nan", "inf", "zero", "neg_zero", "subnormal", "saturated", "negative")}
    present = h > 0
    out["absmax_code"] = int(t["key"][present].max()) if present.any() else 0
    return out


def block_truth(q: np.ndarray, fmt: str, br: int, bc: int) -> tuple[np.ndarray, np.ndarray]:
    t = fp8_code_table(fmt)
    r, c = q.shape
    nbr, nbc = -(-r // br), -(-c // bc)
    pad = np.zeros((nbr * br, nbc * bc), np.uint8)  # +0: key 0, not NaN
    pad[:r, :c] = q
    key = t["key"][pad].reshape(nbr, br, nbc, bc)
    nan = t["nan"][pad].reshape(nbr, br, nbc, bc)
    return key.max(axis=(1, 3)).astype(np.uint8), nan.sum(axis=(1, 3)).astype(np.uint64)


FLOAT_NP = {"BF16": ml_dtypes.bfloat16, "F16": np.float16, "F32": np.float32}


def float_truth(data: np.ndarray, fmt: str) -> dict[str, float]:
    with np.errstate(invalid="ignore"):
        x = data.view(FLOAT_NP[fmt]).astype(np.float64)
    tiny = float(ml_dtypes.finfo(FLOAT_NP[fmt]).smallest_normal)
    fin = np.isfinite(x)
    f = x[fin]
    nan = float("nan")
    return {
        "nan": int(np.isnan(x).sum()), "pos_inf": int((x == np.inf).sum()),
        "neg_inf": int((x == -np.inf).sum()), "zero": int((f == 0).sum()),
        "subnormal": int(((f != 0) & (np.abs(f) < tiny)).sum()), "finite": int(fin.sum()),
        "absmax": float(np.abs(f).max()) if f.size else nan,
        "min": float(f.min()) if f.size else nan, "max": float(f.max()) if f.size else nan,
    }


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def float_planted(nbytes: int, fmt: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, nbytes, dtype=np.uint8)
    w = 4 if fmt == "F32" else 2
    n = nbytes // w
    if n:
        specials = {
            "BF16": [0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x0000, 0x8000, 0x0001, 0x807F, 0x7F7F,
                     0xFF7F, 0x0080],
            "F16": [0x7C00, 0xFC00, 0x7E00, 0xFC01, 0x0000, 0x8000, 0x0001, 0x83FF, 0x7BFF,
                    0xFBFF, 0x0400],
            "F32": [0x7F800000, 0xFF800000, 0x7FC00000, 0xFF800001, 0, 0x80000000, 1,
                    0x807FFFFF, 0x7F7FFFFF, 0xFF7FFFFF, 0x00800000],
        }[fmt]
        view = a[: n * w].view(np.uint32 if w == 4 else np.uint16)
        k = rng.random(n) < 0.3
        view[k] = rng.choice(np.array(specials, view.dtype), int(k.sum()))
    return a


# ---- scalar vs truth ---------------------------------------------------------------
@pytest.mark.parametrize("fmt", FP8)
@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 1000, 16320, 16321, 70001, 1 << 20])
def test_fp8_stats_truth_all_paths(fmt: str, n: int) -> None:
    data = planted(n, n)
    want = fp8_truth(data, fmt)
    for path in PATHS:
        s = on(path, K.fp8_stats, data, dtype=fmt)
        got = {k: getattr(s, k) for k in want}
        assert got == want, (path, fmt, n)
        assert s.count == n


@pytest.mark.parametrize("code", [0x00, 0x80, 0x7F, 0xFF, 0x7E, 0x7C, 0x05])
def test_fp8_counter_overflow(code: int) -> None:
    """Long runs of one code: byte counters must be flushed before they wrap."""
    n = 255 * 64 * 3 + 17
    data = np.full(n, code, np.uint8)
    for fmt in FP8:
        want = fp8_truth(data, fmt)
        for path in PATHS:
            s = on(path, K.fp8_stats, data, dtype=fmt)
            assert {k: getattr(s, k) for k in want} == want, (path, fmt, hex(code))


@pytest.mark.parametrize("path", PATHS)
def test_histogram_truth(path: str) -> None:
    for n in (0, 1, 7, 8, 9, 100, 4097, 1 << 20):
        data = planted(n, n + 1)
        got = on(path, K.fp8_histogram, data)
        assert got.dtype == np.uint64 and got.shape == (256,)
        assert np.array_equal(got, np.bincount(data, minlength=256)), (path, n)


@pytest.mark.parametrize("path", PATHS)
def test_read_probe_truth(path: str) -> None:
    for n in (0, 1, 7, 8, 9, 31, 32, 33, 255, 256, 257, 10000):
        data = planted(n, n + 2)
        pad = np.zeros(-(-n // 8) * 8, np.uint8)
        pad[:n] = data
        want = int(pad.view("<u8").sum(dtype=np.uint64)) if n else 0
        assert on(path, K.read_probe, data) == want, (path, n)


@pytest.mark.parametrize("fmt", FLOAT_NP)
@pytest.mark.parametrize("nbytes", [0, 2, 4, 6, 62, 64, 66, 130, 4096, 65536 * 2 + 8, 300000])
def test_float_stats_truth_all_paths(fmt: str, nbytes: int) -> None:
    w = 4 if fmt == "F32" else 2
    nbytes -= nbytes % w
    data = float_planted(nbytes, fmt, nbytes)
    want = float_truth(data, fmt)
    for path in PATHS:
        s = on(path, K.float_stats, data, dtype=fmt)
        for k, v in want.items():
            assert same_float(float(getattr(s, k)), float(v)), (path, fmt, nbytes, k)


def test_float_stats_16bit_counter_flush() -> None:
    """> 32767 vectors of 16-bit lanes all NaN / all zero."""
    for fmt, code in (("BF16", 0x7FC0), ("F16", 0x0000), ("BF16", 0x0001)):
        data = np.full(32768 * 40 + 3, code, np.uint16).view(np.uint8)
        want = float_truth(data, fmt)
        for path in PATHS:
            s = on(path, K.float_stats, data, dtype=fmt)
            for k, v in want.items():
                assert same_float(float(getattr(s, k)), float(v)), (path, fmt, k)


def test_float_stats_typed_arrays() -> None:
    a = np.array([1.5, -np.inf, np.nan, -0.0, 1e-40, -3.0], np.float32)
    s = K.float_stats(a)
    assert (s.dtype, s.nan, s.neg_inf, s.zero, s.subnormal, s.finite) == ("F32", 1, 1, 1, 1, 4)
    assert (s.absmax, s.min, s.max) == (3.0, -3.0, 1.5)
    s = K.float_stats(np.array([np.nan, np.inf], ml_dtypes.bfloat16))
    assert s.finite == 0 and math.isnan(s.absmax) and math.isnan(s.min)


@pytest.mark.parametrize("path", PATHS)
def test_e8m0_truth(path: str) -> None:
    for n in (0, 1, 100, 5000):
        data = planted(n, n + 3)
        s = on(path, K.e8m0_stats, data)
        ok = data[data != 0xFF]
        assert (s.count, s.nan) == (n, int((data == 0xFF).sum()))
        assert s.min_code == (int(ok.min()) if ok.size else 0xFF)
        assert s.max_code == (int(ok.max()) if ok.size else 0)
        if ok.size:
            assert s.min == 2.0 ** (int(ok.min()) - 127)


BLOCK_SHAPES = [
    (1, 1, 1, 1), (1, 300, 128, 128), (300, 1, 128, 128), (130, 257, 128, 128),
    (7, 33, 3, 5), (64, 64, 64, 64), (17, 200, 1, 17), (5, 129, 5, 33), (33, 1000, 7, 999),
    (256, 384, 128, 128), (3, 3, 128, 128), (40, 70, 1, 1), (2, 700, 2, 65), (1, 64, 1, 63),
]


@pytest.mark.parametrize("shape", BLOCK_SHAPES)
def test_block_absmax_truth_all_paths(shape: tuple[int, int, int, int]) -> None:
    r, c, br, bc = shape
    q = planted(r * c, r * 1000 + c).reshape(r, c)
    for fmt in FP8:
        want_codes, want_nan = block_truth(q, fmt, br, bc)
        for path in PATHS:
            b = on(path, K.block_absmax, q, block=(br, bc), dtype=fmt)
            assert b.codes.shape == (-(-r // br), -(-c // bc))
            assert np.array_equal(b.codes, want_codes), (path, fmt, shape)
            assert np.array_equal(b.nan, want_nan), (path, fmt, shape)


def test_block_absmax_rows_1_to_300() -> None:
    q = planted(300 * 131, 5).reshape(300, 131)
    for rows in range(1, 301, 7):
        sub = np.ascontiguousarray(q[:rows])
        for br, bc in ((128, 128), (3, 7)):
            want = block_truth(sub, "F8_E4M3", br, bc)
            for path in PATHS:
                b = on(path, K.block_absmax, sub, block=(br, bc), dtype="F8_E4M3")
                assert np.array_equal(b.codes, want[0]) and np.array_equal(b.nan, want[1]), \
                    (path, rows, br, bc)


def test_block_absmax_errors() -> None:
    q = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError):
        K.block_absmax(q, block=(0, 4), dtype="F8_E4M3")
    with pytest.raises(ValueError):
        _core.fp8_block_absmax(q, 4, 5, 2, 2, "F8_E4M3")  # 16 bytes for 4 x 5
    with pytest.raises(ValueError):
        K.block_absmax(np.zeros(4, np.float32), dtype=None)  # not FP8
    b = K.block_absmax(np.zeros((0, 5), np.uint8), block=(2, 2), dtype="F8_E4M3")
    assert b.codes.shape == (0, 3)


# ---- SIMD paths vs scalar, all lengths and offsets -----------------------------------
BUF = planted(300 + 64 + 64, 99)
RANDOM_BUF = np.random.default_rng(98).integers(0, 256, 300 + 128, dtype=np.uint8)


def _views(offsets: range | list[int], lengths: range | list[int]):  # type: ignore[no-untyped-def]
    for buf in (BUF, RANDOM_BUF):
        for off in offsets:
            for n in lengths:
                yield buf[off:off + n]


ALL_LENGTHS = range(0, 301)
SOME_OFFSETS = [0, 1, 7, 31, 33, 63]
ALL_OFFSETS = range(0, 64)
SOME_LENGTHS = [0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 200, 255, 256,
                257, 300]


def _cases():  # type: ignore[no-untyped-def]
    yield from _views(SOME_OFFSETS, ALL_LENGTHS)
    yield from _views(ALL_OFFSETS, SOME_LENGTHS)


@pytest.mark.skipif(not SIMD_PATHS, reason="no SIMD path on this CPU")
@pytest.mark.parametrize("path", SIMD_PATHS)
def test_paths_equal_scalar_bytes(path: str) -> None:
    cases = list(_cases())
    for fn in ("fp8_stats", "histogram", "e8m0_stats", "read_probe"):
        args = [(fmt,) for fmt in FP8] if fn == "fp8_stats" else [()]
        for a in args:
            with K.using_simd("scalar"):
                ref = [getattr(_core, fn)(v, *a) for v in cases]
            with K.using_simd(path):
                got = [getattr(_core, fn)(v, *a) for v in cases]
            for i, (x, y) in enumerate(zip(ref, got, strict=False)):
                same = np.array_equal(x, y) if fn == "histogram" else x == y
                assert same, (path, fn, a, i, len(cases[i]))


@pytest.mark.skipif(not SIMD_PATHS, reason="no SIMD path on this CPU")
@pytest.mark.parametrize("path", SIMD_PATHS)
def test_paths_equal_scalar_float_stats(path: str) -> None:
    bufs = [float_planted(428, f, 11) for f in FLOAT_NP]
    for fmt, buf in zip(FLOAT_NP, bufs, strict=False):
        w = 4 if fmt == "F32" else 2
        cases = [buf[off:off + n] for off in SOME_OFFSETS for n in range(0, 301, w)]
        cases += [buf[off:off + n] for off in ALL_OFFSETS for n in (0, w, 64, 64 + w, 128, 300)]
        with K.using_simd("scalar"):
            ref = [_core.float_stats(v, fmt) for v in cases]
        with K.using_simd(path):
            got = [_core.float_stats(v, fmt) for v in cases]
        for i, (x, y) in enumerate(zip(ref, got, strict=False)):
            assert x.keys() == y.keys()
            for k in x:
                assert same_float(float(x[k]), float(y[k])), (path, fmt, i, k)


@pytest.mark.skipif(not SIMD_PATHS, reason="no SIMD path on this CPU")
@pytest.mark.parametrize("path", SIMD_PATHS)
def test_paths_equal_scalar_block_absmax_unaligned(path: str) -> None:
    big = planted(64 + 37 * 151, 3)
    for off in range(0, 64, 5):
        q = big[off:off + 37 * 151].reshape(37, 151)
        for fmt in FP8:
            for br, bc in ((128, 128), (4, 33), (1, 64), (37, 151), (5, 1)):
                ref = on("scalar", _core.fp8_block_absmax, q, 37, 151, br, bc, fmt)
                got = on(path, _core.fp8_block_absmax, q, 37, 151, br, bc, fmt)
                assert np.array_equal(ref[0], got[0]) and np.array_equal(ref[1], got[1]), \
                    (path, off, fmt, br, bc)


# ---- selection ------------------------------------------------------------------------
def test_simd_info_and_selection() -> None:
    info = K.simd_info()
    assert info["available"][0] == "scalar"
    assert set(info["available"]) <= set(info["compiled"])
    assert info["active"] in info["available"] and info["error"] == ""
    with pytest.raises(ValueError, match="unknown"):
        K.set_simd("sse9")
    unsupported = [p for p in info["compiled"] if p not in info["available"]]
    for p in unsupported:
        with pytest.raises(ValueError, match="lacks"):
            K.set_simd(p)
    assert K.simd_info()["active"] == info["active"]  # failed selection keeps the old one
    assert K.set_simd("auto") == info["available"][-1]


def test_env_var_forcing() -> None:
    import os
    import subprocess
    import sys

    code = ("import numpy as np, ckptscan.kernels as K\n"
            "print(K.simd_info()['active'])\n"
            "try:\n    K.fp8_stats(np.zeros(3, np.uint8), dtype='F8_E4M3'); print('ran')\n"
            "except RuntimeError as e:\n    print('RuntimeError', e)\n")
    for name in PATHS + ["bogus", "neon" if "avx2" in PATHS else "avx512"]:
        env = {**os.environ, "CKPTSCAN_SIMD": name}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.split("\n")
        if name in PATHS:
            assert out[0] == name and out[1] == "ran"
        else:
            assert out[0] == "" and out[1].startswith("RuntimeError CKPTSCAN_SIMD=" + name)


def test_threads_split_equals_single() -> None:
    data = planted((1 << 23) + 12345, 8)
    one = K.fp8_stats(data, dtype="F8_E4M3")
    two = K.fp8_stats(data, dtype="F8_E4M3", threads=2)
    assert one == two
    assert np.array_equal(K.fp8_histogram(data, threads=3), K.fp8_histogram(data))
    f = float_planted(1 << 23, "BF16", 9)
    assert K.float_stats(f, dtype="BF16", threads=2) == K.float_stats(f, dtype="BF16")


def test_buffers_and_errors() -> None:
    assert _core.fp8_stats(b"\x7f\x00", "F8_E4M3")["nan"] == 1
    assert _core.fp8_stats(memoryview(bytearray(b"\xff")), "F8_E4M3")["nan"] == 1
    with pytest.raises(TypeError):
        _core.fp8_stats(np.zeros((4, 4), np.uint8)[:, ::2], "F8_E4M3")  # not contiguous
    with pytest.raises(ValueError):
        _core.float_stats(np.zeros(3, np.uint8), "BF16")  # odd byte count
    with pytest.raises(ValueError):
        _core.float_stats(np.zeros(4, np.uint8), "F64")
