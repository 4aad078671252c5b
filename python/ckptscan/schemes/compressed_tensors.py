"""compressed-tensors (``quant_method: "compressed-tensors"``): llm-compressor, RedHatAI.

Layout (vllm-project/compressed-tensors: ``quantization/quant_args.py``,
``quant_scheme.py`` presets, ``lifecycle/initialize.py`` ``initialize_qparams``,
the compressors under ``compressors/``):

- ``config_groups``: ``{name: {targets, weights, input_activations, format?}}``
  (or ``{PRESET: [targets]}``); ``ignore``; ``format`` (one of the formats
  below, or ``mixed-precision`` with a ``format`` per group); ``kv_cache_scheme``.
- scale shape by ``strategy``: tensor ``[1]``; channel ``[out, 1]``; group and
  tensor_group ``[out, ceil(in/g)]``; block ``[ceil(out/bh), ceil(in/bw)]``. Scale
  dtype: ``scale_dtype`` when given, else the weight's original dtype (BF16, F16 or
  F32). Zero points (asymmetric) have the scale's shape, ``weight_g_idx`` I32
  ``[in]`` comes with ``actorder: group``, tensor_group adds ``weight_global_scale``
  F32 ``[1]``; static input activations add ``input_scale`` (tensor: ``[1]``) or,
  for tensor_group inputs, ``input_global_scale`` ``[1]``.
- ``float-quantized`` / ``int-quantized`` / ``naive-quantized``: ``X.weight`` in
  F8_E4M3 (float 8-bit) or I8 (int) + the above.
- ``pack-quantized`` (W4A16, W8A16 ...): ``X.weight_packed`` I32 ``[out,
  ceil(in * bits / 32)]``, 32/bits values per word from the least significant
  bits, stored as ``q + 2**(bits-1)``; ``X.weight_shape`` ``[2]`` = the logical
  ``[out, in]``, written as I64 by ``torch.tensor(weight.shape)`` (I32 accepted);
  asymmetric group/channel zero points packed the same way along the rows (I32
  ``[ceil(out * bits / 32), groups]``; releases before compressed-tensors #296 kept
  them unpacked in I8 ``[out, groups]``).
- ``nvfp4-pack-quantized``: ``X.weight_packed`` U8 ``[out, in/2]`` (E2M1, low nibble
  first), ``X.weight_scale`` F8_E4M3 ``[out, in/16]``, ``X.weight_global_scale`` F32
  ``[1]`` (= 448 * 6 / amax, the inverse of ModelOpt's ``weight_scale_2``),
  ``X.input_global_scale`` F32 ``[1]``.
- ``mxfp4-pack-quantized``: ``X.weight_packed`` U8 ``[out, in/2]`` + ``X.weight_scale``
  U8 ``[out, in/32]`` (E8M0 exponents, bias 127); ``mxfp8-quantized``: ``X.weight``
  F8_E4M3 + ``X.weight_scale`` U8 ``[out, in/32]``.
- KV cache (``kv_cache_scheme``): ``...self_attn.k_scale`` / ``v_scale``.

Which modules: a group's ``targets`` (class names such as ``Linear``, exact module
names, ``re:`` regexes matched with ``re.match``) minus ``ignore`` (same syntax).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ._core import (
    CONFIG,
    G_IDX,
    GLOBAL_SCALE,
    INPUT_SCALE,
    KV_SCALE,
    SCALE,
    SHAPE,
    ZERO_POINT,
    AnyOf,
    Companion,
    Detection,
    Extra,
    Family,
    Granularity,
    Group,
    Layout,
    Packing,
    PerBlock,
    PerChannel,
    PerGroup,
    PerInput,
    PerTensor,
    Problem,
    ShapeOfShape,
    ShapeRule,
    Sources,
    block_pair,
    is_int,
    string_list,
)
from ._formats import torch_dtype_to_safetensors
from ._match import COMPRESSED_TENSORS, Rules, Targets, is_class_entry

NAME = "compressed-tensors"
SOURCE = "compressed-tensors lifecycle/initialize.py and compressors/"
FLOATS = ("BF16", "F16", "F32")
FORMATS = ("dense", "float-quantized", "int-quantized", "naive-quantized", "pack-quantized",
           "nvfp4-pack-quantized", "mxfp4-pack-quantized", "mxfp8-quantized", "mixed-precision")
UNDECLARED = ("sparse-bitmask", "sparse-24-bitmask", "marlin-24")
STRATEGIES = ("tensor", "channel", "group", "block", "token", "tensor_group", "attn_head")


@dataclass(frozen=True)
class Args:
    """One ``QuantizationArgs`` (weights or activations), validated."""

    num_bits: int
    type: str
    symmetric: bool
    strategy: str
    group_size: int | None
    block: tuple[int, int] | None
    dynamic: bool | str
    actorder: str | None
    scale_dtype: str | None
    zp_dtype: str | None


def _w(num_bits: int, typ: str, strategy: str, **kw: Any) -> dict[str, Any]:
    return {"num_bits": num_bits, "type": typ, "strategy": strategy, **kw}


# compressed-tensors quant_scheme.py PRESET_SCHEMES, as they serialise
_GROUP128 = {"weights": _w(4, "int", "group", group_size=128)}
PRESETS: dict[str, dict[str, Any]] = {
    "W4A16": _GROUP128,
    "W8A16": {"weights": _w(8, "int", "group", group_size=128)},
    "W4A16_ASYM": {"weights": _w(4, "int", "group", group_size=128, symmetric=False)},
    "W8A8": {"weights": _w(8, "int", "channel"),
             "input_activations": _w(8, "int", "token", dynamic=True)},
    "INT8": {"weights": _w(8, "int", "channel"),
             "input_activations": _w(8, "int", "token", dynamic=True)},
    "W4AFP8": {"weights": _w(4, "int", "group", group_size=128),
               "input_activations": _w(8, "float", "token", dynamic=True)},
    "FP8": {"weights": _w(8, "float", "tensor"), "input_activations": _w(8, "float", "tensor")},
    "FP8_DYNAMIC": {"weights": _w(8, "float", "channel"),
                    "input_activations": _w(8, "float", "token", dynamic=True)},
    "FP8_BLOCK": {"weights": _w(8, "float", "block", block_structure=[128, 128]),
                  "input_activations": _w(8, "float", "group", group_size=128, dynamic=True)},
    "NVFP4A16": {"weights": _w(4, "float", "tensor_group", group_size=16,
                               scale_dtype="torch.float8_e4m3fn")},
    "NVFP4": {"weights": _w(4, "float", "tensor_group", group_size=16,
                            scale_dtype="torch.float8_e4m3fn"),
              "input_activations": _w(4, "float", "tensor_group", group_size=16, dynamic="local",
                                      scale_dtype="torch.float8_e4m3fn")},
    "MXFP4A16": {"weights": _w(4, "float", "group", group_size=32, scale_dtype="torch.uint8")},
    "MXFP4": {"weights": _w(4, "float", "group", group_size=32, scale_dtype="torch.uint8"),
              "input_activations": _w(4, "float", "group", group_size=32, dynamic=True,
                                      scale_dtype="torch.uint8")},
    "MXFP8A16": {"weights": _w(8, "float", "group", group_size=32, scale_dtype="torch.uint8")},
    "MXFP8": {"weights": _w(8, "float", "group", group_size=32, scale_dtype="torch.uint8"),
              "input_activations": _w(8, "float", "group", group_size=32, dynamic=True,
                                      scale_dtype="torch.uint8")},
}


def parse_args(d: object, key: str, problems: list[Problem]) -> Args | None:
    """A ``QuantizationArgs`` mapping, inferring the strategy as compressed-tensors
    does (no group_size: tensor; > 0: group; -1: channel)."""
    if d is None:
        return None
    if not isinstance(d, Mapping):
        problems.append(Problem(CONFIG, key, f"{d!r} is not a mapping"))
        return None
    bits = d.get("num_bits", 8)
    if not is_int(bits) or not 1 <= bits <= 32:
        problems.append(Problem(CONFIG, f"{key}.num_bits",
                                f"{bits!r} is not a bit width (an integer 1-32)"))
        bits = 8
    typ = str(d.get("type", "int")).lower()
    if typ not in ("int", "float"):
        problems.append(Problem(CONFIG, f"{key}.type",
                                f"{d.get('type')!r} is neither int nor float"))
        typ = "int"
    sym = d.get("symmetric", True)
    if not isinstance(sym, bool):
        problems.append(Problem(CONFIG, f"{key}.symmetric", f"{sym!r} is not a boolean"))
        sym = True
    gs = d.get("group_size")
    if gs is not None and (not is_int(gs) or gs == 0 or gs < -1):
        kind = "a list" if isinstance(gs, list) else repr(gs)
        problems.append(Problem(CONFIG, f"{key}.group_size",
                                f"{kind} where a positive group size (or -1) belongs"))
        gs = None
    strategy = d.get("strategy")
    if strategy is None:
        strategy = "tensor" if gs is None else "group" if gs > 0 else "channel"
    strategy = str(strategy).lower()
    if strategy not in STRATEGIES:
        problems.append(Problem(CONFIG, f"{key}.strategy", f"{strategy!r} is not one of "
                                f"{', '.join(STRATEGIES)}"))
        strategy = "tensor"
    if strategy in ("group", "tensor_group") and (gs is None or gs <= 0):
        problems.append(Problem(CONFIG, f"{key}.group_size",
                                f"strategy {strategy!r} needs a positive group_size, not {gs!r}"))
        gs = 128
    block = None
    if d.get("block_structure") is not None:
        block = block_pair(d["block_structure"], f"{key}.block_structure", problems,
                           text=True)
    if strategy == "block" and block is None:
        if d.get("block_structure") is None:
            problems.append(Problem(CONFIG, f"{key}.block_structure",
                                    "strategy 'block' needs a block_structure"))
        block = (128, 128)
    dyn = d.get("dynamic", False)
    if not (isinstance(dyn, bool) or dyn == "local"):
        problems.append(Problem(CONFIG, f"{key}.dynamic", f"{dyn!r} is not true, false or 'local'"))
        dyn = False
    act = d.get("actorder")
    actorder = ("group" if act is True or (isinstance(act, str)
                                          and act.lower() in ("group", "dynamic"))
                else "weight" if isinstance(act, str) and act.lower() in ("weight", "static")
                else None)
    scale_dtype = _dtype(d, "scale_dtype", key, problems)
    zp_dtype = _dtype(d, "zp_dtype", key, problems)
    return Args(int(bits), typ, sym, strategy, gs, block, dyn, actorder, scale_dtype, zp_dtype)


def _dtype(d: Mapping[str, Any], name: str, key: str, problems: list[Problem]) -> str | None:
    v = d.get(name)
    if v is None:
        return None
    got = torch_dtype_to_safetensors(v)
    if got is None:
        problems.append(Problem(CONFIG, f"{key}.{name}", f"{v!r} is not a torch dtype"))
    return got


def infer_format(w: Args | None, inp: Args | None) -> str:
    """compressed-tensors ``infer_module_format``: the first compressor that fits."""
    if w is None:
        return "dense"
    if w.num_bits == 4 and w.type == "float" and w.group_size == 32:
        return "mxfp4-pack-quantized"
    if w.num_bits == 8 and w.type == "float" and w.group_size == 32 and w.scale_dtype == "U8":
        return "mxfp8-quantized"
    if w.num_bits == 4 and w.type == "float" and w.group_size == 16:
        return "nvfp4-pack-quantized"
    if w.type == "int" and inp is not None:
        return "int-quantized"
    if w.type == "int" and w.num_bits <= 8:
        return "pack-quantized"
    return "float-quantized" if inp is not None else "naive-quantized"


def scale_rule(a: Args) -> ShapeRule:
    if a.strategy in ("group", "tensor_group") and a.group_size:
        return PerGroup(a.group_size)
    if a.strategy == "channel":
        return PerChannel(("col",))
    if a.strategy == "block" and a.block is not None:
        return PerBlock(*a.block)
    return PerTensor(shapes=((1,), ()))


def granularity(a: Args) -> Granularity:
    if a.strategy == "tensor_group":
        return Granularity("group", size=a.group_size, two_level=True)
    if a.strategy == "group":
        return Granularity("group", size=a.group_size)
    if a.strategy == "block":
        return Granularity("block", block=a.block)
    return Granularity("channel" if a.strategy == "channel" else "tensor")


def _tag(g: Granularity) -> str:
    if g.kind == "block" and g.block:
        return f"block{g.block[0]}x{g.block[1]}"
    if g.kind == "group":
        return f"group{g.size}" + ("+tensor" if g.two_level else "")
    return g.kind


def weight_companions(fmt: str, w: Args) -> list[Companion]:
    """weight_scale, zero point, g_idx and global scale of one weight."""
    default_scale = {"nvfp4-pack-quantized": ("F8_E4M3",), "mxfp4-pack-quantized": ("U8",),
                     "mxfp8-quantized": ("U8",)}.get(fmt, FLOATS)
    scale_dtypes = (w.scale_dtype,) if w.scale_dtype else default_scale
    rule = scale_rule(w)
    out = [Companion(".weight_scale", SCALE, scale_dtypes, rule)]
    if not w.symmetric:
        zp_dtype = w.zp_dtype or "I8"
        if fmt == "pack-quantized" and w.strategy in ("group", "channel"):
            size = w.group_size if w.strategy == "group" and w.group_size else 0
            packed = AnyOf((PerGroup(size, rows_per_element=Fraction(32, w.num_bits)),
                            PerGroup(size, rows_per_element=Fraction(32 // w.num_bits))))
            out.append(Companion(".weight_zero_point", ZERO_POINT, ("I32", zp_dtype),
                                 AnyOf((packed, rule)),
                                 note="packed along rows; unpacked I8 before "
                                      "compressed-tensors #296"))
        else:
            out.append(Companion(".weight_zero_point", ZERO_POINT, (zp_dtype,), rule))
    if w.actorder == "group":
        out.append(Companion(".weight_g_idx", G_IDX, ("I32", "I64"), PerInput()))
    if w.strategy == "tensor_group":
        out.append(Companion(".weight_global_scale", GLOBAL_SCALE, ("F32",),
                             PerTensor(shapes=((1,), ())), fused_equal=True, divides=True))
    return out


def input_companions(inp: Args | None) -> list[Companion]:
    """Static activation scales (dynamic activations store nothing)."""
    if inp is None or inp.dynamic is True:
        return []
    if inp.strategy == "tensor_group":
        return [Companion(".input_global_scale", GLOBAL_SCALE, ("F32",),
                          PerTensor(shapes=((1,), ())), fused_equal=True)]
    shapes = PerTensor(shapes=((1,), ())) if inp.strategy == "tensor" else None
    out = [Companion(".input_scale", INPUT_SCALE, FLOATS, shapes,
                     fused_equal=inp.strategy == "tensor")]
    if not inp.symmetric:
        out.append(Companion(".input_zero_point", ZERO_POINT, (inp.zp_dtype or "I8",), shapes))
    return out


def build_layout(fmt: str, w: Args, inp: Args | None, where: str,
                 problems: list[Problem]) -> Layout | None:
    gran = granularity(w)
    comps = weight_companions(fmt, w) + input_companions(inp)
    int_fmt = f"INT{w.num_bits}"
    kw: dict[str, Any] = {}
    if fmt in ("float-quantized", "naive-quantized", "int-quantized", "dense"):
        if fmt == "dense":
            dtypes: tuple[str, ...] = FLOATS
            wfmt = "BF16"
        elif w.type == "float":
            if w.num_bits != 8:
                problems.append(Problem(CONFIG, where, f"{fmt} stores float weights of 8 bits, "
                                        f"not {w.num_bits}"))
            dtypes, wfmt = ("F8_E4M3",), "E4M3"
        else:
            dtypes = ("I8",) if w.num_bits <= 8 else ("I16",) if w.num_bits <= 16 else ("I32",)
            wfmt = int_fmt
        suffix = ".weight"
    elif fmt == "pack-quantized":
        if w.type != "int" or w.num_bits > 8:
            problems.append(Problem(CONFIG, where, f"pack-quantized packs integers of 1-8 bits, "
                                    f"not {w.type} {w.num_bits}"))
            return None
        suffix, dtypes, wfmt = ".weight_packed", ("I32",), int_fmt
        kw["packing"] = Packing(Fraction(32, w.num_bits), order="lsb-first")
        comps.insert(1, Companion(".weight_shape", SHAPE, ("I64", "I32"), ShapeOfShape(),
                                  note="the logical shape, written by torch.tensor(weight.shape)"))
    elif fmt in ("nvfp4-pack-quantized", "mxfp4-pack-quantized"):
        if (w.type, w.num_bits) != ("float", 4):
            problems.append(Problem(CONFIG, where, f"{fmt} stores 4-bit floats, "
                                    f"not {w.type} {w.num_bits}"))
        suffix, dtypes, wfmt = ".weight_packed", ("U8",), "E2M1"
        kw["packing"] = Packing(Fraction(2), order="low-nibble-first")
    elif fmt == "mxfp8-quantized":
        suffix, dtypes, wfmt = ".weight", ("F8_E4M3",), "E4M3"
    else:
        return None
    scale = comps[0].dtypes[0]
    scale_fmt = {"F8_E4M3": "E4M3", "U8": "E8M0", "F8_E8M0": "E8M0"}.get(scale, scale)
    return Layout(
        name=f"{NAME}/{fmt}/{wfmt}/{_tag(gran)}",
        title=f"compressed-tensors {fmt} ({wfmt}, weight_scale {gran})",
        family=NAME, weight_suffix=suffix, weight_dtypes=dtypes, weight_format=wfmt,
        scale_format=scale_fmt, granularity=gran, companions=tuple(comps), source=SOURCE, **kw,
    )


def kv_extras(kv: object, where: str, problems: list[Problem]) -> tuple[Extra, ...]:
    """``self_attn.k_scale`` / ``v_scale`` for a kv_cache_scheme."""
    args = parse_args(kv, f"{where}.kv_cache_scheme", problems)
    if args is None or args.dynamic is True:
        return ()
    shapes = ((1,), ()) if args.strategy == "tensor" else None
    owner = r"(?:.*\.)?(?:self_attn|attention|attn)"
    return tuple(Extra(f".{p}_scale", KV_SCALE, FLOATS, owner, shapes,
                       note="kv_cache_scheme") for p in ("k", "v"))


def detect(src: Sources) -> Detection | None:
    found = src.quant_method()
    if found is None or found[0] not in ("compressed-tensors", "compressed_tensors"):
        return None
    _, q, where = found
    problems: list[Problem] = []
    fmt_all = q.get("format", "dense")
    if not isinstance(fmt_all, str) or fmt_all not in FORMATS + UNDECLARED:
        problems.append(Problem(CONFIG, f"{where}.format", f"{fmt_all!r} is not a "
                                "compressed-tensors format"))
        fmt_all = "dense"
    if fmt_all in UNDECLARED:
        problems.append(Problem(CONFIG, f"{where}.format", f"{fmt_all!r}: sparse formats are "
                                "recognised but their tensors are not declared"))
    groups_cfg = q.get("config_groups")
    if not isinstance(groups_cfg, Mapping):
        problems.append(Problem(CONFIG, f"{where}.config_groups", f"{groups_cfg!r} is not a "
                                "mapping of group name to scheme"))
        groups_cfg = {}
    groups: list[Group] = []
    for gname, scheme in groups_cfg.items():
        gkey = f"{where}.config_groups.{gname}"
        if isinstance(scheme, list):  # {"W4A16": ["Linear"]}: a preset by name
            preset = PRESETS.get(str(gname).upper())
            if preset is None:
                problems.append(Problem(CONFIG, gkey, f"{gname!r} is not a preset scheme name"))
                continue
            scheme = {**preset, "targets": scheme}
        if not isinstance(scheme, Mapping):
            problems.append(Problem(CONFIG, gkey, f"{scheme!r} is not a scheme mapping"))
            continue
        targets = string_list(scheme.get("targets"), f"{gkey}.targets", problems)
        if not targets:
            problems.append(Problem(CONFIG, f"{gkey}.targets", "no targets: the group "
                                    "quantizes nothing"))
        w = parse_args(scheme.get("weights"), f"{gkey}.weights", problems)
        inp = parse_args(scheme.get("input_activations"), f"{gkey}.input_activations", problems)
        fmt = scheme.get("format") or (fmt_all if fmt_all != "mixed-precision" else None)
        if fmt is None or fmt in UNDECLARED:
            fmt = infer_format(w, inp)
        if fmt not in FORMATS:
            problems.append(Problem(CONFIG, f"{gkey}.format", f"{fmt!r} is not a format"))
            fmt = infer_format(w, inp)
        if w is None:
            continue  # activation-only group: nothing stored per weight
        layout = build_layout(str(fmt), w, inp, gkey, problems)
        if layout is not None:
            tg = Targets(targets, COMPRESSED_TENSORS)
            for bad in tg.unresolvable():
                problems.append(Problem(CONFIG, f"{gkey}.targets", f"class {bad!r} cannot be "
                                        "told from tensor names; it matches nothing here"))
            groups.append(Group(str(gname), (layout,), tg))
    ignore = string_list(q.get("ignore"), f"{where}.ignore", problems)
    rules = Rules(f"{where}.ignore", ignore, COMPRESSED_TENSORS)
    problems += [Problem(CONFIG, f"{where}.ignore", p.split(": ", 1)[1])
                 for p in rules.problems()]
    problems += [Problem(CONFIG, f"{where}.ignore", f"class {e!r} in ignore cannot be told "
                         "from tensor names") for e in ignore if is_class_entry(e)]
    extras = kv_extras(q.get("kv_cache_scheme"), where, problems)
    method = f"{NAME}/{fmt_all}"
    return Detection(
        family=NAME, method=method, source=f"{CONFIG}: {where}", config=q, groups=tuple(groups),
        exclusions=rules, extras=extras, problems=tuple(problems),
    )


FAMILY = Family(NAME, "compressed-tensors (llm-compressor)", "deep", 20, detect)
