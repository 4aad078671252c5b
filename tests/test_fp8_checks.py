"""The data checks of one FP8 weight and its block scale (`--deep`), on small
checkpoints written with the real safetensors library: each planted defect is
found (with its code, severity and location), clean checkpoints produce no
finding at all."""

from __future__ import annotations

import json
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


def write(tmp_path: Path, tensors: dict[str, np.ndarray], name: str = "m.safetensors",
          scale_fmt: str | None = None) -> Path:
    """One FP8 checkpoint: the tensors and a config.json declaring DeepSeek-style
    128x128 block FP8 (what loaders read the block size from)."""
    d = tmp_path / name.replace(".safetensors", "")
    d.mkdir(exist_ok=True)
    path = d / name
    save_file(tensors, str(path))
    qc = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": list(BLOCK)}
    if scale_fmt:
        qc["scale_fmt"] = scale_fmt
    (d / "config.json").write_text(json.dumps({"model_type": "llama",
                                               "quantization_config": qc}))
    return path


def check(path: Path) -> ckptscan.Report:
    return ckptscan.scan(path.parent, deep=True)


def codes(res: ckptscan.Report) -> list[str]:
    return sorted(f.code for f in res.findings)


def sev(res: ckptscan.Report, code: str) -> list[ckptscan.Finding]:
    return [f for f in res.findings if f.code == code]


@pytest.mark.parametrize("shape", [(256, 384), (130, 257), (1, 128), (300, 7), (128, 128)])
def test_clean_checkpoint_has_no_finding(tmp_path: Path, shape: tuple[int, int]) -> None:
    w = weights(*shape, seed=shape[0])
    q, s = quantize(w)
    path = write(tmp_path, {"x.weight": q, "x.weight_scale_inv": s})
    res = check(path)
    assert res.findings == []
    assert res.deep is not None and res.deep.fp8_nan_codes == 0
    # the kernels' measurements behind that verdict: every block reaches 448
    with ckptscan.open_shard(path) as shard:
        st = K.fp8_block_stats(shard, "x.weight", BLOCK)
        assert st.absmax_codes.size == s.size and int(st.absmax_codes.min()) == 0x7E
        # and dequantization gives the weights back within e4m3 precision
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
    assert res.deep is not None and res.deep.fp8_nan_codes == 3


@pytest.mark.parametrize("bad_shape", [(2, 3), (3, 2), (1, 6), (2, 4)])
def test_wrong_scale_shape(tmp_path: Path, bad_shape: tuple[int, int]) -> None:
    q, s = quantize(weights(256, 384))  # expected scale [2, 3]
    if bad_shape == (2, 3):
        q, _ = quantize(weights(300, 384))  # floor instead of ceil: [2, 3] for 300 rows
    sb = np.resize(s, bad_shape).astype(np.float32)
    res = check(write(tmp_path, {"x.weight": q, "x.weight_scale_inv": sb}))
    assert codes(res) == ["scale-shape"]
    f = res.findings[0]
    assert f.severity == Severity.ERROR and f.tensor == "x.weight_scale_inv"
    assert str(list(bad_shape)) in f.message


@pytest.mark.parametrize(("value", "code"), [
    (np.nan, "scale-nonfinite"), (np.inf, "scale-nonfinite"), (-np.inf, "scale-nonfinite"),
    (0.0, "scale-nonpositive"), (-0.001, "scale-nonpositive"),
    (float(np.finfo(np.float32).min), "scale-unfilled"), (1e-40, "scale-subnormal"),
])
def test_bad_scale_values(tmp_path: Path, value: float, code: str) -> None:
    q, s = quantize(weights(256, 384))
    s = s.copy()
    s[1, 2] = value
    res = check(write(tmp_path, {"x.weight": q, "x.weight_scale_inv": s}))
    assert code in codes(res)
    (f,) = sev(res, code)
    assert f.tensor == "x.weight_scale_inv" and f.detail["count"] == 1
    assert f.severity == (Severity.WARNING if code == "scale-subnormal" else Severity.ERROR)


def test_sentinel_is_named(tmp_path: Path) -> None:
    q, s = quantize(weights(128, 256))
    s = np.full_like(s, np.float32(-3.4028235e38))
    res = check(write(tmp_path, {"x.weight": q, "x.weight_scale_inv": s}))
    (f,) = sev(res, "scale-unfilled")
    assert "vLLM" in f.message and f.detail["count"] == 2


def test_scale_dtype(tmp_path: Path) -> None:
    q, s = quantize(weights(256, 256))
    e8 = np.full(s.shape, 120, np.uint8).view(ml_dtypes.float8_e8m0fnu)
    # E8M0 block scales are an error unless the config says scale_fmt ue8m0
    p1 = write(tmp_path, {"x.weight": q, "x.weight_scale_inv": e8}, "e8.safetensors")
    (f,) = sev(check(p1), "scale-dtype")
    assert f.tensor == "x.weight_scale_inv" and "F8_E8M0" in f.message
    p2 = write(tmp_path, {"x.weight": q, "x.weight_scale_inv": e8}, "e8u.safetensors",
               scale_fmt="ue8m0")
    assert sev(check(p2), "scale-dtype") == []


def test_ue8m0_power_of_two(tmp_path: Path) -> None:
    w = weights(256, 256)
    q, s = quantize(w)
    res = check(write(tmp_path, {"x.weight": q, "x.weight_scale_inv": s}, scale_fmt="ue8m0"))
    assert codes(res) == ["scale-not-pow2"]
    # rounding the scale up to a power of two (what ue8m0 exporters do) costs < 2x of
    # range: no range finding
    s2 = np.exp2(np.ceil(np.log2(s))).astype(np.float32)
    full = np.repeat(np.repeat(s2, 128, 0), 128, 1)
    q2 = (w / full).astype(E4M3)
    path = write(tmp_path, {"x.weight": q2, "x.weight_scale_inv": s2}, "p2.safetensors",
                 scale_fmt="ue8m0")
    assert check(path).findings == []
    with ckptscan.open_shard(path) as shard:
        assert int(K.fp8_block_stats(shard, "x.weight", BLOCK).absmax_codes.min()) >= 0x76


def test_all_zero_block_and_tensor(tmp_path: Path) -> None:
    w = weights(256, 384)
    w[128:256, 0:128] = 0
    q, s = quantize(w)  # the all-zero block gets a tiny nonzero scale: data lost?
    res = check(write(tmp_path, {"x.weight": q, "x.weight_scale_inv": s}))
    assert codes(res) == ["fp8-zero-block"]
    f = res.findings[0]
    assert f.severity == Severity.WARNING and f.detail["first_blocks"] == [[1, 0]]
    z, sz = quantize(np.zeros((256, 128), np.float32))
    res = check(write(tmp_path, {"x.weight": z, "x.weight_scale_inv": sz}, "z.safetensors"))
    assert codes(res) == ["fp8-all-zero"] and res.findings[0].severity == Severity.ERROR


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
    assert f.detail["blocks"] == 1


def test_several_defects_at_once_and_scale_in_other_shard(tmp_path: Path) -> None:
    q, s = quantize(weights(130, 257))
    raw = q.view(np.uint8).copy()
    raw[129, 256] = 0xFF
    s = s.copy()
    s[0, 0] = 0.0
    d = tmp_path / "two"
    d.mkdir()
    pw, ps = d / "model-00001-of-00002.safetensors", d / "model-00002-of-00002.safetensors"
    save_file({"x.weight": raw.view(E4M3)}, str(pw))
    save_file({"x.weight_scale_inv": s}, str(ps))
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "x.weight": pw.name, "x.weight_scale_inv": ps.name}}))
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "quantization_config": {
        "quant_method": "fp8", "weight_block_size": list(BLOCK)}}))
    res = ckptscan.scan(d, deep=True)
    assert codes(res) == ["fp8-nan", "scale-nonpositive"]
    by = {f.code: f for f in res.findings}
    assert by["fp8-nan"].file == str(pw) and by["fp8-nan"].detail["first_block"] == [1, 2]
    assert by["scale-nonpositive"].file == str(ps)


def test_the_kernels_measure_and_never_judge() -> None:
    """The policy (codes, severities, thresholds) lives in the checks; the kernel
    wrappers return measurements only."""
    q, _ = quantize(weights(128, 128))
    st = K.fp8_block_stats(q, block=BLOCK)
    assert not any(isinstance(v, ckptscan.Finding) for v in vars(st).values())
    assert not hasattr(K, "check_fp8_weight") and not hasattr(K, "FINDING_CODES")


FORMATS = {"F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
           "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz"}


@pytest.mark.parametrize("dtype", sorted(FORMATS))
def test_low_block_code_bound_against_ml_dtypes(dtype: str) -> None:
    """The judge tells "no low block" from the smallest block maximum code alone:
    every finite magnitude code at or above its bound is worth at least max / 4,
    every one below it less (values from ml_dtypes)."""
    from ckptscan.checks import data

    vals = np.arange(128, dtype=np.uint8).view(getattr(ml_dtypes, FORMATS[dtype]))
    vals = vals.astype(np.float64)
    top = float(np.nanmax(np.where(np.isfinite(vals), vals, np.nan)))
    bound = data._low_code(dtype)
    for code, v in enumerate(vals.tolist()):
        if np.isfinite(v):
            assert (code >= bound) == (v >= top / data.RANGE_FACTOR), (dtype, code, v)


@pytest.mark.parametrize("seed", range(6))
def test_block_verdicts_match_the_codes(tmp_path: Path, seed: int) -> None:
    """Zero, low and clipping blocks (and the deep maps' counts) of weights with
    planted blocks at random, edge blocks included, equal what numpy counts on
    the codes themselves (the judge's shortcuts for clean weights never hide one)."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    want = {"zero": 0, "low": 0, "clip": 0, "zero_under_scale": 0, "all_zero": 0}
    for k in range(6):
        r, c = int(rng.integers(1, 400)), int(rng.integers(1, 600))
        q, s = quantize(weights(r, c, seed=seed * 10 + k))
        raw = q.view(np.uint8).copy()
        nbr, nbc = s.shape
        for _ in range(int(rng.integers(0, 6))):
            bi, bj = int(rng.integers(nbr)), int(rng.integers(nbc))
            blk = raw[bi * 128:(bi + 1) * 128, bj * 128:(bj + 1) * 128]
            kind = int(rng.integers(4))
            if kind == 0:
                blk[:] = 0
            elif kind == 1:
                blk[:] &= 0x8F  # magnitudes <= 0x0F: far below 112
            elif kind == 2:  # saturated codes around the limit: 5% of the block, at least 4
                limit = max(4, int(np.ceil(0.05 * blk.size)))
                n = min(blk.size, limit + int(rng.integers(-2, 3)))
                blk.reshape(-1)[rng.choice(blk.size, n, replace=False)] = 0x7E
            else:
                s[bi, bj] = 0  # a zero block under a zero scale is no lost data
                blk[:] = 0
        name = f"model.layers.{k}.mlp.down_proj"  # in a layer: the deep maps count it
        tensors[f"{name}.weight"], tensors[f"{name}.weight_scale_inv"] = raw.view(E4M3), s
        all_zero = bool(((raw & 0x7F) == 0).all())  # one finding for the weight instead
        want["all_zero"] += all_zero
        for bi in range(nbr):
            for bj in range(nbc):
                blk = raw[bi * 128:(bi + 1) * 128, bj * 128:(bj + 1) * 128]
                mag = blk & 0x7F
                top = int(mag[mag != 0x7F].max(initial=0))
                if top == 0 and s[bi, bj] != 0 and not all_zero:
                    want["zero_under_scale"] += 1
                want["zero"] += top == 0
                want["low"] += 0 < top < 0x6E  # 0x6E: 112 = 448 / 4
                want["clip"] += int((mag == 0x7E).sum()) > max(4, np.ceil(0.05 * blk.size))
    res = check(write(tmp_path, tensors))

    def blocks(code: str) -> int:
        return sum(int(f.detail.get("blocks", 0)) for f in res.findings if f.code == code)
    assert blocks("fp8-zero-block") == want["zero_under_scale"]
    assert codes(res).count("fp8-all-zero") == want["all_zero"]
    assert blocks("fp8-range-unused") == want["low"]
    assert blocks("fp8-clipping") == want["clip"]
    assert res.deep is not None
    maps = res.deep.maps
    assert sum(sum(m.zero_blocks) for m in maps) == want["zero"]
    assert sum(sum(m.low_blocks) for m in maps) == want["low"]
