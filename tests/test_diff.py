"""ckptscan diff: renamed (prefix, renumbered and shifted stacks), re-sharded,
re-typed and identical checkpoints, byte changes with --deep, config
differences and --allow rules. Checkpoints are written by the real safetensors
library; layer contents are seeded by a layer's identity, so that a layer keeps
its bytes when it is renumbered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import orjson
import pytest
from ckptscan.cli import main
from ckptscan.diff import Rule, compare, json_diff, parse_rules
from ckptscan.render import diff as render
from digest_ref import tensor_digest
from safetensors.numpy import save_file

BF16 = ml_dtypes.bfloat16
E4M3 = ml_dtypes.float8_e4m3fn
H, FF, V = 64, 96, 128
LINEARS = {"self_attn.q_proj": (H, H), "self_attn.k_proj": (H // 2, H),
           "self_attn.v_proj": (H // 2, H), "self_attn.o_proj": (H, H),
           "mlp.gate_proj": (FF, H), "mlp.up_proj": (FF, H), "mlp.down_proj": (H, FF)}
NORMS = ("input_layernorm", "post_attention_layernorm")
PER_LAYER = len(LINEARS) + len(NORMS)
BLOCK = 32


def _rand(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 0.02).astype(np.float32)


def layer_tensors(identity: int, number: int, prefix: str = "model.") -> dict[str, np.ndarray]:
    """Layer `identity`'s tensors named as layer `number`."""
    out = {}
    for k, (proj, shape) in enumerate(LINEARS.items()):
        out[f"{prefix}layers.{number}.{proj}.weight"] = _rand(1000 * identity + k, shape)
    for k, norm in enumerate(NORMS):
        out[f"{prefix}layers.{number}.{norm}.weight"] = 1 + _rand(1000 * identity + 50 + k, (H,))
    return out


def model(identities: list[int], numbers: list[int] | None = None,
          prefix: str = "model.") -> dict[str, np.ndarray]:
    t = {f"{prefix}embed_tokens.weight": _rand(7, (V, H)),
         f"{prefix}norm.weight": 1 + _rand(8, (H,)), "lm_head.weight": _rand(9, (V, H))}
    for ident, num in zip(identities, numbers or range(len(identities)), strict=True):
        t |= layer_tensors(ident, num, prefix)
    return {k: v.astype(BF16) for k, v in t.items()}


def config(layers: int, **extra: Any) -> dict[str, Any]:
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": H,
            "intermediate_size": FF, "num_hidden_layers": layers, "vocab_size": V,
            "num_attention_heads": 4, "rope_theta": 10000.0, "tie_word_embeddings": False,
            **extra}


def write(path: Path, tensors: dict[str, np.ndarray], cfg: dict[str, Any] | None,
          shards: int = 1) -> Path:
    path.mkdir(parents=True)
    names = sorted(tensors)
    if shards == 1:
        save_file(tensors, str(path / "model.safetensors"))
    else:
        weight_map = {}
        for k in range(shards):
            part = names[k::shards]  # interleaved: tensors move between files
            fname = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            save_file({n: tensors[n] for n in part}, str(path / fname))
            weight_map |= {n: fname for n in part}
        total = sum(int(v.nbytes) for v in tensors.values())
        (path / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}))
    if cfg is not None:
        (path / "config.json").write_text(json.dumps(cfg))
    return path


def quantize(w: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Blockwise E4M3 from the format's definition: scale_inv = amax / 448 per block."""
    rows, cols = w.shape
    br, bc = -(-rows // block), -(-cols // block)
    scale = np.zeros((br, bc), np.float32)
    q = np.zeros(w.shape, E4M3)
    for i in range(br):
        for j in range(bc):
            blk = w[i * block:(i + 1) * block, j * block:(j + 1) * block].astype(np.float32)
            s = max(float(np.abs(blk).max()) / 448.0, 1e-12)
            scale[i, j] = s
            q[i * block:(i + 1) * block, j * block:(j + 1) * block] = (blk / s).astype(E4M3)
    return q, scale


# ---------------------------------------------------------------- the cases


def test_identical_checkpoints_do_not_differ(tmp_path: Path) -> None:
    t = model(list(range(3)))
    a = write(tmp_path / "a", t, config(3))
    b = write(tmp_path / "b", t, config(3))
    d = compare(a, b, deep=True)
    assert not d.differs and d.violations() == []
    assert d.same_name == len(t) and not d.renamed and not d.added and not d.removed
    assert d.deep is not None and d.deep.compared == len(t) == d.deep.equal
    assert d.deep.bytes == sum(int(v.nbytes) for v in t.values())
    assert main(["diff", str(a), str(b), "--deep", "-qq"]) == 0


def test_resharded_checkpoint_is_the_same(tmp_path: Path) -> None:
    t = model(list(range(4)))
    a = write(tmp_path / "a", t, config(4))
    b = write(tmp_path / "b", t, config(4), shards=3)
    d = compare(a, b, deep=True)
    assert (d.a.shards, d.b.shards) == (1, 3)
    assert not d.differs and not d.of("bytes")
    assert d.deep is not None and d.deep.equal == len(t)
    assert main(["diff", str(a), str(b), "-qq"]) == 0


def test_prefix_rename_is_one_rule(tmp_path: Path) -> None:
    a = write(tmp_path / "a", model(list(range(3))), config(3))
    b = write(tmp_path / "b", model(list(range(3)), prefix="model.language_model."), config(3))
    d = compare(a, b, deep=True)
    renamed = len(model([0, 1, 2])) - 1  # all but lm_head
    assert len(d.renamed) == renamed and d.same_name == 1
    assert not d.added and not d.removed and not d.changes
    assert [(g.kind, g.from_, g.to, g.tensors) for g in d.rename_groups] == [
        ("prefix", "model.", "model.language_model.", renamed)]
    assert all(r.b == r.a.replace("model.", "model.language_model.", 1) for r in d.renamed)
    assert d.deep is not None and d.deep.equal == renamed + 1
    assert d.violations() == [f"{renamed} tensors renamed"]
    assert d.violations(parse_rules(["renames"])) == []


def test_renumbered_stack_is_a_rename_not_2n_changes(tmp_path: Path) -> None:
    a = write(tmp_path / "a", model(list(range(6))), config(6))
    b = write(tmp_path / "b", model(list(range(6)), numbers=list(range(1, 7))), config(6))
    for deep in (False, True):
        d = compare(a, b, deep=deep)
        assert not d.added and not d.removed, deep
        assert len(d.renamed) == 6 * PER_LAYER
        assert all(r.a.replace("layers.", "") != r.b.replace("layers.", "") for r in d.renamed)
        for r in d.renamed:  # layer n -> n + 1, the rest of the name kept
            n = int(r.a.split(".")[2])
            assert r.b == r.a.replace(f"layers.{n}.", f"layers.{n + 1}.")
        assert [(g.kind, g.rule, g.tensors) for g in d.rename_groups] == [
            ("layers", "model.layers.{}: layers 0-5 -> 1-6", 6 * PER_LAYER)]
        if deep:
            assert d.deep is not None and d.deep.equal == len(model(list(range(6))))


def test_layer_inserted_in_the_middle(tmp_path: Path) -> None:
    a = write(tmp_path / "a", model([0, 1, 2, 3, 4, 5]), config(6))
    b = write(tmp_path / "b", model([0, 1, 2, 99, 3, 4, 5]), config(7))
    d = compare(a, b, deep=True)
    # With bytes: layer 3 of B is new, A's 3-5 are B's 4-6.
    assert {t.name.split(".")[2] for t in d.added} == {"3"} and len(d.added) == PER_LAYER
    assert not d.removed and not d.of("bytes")
    assert [g.rule for g in d.rename_groups] == ["model.layers.{}: layers 3-5 -> 4-6"]
    assert d.config and [(v.key, v.a, v.b) for v in d.config] == [("num_hidden_layers", 6, 7)]
    # Without bytes identical layers cannot be told apart: an appended layer is the
    # reading kept (and --deep would show the bytes of 3-5 differ).
    h = compare(a, b)
    assert {t.name.split(".")[2] for t in h.added} == {"6"} and not h.renamed


def test_layer_removed_and_stack_closed_up(tmp_path: Path) -> None:
    a = write(tmp_path / "a", model([0, 1, 2, 3, 4]), config(5))
    b = write(tmp_path / "b", model([0, 1, 3, 4]), config(4))
    d = compare(a, b, deep=True)
    assert {t.name.split(".")[2] for t in d.removed} == {"2"} and not d.added
    assert [g.rule for g in d.rename_groups] == ["model.layers.{}: layers 3-4 -> 2-3"]
    assert not d.of("bytes")


def test_prefix_change_and_renumbering_together(tmp_path: Path) -> None:
    a = write(tmp_path / "a", model([0, 1, 2, 3]), config(4))
    b = write(tmp_path / "b", model([0, 1, 2, 3], numbers=[1, 2, 3, 4],
                                    prefix="model.language_model."), config(4))
    d = compare(a, b, deep=True)
    assert not d.added and not d.removed and not d.of("bytes")
    kinds = {g.kind: g for g in d.rename_groups}
    assert kinds["prefix"].from_ == "model." and kinds["prefix"].to == "model.language_model."
    assert kinds["layers"].rule == "model.language_model.layers.{}: layers 0-3 -> 1-4"
    assert kinds["layers"].tensors == 4 * PER_LAYER
    assert len(d.renamed) == len(model([0])) - 1 + 3 * PER_LAYER


def test_retyped_to_fp8_with_scales(tmp_path: Path) -> None:
    src = model(list(range(2)))
    a = write(tmp_path / "a", src, config(2))
    fp8: dict[str, np.ndarray] = {}
    for name, arr in src.items():
        if any(f".{p}." in name for p in LINEARS):
            q, s = quantize(arr.astype(np.float32))
            fp8[name], fp8[name + "_scale_inv"] = q, s
        else:
            fp8[name] = arr
    qc = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [BLOCK, BLOCK],
          "activation_scheme": "dynamic"}
    b = write(tmp_path / "b", fp8, config(2, quantization_config=qc), shards=2)
    d = compare(a, b)
    n_lin = 2 * len(LINEARS)
    assert len(d.added) == n_lin and all(t.name.endswith(".weight_scale_inv") for t in d.added)
    assert {t.dtype for t in d.added} == {"F32"} and not d.removed and not d.renamed
    assert len(d.of("dtype")) == n_lin and len(d.of("scheme")) == n_lin
    assert {(c.before, c.after) for c in d.of("dtype")} == {("BF16", "F8_E4M3")}
    assert {(c.before, c.after) for c in d.of("scheme")} == {("none", "fp8+scale")}
    # per role: 4 attention and 3 MLP projections per layer
    assert d.roles["attention"].dtype == {"BF16->F8_E4M3": 8}
    assert d.roles["mlp"].dtype == {"BF16->F8_E4M3": 6}
    assert d.roles["mlp"].scheme == {"none->fp8+scale": 6}
    assert d.roles["attention"].added == 8 and d.roles["norm"].dtype == {}
    assert d.config == []  # quantization_config is compared on its own
    assert {(v.key, v.kind) for v in d.quantization} == {
        ("quant_method", "added"), ("fmt", "added"), ("weight_block_size", "added"),
        ("activation_scheme", "added")}
    allow = ["dtype:BF16->F8_E4M3,scheme:none->fp8+scale", "added:*.weight_scale_inv",
             "quantization"]
    assert main(["diff", str(a), str(b), "-qq"]) == 1
    assert main(["diff", str(a), str(b), "-qq", "--allow", allow[0], "--allow", allow[1],
                 "--allow", allow[2]]) == 0
    # a rule for another transition does not allow this one
    assert main(["diff", str(a), str(b), "-qq", "--allow", "dtype:F32->BF16,scheme,added,"
                 "quantization"]) == 1
    # a weight left unquantized and its scale missing: scheme fp8 (no scale) -> visible
    del fp8["model.layers.1.mlp.up_proj.weight_scale_inv"]
    c = write(tmp_path / "c", fp8, config(2, quantization_config=qc))
    d2 = compare(b, c)
    assert [(x.b, x.before, x.after) for x in d2.of("scheme")] == [
        ("model.layers.1.mlp.up_proj.weight", "fp8+scale", "fp8 (no scale)")]
    assert [t.name for t in d2.removed] == ["model.layers.1.mlp.up_proj.weight_scale_inv"]


def test_deep_finds_the_one_tensor_whose_bytes_changed(tmp_path: Path) -> None:
    t = model(list(range(3)))
    a = write(tmp_path / "a", t, config(3))
    changed = dict(t)
    name = "model.layers.1.mlp.down_proj.weight"
    arr = changed[name].copy()
    arr[5, 7] = BF16(0.5)
    changed[name] = arr
    b = write(tmp_path / "b", changed, config(3), shards=2)
    assert not compare(a, b).differs  # headers alike
    d = compare(a, b, deep=True, jobs=2)
    assert [(c.a, c.b, c.what) for c in d.of("bytes")] == [(name, name, "bytes")]
    c = d.of("bytes")[0]
    assert c.before == tensor_digest(t[name].tobytes()).hex()[:16]
    assert c.after == tensor_digest(arr.tobytes()).hex()[:16]
    assert d.deep is not None and d.deep.equal == len(t) - 1
    assert d.roles["mlp"].bytes == 1
    assert d.violations() == ["1 tensor with other bytes"]
    assert main(["diff", str(a), str(b), "--deep", "-qq"]) == 1
    assert main(["diff", str(a), str(b), "--deep", "-qq", "--allow", "bytes:*.down_proj.*"]) == 0
    assert main(["diff", str(a), str(b), "--deep", "-qq", "--allow", "bytes:*.up_proj.*"]) == 1


def test_config_differences_with_dotted_keys(tmp_path: Path) -> None:
    t = model([0])
    ca = config(1, _name_or_path="/old", text_config={"rope_scaling": {"factor": 2.0}},
                transformers_version="4.40.0")
    cb = config(1, _name_or_path="/new", text_config={"rope_scaling": {"factor": 4.0}},
                transformers_version="4.57.1", foo={"bar": [1, 2]})
    cb["architectures"] = ["LlamaForCausalLMv2"]
    cb["rope_theta"] = 10000  # the same number as 10000.0
    del cb["tie_word_embeddings"]
    a = write(tmp_path / "a", t, ca)
    b = write(tmp_path / "b", t, cb)
    d = compare(a, b)
    got = {(v.key, v.kind, json.dumps(v.a), json.dumps(v.b)) for v in d.config}
    assert got == {
        ("_name_or_path", "changed", '"/old"', '"/new"'),
        ("architectures[0]", "changed", '"LlamaForCausalLM"', '"LlamaForCausalLMv2"'),
        ("foo", "added", "null", '{"bar": [1, 2]}'),
        ("text_config.rope_scaling.factor", "changed", "2.0", "4.0"),
        ("tie_word_embeddings", "removed", "false", "null"),
        ("transformers_version", "changed", '"4.40.0"', '"4.57.1"'),
    }
    assert d.violations() == ["6 config.json differences"]
    rules = parse_rules(["config:_name_or_path,config:*_version", "config:text_config",
                         "config:architectures"])
    assert d.violations(rules) == ["2 config.json differences"]  # foo, tie_word_embeddings
    assert d.violations(rules + parse_rules(["config:foo", "config:tie_*"])) == []
    out = tmp_path / "d.json"
    assert main(["diff", str(a), str(b), "--format", "json", "-o", str(out),
                 "--allow", "config:_name_or_path"]) == 1
    doc = orjson.loads(out.read_bytes())
    assert doc["schema"] == "ckptscan.diff/1" and doc["allow"] == ["config:_name_or_path"]
    assert doc["violations"] == ["5 config.json differences"]
    assert {c["key"] for c in doc["config"]} == {g[0] for g in got}


def test_json_diff_rules() -> None:
    assert json_diff({"a": 1}, {"a": 1.0}) == []
    assert [(v.key, v.kind) for v in json_diff({"a": True}, {"a": 1})] == [("a", "changed")]
    assert [(v.key, v.a, v.b) for v in json_diff({"l": [1, 2]}, {"l": [1, 2, 3]})] == [
        ("l", [1, 2], [1, 2, 3])]
    assert [v.key for v in json_diff({"x": [{"y": 1}]}, {"x": [{"y": 2}]})] == ["x[0].y"]
    assert json_diff({"a": {"b": 1}}, {"a": {"b": 1}}) == []
    assert [(v.key, v.kind) for v in json_diff({"a": {"b": 1}}, {"a": 5})] == [("a", "changed")]


def test_allow_rule_syntax() -> None:
    assert parse_rules(["renames, dtype:F32->BF16", "config:_name_or_path"]) == [
        Rule("renamed"), Rule("dtype", "F32->BF16"), Rule("config", "_name_or_path")]
    r = Rule("dtype", "*->F8_E4M3")
    assert r.allows("dtype", ("BF16->F8_E4M3", "x")) and not r.allows("dtype", ("BF16->F16", "x"))
    assert not r.allows("shape", ("BF16->F8_E4M3",))
    assert Rule("config", "rope_scaling").allows("config", ("rope_scaling.factor",))
    assert Rule("config", "rope_scaling").allows("config", ("rope_scaling",))
    assert not Rule("config", "rope_scaling").allows("config", ("rope_scaling_type",))
    assert Rule("config", "architectures").allows("config", ("architectures[0]",))
    assert Rule("added", "*.bias").allows("added", ("model.x.bias",))
    assert Rule("renamed", "model.layers.*").allows("renamed", ("a.b", "model.layers.1.x"))
    for bad in ("nonsense", "dtype:", "config"[:3]):
        with pytest.raises(ValueError, match="--allow"):
            parse_rules([bad])


def test_cli_formats_and_width(tmp_path: Path) -> None:
    a = write(tmp_path / "a", model([0, 1, 2]), config(3))
    b = write(tmp_path / "b" / ("very-long-directory-name-" * 3), model(
        [0, 1, 2], numbers=[1, 2, 3], prefix="model.language_model."), config(3, foo=1))
    run = [sys.executable, "-m", "ckptscan", "diff", str(a), str(b)]
    text = subprocess.run(run, capture_output=True, text=True, check=False)
    assert text.returncode == 1, text.stderr
    lines = text.stdout.splitlines()
    assert max(len(x) for x in lines) <= 80 and "\x1b" not in text.stdout
    assert "Renamed: " in text.stdout and "config.json: 1 difference" in text.stdout
    assert lines[-2].startswith("Result: they differ:")
    md = subprocess.run(run + ["--format", "md"], capture_output=True, text=True, check=False)
    assert md.returncode == 1 and md.stdout.startswith("# ckptscan diff")
    assert "## Renamed" in md.stdout and "## config.json" in md.stdout
    js = subprocess.run(run + ["--format", "json"], capture_output=True, check=False)
    doc = orjson.loads(js.stdout)
    d = compare(a, b)
    assert doc == orjson.loads(render.to_json(d))
    assert doc["a"]["path"] == str(a) and len(doc["renamed"]) == len(d.renamed)
    quiet = subprocess.run(run + ["-q", "--allow", "renamed,config"], capture_output=True,
                           text=True, check=False)
    assert quiet.returncode == 0
    assert quiet.stdout == "ckptscan diff: they differ only as --allow allows\n"
    bad = subprocess.run(run + ["--allow", "colour"], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and "unknown kind 'colour'" in bad.stderr
    missing = subprocess.run(run[:-1] + [str(tmp_path / "nope")], capture_output=True,
                             text=True, check=False)
    assert missing.returncode == 2 and "no such file or directory" in missing.stderr


def test_hostile_names_are_escaped_in_the_text(tmp_path: Path) -> None:
    t = model([0])
    a = write(tmp_path / "a", t, None)
    t2 = dict(t)
    t2["evil\x1b[2J.weight"] = np.zeros(4, np.float32)
    b = write(tmp_path / "b", t2, None)
    d = compare(a, b)
    assert [x.name for x in d.added] == ["evil\x1b[2J.weight"]
    text = render.to_text(d)
    assert "\x1b" not in text and "evil\\x1b[2J.weight" in text
    assert "\x1b" not in render.to_markdown(d)


def test_broken_shard_is_said_not_compared(tmp_path: Path) -> None:
    t = model([0, 1])
    a = write(tmp_path / "a", t, config(2), shards=2)
    b = write(tmp_path / "b", t, config(2), shards=2)
    victim = b / "model-00002-of-00002.safetensors"
    victim.write_bytes(victim.read_bytes()[:100])  # truncated header
    d = compare(a, b)
    assert len(d.b.problems) == 1 and "model-00002-of-00002.safetensors" in d.b.problems[0]
    in_second = sorted(json.loads((a / "model.safetensors.index.json").read_text())[
        "weight_map"].items())
    assert sorted(x.name for x in d.removed) == sorted(
        n for n, f in in_second if f.endswith("00002-of-00002.safetensors"))
    assert "B not compared: model-00002-of-00002.safetensors" in render.to_text(d)


def test_file_cut_short_during_deep_is_an_error_not_a_crash(tmp_path: Path) -> None:
    t = model(list(range(6)))
    a = write(tmp_path / "a", t, config(6))
    b = write(tmp_path / "b", t, config(6))
    victim = b / "model.safetensors"
    size = victim.stat().st_size
    cut: list[int] = []

    def progress(p: Any) -> None:  # A's tensors come first: cut B's file at the first one
        if not cut:
            os.truncate(victim, size // 2)
            cut.append(p.tensors_done)

    d = compare(a, b, deep=True, jobs=1, progress=progress)
    assert cut == [1]
    assert d.deep is not None and d.deep.unreadable  # the tensors past the cut
    assert all("model." in u or "lm_head" in u for u in d.deep.unreadable)
    assert d.deep.compared + len(d.deep.unreadable) == len(t)
    assert not d.of("bytes")  # nothing called different that was not read


def test_reshaped_stack_with_a_layer_more_pairs_by_number(tmp_path: Path) -> None:
    a = write(tmp_path / "a", model([0, 1, 2, 3]), config(4))
    wide = {k: (np.zeros((2 * FF, H), BF16) if v.shape == (FF, H) else
                np.zeros((H, 2 * FF), BF16) if v.shape == (H, FF) else v)
            for k, v in model([0, 1, 2, 3, 4]).items()}
    b = write(tmp_path / "b", wide, config(5))
    d = compare(a, b)
    assert not d.renamed and not d.removed
    assert {t.name.split(".")[2] for t in d.added} == {"4"} and len(d.added) == PER_LAYER
    assert len(d.of("shape")) == 4 * 3  # gate, up, down of layers 0-3
    assert d.roles["mlp"].shape == 12


def test_two_prefix_renames_at_once(tmp_path: Path) -> None:
    """transformers 4.52's VLM layout: model.* -> model.language_model.*, and the
    vision tower visual.* -> model.visual.*; lm_head stays."""
    def vlm(lm: str, vis: str) -> dict[str, np.ndarray]:
        t = model([0, 1], prefix=lm)
        for k in range(3):
            t[f"{vis}blocks.{k}.attn.qkv.weight"] = _rand(500 + k, (3 * 32, 32)).astype(BF16)
            t[f"{vis}blocks.{k}.norm1.weight"] = _rand(600 + k, (32,)).astype(BF16)
        t[f"{vis}merger.mlp.0.weight"] = _rand(700, (H, 128)).astype(BF16)
        return t

    a = write(tmp_path / "a", vlm("model.", "visual."), None)
    b = write(tmp_path / "b", vlm("model.language_model.", "model.visual."), None)
    d = compare(a, b, deep=True)
    assert not d.added and not d.removed and not d.of("bytes") and d.same_name == 1
    assert {(g.from_, g.to, g.tensors) for g in d.rename_groups} == {
        ("model.", "model.language_model.", len(model([0, 1])) - 1), ("", "model.", 7)}
    assert "(no prefix) -> model. (7 tensors)" in render.to_text(d)


def test_prefix_rename_with_disjoint_layer_numbers(tmp_path: Path) -> None:
    a = write(tmp_path / "a", model([0, 1, 2]), config(3))
    b = write(tmp_path / "b", model([0, 1, 2], numbers=[10, 11, 12],
                                    prefix="model.language_model."), config(3))
    d = compare(a, b, deep=True)
    assert not d.added and not d.removed and not d.of("bytes")
    assert {g.rule for g in d.rename_groups} == {
        "model. -> model.language_model.",
        "model.language_model.layers.{}: layers 0-2 -> 10-12"}
