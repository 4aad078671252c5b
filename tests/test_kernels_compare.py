"""The dequantize-and-compare kernel (`kernels.dequantize_compare`, the one pass
`ckptscan verify` runs per weight): every SIMD path bit-identical to the scalar
reference, and every output against a float64 numpy computation from ml_dtypes'
decoding of the codes (sums to 1e-6, maxima and counts exactly), NaN / Inf on
either side and in scales, packed FP4, expert stacks, partial edge blocks."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from ckptscan import kernels
from ckptscan.kernels import BlockErrors, dequantize_compare

FP8 = {"F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2,
       "F8_E4M3FNUZ": ml_dtypes.float8_e4m3fnuz, "F8_E5M2FNUZ": ml_dtypes.float8_e5m2fnuz}
REF = {"BF16": ml_dtypes.bfloat16, "F16": np.float16, "F32": np.float32}
BOUND = (448.0, 1 / 17, 2.0 ** -10, 2.0 ** -8)


def reference(c: np.ndarray, s: np.ndarray, r: np.ndarray, block: tuple[int, int],
              clip: float, bound: tuple[float, float, float, float]) -> dict[str, np.ndarray]:
    """Per block, from decoded codes c (float32), block scales s and the reference
    r (float32), batch-first 3-D: the sums in float64 over the finite pairs."""
    br, bc = block
    n_e, rows, cols = c.shape
    nbr, nbc = -(-rows // br), -(-cols // bc)
    out = {k: np.zeros((n_e, nbr, nbc)) for k in (
        "ref_sq", "code_sq", "dot", "err_sq", "max_err", "clipped", "bad",
        "ref_bad", "bound_sq")}
    vmax, rel, sub, slack = (np.float32(x) for x in bound)
    for e in range(n_e):
        for i in range(nbr):
            for j in range(nbc):
                sl = (e, slice(i * br, (i + 1) * br), slice(j * bc, (j + 1) * bc))
                sv = np.float32(s[e, i, j])
                cc, rr = c[sl], r[sl]
                d = (cc * sv).astype(np.float32)
                with np.errstate(invalid="ignore", over="ignore"):
                    e32 = (d - rr).astype(np.float32)
                good = np.isfinite(e32)
                cg, rg = (x[good].astype(np.float64) for x in (cc, rr))
                err = e32[good].astype(np.float64)
                t = np.abs(rr[good]).astype(np.float32)
                m, h = np.float32(vmax * sv), np.float32(sub * sv)
                # fma(slack, t, t - m): exact in float64, then rounded once
                sat = ((t - m).astype(np.float32).astype(np.float64) + np.float64(slack) * t
                       ).astype(np.float32)
                b = np.where(t > m, sat, np.maximum((np.float32(rel + slack) * t)
                                                    .astype(np.float32), h)).astype(np.float64)
                out["ref_sq"][e, i, j] = (rg * rg).sum()
                out["code_sq"][e, i, j] = (cg * cg).sum()
                out["dot"][e, i, j] = (cg * rg).sum()
                out["err_sq"][e, i, j] = (err * err).sum()
                out["bound_sq"][e, i, j] = (b * b).sum()
                out["max_err"][e, i, j] = np.abs(err).max() if err.size else 0.0
                out["clipped"][e, i, j] = (t > np.float32(np.float32(clip) * sv)).sum()
                out["bad"][e, i, j] = (~good).sum()
                out["ref_bad"][e, i, j] = (~np.isfinite(rr)).sum()
    return out


def check(got: BlockErrors, want: dict[str, np.ndarray]) -> None:
    for key, value in want.items():
        g = np.asarray(getattr(got, key), np.float64).reshape(value.shape)
        if key in ("max_err", "clipped", "bad", "ref_bad"):
            np.testing.assert_array_equal(g, value, err_msg=key)
        else:
            np.testing.assert_allclose(g, value, rtol=1e-6, atol=1e-30, err_msg=key)


def same_on_every_path(run: Any) -> BlockErrors:
    """The result of `run()` on every SIMD path: bit for bit the scalar one's."""
    results = {}
    for impl in kernels.available_simd():
        with kernels.using_simd(impl):
            results[impl] = run()
    first = results["scalar"]
    for impl, got in results.items():
        for key in ("bound_sq", "ref_sq", "code_sq", "dot", "err_sq", "max_err", "clipped",
                    "bad", "ref_bad"):
            a, b = getattr(first, key), getattr(got, key)
            assert a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8)), \
                (impl, key)
    return first


@pytest.mark.parametrize("fmt", sorted(FP8))
@pytest.mark.parametrize("ref_dtype", sorted(REF))
@pytest.mark.parametrize("shape,block", [((3, 200, 300), (128, 128)), ((1, 64, 96), (1, 32)),
                                         ((2, 33, 70), (7, 13)), ((1, 5, 1000), (1, 1000))])
def test_fp8_against_numpy(fmt: str, ref_dtype: str, shape: tuple[int, int, int],
                           block: tuple[int, int]) -> None:
    rng = np.random.default_rng(hash((fmt, ref_dtype, shape)) % 2**32)
    w = rng.standard_normal(shape).astype(np.float32)
    dt = FP8[fmt]
    vmax = float(ml_dtypes.finfo(dt).max)
    q = np.clip(w * vmax / 5, -vmax, vmax).astype(dt)
    nbr, nbc = -(-shape[1] // block[0]), -(-shape[2] // block[1])
    s = (rng.random((shape[0], nbr, nbc)) * 0.01 + 0.001).astype(np.float32)
    ref = (w * rng.uniform(0.5, 2, (shape[0], 1, 1))).astype(REF[ref_dtype])
    # a few NaN codes (not every format has them), NaN / Inf in the reference, a NaN scale
    raw = q.view(np.uint8)
    raw[0, 1, 2] = {"F8_E4M3": 0x7F, "F8_E5M2": 0x7E}.get(fmt, 0x80)
    ref[0, 2, 3] = np.nan
    ref[-1, -1, -1] = np.inf
    s[0, -1, -1] = np.nan
    got = same_on_every_path(lambda: dequantize_compare(
        q if shape[0] > 1 else q[0], s if shape[0] > 1 else s[0],
        ref if shape[0] > 1 else ref[0], block, clip=1.5, bound=BOUND))
    want = reference(q.astype(np.float32), s, ref.astype(np.float32), block, 1.5, BOUND)
    check(got, want)
    assert got.bad.sum() >= 3


@pytest.mark.parametrize("block", [(1, 16), (1, 32), (4, 8), (1, 14)])
def test_fp4_against_numpy(block: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    n_e, rows, cols = 3, 17, 96
    w = rng.standard_normal((n_e, rows, cols)).astype(np.float32)
    codes = np.clip(w * 3, -6, 6).astype(ml_dtypes.float4_e2m1fn).view(np.uint8) & 0x0F
    packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    nbr, nbc = -(-rows // block[0]), -(-cols // block[1])
    s = rng.random((n_e, nbr, nbc)).astype(np.float32) + 0.1
    ref = (w * 0.9).astype(ml_dtypes.bfloat16)
    bound = (6.0, 0.2, 0.25, 2.0 ** -8)
    got = same_on_every_path(lambda: dequantize_compare(packed, s, ref, block, clip=7.0,
                                                        bound=bound))
    values = codes.view(ml_dtypes.float4_e2m1fn).astype(np.float32)
    check(got, reference(values, s, ref.astype(np.float32), block, 7.0, bound))


def test_other_scales_from_the_sums() -> None:
    """err_sq_with: the error under other block scales, without a second pass."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((256, 256)).astype(np.float32)
    q = np.clip(w * 60, -448, 448).astype(ml_dtypes.float8_e4m3fn)
    s = np.full((2, 2), 1 / 60, np.float32)
    ref = w.astype(ml_dtypes.bfloat16)
    got = dequantize_compare(q, s, ref, (128, 128), clip=464.0)
    other = np.array([[0.02, 0.5], [1e-3, 1 / 60]], np.float32)
    direct = dequantize_compare(q, other, ref, (128, 128), clip=464.0)
    np.testing.assert_allclose(got.err_sq_with(other), direct.err_sq, rtol=1e-4)


def test_bad_arguments_are_value_errors() -> None:
    q = np.zeros((4, 32), ml_dtypes.float8_e4m3fn)
    ref = np.zeros((4, 32), ml_dtypes.bfloat16)
    with pytest.raises(ValueError, match="scale"):
        dequantize_compare(q, np.ones((2, 2), np.float32), ref, (2, 32), clip=1.0)
    with pytest.raises(ValueError, match="reference"):
        dequantize_compare(q, np.ones((2, 1), np.float32), ref[:2], (2, 32), clip=1.0)
    with pytest.raises(ValueError, match="BF16, F16 or F32"):
        dequantize_compare(q, np.ones((2, 1), np.float32), q, (2, 32), clip=1.0)
    with pytest.raises(ValueError):
        dequantize_compare(q, np.ones((2, 1), np.float32), ref, (0, 32), clip=1.0)
