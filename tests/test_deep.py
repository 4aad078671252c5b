"""--deep on small checkpoints with real FP8 data: each planted defect is found
on the tensor it was planted in, and clean checkpoints give nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ckptscan.cli import main
from ckptscan.findings import Severity
from ckptscan.scan import scan
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
