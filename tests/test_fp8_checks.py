"""check_fp8_weight on small checkpoints written with the real safetensors library:
each planted defect is found (with its code, severity and location), clean
checkpoints produce no finding at all."""

from __future__ import annotations

import re
from pathlib import Path

import ckptscan
import numpy as np
import pytest
from ckptscan import kernels as K
from ckptscan.findings import Severity

ml_dtypes = pytest.importorskip("ml_dtypes")
save_file = pytest.importorskip("safetensors.numpy").save_file

E4M3 = ml_dtypes.float8_e4m3fn
BLOCK = (128, 128)


def quantize(w: np.ndarray, block: tuple[int, int] = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """DeepSeek-style absmax quantization per block: scale_inv = absmax / 448,
    q = fp8(w / scale_inv). Returns (q as float8_e4m3fn, scale_inv float32)."""
    r, c = w.shape
    br, bc = block
    nbr, nbc = -(-r // br), -(-c // bc)
    pad = np.zeros((nbr * br, nbc * bc), np.float32)
    pad[:r, :c] = w
    amax = np.abs(pad.reshape(nbr, br, nbc, bc)).max(axis=(1, 3))
    scale = (np.maximum(amax, 1e-12) / np.float32(448.0)).astype(np.float32)
    full = np.repeat(np.repeat(scale, br, 0), bc, 1)[:r, :c]
    return (w / full).astype(E4M3), scale


def weights(r: int, c: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((r, c)) * 0.02).astype(np.float32)


def write(tmp_path: Path, tensors: dict[str, np.ndarray], name: str = "m.safetensors") -> Path:
    path = tmp_path / name
    save_file(tensors, str(path))
    return path


def check(path: Path, **kw):  # type: ignore[no-untyped-def]
    with ckptscan.open_shard(path) as shard:
        return K.check_fp8_weight(shard, "x.weight", "x.weight_scale_inv", BLOCK, **kw)


def codes(res) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(f.code for f in res.findings)


@pytest.mark.parametrize("shape", [(256, 384), (130, 257), (1, 128), (300, 7), (128, 128)])
def test_clean_checkpoint_has_no_finding(tmp_path: Path, shape: tuple[int, int]) -> None:
    w = weights(*shape, seed=shape[0])
    q, s = quantize(w)
    path = write(tmp_path, {"x.weight": q, "x.weight_scale_inv": s})
    res = check(path)
    assert res.findings == [] and res.ok
    sm = res.summary
    assert sm.blocks == s.size and sm.absmax_code_min == 0x7E and sm.nan_codes == 0
    assert sm.absmax == pytest.approx(float(np.abs(w).max()), rel=1e-6)
    assert sm.scale_min == float(s.min()) and sm.scale_max == float(s.max())
    # and dequantization gives the weights back within e4m3 precision (3 mantissa bits)
    with ckptscan.open_shard(path) as shard:
        back = K.dequantize(shard, "x.weight", "x.weight_scale_inv", BLOCK, "float32")
    full = np.repeat(np.repeat(s, 128, 0), 128, 1)[: shape[0], : shape[1]]
    assert np.all(np.abs(back - w) <= np.maximum(np.abs(w) * 2**-4, full * 2**-9) + 1e-12)


def test_nan_codes(tmp_path: Path) -> None:
    q, s = quantize(weights(256, 384))
    raw = q.view(np.uint8).copy()
    raw[5, 200] = 0x7F
    raw[130, 3] = 0xFF
    raw[131, 4] = 0x7F
    path = write(tmp_path, {"x.weight": raw.view(E4M3), "x.weight_scale_inv": s})
    res = check(path)
    assert codes(res) == ["fp8-nan"]
    f = res.findings[0]
    assert f.severity == Severity.ERROR and f.tensor == "x.weight" and f.file == str(path)
    assert f.detail["count"] == 3 and f.detail["blocks"] == 2
    assert f.detail["first_block"] == [0, 1]
    assert res.summary.nan_codes == 3 and res.summary.nan_blocks == 2 and not res.ok


@pytest.mark.parametrize("bad_shape", [(2, 3), (3, 2), (1, 6), (2, 4)])
def test_wrong_scale_shape(tmp_path: Path, bad_shape: tuple[int, int]) -> None:
    q, s = quantize(weights(256, 384))  # expected scale [2, 3]
    if bad_shape == (2, 3):
        q, _ = quantize(weights(300, 384))  # floor instead of ceil: [2, 3] for 300 rows
    sb = np.resize(s, bad_shape).astype(np.float32)
    path = write(tmp_path, {"x.weight": q, "x.weight_scale_inv": sb})
    res = check(path)
    assert codes(res) == ["scale-shape"]
    f = res.findings[0]
    assert f.severity == Severity.ERROR and f.tensor == "x.weight_scale_inv"
    assert f.detail["shape"] == list(bad_shape)


@pytest.mark.parametrize(("value", "code"), [
    (np.nan, "scale-nonfinite"), (np.inf, "scale-nonfinite"), (-np.inf, "scale-nonfinite"),
    (0.0, "scale-nonpositive"), (-0.001, "scale-nonpositive"),
    (K.VLLM_UNFILLED_SCALE, "scale-unfilled"), (1e-40, "scale-subnormal"),
])
def test_bad_scale_values(tmp_path: Path, value: float, code: str) -> None:
    q, s = quantize(weights(256, 384))
    s = s.copy()
    s[1, 2] = value
    path = write(tmp_path, {"x.weight": q, "x.weight_scale_inv": s})
    res = check(path)
    assert codes(res) == [code]
    f = res.findings[0]
    assert f.tensor == "x.weight_scale_inv" and f.detail["count"] == 1
    assert f.severity == (Severity.WARNING if code == "scale-subnormal" else Severity.ERROR)


def test_sentinel_is_named(tmp_path: Path) -> None:
    q, s = quantize(weights(128, 256))
    s = np.full_like(s, np.float32(-3.4028235e38))
    res = check(write(tmp_path, {"x.weight": q, "x.weight_scale_inv": s}))
    assert codes(res) == ["scale-unfilled"]
    assert "vLLM" in res.findings[0].message and res.findings[0].detail["count"] == 2


def test_scale_dtype(tmp_path: Path) -> None:
    q, s = quantize(weights(256, 256))
    bf = s.astype(ml_dtypes.bfloat16)
    res = check(write(tmp_path, {"x.weight": q, "x.weight_scale_inv": bf}))
    assert codes(res) == ["scale-dtype"] and res.findings[0].detail["dtype"] == "BF16"
    # ue8m0 scales: F8_E8M0 is an error unless the caller accepts it
    e8 = np.full(s.shape, 120, np.uint8).view(ml_dtypes.float8_e8m0fnu)
    p2 = write(tmp_path, {"x.weight": q, "x.weight_scale_inv": e8}, "e8.safetensors")
    assert codes(check(p2)) == ["scale-dtype"]
    assert check(p2, scale_dtype_expected=("F32", "F8_E8M0")).findings == []


def test_ue8m0_power_of_two(tmp_path: Path) -> None:
    w = weights(256, 256)
    q, s = quantize(w)
    assert codes(check(write(tmp_path, {"x.weight": q, "x.weight_scale_inv": s}),
                       ue8m0=True)) == ["scale-not-pow2"]
    # rounding the scale up to a power of two (what ue8m0 exporters do) costs < 2x of
    # range: no range finding
    s2 = np.exp2(np.ceil(np.log2(s))).astype(np.float32)
    full = np.repeat(np.repeat(s2, 128, 0), 128, 1)
    q2 = (w / full).astype(E4M3)
    res = check(write(tmp_path, {"x.weight": q2, "x.weight_scale_inv": s2}, "p2.safetensors"),
                ue8m0=True)
    assert res.findings == []
    assert res.summary.absmax_code_min >= 0x76  # > 448 / 2


def test_all_zero_block_and_tensor(tmp_path: Path) -> None:
    w = weights(256, 384)
    w[128:256, 0:128] = 0
    q, s = quantize(w)
    res = check(write(tmp_path, {"x.weight": q, "x.weight_scale_inv": s}))
    assert codes(res) == ["fp8-zero-block"]
    f = res.findings[0]
    assert f.severity == Severity.INFO and f.detail["first_blocks"] == [[1, 0]] and res.ok
    z, sz = quantize(np.zeros((256, 128), np.float32))
    res = check(write(tmp_path, {"x.weight": z, "x.weight_scale_inv": sz}, "z.safetensors"))
    assert codes(res) == ["fp8-all-zero"] and res.findings[0].severity == Severity.WARNING


def test_scale_from_another_block(tmp_path: Path) -> None:
    """Block (1, 2) quantized with block (0, 0)'s scale, which is 40x larger: its codes
    use a fraction of the range."""
    w = weights(256, 384)
    w[:128, :128] *= 40
    q, s = quantize(w)
    raw = q.view(np.uint8).copy()
    redo = (w[128:256, 256:384] / s[0, 0]).astype(E4M3).view(np.uint8)
    raw[128:256, 256:384] = redo
    s = s.copy()
    s[1, 2] = s[0, 0]
    res = check(write(tmp_path, {"x.weight": raw.view(E4M3), "x.weight_scale_inv": s}))
    assert codes(res) == ["fp8-range-unused"]
    f = res.findings[0]
    assert f.severity == Severity.WARNING and f.detail["first_blocks"] == [[1, 2]]
    assert f.detail["blocks"] == 1 and res.summary.low_range_blocks == 1


def test_several_defects_at_once_and_scale_in_other_shard(tmp_path: Path) -> None:
    q, s = quantize(weights(130, 257))
    raw = q.view(np.uint8).copy()
    raw[129, 256] = 0xFF
    s = s.copy()
    s[0, 0] = 0.0
    pw = write(tmp_path, {"x.weight": raw.view(E4M3)}, "a.safetensors")
    ps = write(tmp_path, {"x.weight_scale_inv": s}, "b.safetensors")
    with ckptscan.open_shard(pw) as a, ckptscan.open_shard(ps) as b:
        res = K.check_fp8_weight(a, "x.weight", "x.weight_scale_inv", BLOCK, scale_source=b)
    assert codes(res) == ["fp8-nan", "scale-nonpositive"]
    by = {f.code: f for f in res.findings}
    assert by["fp8-nan"].file == str(pw) and by["fp8-nan"].detail["first_block"] == [1, 2]
    assert by["scale-nonpositive"].file == str(ps)


def test_mapping_source_and_codes_documented() -> None:
    q, s = quantize(weights(128, 128))
    res = K.check_fp8_weight({"w": q, "s": s}, "w", "s")
    assert res.findings == [] and res.summary.blocks == 1
    doc = K.__doc__ or ""
    for code, (sev, _text) in K.FINDING_CODES.items():
        assert re.search(rf"^{re.escape(code)}\s+{sev}\s", doc, re.MULTILINE), code
    with pytest.raises(ValueError):
        K.check_fp8_weight({"w": s, "s": s}, "w", "s")  # weight is not FP8
