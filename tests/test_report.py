"""The precision report on full-size sparse replicas: the seed's numbers, clean
layouts without errors, and planted faults named by shard or tensor."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import ckptscan
import orjson
import pytest
from ckptscan import scan
from ckptscan.cli import main
from ckptscan.findings import Severity
from ckptscan.render import to_json, to_markdown, to_text
from ckptscan.replica import copy_replica, read_entries, rewrite_shard


def codes_at(report: ckptscan.scan.Report, severity: Severity) -> list[str]:  # type: ignore[name-defined]
    return sorted({f.code for f in report.findings if f.severity == severity})


def test_minimax_replica_gives_the_seed_numbers(minimax_replica: Path) -> None:
    report = scan(minimax_replica)
    assert report.total.tensors == 96_103
    assert {k: v.tensors for k, v in report.dtypes.items()} == {
        "BF16": 251, "F32": 47_988, "F8_E4M3": 47_864}
    assert len(report.shards.found) == 125 and report.shards.missing == []
    q = report.quantization
    assert (q.method, q.block_size, q.scale_tensors) == ("fp8", [128, 128], 47_864)
    assert q.quantized_roles == ["attention", "moe_expert"]
    assert set(q.unquantized_roles) == {"embedding", "router", "norm", "lm_head"}
    # Its one warning is real: the experts are 1536 wide, so at TP 8 a rank holds 192
    # rows, no multiple of the 128-row blocks (MiniMax's own deployment notes run TP 8
    # with expert parallelism); TP 4 leaves 384 = 3 x 128.
    assert codes_at(report, Severity.ERROR) == []
    assert codes_at(report, Severity.WARNING) == ["tensor-parallel-limit"]
    tp = report.deployment.tensor_parallel
    assert tp is not None and tp["ok"] == [1, 2, 4] and tp["max"] == 4
    assert {n.rsplit(".", 2)[-2] for n in tp["limiting"]} == {"w1", "w2", "w3"}
    # Hand-checked: 62 layers x (4 attention projections + 3 x 256 experts) FP8 weights.
    assert report.dtypes["F8_E4M3"].tensors == 62 * (4 + 3 * 256)
    experts = report.roles["moe_expert"]
    assert experts.tensors == 62 * 256 * 3 * 2
    # parameters are the weights' own; the 12 x 24 block scales are overhead bytes
    assert experts.parameters == 62 * 256 * 3 * 1536 * 3072
    assert report.dtypes["F32"].parameters == 62 * (256 * 3072 + 256)  # router and bias
    # F32 block scales: experts [12, 24] / [24, 12], q and o [48, 24] / [24, 48], k and v [8, 24]
    assert q.overhead_bytes == 4 * 62 * (256 * 3 * 12 * 24 + 2 * 48 * 24 + 2 * 8 * 24)
    assert q.format == "E4M3" and [s["name"] for s in q.schemes] == ["hf-fp8/E4M3/block128x128"]
    assert q.schemes[0]["parameters"] == 62 * (256 * 3 * 1536 * 3072 + 2 * 6144 * 3072
                                               + 2 * 1024 * 3072)
    router = report.roles["router"]
    assert router.tensors == 62 * 2 and router.dtypes == {"F32": 124}
    names = {r.name for r in report.examples["router"]}
    assert names == {"model.layers.0.block_sparse_moe.gate.weight",
                     "model.layers.0.block_sparse_moe.e_score_correction_bias"}

    data = orjson.loads(to_json(report))
    assert data["schema"] == "ckptscan.report/2"
    assert data == report.to_dict() | {"findings": data["findings"]}
    assert data["dtypes"]["F8_E4M3"] == {"tensors": 47_864,
                                         "parameters": report.dtypes["F8_E4M3"].parameters,
                                         "bytes": report.dtypes["F8_E4M3"].bytes}
    assert data["roles"]["moe_expert"]["dtypes"] == {"F8_E4M3": 47_616, "F32": 47_616}
    text = to_text(report)
    for section in ("Data types", "Quantization", "Precision by role",
                    "Layer-wise precision", "Findings"):
        assert section in text
    # 80 columns elide the longest names in the middle; a wider terminal shows them whole
    assert "model.layers.0.block_spar...rts.0.w2.weight_scale_inv" in text
    assert "model.layers.0.block_sparse_moe.experts.0.w2.weight_scale_inv" in to_text(
        report, width=100)
    assert re.search(r"F8_E4M3\s+47,864", text)
    assert "| F8_E4M3 | 47,864 |" in to_markdown(report)


def test_deepseek_replica_is_clean_and_finds_mtp(deepseek_replica: Path) -> None:
    report = scan(deepseek_replica)
    assert codes_at(report, Severity.ERROR) == [] and codes_at(report, Severity.WARNING) == []
    assert len(report.shards.found) == 163
    assert "mtp" in report.roles and "shared_expert" in report.roles and "mlp" in report.roles
    assert {"attention", "moe_expert", "shared_expert", "mlp", "mtp"} <= set(
        report.quantization.quantized_roles)
    # DeepSeek's config lists no modules: unquantized linears (eh_proj, routers,
    # lm_head) are info lines, never warnings.
    info = {f.tensor for f in report.findings if f.code == "unquantized-linear-info"}
    assert "model.layers.61.eh_proj.weight" in info


def test_llama_bf16_replica(llama_replica: Path) -> None:
    report = scan(llama_replica)
    assert report.findings == []
    assert report.quantization.fp8_tensors == 0
    assert report.dtypes["BF16"].parameters == 8_030_261_248
    assert report.roles["attention"].tensors == 32 * 4


# ---- planted faults ------------------------------------------------------------

def _shard_holding(root: Path, tensor: str) -> Path:
    wm = orjson.loads((root / "model.safetensors.index.json").read_bytes())["weight_map"]
    return root / wm[tensor]


def _drop(name: str) -> Callable[[Path], str]:
    def plant(root: Path) -> str:
        rewrite_shard(_shard_holding(root, name), lambda es: [e for e in es if e.name != name])
        return name
    return plant


def _reshape(name: str) -> Callable[[Path], str]:
    def plant(root: Path) -> str:
        rewrite_shard(_shard_holding(root, name), lambda es: [
            dataclasses.replace(e, shape=(e.shape[0] + 1, e.shape[1])) if e.name == name else e
            for e in es])
        return name
    return plant


def _delete_shard(root: Path) -> str:
    victim = sorted(root.glob("*.safetensors"))[7]
    victim.unlink()
    return victim.name


def _truncate_shard(root: Path) -> str:
    victim = sorted(root.glob("*.safetensors"))[3]
    os.truncate(victim, victim.stat().st_size - 1000)
    return victim.name


def _duplicate_into_other_shard(name: str) -> Callable[[Path], str]:
    def plant(root: Path) -> str:
        home = _shard_holding(root, name)
        entry = next(e for e in read_entries(home)[0] if e.name == name)
        other = next(p for p in sorted(root.glob("*.safetensors")) if p != home)
        rewrite_shard(other, lambda es: [*es, entry])
        return name
    return plant


MINIMAX_FAULTS = {
    "shard-deleted": (_delete_shard, "shard-missing"),
    "shard-truncated": (_truncate_shard, "truncated"),
    "scale-dropped": (_drop("model.layers.17.block_sparse_moe.experts.3.w2.weight_scale_inv"),
                      "fp8-scale-missing"),
    "scale-reshaped": (_reshape("model.layers.5.self_attn.o_proj.weight_scale_inv"),
                       "scale-shape"),
    "tensor-duplicated": (_duplicate_into_other_shard(
        "model.layers.9.block_sparse_moe.experts.200.w1.weight"), "tensor-duplicate"),
    "expert-weight-dropped": (_drop("model.layers.30.block_sparse_moe.experts.77.w3.weight"),
                              "tensor-missing-in-grid"),
}


@pytest.mark.parametrize("fault", sorted(MINIMAX_FAULTS))
def test_minimax_faults_are_errors_naming_the_culprit(fault: str, minimax_replica: Path,
                                                      tmp_path: Path) -> None:
    plant, code = MINIMAX_FAULTS[fault]
    root = copy_replica(minimax_replica, tmp_path / "ckpt")
    culprit = plant(root)
    report = scan(root)
    hits = [f for f in report.findings if f.code == code]
    assert hits, f"{fault}: {[f.code for f in report.findings]}"
    assert all(f.severity == Severity.ERROR for f in hits)
    stem = culprit.rsplit(".", 1)[0] if culprit.endswith("_inv") else culprit
    named = [f for f in hits
             if culprit in (f.file or "") or (f.tensor or "").startswith(stem.split(".weight")[0])]
    assert named, f"{fault}: {hits}"


DEEPSEEK_FAULTS = {
    "shard-deleted": (_delete_shard, "shard-missing"),
    "shard-truncated": (_truncate_shard, "truncated"),
    "scale-dropped": (_drop("model.layers.40.mlp.experts.12.down_proj.weight_scale_inv"),
                      "fp8-scale-missing"),
    "scale-reshaped": (_reshape("model.layers.2.self_attn.kv_b_proj.weight_scale_inv"),
                       "scale-shape"),
    "tensor-duplicated": (_duplicate_into_other_shard("model.layers.3.mlp.gate.weight"),
                          "tensor-duplicate"),
}


@pytest.mark.parametrize("fault", sorted(DEEPSEEK_FAULTS))
def test_deepseek_faults(fault: str, deepseek_replica: Path, tmp_path: Path) -> None:
    plant, code = DEEPSEEK_FAULTS[fault]
    root = copy_replica(deepseek_replica, tmp_path / "ckpt")
    culprit = plant(root)
    report = scan(root)
    hits = [f for f in report.findings if f.code == code and f.severity == Severity.ERROR]
    assert hits and any(culprit in (f.file or "") + (f.tensor or "") or
                        (f.tensor or "").startswith(culprit.split(".weight")[0]) for f in hits)


def test_llama_missing_shard(llama_replica: Path, tmp_path: Path) -> None:
    root = copy_replica(llama_replica, tmp_path / "ckpt")
    name = _delete_shard_last(root)
    report = scan(root)
    (hit,) = [f for f in report.findings if f.code == "shard-missing"]
    assert hit.file is not None and hit.file.endswith(name)
    assert hit.detail["lost_tensors"] > 0


def _delete_shard_last(root: Path) -> str:
    victim = sorted(root.glob("*.safetensors"))[-1]
    victim.unlink()
    return victim.name


def test_modules_to_not_convert_is_enforced(minimax_replica: Path, tmp_path: Path) -> None:
    """A router weight stored FP8 contradicts MiniMax's list ('gate'); an
    unlisted linear weight left BF16 is a warning."""
    root = copy_replica(minimax_replica, tmp_path / "ckpt")
    gate = "model.layers.4.block_sparse_moe.gate.weight"
    proj = "model.layers.6.self_attn.q_proj.weight"
    rewrite_shard(_shard_holding(root, gate), lambda es: [
        dataclasses.replace(e, dtype="F8_E4M3") if e.name == gate else e for e in es])
    rewrite_shard(_shard_holding(root, proj), lambda es: [
        dataclasses.replace(e, dtype="BF16") if e.name == proj else e for e in es])
    report = scan(root)
    by_code = {f.code: f for f in report.findings}
    assert by_code["fp8-not-converted"].tensor == gate
    assert by_code["fp8-not-converted"].detail.get("template") is None
    assert "'gate'" in by_code["fp8-not-converted"].message
    assert by_code["unquantized-linear"].tensor == proj
    assert by_code["scale-on-unquantized"].tensor == proj + "_scale_inv"


def test_config_disagreements(minimax_replica: Path, tmp_path: Path) -> None:
    root = copy_replica(minimax_replica, tmp_path / "ckpt")
    config = orjson.loads((root / "config.json").read_bytes())
    config.update(num_hidden_layers=64, num_local_experts=255, hidden_size=4096)
    (root / "config.json").write_bytes(orjson.dumps(config))
    report = scan(root)
    codes = {f.code for f in report.findings}
    assert {"config-layers", "config-experts", "config-hidden-size"} <= codes
    layers = next(f for f in report.findings if f.code == "config-layers")
    assert "62-63" in layers.message


# ---- CLI -------------------------------------------------------------------------

def test_cli_exit_codes_and_formats(minimax_replica: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(minimax_replica), "--format", "json"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert data["tensors"] == 96_103
    assert main(["report", str(minimax_replica), "--fail-on", "info"]) == 1
    capsys.readouterr()
    assert main(["report", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err
    broken = copy_replica(minimax_replica, tmp_path / "b")
    _delete_shard(broken)
    assert main(["report", str(broken), "--format", "md", "-o", str(tmp_path / "r.md")]) == 1
    assert "shard-missing" in (tmp_path / "r.md").read_text()
    with pytest.raises(SystemExit) as exc:
        main(["report"])
    assert exc.value.code == 2


def test_help_imports_nothing_heavy() -> None:
    """--help must stay instant: the CLI module may not import numpy or the core."""
    code = ("import sys, ckptscan.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'ckptscan._core', 'orjson', 'ckptscan.diff', "
            "'ckptscan.pipeline', 'ckptscan.render') if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_every_code_is_documented_in_readme() -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.fail("README.md is missing")
    text = readme.read_text()
    from ckptscan.codes import CODES

    undocumented = [c for c in CODES if f"`{c}`" not in text]
    assert undocumented == []


def test_names_with_literal_braces_do_not_confuse_the_taxonomy(tmp_path: Path) -> None:
    """A '{}' component looks like a template slot but carries no integer."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"model.layers.{}.mlp.up_proj.weight": np.ones((2, 2), np.float32),
               "model.layers.0.mlp.up_proj.weight": np.ones((2, 2), np.float32),
               "{}": np.ones(1, np.float32)}, str(tmp_path / "m.safetensors"))
    report = scan(tmp_path / "m.safetensors")
    assert report.total.tensors == 3
    rows = {r.name for rows in report.examples.values() for r in rows}
    assert "model.layers.0.mlp.up_proj.weight" in rows
