"""The precision statement and the scheme's declaration, one question each:
mixed FP8 formats, normalised format names, where the scheme is declared
(hf_quant_config.json alone, text_config), declaration problems named by key and
file, one shard of a sharded checkpoint, the kinds the scheme gives its tensors,
and each producer's way of matching exclusion entries, through `ckptscan.scan()`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from ckptscan import scan
from ckptscan.checkpoint import open_checkpoint
from ckptscan.context import ScanContext
from ckptscan.findings import Finding, Severity
from ckptscan.frame import build_frame
from ckptscan.result import Report
from ckptscan.testing import quant_layouts as QL
from safetensors.numpy import save_file

E4M3, E5M2 = ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2


def warnings_up(report: Report) -> list[tuple[str, str | None]]:
    return [(f.code, f.tensor) for f in report.findings if f.severity >= Severity.WARNING]


def only(report: Report, code: str) -> Finding:
    (f,) = [f for f in report.findings if f.code == code]
    return f


def edit_config(path: Path, edit: Any, name: str = "config.json") -> None:
    cfg = json.loads((path / name).read_text())
    edit(cfg)
    (path / name).write_text(json.dumps(cfg))


def fp8_weight(rng: np.random.Generator, rows: int, cols: int, dtype: Any = E4M3
               ) -> tuple[np.ndarray, np.ndarray]:
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    scale = np.full((-(-rows // 128), -(-cols // 128)), np.abs(w).max() / 448, np.float32)
    return (w / scale[0, 0]).astype(dtype), scale


# ---- formats ------------------------------------------------------------------------------


def test_mixed_fp8_formats_without_a_config_are_reported_as_mixed(tmp_path: Path) -> None:
    """The issue's case: F8_E4M3 and F8_E5M2 tensors, no config: the statement says
    mixed (the old one named the alphabetically first)."""
    rng = np.random.default_rng(0)
    a, _ = fp8_weight(rng, 256, 256)
    b, _ = fp8_weight(rng, 256, 256, E5M2)
    save_file({"model.layers.0.mlp.up_proj.weight": a,
               "model.layers.0.mlp.down_proj.weight": b}, str(tmp_path / "model.safetensors"))
    report = scan(tmp_path)
    assert report.quantization.format == "mixed: E4M3, E5M2"
    assert report.quantization.method is None and report.quantization.schemes == []
    assert only(report, "fp8-without-config").severity == Severity.WARNING


def test_an_e5m2_weight_in_an_e4m3_scheme(tmp_path: Path) -> None:
    w = QL.write("hf-fp8-block", tmp_path / "ckpt")
    victim = "model.layers.1.self_attn.o_proj.weight"
    path = w.path / "model.safetensors"
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header[victim]["dtype"] = "F8_E5M2"  # the same bytes, read as another format
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (n - len(text))
    path.write_bytes(raw[:8] + text + raw[8 + n:])
    report = scan(w.path)
    f = only(report, "fp8-format-mismatch")
    assert f.tensor == victim and f.severity == Severity.ERROR and "E4M3" in f.message
    assert report.quantization.format == "mixed: E4M3, E5M2"
    assert [c for c, _ in warnings_up(report) if c != "fp8-format-mismatch"] == []


@pytest.mark.parametrize("fmt", ["e4m3", "float8_e4m3fn"])
def test_format_names_are_normalised(tmp_path: Path, fmt: str) -> None:
    report = scan(QL.write("hf-fp8-block", tmp_path / "ckpt", fmt=fmt).path)
    q = report.quantization
    assert q.format == "E4M3" and q.schemes[0]["weight_format"] == "E4M3"
    assert q.schemes[0]["name"] == "hf-fp8/E4M3/block128x128"


# ---- where the scheme is declared ----------------------------------------------------------


def test_hf_quant_config_json_alone_declares_modelopt(tmp_path: Path) -> None:
    w = QL.write("modelopt-nvfp4", tmp_path / "ckpt", config_in="hf_quant_config")
    assert "quantization_config" not in w.config
    report = scan(w.path)
    q = report.quantization
    assert (q.family, q.method, q.format) == ("modelopt", "modelopt/NVFP4", "E2M1")
    assert q.source == "hf_quant_config.json: quantization"
    assert warnings_up(report) == []


def test_declaration_problems_name_key_and_file(tmp_path: Path) -> None:
    w = QL.write("modelopt-nvfp4", tmp_path / "ckpt", config_in="hf_quant_config")
    edit_config(w.path, lambda c: c["quantization"].update(group_size=0), "hf_quant_config.json")
    f = only(scan(w.path), "quant-config-invalid")
    assert f.file == str(w.path / "hf_quant_config.json")
    assert f.detail["key"] == "quantization.group_size" and "group_size" in f.message

    w = QL.write("hf-fp8-block", tmp_path / "fp8")
    edit_config(w.path, lambda c: c["quantization_config"].update(fmt="e9m9"))
    f = only(scan(w.path), "quant-config-invalid")
    assert f.file == str(w.path / "config.json")
    assert f.detail["key"] == "quantization_config.fmt" and "'e9m9'" in f.message

    w = QL.write("ct-fp8", tmp_path / "ct")
    edit_config(w.path, lambda c: c["quantization_config"]["ignore"].append("re:(unclosed"))
    f = only(scan(w.path), "config-value")
    assert f.detail["key"] == "quantization_config.ignore" and "re:(unclosed"[3:] in f.message


def test_text_config_declaration(tmp_path: Path) -> None:
    w = QL.write("ct-fp8", tmp_path / "ckpt", strategy="group", text_config=True)
    assert "quantization_config" in w.config["text_config"]
    report = scan(w.path)
    assert report.quantization.method == "compressed-tensors/float-quantized"
    assert report.quantization.source == "config.json: text_config.quantization_config"
    assert warnings_up(report) == []


# ---- one shard of a sharded checkpoint ----------------------------------------------------


def test_one_shard_does_not_miss_what_the_index_places_elsewhere(tmp_path: Path) -> None:
    """Weights in one shard, their scales in the other: a scan of either shard
    alone reports no missing scale and no orphan; the whole checkpoint is clean."""
    rng = np.random.default_rng(1)
    weights, scales = {}, {}
    for i in range(2):
        for proj in ("q_proj", "o_proj"):
            q, s = fp8_weight(rng, 256, 256)
            weights[f"model.layers.{i}.self_attn.{proj}.weight"] = q
            scales[f"model.layers.{i}.self_attn.{proj}.weight_scale_inv"] = s
    names = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    save_file(weights, str(tmp_path / names[0]))
    save_file(scales, str(tmp_path / names[1]))
    wm = {n: names[0] for n in weights} | {n: names[1] for n in scales}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 2,
        "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}))
    assert [f for f in scan(tmp_path).findings if f.severity >= Severity.WARNING] == []
    for name in names:
        report = scan(tmp_path / name)
        assert report.source.kind == "shard"
        assert warnings_up(report) == []
    # the same scales gone from the index too: missing, named as the scheme names them
    (tmp_path / names[1]).unlink()
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {n: names[0] for n in weights}}))
    missing = [f for f in scan(tmp_path / names[0]).findings if f.code == "fp8-scale-missing"]
    assert sorted(f.detail["missing"] for f in missing) == sorted(scales)


# ---- kinds ---------------------------------------------------------------------------------

# name in the writer's checkpoint -> (kind, role) once the scheme is known
KINDS = {
    "gpt-oss": {"model.layers.0.mlp.experts.gate_up_proj_blocks": ("weight", "moe_expert"),
                "model.layers.0.mlp.experts.gate_up_proj_scales": ("scale", "moe_expert"),
                "model.layers.0.mlp.experts.gate_up_proj_bias": ("bias", "moe_expert")},
    "deepseek-v4": {"layers.0.ffn.experts.0.w1.weight": ("weight", "moe_expert"),
                    "layers.0.ffn.experts.0.w1.scale": ("scale", "moe_expert"),
                    "layers.0.attn.wq_a.scale": ("scale", "attention")},
    "ct-w4a16": {"model.layers.0.mlp.down_proj.weight_packed": ("weight", "mlp"),
                 "model.layers.0.mlp.down_proj.weight_scale": ("scale", "mlp"),
                 "model.layers.0.mlp.down_proj.weight_shape": ("scale", "mlp")},
    "gptq": {"model.layers.0.self_attn.q_proj.qweight": ("weight", "attention"),
             "model.layers.0.self_attn.q_proj.qzeros": ("scale", "attention"),
             "model.layers.0.self_attn.q_proj.g_idx": ("scale", "attention")},
    "modelopt-nvfp4": {"model.layers.0.mlp.up_proj.weight": ("weight", "mlp"),
                       "model.layers.0.mlp.up_proj.weight_scale_2": ("scale", "mlp"),
                       "model.layers.0.self_attn.k_proj.k_scale": ("scale", "attention")},
    "mlx": {"model.layers.0.mlp.up_proj.biases": ("scale", "mlp"),
            "model.embed_tokens.weight": ("weight", "embedding")},
    "torchao": {"model.layers.0.mlp.up_proj._weight_qdata": ("weight", "mlp"),
                "model.layers.0.mlp.up_proj._weight_scale": ("scale", "mlp")},
    "bnb-4bit": {"model.layers.0.mlp.up_proj.weight.absmax": ("scale", "mlp"),
                 "model.layers.0.mlp.up_proj.weight.quant_map": ("scale", "mlp")},
}


@pytest.mark.parametrize("scheme", sorted(KINDS))
def test_the_scheme_decides_the_kinds_of_its_tensors(tmp_path: Path, scheme: str) -> None:
    w = QL.write(scheme, tmp_path / "ckpt")
    ckpt = open_checkpoint(w.path)
    frame = build_frame(ckpt)
    ctx = ScanContext(ckpt, frame)
    by_name = {frame.name(i): i for i in range(len(frame))}
    for name, (kind, role) in KINDS[scheme].items():
        i = by_name[name]
        assert (frame.table.classes[int(frame.template[i])].kind, frame.role_name(i)) == (
            kind, role), name
    # companions are overhead: no parameters, their bytes counted apart
    assert ctx.quant_map.params[ctx.quant_map.overhead].sum() == 0
    ckpt.close()


# ---- each producer's matching of exclusion entries ----------------------------------------


def test_dotted_entries_match_whole_components(tmp_path: Path) -> None:
    """HF FP8 (modules_to_not_convert): 'gate' is MiniMax's router, never a gate_proj;
    an entry naming a layer number matches that layer only."""
    w = QL.write("hf-fp8-block", tmp_path / "ckpt")
    edit_config(w.path, lambda c: c["quantization_config"]["modules_to_not_convert"].append(
        "model.layers.1.self_attn.o_proj"))
    f = only(scan(w.path), "fp8-not-converted")
    assert f.tensor == "model.layers.1.self_attn.o_proj.weight"
    assert "'model.layers.1.self_attn.o_proj'" in f.message


def test_compressed_tensors_entries_are_exact_names_or_re_regexes(tmp_path: Path) -> None:
    w = QL.write("ct-fp8", tmp_path / "ckpt")
    edit_config(w.path, lambda c: c["quantization_config"]["ignore"].extend(
        ["down_proj", "re:.*layers\\.1\\.mlp\\.up_proj$"]))
    report = scan(w.path)
    # a bare name is no module's full name: it matches nothing
    assert only(report, "exclusion-unmatched").detail["entry"] == "down_proj"
    f = only(report, "fp8-not-converted")
    assert f.tensor == "model.layers.1.mlp.up_proj.weight"


def test_modelopt_entries_are_globs_or_substrings(tmp_path: Path) -> None:
    """vLLM reads ModelOpt's exclude_modules as the exact name, a substring (older
    exports) or a glob: 'mlp.down' covers every down projection by substring."""
    w = QL.write("modelopt-fp8", tmp_path / "ckpt")
    edit_config(w.path, lambda c: c["quantization"]["exclude_modules"].extend(
        ["model.layers.1.self_attn.*", "mlp.down"]), "hf_quant_config.json")
    edit_config(w.path, lambda c: c["quantization_config"]["ignore"].extend(
        ["model.layers.1.self_attn.*", "mlp.down"]))
    report = scan(w.path)
    flagged = sorted(f.tensor or "" for f in report.findings if f.code == "fp8-not-converted")
    assert flagged == [f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1)] + [
        f"model.layers.1.self_attn.{p}.weight" for p in ("k_proj", "o_proj", "q_proj", "v_proj")]


def test_transformers_entries_match_at_the_start_or_as_a_suffix(tmp_path: Path) -> None:
    """gpt-oss (transformers' should_convert_module): an entry is a regex matched at
    the start of the name, or a suffix; 'experts' is a suffix of every experts module."""
    w = QL.write("gpt-oss", tmp_path / "ckpt")
    edit_config(w.path, lambda c: c["quantization_config"]["modules_to_not_convert"].extend(
        ["experts", "layers.0"]))
    report = scan(w.path)
    flagged = {f.tensor for f in report.findings if f.code == "quantized-excluded"}
    assert flagged == {f"model.layers.{i}.mlp.experts.{p}_blocks" for i in (0, 1)
                       for p in ("gate_up_proj", "down_proj")}
    # 'layers.0' starts no name: it would, were the names not under 'model.'
    f = only(report, "exclusion-prefix")
    assert (f.detail["entry"], f.detail["via_prefix"]) == ("layers.0", "model.")
    assert f.tensor is not None and f.tensor.startswith("model.layers.0.")


def test_a_huge_exclusion_list_is_bounded(tmp_path: Path) -> None:
    """10,000 regexes in `ignore`: the first 4,096 are read (named as a limit), the
    entries judged for matching nothing are bounded, and the scan ends (a hang fails)."""
    import time

    w = QL.write("ct-fp8", tmp_path / "ckpt")
    edit_config(w.path, lambda c: c["quantization_config"]["ignore"].extend(
        f"re:.*layers\\.{i}\\.mlp\\.gate{i}$" for i in range(10_000)))
    t0 = time.monotonic()
    report = scan(w.path)
    assert time.monotonic() - t0 < 60
    limit = only(report, "config-value")
    assert limit.detail["key"] == "quantization_config.ignore" and "10,001 entries" in limit.message
    unmatched = [f for f in report.findings if f.code == "exclusion-unmatched"]
    assert unmatched and len(report.findings) < 60  # counted beyond 25 lines, not listed
    assert report.quantization.format == "E4M3"
