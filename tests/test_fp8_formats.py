"""Every code of every FP8 format against ml_dtypes: decoding, classification,
dequantization with scale 1, and the format limits. Runs on every SIMD path."""

from __future__ import annotations

import math

import numpy as np
import pytest

ml_dtypes = pytest.importorskip("ml_dtypes")

from ckptscan import _core  # noqa: E402
from ckptscan import kernels as K  # noqa: E402

FORMATS = {
    "F8_E4M3": ml_dtypes.float8_e4m3fn,
    "F8_E5M2": ml_dtypes.float8_e5m2,
    "F8_E4M3FNUZ": ml_dtypes.float8_e4m3fnuz,
    "F8_E5M2FNUZ": ml_dtypes.float8_e5m2fnuz,
}
CODES = np.arange(256, dtype=np.uint8)


@pytest.fixture(params=K.available_simd())
def simd(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    with K.using_simd(request.param) as name:
        yield name


def truth(fmt: str) -> dict[str, np.ndarray]:
    """Per-code classification derived from ml_dtypes values only."""
    t = FORMATS[fmt]
    v = CODES.view(t).astype(np.float64)
    fi = ml_dtypes.finfo(t)
    nan = np.isnan(v)
    inf = np.isinf(v)
    fin = np.isfinite(v)
    a = np.abs(np.where(fin, v, 0.0))
    return {
        "value": v,
        "nan": nan,
        "inf": inf,
        "zero": fin & (v == 0),
        "neg_zero": fin & (v == 0) & np.signbit(v),
        "subnormal": fin & (v != 0) & (a < float(fi.smallest_normal)),
        "saturated": fin & (a == float(fi.max)),
        "negative": ~nan & (v < 0),
        "finite": fin,
        "abs": a,
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_decode_all_codes(fmt: str) -> None:
    t = truth(fmt)
    for c in range(256):
        got = _core.fp8_decode(c, fmt)
        want = float(t["value"][c])
        if math.isnan(want):
            assert math.isnan(got), (fmt, c)
        else:
            assert got == want and math.copysign(1, got) == math.copysign(1, want), (fmt, c)
    assert np.array_equal(K.fp8_decode_table(fmt), t["value"], equal_nan=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_limits(fmt: str) -> None:
    fi = ml_dtypes.finfo(FORMATS[fmt])
    tr = _core.fp8_traits(fmt)
    assert tr["max_finite"] == float(fi.max)
    t = truth(fmt)
    assert t["value"][tr["sat_code"]] == float(fi.max)
    # pinned facts (FORMAT-FACTS.md)
    nan_codes = [c for c in range(256) if t["nan"][c]]
    if fmt == "F8_E4M3":
        assert nan_codes == [0x7F, 0xFF] and fi.max == 448 and not t["inf"].any()
        assert t["value"][0x01] == 2.0**-9 and t["value"][0x08] == 2.0**-6
        assert t["neg_zero"][0x80]
    elif fmt == "F8_E4M3FNUZ":
        assert nan_codes == [0x80] and fi.max == 240 and not t["neg_zero"].any()
    elif fmt == "F8_E5M2":
        assert nan_codes == [0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF] and fi.max == 57344
        assert np.flatnonzero(t["inf"]).tolist() == [0x7C, 0xFC]
    else:
        assert nan_codes == [0x80] and fi.max == 57344


@pytest.mark.parametrize("fmt", FORMATS)
def test_stats_of_each_code(fmt: str, simd: str) -> None:
    """One code at a time (and repeated 100x, past one vector): every counter."""
    t = truth(fmt)
    keys = ["nan", "inf", "zero", "neg_zero", "subnormal", "saturated", "negative"]
    for c in range(256):
        for reps in (1, 100):
            s = K.fp8_stats(np.full(reps, c, np.uint8), dtype=fmt)
            for k in keys:
                assert getattr(s, k) == reps * int(t[k][c]), (simd, fmt, hex(c), k)
            want_code = (c & 0x7F) if t["finite"][c] else 0
            assert s.absmax_code == want_code, (simd, fmt, hex(c))
            assert s.absmax == (t["abs"][c] if t["finite"][c] else 0.0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_stats_of_all_codes(fmt: str, simd: str) -> None:
    t = truth(fmt)
    rng = np.random.default_rng(7)
    mult = rng.integers(0, 40, 256)
    data = np.repeat(CODES, mult)
    rng.shuffle(data)
    s = K.fp8_stats(data, dtype=fmt)
    for k in ["nan", "inf", "zero", "neg_zero", "subnormal", "saturated", "negative"]:
        assert getattr(s, k) == int((t[k] * mult).sum()), (simd, fmt, k)
    fin = t["finite"] & (mult > 0)
    assert s.absmax == t["abs"][fin].max()
    assert s.count == data.size


@pytest.mark.parametrize("fmt", FORMATS)
def test_dequantize_scale_one_is_ml_dtypes(fmt: str, simd: str) -> None:
    """Decoding through the dequant kernel: float32 and bfloat16 bits equal ml_dtypes,
    NaN bits included (quiet NaN with the code's sign)."""
    q = np.tile(CODES, 3).reshape(3, 256)
    ones = np.ones((1, 2), np.float32)
    ref = q.view(FORMATS[fmt]).astype(np.float32)
    f32 = K.dequantize_array(q, ones, (128, 128), "float32", fp8_dtype=fmt)
    assert np.array_equal(f32.view(np.uint32), ref.view(np.uint32)), simd
    bf = K.dequantize_array(q, ones, (128, 128), "bfloat16", fp8_dtype=fmt)
    assert np.array_equal(bf.view(np.uint16), ref.astype(ml_dtypes.bfloat16).view(np.uint16))


def test_typed_array_dtype_is_inferred() -> None:
    a = np.array([0.5, -448.0, np.nan], dtype=ml_dtypes.float8_e4m3fn)
    s = K.fp8_stats(a)
    assert (s.dtype, s.nan, s.saturated, s.negative, s.absmax) == ("F8_E4M3", 1, 1, 1, 448.0)
    with pytest.raises(TypeError):
        K.fp8_stats(np.zeros(4, np.uint8))  # raw bytes need dtype=
    with pytest.raises(ValueError):
        K.fp8_stats(np.zeros(4, np.uint8), dtype="F8_E4M3FN")  # not a safetensors name
