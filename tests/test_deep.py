"""--deep on small checkpoints with real FP8 data: each planted defect is found
on the tensor it was planted in, and clean checkpoints give nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ckptscan import scan
from ckptscan.cli import main
from ckptscan.findings import Severity
from ckptscan.synth import PLANTS, write_small_minimax

# planted defect -> the finding code that must name its tensor
EXPECTED = {
    "nan_code": "fp8-nan",
    "sentinel_scale": "scale-unfilled",
    "zero_scale": "scale-nonpositive",
    "bf16_nan": "float-nan",
    "dropped_scale": "fp8-scale-missing",
    "scale_shape": "scale-shape",
    "stale_scale": "fp8-range-unused",
    "all_zero_block": "fp8-zero-block",
}


def test_every_plant_has_an_expected_code() -> None:
    assert set(EXPECTED) == set(PLANTS)


@pytest.mark.parametrize("seed", [0, 1])
def test_clean_checkpoint_has_no_findings(seed: int, tmp_path: Path) -> None:
    path, planted = write_small_minimax(tmp_path, seed=seed)
    assert planted == {}
    report = scan(path, deep=True)
    assert [f for f in report.findings if f.severity > Severity.INFO] == []
    assert report.deep is not None and report.deep.unreadable == 0
    assert report.deep.fp8_nan_codes == 0 and report.deep.float_nan == 0
    # Every tensor was read: FP8 weights with their scales, the rest on their own.
    assert report.deep.bytes == report.total.bytes


@pytest.mark.parametrize("plant", PLANTS)
def test_planted_defect_is_found_on_its_tensor(plant: str, tmp_path: Path) -> None:
    path, planted = write_small_minimax(tmp_path, plant=plant)
    tensor = planted[plant]["tensor"]
    report = scan(path, deep=True, jobs=2)
    code = EXPECTED[plant]
    hits = [f for f in report.findings if f.code == code]
    assert hits, [f"{f.code}:{f.tensor}" for f in report.findings]
    weight = tensor.removesuffix("_scale_inv")
    assert any(f.tensor in (tensor, weight) for f in hits), (tensor, hits)
    # Nothing else is flagged above info, except what the one defect implies.
    implied = {"dropped_scale": {"tensor-missing-in-grid", "index-tensor-absent"}}
    others = {f.code for f in report.findings if f.severity > Severity.INFO} - {code}
    assert others <= implied.get(plant, set()), others


def test_all_plants_at_once_and_counts(tmp_path: Path) -> None:
    path, planted = write_small_minimax(tmp_path, plant=list(PLANTS))
    report = scan(path, deep=True)
    found = {(f.code, f.tensor) for f in report.findings}
    for plant, record in planted.items():
        t = record["tensor"]
        assert any(code == EXPECTED[plant] and tensor in (t, t.removesuffix("_scale_inv"))
                   for code, tensor in found), plant
    # One NaN code (at a known index) and one BF16 NaN were planted.
    assert report.deep is not None
    assert report.deep.fp8_nan_codes == 1 and report.deep.float_nan == 1
    (nan,) = [f for f in report.findings if f.code == "fp8-nan"]
    i, j = planted["nan_code"]["detail"]["index"]
    assert nan.detail["first_block"] == [i // 128, j // 128]


def test_truncated_shard_is_skipped_not_crashed(tmp_path: Path) -> None:
    path, _ = write_small_minimax(tmp_path)
    shard = sorted(path.glob("*.safetensors"))[1]
    os.truncate(shard, shard.stat().st_size - 4096)
    report = scan(path, deep=True)
    assert any(f.code == "truncated" and f.file == str(shard) for f in report.findings)
    assert report.deep is not None and report.deep.unreadable == 0


def test_demo_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--format", "json"]) == 0
    out = capsys.readouterr().out
    for code in EXPECTED.values():
        assert f'"{code}"' in out
    assert main(["demo", "--dir", str(tmp_path / "demo2"), "--fail-on", "error"]) == 1


SHRINK_SCRIPT = """
import os, sys, numpy as np
from safetensors.numpy import save_file
import ckptscan
from ckptscan import kernels
p = sys.argv[1]
save_file({"w": np.full((4096, 64), 0x38, np.uint8)}, p)
shard = ckptscan.open_shard(p)
raw = shard.raw("w")          # mapped while the file is whole
os.truncate(p, 128)           # ... then it shrinks under the scan
try:
    kernels.fp8_stats(raw, dtype="F8_E4M3")
    print("read")
except OSError as e:
    print("OSError", e)
"""


def test_file_shrinking_under_a_kernel_is_an_error_not_sigbus(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", SHRINK_SCRIPT, str(tmp_path / "s.safetensors")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OSError") and "shrank" in out.stdout


def test_deep_scan_goes_on_when_a_shard_shrinks_after_opening(tmp_path: Path) -> None:
    path, _ = write_small_minimax(tmp_path)
    victim = sorted(path.glob("*.safetensors"))[0]
    calls = []

    def shrink_once(p: object) -> None:  # called after the first tensor is read
        if not calls:
            os.truncate(victim, 4096)
        calls.append(p)

    report = scan(path, deep=True, jobs=1, progress=shrink_once)
    # one root cause for the file, the reads that failed attached to it
    (root,) = [f for f in report.findings if f.file == str(victim)]
    assert root.code == "file-changed" and "4,096 now" in root.message
    assert [x.code for x in root.explains] == ["deep-read-failed"]
    failed = root.explains[0].count
    assert report.deep is not None and report.deep.unreadable == failed > 0
    assert report.deep.tensors > 0


def _compressed_tensors_like(root: Path, scale: object, with_scale: bool = True) -> Path:
    """An FP8 layout with per-channel multipliers (weight_scale) instead of
    block scales, as compressed-tensors / ModelOpt exports store them."""
    import json

    import numpy as np
    from ckptscan.synth import encode_e4m3fn, write_safetensors
    from safetensors import safe_open

    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (256, 320)).astype(np.float32)
    tensors: dict[str, tuple[str, tuple[int, ...], np.ndarray]] = {
        "model.layers.0.mlp.down_proj.weight":
            ("F8_E4M3", (256, 320), encode_e4m3fn(w / np.abs(w).max() * 448)),
        "model.layers.0.mlp.down_proj.input_scale": ("F32", (), np.array([0.5], np.float32)),
        "model.layers.0.input_layernorm.weight": ("F32", (320,), np.ones(320, np.float32))}
    if with_scale:
        arr = np.asarray(scale, dtype=np.float32)
        tensors["model.layers.0.mlp.down_proj.weight_scale"] = ("F32", arr.shape, arr)
    root.mkdir()
    write_safetensors(root / "model.safetensors", tensors)
    with safe_open(str(root / "model.safetensors"), "numpy") as ref:  # a valid file
        assert sorted(ref.keys()) == sorted(tensors)
    # llm-compressor's FP8 per-channel weights with a static per-tensor input scale
    # (compressed-tensors QuantizationArgs as serialised)
    group = {"targets": ["Linear"],
             "weights": {"num_bits": 8, "type": "float", "strategy": "channel",
                         "symmetric": True, "dynamic": False},
             "input_activations": {"num_bits": 8, "type": "float", "strategy": "tensor",
                                   "symmetric": True, "dynamic": False}}
    (root / "config.json").write_text(json.dumps({
        "model_type": "llama", "quantization_config": {
            "quant_method": "compressed-tensors", "format": "float-quantized",
            "config_groups": {"group_0": group}, "ignore": []}}))
    return root


def test_per_channel_multipliers_are_not_block_scales(tmp_path: Path) -> None:
    import numpy as np

    clean = scan(_compressed_tensors_like(tmp_path / "a", np.full((256, 1), 0.01, np.float32)),
                 deep=True)
    assert [f.code for f in clean.findings if f.severity > Severity.INFO] == []
    bad = np.full((256, 1), 0.01, np.float32)
    bad[7, 0] = np.nan
    found = scan(_compressed_tensors_like(tmp_path / "b", bad), deep=True)
    assert [(f.code, f.tensor) for f in found.findings if f.severity > Severity.INFO] == [
        ("scale-nonfinite", "model.layers.0.mlp.down_proj.weight_scale")]
    missing = scan(_compressed_tensors_like(tmp_path / "c", None, with_scale=False), deep=True)
    assert {f.code for f in missing.findings if f.severity > Severity.INFO} == {
        "fp8-scale-missing"}
