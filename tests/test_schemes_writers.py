"""The producer-layout writers (ckptscan.testing.quant_layouts), read back with
the real ``safetensors`` library, against the scheme declarations:

- clean checkpoints: every weight the declarations resolve has every required
  companion with an accepted dtype and the expected shape; no companion is an
  orphan; what the writer quantized is what the config targets; the parameter
  count agrees with the writer's (from the unpacked shapes); and the stored
  data decodes, by the formats' definitions written out here, to the weights
  the writer drew (a wrong nibble order or scale layout would be ~100% off);
- every planted fault is really in the files, where the record says, and is
  what the declarations call wrong (missing, orphan, shape, dtype ...).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from ckptscan import schemes as S
from ckptscan.testing import quant_layouts as L
from safetensors import safe_open

FAMILY = {
    "hf-fp8-block": "hf-fp8", "hf-fp8-tensor": "hf-fp8", "hf-fp8-fused": "hf-fp8",
    "deepseek-v4": "deepseek-v4", "ct-fp8": "compressed-tensors",
    "ct-int8": "compressed-tensors", "ct-w4a16": "compressed-tensors",
    "ct-nvfp4": "compressed-tensors", "ct-mxfp4": "compressed-tensors",
    "ct-mxfp8": "compressed-tensors", "ct-mixed": "compressed-tensors",
    "modelopt-fp8": "modelopt", "modelopt-fp8-pc-pt": "modelopt", "modelopt-fp8-pb-wo": "modelopt",
    "modelopt-nvfp4": "modelopt", "modelopt-w4a16-nvfp4": "modelopt", "modelopt-mxfp8": "modelopt",
    "modelopt-mixed": "modelopt", "gpt-oss": "gpt-oss-mxfp4", "gptq": "gptq", "awq": "awq",
    "bnb-4bit": "bitsandbytes", "bnb-8bit": "bitsandbytes", "mlx": "mlx", "torchao": "torchao",
}
NUMPY = {"BF16": ml_dtypes.bfloat16, "F16": np.float16, "F32": np.float32, "F64": np.float64,
         "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E8M0": ml_dtypes.float8_e8m0fnu, "U8": np.uint8,
         "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64, "U32": np.uint32}
E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)


def test_every_scheme_has_a_family() -> None:
    assert set(FAMILY) == set(L.SCHEMES)


# ---- reading back --------------------------------------------------------------------------------

class Ckpt:
    """A written checkpoint read back: headers through safetensors, data by offset."""

    def __init__(self, path: Path) -> None:
        self.config = json.loads((path / "config.json").read_text())
        hq = path / "hf_quant_config.json"
        self.hf_quant = json.loads(hq.read_text()) if hq.exists() else None
        self.header: dict[str, tuple[str, tuple[int, ...]]] = {}
        self.file: dict[str, Path] = {}
        self.metadata: dict[str, str] = {}
        for f in sorted(path.glob("*.safetensors")):
            with safe_open(str(f), "numpy") as fh:
                self.metadata.update(fh.metadata() or {})
                for k in fh.keys():
                    sl = fh.get_slice(k)
                    self.header[k] = (sl.get_dtype(), tuple(sl.get_shape()))
                    self.file[k] = f
        det = S.detect(self.config, self.hf_quant, self.metadata)
        assert det is not None
        self.det = det

    def array(self, name: str) -> np.ndarray:
        """Typed array of a tensor, from its bytes (numpy's safetensors loader has no F8)."""
        raw = self.file[name].read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        entry = json.loads(raw[8:8 + n])[name]
        b, e = entry["data_offsets"]
        dtype = NUMPY[entry["dtype"]]
        return np.frombuffer(raw[8 + n + b:8 + n + e], dtype).reshape(entry["shape"])

    def floats(self, name: str) -> np.ndarray:
        a = self.array(name)
        if a.dtype in (np.uint8,) and self.header[name][0] == "U8":
            return a.astype(np.float32)
        return a.astype(np.float32)


_cache: dict[tuple[str, str, str], tuple[L.Written, Ckpt]] = {}


def written(tmp_path_factory: pytest.TempPathFactory, scheme: str, plant: str = "",
            **options: Any) -> tuple[L.Written, Ckpt]:
    key = (scheme, plant, json.dumps(options, sort_keys=True))
    if key not in _cache:
        d = tmp_path_factory.mktemp(f"{scheme}-{plant or 'clean'}")
        w = L.write(scheme, d, plant=[plant] if plant else [], **options)
        _cache[key] = (w, Ckpt(d))
    return _cache[key]


# ---- clean checkpoints -------------------------------------------------------------------------

def kind_of(stem_module: str) -> str:
    return "embedding" if stem_module.rpartition(".")[2] in ("embed_tokens", "embed") else "linear"


VARIANTS: list[tuple[str, dict[str, Any]]] = [(s, {}) for s in sorted(L.SCHEMES)] + [
    ("hf-fp8-block", {"scale_fmt": "ue8m0"}),
    ("hf-fp8-block", {"scale_fmt": "ue8m0", "scale_dtype": "F8_E8M0"}),
    ("hf-fp8-block", {"fmt": "e4m3", "block": (64, 128)}),
    ("hf-fp8-tensor", {"static": True, "text_config": True}),
    ("deepseek-v4", {"expert_dtype": "fp8"}),
    ("ct-fp8", {"strategy": "tensor"}), ("ct-fp8", {"strategy": "block"}),
    ("ct-fp8", {"strategy": "group", "text_config": True}),
    ("ct-int8", {"bits": 4, "group": 128, "symmetric": False}),
    ("ct-w4a16", {"symmetric": False}), ("ct-w4a16", {"symmetric": False, "zp_layout": "unpacked"}),
    ("ct-w4a16", {"actorder": True}), ("ct-w4a16", {"bits": 8, "shape_dtype": "I32"}),
    ("ct-w4a16", {"bits": 2, "group": 64}),
    ("modelopt-nvfp4", {"config_in": "hf_quant_config"}),
    ("modelopt-fp8", {"config_in": "config", "kv_cache": False}),
    ("modelopt-fp8-pb-wo", {"scale_layout": "rank2"}),
    ("gptq", {"bits": 8}), ("bnb-4bit", {"double_quant": True}),
]
VARIANT_IDS = [s + "".join(f"-{k}={v}" for k, v in o.items()) for s, o in VARIANTS]


@pytest.mark.parametrize(("scheme", "options"), VARIANTS, ids=VARIANT_IDS)
def test_clean_checkpoint_agrees_with_the_declarations(
        tmp_path_factory: pytest.TempPathFactory, scheme: str, options: dict[str, Any]) -> None:
    w, ck = written(tmp_path_factory, scheme, **options)
    det = ck.det
    assert det.family == FAMILY[scheme]
    assert det.problems == ()
    assert {n: (d, s) for n, (d, s) in w.tensors.items()} == ck.header
    have = ck.header.__contains__
    weights: dict[str, S.Layout] = {}
    for name, (dtype, shape) in ck.header.items():
        lay = det.layout_for(name, dtype, have)
        if lay is None:
            continue
        weights[name] = lay
        stem = lay.weight_stem(name)
        assert stem is not None
        logical = lay.logical_shape(shape)
        assert logical is not None, name
        for c in lay.companions:
            cname = lay.companion_name(stem, c)
            if cname not in ck.header:
                assert not c.required, f"{cname} missing"
                continue
            cdtype, cshape = ck.header[cname]
            assert c.dtype_ok(cdtype), (cname, cdtype, c.dtypes)
            assert c.shape_ok(cshape, logical), (cname, cshape, c.expected_shapes(logical))
    # what the writer quantized is exactly what the declarations resolve, and targeted
    modules = {lay.module_of(lay.weight_stem(n) or ""): lay for n, lay in weights.items()}
    assert set(modules) == {w.modules[s] for s in w.quantized}
    for module in modules:
        assert det.target(module, kind_of(module)).quantized, module
    for stem in w.high_precision:  # linears the producer keeps in high precision
        module = w.modules[stem]
        assert not det.target(module, kind_of(module)).quantized, module
    # no companion without its weight
    for name in ck.header:
        if name in weights:
            continue
        roles = det.companion_roles(name)
        if roles:
            assert any(r.layout.weight_name(r.stem) in ck.header for r in roles), name
    # logical parameters: the declarations agree with the writer's own count
    assert sum(det.parameters(n, d, s) for n, (d, s) in ck.header.items()) == w.parameters


# ---- decoding the data by the formats' definitions ---------------------------------------------

def nibbles(packed: np.ndarray, low_first: bool = True) -> np.ndarray:
    lo, hi = packed & 0x0F, packed >> 4
    a, b = (lo, hi) if low_first else (hi, lo)
    return np.stack([a, b], axis=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)


def words(w: np.ndarray, bits: int) -> np.ndarray:
    """LSB-first unsigned fields of uint32 words along the last axis."""
    u = w.view(np.uint32).astype(np.uint64)
    per = 32 // bits
    fields = [(u >> np.uint64(bits * i)) & np.uint64((1 << bits) - 1) for i in range(per)]
    return np.stack(fields, axis=-1).reshape(*u.shape[:-1], u.shape[-1] * per).astype(np.int64)


def e8m0(a: np.ndarray) -> np.ndarray:
    return np.ldexp(1.0, a.view(np.uint8).astype(np.int32) - 127)


def spread(scale: np.ndarray, rows: int, cols: int, shape: tuple[int, ...]) -> np.ndarray:
    full = np.repeat(np.repeat(scale, rows, axis=-2), cols, axis=-1)
    return full[..., : shape[-2], : shape[-1]]


def decode(scheme: str, ck: Ckpt, stem: str, w: np.ndarray,
           opts: dict[str, Any] | None = None) -> np.ndarray:
    """The weight a loader would compute, written from each format's definition."""
    a = ck.array
    f = ck.floats
    opts = opts or {}
    if scheme in ("hf-fp8-block", "hf-fp8-tensor", "hf-fp8-fused"):
        name = stem if stem in ck.header else stem + ".weight"  # fused stacks: no suffix
        q = a(name).astype(np.float32)
        s = f(name + "_scale_inv")
        br, bc = opts.get("block", (128, 128))
        return q * (s if scheme == "hf-fp8-tensor" else spread(s, br, bc, q.shape))
    if scheme == "deepseek-v4":
        if ".experts." in stem and ck.header[stem + ".weight"][0] == "I8":
            vals = E2M1[nibbles(a(stem + ".weight").view(np.uint8))]
            return vals * np.repeat(e8m0(a(stem + ".scale")), 32, axis=-1)
        q = a(stem + ".weight").astype(np.float32)
        return q * spread(e8m0(a(stem + ".scale")), 128, 128, q.shape)
    if scheme in ("ct-fp8", "ct-int8") or (scheme == "ct-mixed" and ".self_attn." in stem):
        q = a(stem + ".weight").astype(np.float32)
        s = f(stem + ".weight_scale")
        if stem + ".weight_zero_point" in ck.header:
            q = q - np.repeat(f(stem + ".weight_zero_point"), opts["group"], axis=-1)
        if s.ndim == 2 and s.shape[-1] > 1:  # block (128 x 128) or group (1 x 128)
            rows = 1 if opts.get("strategy") == "group" or scheme == "ct-int8" else 128
            return q * spread(s, rows, 128, q.shape)
        return q * s
    if scheme in ("ct-w4a16", "ct-mixed"):
        bits = opts.get("bits", 4)
        out, inp = (int(x) for x in a(stem + ".weight_shape"))
        q = (words(a(stem + ".weight_packed"), bits) - 2 ** (bits - 1))[:, :inp]
        gsize = opts.get("group", 128)
        groups = (a(stem + ".weight_g_idx").astype(np.int64)
                  if stem + ".weight_g_idx" in ck.header else np.arange(inp) // gsize)
        zp: Any = 0
        if stem + ".weight_zero_point" in ck.header:
            z = ck.array(stem + ".weight_zero_point")
            zp = (z if z.dtype == np.int8 else words(z.T.copy(), bits)[:, :out].T
                  - 2 ** (bits - 1))[:, groups]
        return (q - zp) * f(stem + ".weight_scale")[:, groups]
    if scheme == "ct-nvfp4":
        vals = E2M1[nibbles(a(stem + ".weight_packed"))]
        s = a(stem + ".weight_scale").astype(np.float32)
        return vals * np.repeat(s, 16, axis=-1) / f(stem + ".weight_global_scale")[0]
    if scheme in ("ct-mxfp4", "ct-mxfp8", "modelopt-mxfp8"):
        packed = scheme == "ct-mxfp4"
        vals = (E2M1[nibbles(a(stem + ".weight_packed"))] if packed
                else a(stem + ".weight").astype(np.float32))
        return vals * np.repeat(e8m0(a(stem + ".weight_scale")), 32, axis=-1)
    if scheme in ("modelopt-fp8", "modelopt-fp8-pc-pt", "modelopt-fp8-pb-wo"):
        q = a(stem + ".weight").astype(np.float32)
        if stem + ".weight_scale_inv" in ck.header:  # FP8_PB_WO's rank-2 convention
            return q * spread(f(stem + ".weight_scale_inv"), 128, 128, q.shape)
        s = f(stem + ".weight_scale")
        if s.ndim == 4:
            return q * spread(s[:, 0, :, 0], 128, 128, q.shape)
        return q * (s[:, None] if s.ndim == 1 else s)
    if scheme in ("modelopt-nvfp4", "modelopt-w4a16-nvfp4", "modelopt-mixed"):
        if scheme == "modelopt-mixed" and ".self_attn." in stem:
            return a(stem + ".weight").astype(np.float32) * f(stem + ".weight_scale")
        vals = E2M1[nibbles(a(stem + ".weight"))]
        s = a(stem + ".weight_scale").astype(np.float32)
        return vals * np.repeat(s, 16, axis=-1) * f(stem + ".weight_scale_2")
    if scheme == "gpt-oss":
        blocks = a(stem + "_blocks")
        vals = E2M1[nibbles(blocks.reshape(*blocks.shape[:-2], -1))]
        return vals * np.repeat(e8m0(a(stem + "_scales")), 32, axis=-1)
    if scheme == "gptq":
        bits = opts.get("bits", 4)
        q = words(a(stem + ".qweight").T.copy(), bits)  # [out, in]: unsigned values
        zeros = words(a(stem + ".qzeros"), bits) + 1  # v1 stores zero - 1
        s = f(stem + ".scales")
        return (q - np.repeat(zeros.T, 128, axis=-1)) * np.repeat(s.T, 128, axis=-1)
    if scheme == "awq":
        order = np.argsort([0, 2, 4, 6, 1, 3, 5, 7])
        def unawq(x: np.ndarray) -> np.ndarray:
            v = words(x, 4)
            return v.reshape(*v.shape[:-1], -1, 8)[..., order].reshape(v.shape)
        q = unawq(a(stem + ".qweight"))  # [in, out]
        z = unawq(a(stem + ".qzeros"))  # [groups, out]
        s = f(stem + ".scales")
        return ((q - np.repeat(z, 128, axis=0)) * np.repeat(s, 128, axis=0)).T
    if scheme == "bnb-4bit":
        nf4 = f(stem + ".weight.quant_map")
        codes = nibbles(a(stem + ".weight").reshape(-1), low_first=False)[: w.size]
        absmax = f(stem + ".weight.absmax")
        if ck.header[stem + ".weight.absmax"][0] == "U8":  # double quantization
            state = json.loads(bytes(a(stem + ".weight.quant_state.bitsandbytes__nf4")))
            nested = np.repeat(f(stem + ".weight.nested_absmax"), 256)[: absmax.size]
            idx = a(stem + ".weight.absmax").astype(np.int64)
            absmax = f(stem + ".weight.nested_quant_map")[idx] * nested + state["nested_offset"]
        absmax = np.repeat(absmax, 64)[: w.size]
        return (nf4[codes] * absmax).reshape(w.shape)
    if scheme == "bnb-8bit":
        return a(stem + ".weight").astype(np.float32) * f(stem + ".SCB")[:, None] / 127
    if scheme == "mlx":
        bits = 8 if stem.endswith("layers.0.mlp.down_proj") else 4
        q = words(a(stem + ".weight"), bits).astype(np.float32)
        return q * np.repeat(f(stem + ".scales"), 64, axis=-1) + np.repeat(
            f(stem + ".biases"), 64, axis=-1)
    if scheme == "torchao":
        return a(stem + "._weight_qdata").astype(np.float32) * f(stem + "._weight_scale")
    raise AssertionError(scheme)


# relative Frobenius error each format reaches on N(0, 0.02) weights
TOLERANCE = {"E4M3": 0.04, "E2M1": 0.2, "INT2": 0.6, "INT4": 0.15, "INT8": 0.01, "NF4": 0.15}


@pytest.mark.parametrize(("scheme", "options"), VARIANTS, ids=VARIANT_IDS)
def test_stored_data_decodes_to_the_drawn_weights(tmp_path_factory: pytest.TempPathFactory,
                                                  scheme: str, options: dict[str, Any]) -> None:
    w, ck = written(tmp_path_factory, scheme, **options)
    checked = 0
    for stem, shape in w.quantized.items():
        got = decode(scheme, ck, stem, w.originals[stem], w.options)
        want = w.originals[stem]
        assert got.shape == want.shape == shape, stem
        err = float(np.linalg.norm(got - want) / np.linalg.norm(want))
        lay = ck.det.layout_for(next(n for n in ck.header if n.startswith(stem) and
                                     ck.det.layout_for(n, ck.header[n][0]) is not None),
                                None)
        fmt = lay.weight_format if lay is not None else "E4M3"

        assert err < TOLERANCE.get(fmt, 0.2), (stem, fmt, err)
        checked += 1
    assert checked == len(w.quantized) > 0


# ---- planted faults ----------------------------------------------------------------------------

CASES = sorted((s, f) for s, wr in L.SCHEMES.items() for f in wr.faults)


def companion_of(ck: Ckpt, name: str) -> tuple[S.CompanionRole, str]:
    """The role of a companion name whose layout's weight (or its stem) is known."""
    roles = ck.det.companion_roles(name)
    assert roles, name
    return roles[0], roles[0].layout.weight_name(roles[0].stem)


def weight_of_module(ck: Ckpt, module: str) -> tuple[str, str]:
    """(stored weight name, dtype) of a module's weight in any naming."""
    for n, (d, _) in ck.header.items():
        for suffix in (".weight", ".weight_packed", ".qweight", "._weight_qdata", ""):
            if n == module + suffix:
                return n, d
    raise AssertionError(module)


@pytest.mark.parametrize(("scheme", "fault"), CASES)
def test_planted_fault_is_there(tmp_path_factory: pytest.TempPathFactory, scheme: str,
                                fault: str) -> None:
    w, ck = written(tmp_path_factory, scheme, fault)
    p = w.planted[fault]
    det, header = ck.det, ck.header
    if p.tensor is not None and p.tensor in header:
        assert p.file is not None and (ck.file[p.tensor].name == p.file)
    if fault == "missing_companion":
        assert p.tensor not in header and p.detail["weight"] in header
        lay = det.layout_for(p.detail["weight"], header[p.detail["weight"]][0])
        assert lay is not None
        stem = lay.weight_stem(p.detail["weight"])
        assert stem is not None
        required = {lay.companion_name(stem, c) for c in lay.companions if c.required}
        assert p.tensor in required
    elif fault == "orphan_companion":
        assert p.tensor in header and p.detail["missing_weight"] not in header
        role, weight = companion_of(ck, p.tensor)
        assert weight == p.detail["missing_weight"]
    elif fault in ("companion_shape", "companion_dtype"):
        role, weight = companion_of(ck, p.tensor)
        logical = role.layout.logical_shape(header[weight][1])
        assert logical is not None
        dtype, shape = header[p.tensor]
        if fault == "companion_shape":
            assert not role.companion.shape_ok(shape, logical)
        else:
            assert not role.companion.dtype_ok(dtype) and dtype == p.detail["dtype"]
    elif fault == "mixed_conventions":
        other = det.other_convention(p.tensor)
        if other is None:  # both conventions declared (ModelOpt FP8_PB_WO): they differ
            role, weight = companion_of(ck, p.tensor)
            used = {det.layout_for(n, d, header.__contains__) for n, (d, _) in header.items()
                    if det.layout_for(n, d) is not None}
            assert len(used) == 2
        else:
            stem, _ = other
            assert any(n.startswith(stem + ".") and det.layout_for(n, d) is not None
                       for n, (d, _) in header.items())
    elif fault == "exclusion_unmatched":
        entry = p.detail["entry"]
        assert entry in det.exclusions.entries
        names = list(header) + [n.rpartition(".")[0] for n in header]
        assert not any(det.exclusions.entry_matches(entry, n) for n in names)
    elif fault == "exclusion_prefix":
        t = det.target(p.detail["module"])
        assert t.excluded_by is not None and t.excluded_by.via_prefix is not None
        assert t.excluded_by.entry == p.detail["entry"]
        assert header[p.tensor][0] == "BF16"
    elif fault == "quantized_excluded":
        t = det.target(p.detail["module"])
        assert t.excluded_by is not None and t.excluded_by.entry == p.detail["entry"]
        assert det.layout_for(p.tensor, header[p.tensor][0]) is not None
    elif fault == "unquantized_targeted":
        module = p.detail["module"]
        assert det.target(module, kind_of(module)).quantized
        assert header[p.tensor][0] == "BF16"
        assert det.layout_for(p.tensor, "BF16") is None
    elif fault == "fused_scale_mismatch":
        assert set(p.detail["companions"]) <= set(det.fused_companions())
        module = p.detail["stem"]
        fused = S.fused_sibling(module)
        assert fused is not None
        sibling = module.rpartition(".")[0] + "." + ("q_proj" if module.endswith("k_proj")
                                                      else "gate_proj")
        for suffix in p.detail["companions"]:
            mine = ck.floats(module + suffix).reshape(-1)
            theirs = ck.floats(sibling + suffix).reshape(-1)
            role = det.companion_roles(module + suffix)
            assert role and role[0].companion.fused_equal
            assert not np.allclose(mine, theirs)
        clean, ck_clean = written(tmp_path_factory, scheme, **w.options)
        for suffix in p.detail["companions"]:
            assert np.array_equal(ck_clean.floats(module + suffix),
                                  ck_clean.floats(sibling + suffix))
    elif fault == "scale_nan_e4m3":
        assert header[p.tensor][0] == "F8_E4M3"
        raw = ck.array(p.tensor).view(np.uint8)
        assert {0x7F, 0xFF} & set(raw.reshape(-1).tolist())
    elif fault == "e8m0_nan":
        assert header[p.tensor][0] in ("F8_E8M0", "U8")
        assert 0xFF in ck.array(p.tensor).view(np.uint8)
    elif fault == "negative_input_scale":
        assert (ck.floats(p.tensor) < 0).all()
    elif fault == "zero_point_range":
        zp = ck.array(p.tensor)
        assert zp.dtype == np.int8 and zp.max() > 7
    elif fault in ("zero_block", "clipping_block", "all_zero_tensor"):
        stem = p.detail["stem"]
        got = decode(scheme, ck, stem, w.originals[stem], w.options)
        if fault == "all_zero_tensor":
            assert not got.any()
        else:
            block = (0,) * (got.ndim - 2)
            rows, cols = (p.detail.get("region") or [1, 1])
            if fault == "zero_block":
                region = got[block + (slice(0, rows), slice(0, cols))]
                assert not region.any() and got.any()
            else:  # 30% of the block's codes at +-max: at the block's extreme values
                _, ck_clean = written(tmp_path_factory, scheme, **w.options)
                clean = decode(scheme, ck_clean, stem, w.originals[stem], w.options)

                def share(values: np.ndarray) -> float:
                    region = values[block + (slice(0, rows), slice(0, cols))]
                    ends = (np.isclose(region, region.max(), rtol=1e-6, atol=0)
                            | np.isclose(region, region.min(), rtol=1e-6, atol=0))
                    return float(ends.mean())

                assert share(got) >= 0.3 > share(clean)
    else:
        raise AssertionError(fault)
