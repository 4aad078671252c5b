"""Every layout a user points ckptscan at, built the way the real tools lay it
out on disk: the Hugging Face cache (repo folder, cache root, repo id, revisions,
an interrupted download), diffusers pipelines, Mistral's consolidated copy,
single-file models side by side, one shard of a sharded checkpoint, shards
without an index, and files in other formats. `report` and the farm must say
the same thing about each."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import ckptscan
import numpy as np
import pytest
from ckptscan.cli import main
from ckptscan.findings import Severity
from ckptscan.layout import discover, resolve
from safetensors.numpy import save_file

INDEX = "model.safetensors.index.json"


def small_model(d: Path, *, n_shards: int = 2, index: bool = True, config: bool = True,
                prefix: str = "model", seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny Llama-shaped checkpoint written with the safetensors library."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    t: dict[str, np.ndarray] = {"model.embed_tokens.weight":
                                rng.standard_normal((64, 16)).astype(np.float16),
                                "lm_head.weight": rng.standard_normal((64, 16)).astype(np.float16),
                                "model.norm.weight": np.ones(16, np.float16)}
    for i in range(2):
        p = f"model.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            t[f"{p}.self_attn.{proj}.weight"] = rng.standard_normal((16, 16)).astype(np.float16)
        for proj, shape in (("gate_proj", (32, 16)), ("up_proj", (32, 16)),
                            ("down_proj", (16, 32))):
            t[f"{p}.mlp.{proj}.weight"] = rng.standard_normal(shape).astype(np.float16)
        t[f"{p}.input_layernorm.weight"] = np.ones(16, np.float16)
        t[f"{p}.post_attention_layernorm.weight"] = np.ones(16, np.float16)
    names = sorted(t)
    wm = {}
    for k in range(n_shards):
        part = names[k::n_shards]
        fname = (f"{prefix}-{k + 1:05d}-of-{n_shards:05d}.safetensors" if n_shards > 1
                 else f"{prefix}.safetensors")
        save_file({n: t[n] for n in part}, str(d / fname))
        wm.update(dict.fromkeys(part, fname))
    if index and n_shards > 1:
        (d / INDEX).write_text(json.dumps({"metadata": {"total_size": sum(
            a.nbytes for a in t.values())}, "weight_map": wm}))
    if config:
        (d / "config.json").write_text(json.dumps({
            "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 16,
            "num_hidden_layers": 2, "vocab_size": 64}))
    return t


def errors_and_warnings(report: ckptscan.Report) -> list[str]:
    return [f.code for f in report.findings if f.severity >= Severity.WARNING]


# ---------------------------------------------------------------- the Hugging Face cache


def hf_cache(cache: Path, repo: str, revisions: dict[str, dict[str, bytes]],
             refs: dict[str, str], incomplete: dict[str, tuple[str, bytes]] | None = None
             ) -> Path:
    """A cache repository as huggingface_hub writes it: blobs named by their
    sha256, snapshots/COMMIT/FILE symlinks to ../../blobs/SHA, refs/NAME holding
    a commit. `incomplete`: commit -> (file, partial bytes) left as
    blobs/SHA.incomplete with a snapshot link to the blob that never arrived."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    for commit, files in revisions.items():
        snap = folder / "snapshots" / commit
        snap.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            sha = hashlib.sha256(data).hexdigest()
            blob = folder / "blobs" / sha
            if not blob.exists():
                blob.write_bytes(data)
            (snap / name).symlink_to(os.path.relpath(blob, snap))
        if incomplete and commit in incomplete:
            name, partial = incomplete[commit]
            sha = hashlib.sha256(b"whole " + partial).hexdigest()
            (folder / "blobs" / (sha + ".incomplete")).write_bytes(partial)
            (snap / name).symlink_to(os.path.relpath(folder / "blobs" / sha, snap))
    (folder / "refs").mkdir(exist_ok=True)
    for ref, commit in refs.items():
        (folder / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (folder / "refs" / ref).write_text(commit)
    return folder


def model_files(tmp: Path, **kw: Any) -> dict[str, bytes]:
    src = tmp / f"src-{len(list(tmp.glob('src-*')))}"
    small_model(src, **kw)
    return {p.name: p.read_bytes() for p in src.iterdir()}


C1, C2 = "a" * 40, "b" * 40


def test_hf_cache_repo_folder_root_and_repo_id(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    v1 = model_files(tmp_path, seed=1)
    v2 = model_files(tmp_path, seed=2, n_shards=1)
    repo = hf_cache(cache, "acme/tiny", {C1: v1, C2: v2}, {"main": C2, "v1.0": C1})
    hf_cache(cache, "acme/other", {C1: v1}, {"main": C1})
    # the repo folder: refs/main resolves to its snapshot
    (spec,) = resolve(repo)
    assert spec.path == str(repo / "snapshots" / C2) and spec.revision == C2
    report = ckptscan.scan(repo)
    assert (report.source.repo, report.source.revision, report.source.kind) == (
        "acme/tiny", C2, "hf-snapshot")
    assert report.total.tensors == 21 and errors_and_warnings(report) == []
    # another revision, by ref or commit prefix
    assert ckptscan.scan(repo, revision="v1.0").source.revision == C1
    assert ckptscan.scan(repo, revision="aaaa").total.tensors == 21
    with pytest.raises(ckptscan.CkptScanError, match="no revision 'nope'"):
        ckptscan.scan(repo, revision="nope")
    # the cache root: one report per repository
    reports = ckptscan.scan_all(cache)
    assert sorted((r.source.repo, r.source.revision) for r in reports) == [
        ("acme/other", C1), ("acme/tiny", C2)]
    with pytest.raises(ckptscan.CkptScanError, match="holds 2 checkpoints"):
        ckptscan.scan(cache)
    # a repo id, found through HF_HUB_CACHE
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert ckptscan.scan("acme/tiny").source.revision == C2
    with pytest.raises(ckptscan.CkptScanError, match="no such repository"):
        ckptscan.scan("acme/absent")


def test_interrupted_download_is_named(tmp_path: Path) -> None:
    files = model_files(tmp_path, seed=3)
    shard = "model-00002-of-00002.safetensors"
    partial = files.pop(shard)[:1000]
    repo = hf_cache(tmp_path / "hub", "acme/cut", {C1: files}, {"main": C1},
                    incomplete={C1: (shard, partial)})
    report = ckptscan.scan(repo)
    (root,) = [f for f in report.findings if f.file and f.file.endswith(shard)]
    assert root.code == "download-incomplete" and root.severity == Severity.ERROR
    assert "1,000 bytes" in root.message and "interrupted download" in root.message
    # what the index places in that shard is explained by it, not listed apart
    lost = len(json.loads(files[INDEX])["weight_map"]) - report.total.tensors
    assert root.detail["lost_tensors"] == lost > 0
    assert [f.code for f in report.findings if f.severity == Severity.ERROR] == [
        "download-incomplete"]
    assert report.findings[0] is root


# ---------------------------------------------------------------- diffusers


def test_diffusers_pipeline_one_report_per_component(tmp_path: Path) -> None:
    root = tmp_path / "sd"
    root.mkdir()
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "safety_checker": [None, None]}))
    rng = np.random.default_rng(0)
    te = root / "text_encoder"
    te.mkdir()
    # CLIP's text tower: 77 position rows, 1000 token rows
    save_file({"text_model.embeddings.position_embedding.weight":
               rng.standard_normal((77, 32)).astype(np.float16),
               "text_model.embeddings.token_embedding.weight":
               rng.standard_normal((1000, 32)).astype(np.float16),
               "text_model.encoder.layers.0.self_attn.q_proj.weight":
               rng.standard_normal((32, 32)).astype(np.float16),
               "text_model.final_layer_norm.weight": np.ones(32, np.float16)},
              str(te / "model.safetensors"))
    (te / "config.json").write_text(json.dumps({
        "model_type": "clip_text_model", "architectures": ["CLIPTextModel"], "hidden_size": 32,
        "num_hidden_layers": 1, "vocab_size": 1000, "max_position_embeddings": 77}))
    for comp, shape in (("unet", (8, 4, 3, 3)), ("vae", (4, 4, 1, 1))):
        (root / comp).mkdir()
        save_file({"conv_in.weight": rng.standard_normal(shape).astype(np.float32)},
                  str(root / comp / "diffusion_pytorch_model.safetensors"))
        (root / comp / "config.json").write_text(json.dumps({"_class_name": comp}))
    for comp in ("tokenizer", "scheduler"):
        (root / comp).mkdir()
        (root / comp / "x.json").write_text("{}")
    reports = ckptscan.scan_all(root)
    assert [(r.source.component, r.source.kind) for r in reports] == [
        ("text_encoder", "diffusers-component"), ("unet", "diffusers-component"),
        ("vae", "diffusers-component")]
    # each against its own config: CLIP's position rows are no vocabulary
    assert [errors_and_warnings(r) for r in reports] == [[], [], []]
    assert reports[0].total.tensors == 4
    found = discover([tmp_path])
    assert sorted(s.component or "" for s in found.checkpoints) == ["text_encoder", "unet",
                                                                      "vae"]


# ---------------------------------------------------------------- copies, files, shards


def test_consolidated_copy_beside_hf_shards_is_counted_once(tmp_path: Path) -> None:
    d = tmp_path / "mistral"
    t = small_model(d)
    save_file({"layers.0.attention.wq.weight": t["model.layers.0.self_attn.q_proj.weight"]},
              str(d / "consolidated.safetensors"))
    (d / "params.json").write_text("{}")
    report = ckptscan.scan(d)
    assert report.total.tensors == len(t)
    assert report.shards.copies == ["consolidated.safetensors"]
    assert [f.code for f in report.findings] == ["consolidated-copy"]
    # Mistral's layout alone: the consolidated file is the checkpoint
    alone = tmp_path / "alone"
    alone.mkdir()
    os.link(d / "consolidated.safetensors", alone / "consolidated.safetensors")
    assert ckptscan.scan(alone).total.tensors == 1


def test_unrelated_single_file_models_are_one_checkpoint_each(tmp_path: Path) -> None:
    d = tmp_path / "loras"
    d.mkdir()
    for i, name in enumerate(("style-a", "style-b", "detail")):
        small_model(tmp_path / f"s{i}", n_shards=1, config=False, seed=i)
        os.rename(tmp_path / f"s{i}" / "model.safetensors", d / f"{name}.safetensors")
    reports = ckptscan.scan_all(d)
    assert sorted(Path(r.checkpoint).name for r in reports) == [
        "detail.safetensors", "style-a.safetensors", "style-b.safetensors"]
    assert all(r.total.tensors == 21 and r.source.kind == "file" for r in reports)
    assert {os.path.basename(s.path) for s in discover([d]).checkpoints} == {
        "detail.safetensors", "style-a.safetensors", "style-b.safetensors"}


def test_one_shard_of_a_sharded_checkpoint(tmp_path: Path) -> None:
    from ckptscan.synth import write_small_minimax

    path, _ = write_small_minimax(tmp_path / "mm")
    first = sorted(path.glob("*.safetensors"))[0]
    report = ckptscan.scan(first)
    assert report.source.kind == "shard"
    assert report.model_type == "minimax_m2"  # the sibling config.json is used
    # its scales may live in the other shard: nothing is missing, nothing unknown
    assert errors_and_warnings(report) == []
    whole = ckptscan.scan(path)
    assert report.total.tensors < whole.total.tensors
    # a tensor dropped from this shard is still found through the index
    from ckptscan.replica import read_entries, rewrite_shard

    victim = next(e.name for e in read_entries(first)[0] if e.name.endswith("w1.weight"))
    rewrite_shard(first, lambda es: [e for e in es if e.name != victim])
    again = ckptscan.scan(first)
    assert [(f.code, f.tensor) for f in again.findings if f.severity == Severity.ERROR] == [
        ("index-tensor-absent", victim)]


def test_shards_without_an_index(tmp_path: Path) -> None:
    d = tmp_path / "noindex"
    small_model(d, n_shards=4, index=False)
    report = ckptscan.scan(d)
    assert [f.code for f in report.findings] == ["index-absent"]
    assert report.findings[0].severity == Severity.WARNING
    (d / "model-00002-of-00004.safetensors").unlink()
    report = ckptscan.scan(d)
    (missing,) = [f for f in report.findings if f.code == "shard-missing"]
    assert missing.file == str(d / "model-00002-of-00004.safetensors")
    assert report.findings[0] is missing  # root causes first


# ---------------------------------------------------------------- other formats


def gguf_bytes() -> bytes:
    """A minimal GGUF v3 file: header, one metadata key, no tensors."""
    key, value = b"general.architecture", b"llama"
    return (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
            + struct.pack("<I", 8) + struct.pack("<Q", len(value)) + value)


def torch_zip_bytes(path: Path) -> None:
    """The layout torch.save writes (a zip of archive/data.pkl and friends)."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
        z.writestr("archive/version", "3\n")


def test_other_formats_are_named_not_parsed(tmp_path: Path) -> None:
    gg = tmp_path / "gguf"
    gg.mkdir()
    (gg / "tiny-Q4_K_M.gguf").write_bytes(gguf_bytes())
    (gg / "tiny-Q8_0.gguf").write_bytes(gguf_bytes())
    reports = ckptscan.scan_all(gg)
    assert len(reports) == 2
    for r in reports:
        assert r.source.format == "gguf"
        (f,) = r.findings
        assert f.code == "other-format" and "GGUF" in f.message and f.severity == Severity.WARNING
    pt = tmp_path / "pt"
    pt.mkdir()
    for k in (1, 2):
        torch_zip_bytes(pt / f"pytorch_model-0000{k}-of-00002.bin")
    (pt / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (r,) = ckptscan.scan_all(pt)
    assert r.source.format == "pytorch" and [f.code for f in r.findings] == ["other-format"]
    assert "2 files" in r.findings[0].message
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"w": 1}, protocol=2))
    (f,) = ckptscan.scan(legacy).findings
    assert "pickle" in f.message and "runs code" in f.message
    # GGUF bytes under a .safetensors name: no absurd header length, the format named
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "model.safetensors").write_bytes(gguf_bytes())
    (f,) = ckptscan.scan(fake).findings
    assert f.code == "not-safetensors" and "GGUF" in f.message
    # the farm lists every one of them as a row: gaps in coverage show
    result = ckptscan.scan_farm([tmp_path], db=tmp_path / "farm.db")
    formats = {Path(r["path"]).name: r["format"] for r in result.rows}
    assert formats == {"tiny-Q4_K_M.gguf": "gguf", "tiny-Q8_0.gguf": "gguf", "pt": "pytorch",
                       "legacy.pt": "pytorch", "fake": "safetensors"}


# ---------------------------------------------------------------- names that are not UTF-8


def test_file_names_that_are_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(root)
    d = Path(os.fsdecode(root))
    small_model(d, n_shards=1, config=False)
    os.rename(d / "model.safetensors", os.fsencode(d) + b"/mod\xe8le.safetensors")
    report = ckptscan.scan(d)
    assert report.total.tensors == 21
    assert main(["report", os.fsdecode(root), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["shards"]["found"] == ["mod\\xe8le.safetensors"]
    result = ckptscan.scan_farm([tmp_path], db=tmp_path / "farm.db")
    assert [r["tensors"] for r in result.rows] == [21]
