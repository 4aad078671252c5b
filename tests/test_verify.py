"""ckptscan verify: a quantized checkpoint against its high-precision source.

Source/candidate pairs are generated here: a BF16 source (the real safetensors
library) and its FP8 export made by a quantizer written below from the format's
definition (absmax / 448 per 128 x 128 tile, round to nearest through
ml_dtypes), then faulty exports with one defect planted each (a scale inverted,
scales transposed, scales shifted, one block clipped, a targeted tensor left in
BF16, a tensor missing on either side). `verify` must name each defect on its
tensor and nothing on the clean export; its metrics must match a numpy /
ml_dtypes computation of the same quantities. NVFP4 (ModelOpt and
compressed-tensors conventions), MXFP4 / MXFP8 and gpt-oss (a BF16 source stored
transposed) come from `ckptscan.testing.quant_layouts`, whose quantizers are the
producers' definitions."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import orjson
import pytest
from ckptscan import open_shard
from ckptscan.cli import main
from ckptscan.deep import Cancelled
from ckptscan.testing import quant_layouts as QL
from ckptscan.verify import Verification, clip_limit, default_threshold, parse_thresholds, verify
from safetensors.numpy import save_file

BF16 = ml_dtypes.bfloat16
E4M3 = ml_dtypes.float8_e4m3fn
H, FF, LAYERS, BLOCK = 256, 384, 2, 128
LINEARS = {"self_attn.q_proj": (H, H), "self_attn.k_proj": (H, H), "self_attn.v_proj": (H, H),
           "self_attn.o_proj": (H, H), "mlp.gate_proj": (FF, H), "mlp.up_proj": (FF, H),
           "mlp.down_proj": (H, FF)}


# ---------------------------------------------------------------- the test's own quantizer


def tiles(a: np.ndarray, block: tuple[int, int], fn: Callable[..., Any]) -> np.ndarray:
    """fn over each (block rows x block cols) tile of a matrix (edge tiles partial)."""
    r, c = a.shape
    br, bc = block
    return np.array([[fn(a[i:i + br, j:j + bc]) for j in range(0, c, bc)]
                     for i in range(0, r, br)])


def expand(s: np.ndarray, shape: tuple[int, int], block: tuple[int, int]) -> np.ndarray:
    return np.repeat(np.repeat(s, block[0], 0), block[1], 1)[:shape[0], :shape[1]]


def quantize_fp8_block(w: np.ndarray, block: tuple[int, int] = (BLOCK, BLOCK)
                       ) -> tuple[np.ndarray, np.ndarray]:
    """E4M3 with one float32 scale per tile: scale = absmax / 448 (the largest
    finite E4M3 value), codes = round-to-nearest(w / scale) (ml_dtypes' cast)."""
    amax = tiles(np.abs(w), block, np.max).astype(np.float32)
    scale = np.where(amax > 0, amax / np.float32(448.0), np.float32(1.0)).astype(np.float32)
    codes = (w / expand(scale, w.shape, block)).astype(np.float32)
    return np.clip(codes, -448, 448).astype(E4M3), scale


def dequantize_fp8(q: np.ndarray, scale: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """float32(code * scale): the dequantized value as the kernels define it."""
    return (q.astype(np.float32) * expand(scale, q.shape, block)).astype(np.float32)


def metrics(deq: np.ndarray, src: np.ndarray) -> dict[str, float]:
    d, r = deq.astype(np.float64), src.astype(np.float64)
    e = d - r
    return {"rel_error": float(np.sqrt((e * e).sum() / (r * r).sum())),
            "sqnr_db": float(10 * np.log10((r * r).sum() / (e * e).sum())),
            "cosine": float((d * r).sum() / np.sqrt((d * d).sum() * (r * r).sum())),
            "max_abs_error": float(np.abs(e).max())}


# ---------------------------------------------------------------- checkpoints


def source_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """A small Llama-shaped model in float32 (rounded to BF16 when written).
    Each 128 x 128 tile of a linear has its own magnitude (log-normal), as real
    weights' channels do: block scales differ, so a misplaced scale shows."""
    rng = np.random.default_rng(seed)
    out = {"model.embed_tokens.weight": rng.standard_normal((512, H)) * 0.02,
           "lm_head.weight": rng.standard_normal((512, H)) * 0.02,
           "model.norm.weight": 1 + 0.1 * rng.standard_normal(H)}
    for i in range(LAYERS):
        for proj, shape in LINEARS.items():
            mag = np.exp(rng.normal(0, 0.8, (-(-shape[0] // BLOCK), -(-shape[1] // BLOCK))))
            out[f"model.layers.{i}.{proj}.weight"] = rng.standard_normal(shape) * 0.02 * \
                expand(mag, shape, (BLOCK, BLOCK))
        for norm in ("input_layernorm", "post_attention_layernorm"):
            out[f"model.layers.{i}.{norm}.weight"] = 1 + 0.1 * rng.standard_normal(H)
    return {k: np.asarray(v, np.float32).astype(BF16) for k, v in out.items()}


def llama_config(**extra: Any) -> dict[str, Any]:
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": H,
            "intermediate_size": FF, "num_hidden_layers": LAYERS, "vocab_size": 512,
            "num_attention_heads": 4, "num_key_value_heads": 4, "torch_dtype": "bfloat16",
            **extra}


FP8_CONFIG = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
              "weight_block_size": [BLOCK, BLOCK], "modules_to_not_convert": ["lm_head"]}


def write(dest: Path, tensors: dict[str, np.ndarray], config: dict[str, Any],
          shards: int = 1) -> Path:
    """With the real safetensors library; several shards with an index."""
    dest.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    if shards == 1:
        save_file(tensors, str(dest / "model.safetensors"))
    else:
        weight_map = {}
        for k in range(shards):
            part = {n: tensors[n] for n in names[k::shards]}
            file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            save_file(part, str(dest / file))
            weight_map |= {n: file for n in part}
        (dest / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {}, "weight_map": weight_map}))
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def fp8_export(src: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """HF fine-grained FP8: every decoder linear as E4M3 + weight_scale_inv."""
    out = {}
    for name, w in src.items():
        if name.startswith("model.layers.") and w.ndim == 2:
            q, s = quantize_fp8_block(w.astype(np.float32))
            out[name], out[name + "_scale_inv"] = q, s
        else:
            out[name] = w
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("pair")
    src = source_weights()
    write(root / "src", src, llama_config())
    cand = fp8_export(src)
    write(root / "cand", cand, llama_config(quantization_config=FP8_CONFIG), shards=2)
    return root / "src", root / "cand", cand


def findings_by_tensor(v: Verification) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in v.findings:
        tensors = [f.tensor] if f.tensor else []
        tensors += f.detail.get("examples", [])
        for t in tensors or [""]:
            out.setdefault(t, []).append(f.code)
    return out


# ---------------------------------------------------------------- clean export


def test_clean_export_has_no_findings(pair: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    src, cand, _ = pair
    v = verify(cand, against=src)
    assert v.findings == []
    assert len(v.tensors) == LAYERS * len(LINEARS)
    assert v.kept == 3 + 2 * LAYERS  # embed, lm_head, norm + two norms per layer
    assert v.unsupported == 0
    assert v.thresholds == {"E4M3": 1 / 17}
    # absmax-scaled E4M3 on Gaussian blocks: a few percent, well under the bound
    assert 0.02 < v.total.rel_error < 0.03
    assert not v.fails("warning")


def test_metrics_match_numpy(pair: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    src_dir, cand_dir, cand = pair
    src = source_weights()
    v = verify(cand_dir, against=src_dir, jobs=2)
    by_name = {t.name: t for t in v.tensors}
    total_e = total_r = total_dr = total_dd = 0.0
    for name, t in by_name.items():
        q, s = cand[name], cand[name + "_scale_inv"]
        deq = dequantize_fp8(q, s, (BLOCK, BLOCK))
        ref = src[name].astype(np.float32)
        want = metrics(deq, ref)
        got = t.to_dict()
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-12), (name, key)
        assert t.metrics.elements == ref.size
        assert t.metrics.clipped == 0
        # per block: the worst blocks and their relative errors
        e = (deq.astype(np.float64) - ref) ** 2
        per = np.sqrt(tiles(e, (BLOCK, BLOCK), np.sum) /
                      tiles(ref.astype(np.float64) ** 2, (BLOCK, BLOCK), np.sum))
        order = np.argsort(-per, axis=None, kind="stable")
        assert list(t.worst[0].index) == list(np.unravel_index(order[0], per.shape))
        for b in t.worst:
            assert b.rel_error == pytest.approx(per[tuple(b.index)], rel=1e-6)
        assert t.blocks == per.size
        d, r = deq.astype(np.float64), ref.astype(np.float64)
        total_e += float(((d - r) ** 2).sum())
        total_r += float((r * r).sum())
        total_dr += float((d * r).sum())
        total_dd += float((d * d).sum())
    assert v.total.rel_error == pytest.approx(math.sqrt(total_e / total_r), rel=1e-6)
    # cosine from the block sums (s * Σc·r, exact products): 1 - cos within 1e-4 of it
    cos = total_dr / math.sqrt(total_dd * total_r)
    assert 1 - v.total.cosine == pytest.approx(1 - cos, rel=1e-4)
    # per role: the same sums over the role's tensors
    attn = [n for n in by_name if ".self_attn." in n]
    e = sum(((dequantize_fp8(cand[n], cand[n + "_scale_inv"], (BLOCK, BLOCK)).astype(np.float64)
              - src[n].astype(np.float64)) ** 2).sum() for n in attn)
    r = sum((src[n].astype(np.float64) ** 2).sum() for n in attn)
    assert v.roles["attention"].metrics.rel_error == pytest.approx(math.sqrt(e / r), rel=1e-6)
    assert v.roles["attention"].tensors == len(attn)


def test_small_bands_give_the_same_answer(pair: tuple[Path, Path, dict[str, np.ndarray]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A tensor read in many row bands (the streaming path of large tensors)."""
    src, cand, _ = pair
    whole = verify(cand, against=src, jobs=1)
    monkeypatch.setattr("ckptscan.verify.CHUNK_ELEMENTS", BLOCK * H)  # one block row a band
    banded = verify(cand, against=src, jobs=1)
    for a, b in zip(whole.tensors, banded.tensors, strict=True):
        assert a.name == b.name
        assert b.metrics.rel_error == pytest.approx(a.metrics.rel_error, rel=1e-12)
        assert b.metrics.max_err == a.metrics.max_err
        assert [x.index for x in b.worst] == [x.index for x in a.worst]
    assert banded.findings == []


# ---------------------------------------------------------------- planted defects


def test_every_planted_defect_is_named(tmp_path: Path,
                                       pair: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    src_dir, _, clean = pair
    src = source_weights()
    t = dict(clean)
    inv, trans, shift, clip, left, gone = (
        "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
        "model.layers.1.mlp.gate_proj.weight", "model.layers.1.self_attn.o_proj.weight",
        "model.layers.1.self_attn.v_proj.weight", "model.layers.1.mlp.up_proj.weight")
    t[inv + "_scale_inv"] = (1 / t[inv + "_scale_inv"]).astype(np.float32)
    t[trans + "_scale_inv"] = np.ascontiguousarray(t[trans + "_scale_inv"].T)
    t[shift + "_scale_inv"] = np.roll(t[shift + "_scale_inv"], 1, axis=0)
    # one block's scale a quarter of what it needs: its largest values saturate
    w = src[clip].astype(np.float32)
    s = t[clip + "_scale_inv"].copy()
    s[0, 1] /= 4
    t[clip] = np.clip(w / expand(s, w.shape, (BLOCK, BLOCK)), -448, 448).astype(E4M3)
    t[clip + "_scale_inv"] = s
    t[left] = src[left]
    del t[left + "_scale_inv"]
    del t[gone], t[gone + "_scale_inv"]
    cand = write(tmp_path / "bad", t, llama_config(quantization_config=FP8_CONFIG))
    # and a tensor the source lacks
    s_tensors = dict(src)
    extra = "model.layers.1.mlp.down_proj.weight"
    del s_tensors[extra]
    src2 = write(tmp_path / "src", s_tensors, llama_config())
    v = verify(cand, against=src2)
    got = findings_by_tensor(v)
    assert got == {
        inv: ["verify-scale-inverted"], trans: ["verify-scale-transposed"],
        shift: ["verify-scale-shifted"], clip: ["verify-clipped"],
        left: ["verify-not-quantized"], gone: ["verify-missing-in-candidate"],
        extra: ["verify-missing-in-source"]}
    sev = {f.code: str(f.severity) for f in v.findings}
    assert sev["verify-clipped"] == "warning" and sev["verify-missing-in-source"] == "warning"
    assert v.fails("error")
    by = {x.name: x for x in v.tensors}
    # the inverted scale: values off by ~1 / scale², and 1 / scale fits as well as a clean one
    s_inv = clean[inv + "_scale_inv"].astype(np.float64)
    assert by[inv].metrics.norm_ratio == pytest.approx(
        math.sqrt((src[inv].astype(np.float64) ** 2 / expand(s_inv, (H, H), (BLOCK, BLOCK)) ** 4)
                  .sum() / (src[inv].astype(np.float64) ** 2).sum()), rel=0.05)
    assert by[inv].fit_error == pytest.approx(
        metrics(dequantize_fp8(clean[inv], clean[inv + "_scale_inv"], (BLOCK, BLOCK)),
                src[inv].astype(np.float32))["rel_error"], rel=1e-4)  # 1 / (1 / s) in float32
    assert by[trans].reading == "the block grid transposed"
    assert by[shift].reading == "each block's scale taken from the block row below"
    # the clipped block: its values beyond (448 + 16) x its scale, counted exactly
    over = np.abs(w[:BLOCK, BLOCK:2 * BLOCK]) > np.float32(464 * s[0, 1])
    assert by[clip].metrics.clipped == int(over.sum()) > 0
    assert by[clip].worst[0].index == (0, 1) and by[clip].blocks_clipped == 1


def test_two_level_global_scale_inverted(tmp_path: Path) -> None:
    """NVFP4 as ModelOpt writes it (weight_scale_2 multiplies) and as
    compressed-tensors does (weight_global_scale divides): a global scale stored
    the other way round is named, the clean exports are not."""
    for scheme, suffix in (("modelopt-nvfp4", ".weight_scale_2"),
                           ("ct-nvfp4", ".weight_global_scale")):
        w = QL.write(scheme, tmp_path / scheme / "cand")
        src = source_of(w, tmp_path / scheme / "src")
        clean = verify(w.path, against=src)
        assert clean.findings == [], scheme
        assert 0.05 < clean.total.rel_error < 0.15  # E2M1 in groups of 16: ~10%
        stem = "model.layers.1.mlp.down_proj"
        key = stem + suffix

        def invert(t: dict[str, np.ndarray], key: str = key) -> None:
            t[key] = np.asarray(1 / t[key], np.float32)

        rewrite(w.path, invert)
        bad = verify(w.path, against=src)
        assert findings_by_tensor(bad) == {bad_name(w, stem): ["verify-scale-inverted"]}
        t = next(x for x in bad.tensors if x.name == bad_name(w, stem))
        assert t.reading == "the global scale the other way round"


def test_nvfp4_metrics_match_an_e2m1_decode(tmp_path: Path) -> None:
    w = QL.write("modelopt-nvfp4", tmp_path / "cand")
    src = source_of(w, tmp_path / "src")
    v = verify(w.path, against=src)
    with open_shard(w.path / "model.safetensors") as s, \
            open_shard(src / "model.safetensors") as r:
        for t in v.tensors[:4]:
            packed = np.array(s.array(t.name))
            codes = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(
                *packed.shape[:-1], -1)
            values = codes.view(ml_dtypes.float4_e2m1fn).astype(np.float32)
            stem = t.name.removesuffix(".weight")
            scale = np.array(s.array(stem + ".weight_scale")).astype(np.float32)
            s2 = np.float32(np.array(s.array(stem + ".weight_scale_2")))
            eff = (scale * s2).astype(np.float32)
            deq = (values * np.repeat(eff, 16, axis=-1)).astype(np.float32)
            ref = np.array(r.array(t.source)).astype(np.float32)
            want = metrics(deq, ref)
            got = t.to_dict()
            for key, value in want.items():
                assert got[key] == pytest.approx(value, rel=1e-6), (t.name, key)
            assert t.block == (1, 16)


def test_mxfp4_group_scales_shifted(tmp_path: Path) -> None:
    """E8M0 scales per group of 32 moved one group to the right: found by the
    second read a weight above its bound triggers."""
    w = QL.write("ct-mxfp4", tmp_path / "cand")
    src = source_of(w, tmp_path / "src")
    assert verify(w.path, against=src).findings == []
    stem = "model.layers.0.mlp.up_proj"

    def shift(t: dict[str, np.ndarray]) -> None:
        t[stem + ".weight_scale"] = np.roll(t[stem + ".weight_scale"], 1, axis=1)

    rewrite(w.path, shift)
    bad = verify(w.path, against=src)
    assert findings_by_tensor(bad) == {stem + ".weight_packed": ["verify-scale-shifted"]}
    t = next(x for x in bad.tensors if x.name == stem + ".weight_packed")
    assert t.reading == "each block's scale taken from the block column to its right"
    assert t.fit_error is not None and t.fit_error < 0.15


def test_gpt_oss_source_stored_transposed(tmp_path: Path) -> None:
    """gpt-oss MXFP4 experts [E, out, in] against BF16 experts [E, in, out] (as
    transformers' GptOssExperts stores them), square down_proj included; an
    expert stack whose scales belong to the next expert is named."""
    w = QL.write("gpt-oss", tmp_path / "cand")
    src = source_of(w, tmp_path / "src", transpose_experts=True)
    v = verify(w.path, against=src)
    assert v.findings == []
    assert {t.name.rsplit(".", 1)[1] for t in v.tensors} == {"gate_up_proj_blocks",
                                                             "down_proj_blocks"}
    assert all(t.source_transposed for t in v.tensors)
    stem = "model.layers.1.mlp.experts.down_proj"
    rewrite(w.path, lambda t: t.__setitem__(stem + "_scales",
                                            np.roll(t[stem + "_scales"], -1, axis=0)))
    bad = verify(w.path, against=src)
    assert findings_by_tensor(bad) == {stem + "_blocks": ["verify-scale-shifted"]}
    t = next(x for x in bad.tensors if x.name == stem + "_blocks")
    assert t.reading == "each expert's scales taken from the previous expert"


DEQUANTIZABLE = ("hf-fp8-block", "hf-fp8-tensor", "hf-fp8-fused", "deepseek-v4", "ct-fp8",
                 "ct-nvfp4", "ct-mxfp4", "ct-mxfp8", "modelopt-fp8", "modelopt-fp8-pc-pt",
                 "modelopt-fp8-pb-wo", "modelopt-nvfp4", "modelopt-mxfp8", "modelopt-mixed")


@pytest.mark.parametrize("scheme", DEQUANTIZABLE)
def test_every_dequantizable_layout_clean_and_with_data_faults(tmp_path: Path,
                                                               scheme: str) -> None:
    """Each producer's layout: clean, nothing; a zeroed block, a block of codes
    pushed to the format's max, a targeted module left in BF16, a scale tensor
    gone: each named on its tensor, nothing else."""
    w = QL.write(scheme, tmp_path / "clean")
    src = source_of(w, tmp_path / "src")
    v = verify(w.path, against=src)
    assert v.findings == [], [f.message for f in v.findings]
    assert len(v.tensors) == len(w.quantized)
    for t in v.tensors:  # under the bound with room: a clean export is no borderline case
        assert t.metrics.rel_error < 0.6 * t.threshold
    expected = {"zero_block": "verify-error-high", "clipping_block": "verify-error-high",
                "unquantized_targeted": "verify-not-quantized",
                "missing_companion": "verify-not-compared"}
    for fault, code in expected.items():
        bad = QL.write(scheme, tmp_path / fault, plant=fault)
        v = verify(bad.path, against=src)
        planted = bad.planted[fault].tensor
        assert planted is not None
        got = findings_by_tensor(v)
        assert list(got.values()) == [[code]], (fault, got)
        where = next(iter(got))
        stem = bad.planted[fault].detail.get("stem") or planted.rsplit(".", 1)[0]
        assert where.startswith(stem.removesuffix("_proj")), (fault, where, planted)


def test_unsupported_schemes_are_named_not_compared(tmp_path: Path) -> None:
    w = QL.write("gptq", tmp_path / "cand")
    src = source_of(w, tmp_path / "src")
    v = verify(w.path, against=src)
    assert {f.code for f in v.findings} == {"verify-unsupported"}
    assert v.unsupported == len(w.quantized) and v.tensors == []
    assert not v.fails("warning")


# ---------------------------------------------------------------- bounds


@pytest.mark.parametrize("fmt,dtype", [("E4M3", ml_dtypes.float8_e4m3fn),
                                       ("E5M2", ml_dtypes.float8_e5m2),
                                       ("E2M1", ml_dtypes.float4_e2m1fn)])
def test_bounds_are_round_to_nearest_worst_case(fmt: str, dtype: Any) -> None:
    """The default bound is the largest relative error round to nearest gives
    over the format's normal range (measured here on a dense grid), and the
    clip limit is where round to nearest leaves the largest finite value."""
    info = ml_dtypes.finfo(dtype)
    x = np.geomspace(float(info.smallest_normal), float(info.max), 400_001)
    rel = np.abs(x.astype(dtype).astype(np.float64) - x) / x
    bound = default_threshold(fmt)
    assert rel.max() <= bound * (1 + 1e-12)
    assert rel.max() > 0.999 * bound
    # the clip limit: halfway from the largest value to where the next step would be
    top = clip_limit(fmt)
    below = np.nextafter(np.array(float(info.max), dtype), np.array(0, dtype))
    assert top == float(info.max) + (float(info.max) - float(below)) / 2
    assert float(np.float32(top * (1 - 1e-6)).astype(dtype)) == float(info.max)
    # under E8M0 scales the OCP rounding saturates up to the next power of two
    assert default_threshold(fmt, mx=True) == pytest.approx(max(
        bound, 1 - float(info.max) / clip_limit(fmt, mx=True)))


def test_threshold_overrides(pair: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    src, cand, _ = pair
    assert parse_thresholds(["e4m3=0.05", "float8_e5m2=0.2,nvfp4=0.3"]) == {
        "E4M3": 0.05, "E5M2": 0.2, "E2M1": 0.3}
    for bad in ("E4M3", "INT4=0.1", "E4M3=-1", "E4M3=x"):
        with pytest.raises(ValueError):
            parse_thresholds([bad])
    tight = verify(cand, against=src, thresholds={"e4m3": 0.01})
    assert tight.thresholds == {"E4M3": 0.01}
    assert {f.code for f in tight.findings} == {"verify-error-high"}
    assert sum(f.count for f in tight.findings) == len(tight.tensors)


# ---------------------------------------------------------------- files, cancel, CLI


def test_scales_at_unaligned_offsets(tmp_path: Path) -> None:
    """A valid file whose F32 scale starts at an odd byte offset (written by hand:
    the safetensors library aligns its tensors)."""
    src = source_weights()
    name = "model.layers.0.self_attn.q_proj.weight"
    w = src[name].astype(np.float32)
    q, s = quantize_fp8_block(w)
    tensors = [("a.odd", "U8", [3], np.arange(3, dtype=np.uint8).tobytes()),
               (name + "_scale_inv", "F32", list(s.shape), s.tobytes()),
               (name, "F8_E4M3", list(q.shape), q.tobytes())]
    header: dict[str, Any] = {}
    data = b""
    for n, dtype, shape, raw in tensors:
        header[n] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data),
                                                                      len(data) + len(raw)]}
        data += raw
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    cand = tmp_path / "cand"
    cand.mkdir()
    (cand / "model.safetensors").write_bytes(len(blob).to_bytes(8, "little") + blob + data)
    (cand / "config.json").write_text(json.dumps(llama_config(quantization_config=FP8_CONFIG)))
    assert (8 + len(blob) + 3) % 4 != 0  # the scale is not 4-byte aligned
    write(tmp_path / "src", {name: src[name], "a.odd": np.arange(3, dtype=np.uint8)},
          llama_config())
    v = verify(cand, against=tmp_path / "src")
    assert v.findings == []
    (t,) = v.tensors
    assert t.metrics.rel_error == pytest.approx(
        metrics(dequantize_fp8(q, s, (BLOCK, BLOCK)), w)["rel_error"], rel=1e-6)


def test_cancel_stops_within_a_tensor(pair: tuple[Path, Path, dict[str, np.ndarray]],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    src, cand, _ = pair
    monkeypatch.setattr("ckptscan.verify.CHUNK_ELEMENTS", BLOCK * H)
    cancel = threading.Event()
    seen: list[int] = []

    def progress(p: Any) -> None:
        seen.append(p.tensors_done)
        cancel.set()

    with pytest.raises(Cancelled):
        verify(cand, against=src, jobs=1, progress=progress, cancel=cancel)
    assert seen == [1]  # stopped after the first tensor, the next ones within their bands


def test_cli(tmp_path: Path, pair: tuple[Path, Path, dict[str, np.ndarray]],
             capsys: pytest.CaptureFixture[str]) -> None:
    src, cand, _ = pair
    assert main(["verify", str(cand), "--against", str(src)]) == 0
    out = capsys.readouterr().out
    assert "ckptscan verify: cand" in out and "Per role" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    assert main(["verify", str(cand), "--against", str(src), "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["verify", str(cand), "--against", str(src), "--format", "json", "-o",
                 str(tmp_path / "v.json")]) == 0
    doc = orjson.loads((tmp_path / "v.json").read_bytes())
    assert doc["schema"] == "ckptscan.verify/1" and doc["compared"] == LAYERS * len(LINEARS)
    assert doc["findings"] == [] and doc["thresholds"] == {"E4M3": 1 / 17}
    assert len(doc["tensors"]) == doc["compared"]
    # a tighter bound fails; --fail-on never and --ignore do not; a bad value is a usage error
    args = ["verify", str(cand), "--against", str(src), "--threshold", "E4M3=0.01"]
    assert main(args) == 1
    assert "verify-error-high" in capsys.readouterr().out
    assert main(args + ["--fail-on", "never"]) == 0
    assert main(args + ["--ignore", "verify-error-high"]) == 0
    capsys.readouterr()
    assert main(args + ["-q"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(" error verify-error-high: " in x for x in lines)
    assert main(["verify", str(cand), "--against", str(src), "--threshold", "INT4=1"]) == 2
    assert main(["verify", str(cand), "--against", str(tmp_path / "nowhere")]) == 2
    assert main(["verify", str(cand), "--against", str(src), "--format", "md", "-o",
                 str(tmp_path / "v.md")]) == 0
    assert "| attention |" in (tmp_path / "v.md").read_text()
    assert main(["codes", "verify-"]) == 0
    assert "verify-scale-inverted" in capsys.readouterr().out


# ---------------------------------------------------------------- helpers


def source_of(w: QL.Written, dest: Path, transpose_experts: bool = False) -> Path:
    """The BF16 checkpoint a quant_layouts export was made from: its float
    weights (`Written.originals`) under their unquantized names, and every
    tensor it kept in high precision."""
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, np.ndarray] = {}
    for f in sorted(w.path.glob("*.safetensors")):
        with open_shard(f) as s:
            for n in s.names:
                info = s[n]
                if info.dtype not in ("BF16", "F16", "F32"):
                    continue
                own = [stem for stem in w.quantized if n.startswith(stem)]
                if own and n[len(own[0]):] not in (".bias", "_bias"):
                    continue  # a quantized weight's companion (scales, global scales ...)
                if n.rsplit(".", 1)[-1] in ("k_scale", "v_scale"):
                    continue  # KV-cache scales are the export's
                out[n] = np.array(s.array(n))
    for stem, arr in w.originals.items():
        module = w.modules[stem]
        name = stem if module != stem else stem + ".weight"
        a = arr.astype(BF16)
        if transpose_experts and a.ndim == 3:
            a = np.ascontiguousarray(a.transpose(0, 2, 1))
        out[name] = a
    save_file(out, str(dest / "model.safetensors"))
    cfg = {k: v for k, v in w.config.items() if k != "quantization_config"}
    (dest / "config.json").write_text(json.dumps(cfg))
    return dest


def rewrite(path: Path, edit: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Every shard of a checkpoint read, edited, written again."""
    for f in sorted(path.glob("*.safetensors")):
        with open_shard(f) as s:
            t = {n: np.array(s.array(n)) if s[n].dtype not in ("U8", "I8") else
                 np.array(s.raw(n)).view(np.int8 if s[n].dtype == "I8" else np.uint8)
                 .reshape(s[n].shape) for n in s.names}
        edit(t)
        save_file(t, str(f))


def bad_name(w: QL.Written, stem: str) -> str:
    return next(n for n in w.tensors if n.startswith(stem + ".weight") and
                w.tensors[n][0] == "U8")



def test_remote_checkpoints(hub_server: Any, pair: tuple[Path, Path, dict[str, np.ndarray]],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Both sides over HTTP (the pipeline's remote sources), a weight read in
    range requests band by band: the same answer as the local files."""
    import shutil

    src, cand, _ = pair
    for d in (src, cand):
        shutil.copytree(d, hub_server.root / "org" / d.name)
    local = verify(cand, against=src)
    monkeypatch.setattr("ckptscan.verify.CHUNK_ELEMENTS", BLOCK * H)
    remote = verify(hub_server.http_url(f"org/{cand.name}/"),
                    against=hub_server.http_url(f"org/{src.name}/"))
    assert remote.findings == []
    assert [t.name for t in remote.tensors] == [t.name for t in local.tensors]
    for a, b in zip(local.tensors, remote.tensors, strict=True):
        assert b.metrics.rel_error == pytest.approx(a.metrics.rel_error, rel=1e-12)
    # band by band: the largest range read is one band of BF16 (header reads aside)
    sizes = []
    for r in hub_server.log:
        if r.file and r.file.endswith(".safetensors") and r.range and "-" in r.range:
            first, last = r.range.removeprefix("bytes=").split("-")
            if first and last and int(first) > 0:  # not a header's read
                sizes.append(int(last) + 1 - int(first))
    assert sizes and max(sizes) <= 2 * BLOCK * FF


def test_prefix_renamed_source_and_a_broken_candidate_shard(
        tmp_path: Path, pair: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    """Source names under another prefix pair by diff's rewrites; a candidate
    shard cut short is one root cause, explaining the source tensors it took."""
    import shutil

    src = {"model.language_model." + k.removeprefix("model."): v
           for k, v in source_weights().items()}
    src_dir = write(tmp_path / "src", src, llama_config())
    v = verify(pair[1], against=src_dir)
    assert v.findings == []
    assert all(t.source.startswith("model.language_model.layers.") for t in v.tensors)
    cand = tmp_path / "cand"
    shutil.copytree(pair[1], cand)
    victim = sorted(cand.glob("*.safetensors"))[1]
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size // 2)
    broken = verify(cand, against=src_dir)
    (root,) = broken.findings
    assert root.code == "truncated" and root.file == str(victim)
    explained = {x.code: x.count for x in root.explains}
    with open_shard(pair[1] / victim.name) as s:
        lost_weights = sum(1 for n in s.names if not n.endswith("_scale_inv"))
    assert explained["verify-missing-in-candidate"] == lost_weights
    assert len(broken.tensors) < len(v.tensors)


def test_tied_lm_head_is_not_missing(tmp_path: Path,
                                     pair: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    """A candidate that drops lm_head.weight because its config ties it to the
    embedding (tie_word_embeddings) lacks nothing; without the tie it does."""
    src, _, cand = pair
    t = {k: v for k, v in cand.items() if k != "lm_head.weight"}
    for tie, want in ((True, []), (False, ["verify-missing-in-candidate"])):
        d = write(tmp_path / str(tie), t, llama_config(quantization_config=FP8_CONFIG,
                                                       tie_word_embeddings=tie))
        assert [f.code for f in verify(d, against=src).findings] == want
