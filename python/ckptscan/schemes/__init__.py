"""Quantization schemes: what each producer writes, declared once.

One module per scheme family (``hf_fp8``, ``deepseek_v4``, ``compressed_tensors``,
``modelopt``, ``gpt_oss``, ``gptq``, ``awq``, ``bitsandbytes``, ``mlx``,
``torchao``) exports ``FAMILY``; this package discovers them, so adding a scheme
touches its module and its tests only. Pure Python, no I/O: every function takes
names (or name *templates*, ``{}`` for numbers), shapes and dtype strings, so a
checks layer calls it once per template / distinct shape, never per tensor.

API
---
``detect(config=None, hf_quant_config=None, metadata=None) -> Detection | None``
    The scheme a checkpoint declares (config.json ``quantization_config`` or
    ``text_config.quantization_config``, ``hf_quant_config.json``, the safetensors
    ``__metadata__``), by family priority. ``detect_all`` returns every family
    that recognises the inputs. ``FAMILIES`` is the registry.
``Detection``
    ``.family``, ``.method``, ``.source``, ``.config``, ``.depth`` ("deep" /
    "recognised"), ``.problems`` (``Problem(source, key, message)``: a config value
    the producer could not use, naming its key), ``.groups`` (``Group(name,
    layouts, targets)``), ``.layouts``, ``.exclusions`` (``Rules``), ``.extras``
    (module-level tensors: KV-cache scales).

    - ``weight_roles(name) -> [WeightRole(layout, group, stem)]`` and
      ``companion_roles(name) -> [CompanionRole(layout, companion, stem)]``:
      what a name or template is, by naming alone; ``extra_of(name)``.
    - ``layout_for(weight, dtype=None, have=None, kind="linear") -> Layout``:
      the layout a stored weight follows (by naming, target group, dtype, and
      ``have(name) -> bool`` to choose between conventions by the companions present).
    - ``other_convention(name) -> (stem, suffix)``: a scale named after another
      convention (``SCALE_CONVENTIONS``) than this scheme's: mixed conventions.
    - ``parameters(name, dtype, shape) -> int``: logical parameters of one
      tensor (packed containers count their values; companions, extras, F8_E8M0
      tensors and quantization bookkeeping count 0).
    - ``target(module, kind="linear") -> Target(group, target, excluded_by)`` and
      ``target_template(module_template, kind, numbers=None)`` (None: depends on
      the numbers, ask per name; ``numbers``: the integers the checkpoint's names
      hold, which bounds the probes): whether the config quantizes a module, which entry selected it
      and which exclusion entry kept it out (``Hit(entry, rule, via_prefix,
      implicit)``: ``via_prefix`` set when the entry only matches after adding or
      removing a wrapper such as ``model.language_model.``);
      ``exclusion_template(template) -> Decision`` for the exclusion list alone.
    - ``fused_companions()``: companion suffixes that fused siblings (q/k/v,
      gate/up, w1/w3; see ``fused_sibling``) must hold equal.
``Layout``
    ``name`` (stable id, e.g. ``hf-fp8/E4M3/block128x128``), ``title``,
    ``weight_suffix``, ``weight_dtypes``, ``weight_format``, ``scale_format``,
    ``granularity``, ``packing``, ``companions``, ``convention``, ``source``;
    ``weight_stem(name)``, ``companion_of(name) -> (Companion, stem)``,
    ``weight_name(stem)``, ``companion_name(stem, c)``, ``module_of(stem)``,
    ``logical_shape(stored_shape)``, ``parameters(stored_shape)``,
    ``bits_per_weight(logical_shape=None)``, ``statement()``.
``Companion``
    ``suffix``, ``kind`` (scale, global_scale, zero_point, offset, g_idx, shape,
    input_scale, kv_scale, aux), ``dtypes`` (first = what the producer writes),
    ``required``, ``fused_equal`` (q/k/v, gate/up, w1/w3 must agree),
    ``expected_shapes(logical_shape)``, ``shape_ok(shape, logical_shape)``,
    ``dtype_ok(dtype)``; ``is_parameter`` is always False.
``Rules`` (an exclusion list with its producer's matching ``Style``)
    ``match(name) -> Hit | None``, ``match_template(template) -> Decision``,
    ``entry_template(entry, template) -> bool | None`` and ``entry_matches(entry,
    name)`` (for "this entry matches nothing"), ``problems()``.
``probe_names(template, entries, numbers=None)``, ``relevant(style, entries, template)``
and ``literal_words(style, entry)``: how a template is decided with few names.
``normalize_format(name)``, ``FORMATS``, ``DTYPE_BITS``, ``fused_sibling(module)``,
``FUSED_SIBLINGS``, ``SCALE_CONVENTIONS``; shape rules ``PerTensor``, ``PerChannel``,
``PerGroup``, ``PerBlock``, ``PerInput``, ``ShapeOfShape``, ``Fixed``, ``AnyOf``.

Example: what a checks layer does per template
-----------------------------------------------
::

    det = schemes.detect(ckpt.config, hf_quant_config, shard_metadata)
    have = set(frame.templates).__contains__
    for t, template in enumerate(frame.templates):
        kind = "linear" if frame.table.linear[t] else "other"
        for dtype, shape, n in distinct_rows(t):      # a template has one or a few
            params += det.parameters(template, dtype, shape) * n
            lay = det.layout_for(template, dtype, have, kind)
            if lay is None:                           # not a quantized weight
                roles = det.companion_roles(template) # orphan if no role's weight exists
                other = det.other_convention(template)  # mixed scale conventions
                continue
            stem = lay.weight_stem(template)
            logical = lay.logical_shape(shape)
            for c in lay.companions:
                ct = lay.companion_name(stem, c)      # pair rows with checks._match_rows
                # absent and c.required -> missing; else c.dtype_ok(dtype_of_ct),
                # c.shape_ok(shape_of_ct, logical)
            tgt = det.target_template(lay.module_of(stem), kind)
            # None -> det.target(name, kind) for the template's names;
            # tgt.excluded_by -> quantized although excluded
        # a high-precision linear whose target(...).quantized is True: left unquantized
    for entry in det.exclusions.entries:  # unmatched: False for every module / tensor
        det.exclusions.entry_template(entry, template)  # template (None: ask its names)
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from ._core import (
    AUX,
    AUXILIARY_PARAMS,
    COMPANION_KINDS,
    CONFIG,
    FUSED_SIBLINGS,
    G_IDX,
    GLOBAL_SCALE,
    HF_QUANT_CONFIG,
    INPUT_SCALE,
    KV_SCALE,
    METADATA,
    OFFSET,
    SCALE,
    SCALE_CONVENTIONS,
    SHAPE,
    ZERO_POINT,
    AnyOf,
    Companion,
    CompanionRole,
    Detection,
    Extra,
    Family,
    Fixed,
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
    Shape,
    ShapeOfShape,
    Sources,
    Target,
    WeightRole,
    fused_sibling,
)
from ._formats import (
    DTYPE_BITS,
    DTYPE_FORMAT,
    FLOAT_DTYPES,
    FORMATS,
    FP8_DTYPES,
    SCALE_ONLY_DTYPES,
    Format,
    normalize_format,
    torch_dtype_to_safetensors,
)
from ._match import (
    COMPRESSED_TENSORS,
    DOTTED,
    EXACT,
    GLOB,
    MODELOPT,
    SUBSTRING,
    TRANSFORMERS,
    WRAPPERS,
    Decision,
    Hit,
    Rules,
    Style,
    Targets,
    literal_words,
    probe_names,
    relevant,
    respellings,
)

__all__ = [
    "AUX", "AUXILIARY_PARAMS", "COMPANION_KINDS", "COMPRESSED_TENSORS", "CONFIG", "DOTTED",
    "DTYPE_BITS", "DTYPE_FORMAT", "EXACT", "FAMILIES", "FLOAT_DTYPES", "FORMATS",
    "FP8_DTYPES", "FUSED_SIBLINGS", "GLOB", "GLOBAL_SCALE", "G_IDX", "HF_QUANT_CONFIG",
    "INPUT_SCALE", "KV_SCALE", "METADATA", "MODELOPT", "OFFSET", "SCALE", "SCALE_CONVENTIONS",
    "SCALE_ONLY_DTYPES", "SHAPE", "SUBSTRING",
    "TRANSFORMERS", "WRAPPERS", "ZERO_POINT", "AnyOf", "Companion", "CompanionRole", "Decision",
    "Detection", "Extra", "Family", "Fixed", "Format", "Granularity", "Group", "Hit", "Layout",
    "Packing", "PerBlock", "PerChannel", "PerGroup", "PerInput", "PerTensor", "Problem", "Rules",
    "Shape", "ShapeOfShape", "Sources", "Style", "Target", "Targets", "WeightRole",
    "detect", "detect_all", "fused_sibling", "literal_words", "normalize_format", "probe_names",
    "relevant", "respellings",
    "torch_dtype_to_safetensors",
]


def _discover() -> tuple[Family, ...]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if isinstance(family, Family):
            found.append(family)
    return tuple(sorted(found, key=lambda f: (f.priority, f.name)))


#: every scheme family, in detection order
FAMILIES: tuple[Family, ...] = _discover()


def detect_all(config: Mapping[str, Any] | None = None,
               hf_quant_config: Mapping[str, Any] | None = None,
               metadata: Mapping[str, str] | None = None) -> list[Detection]:
    """Every family that recognises the inputs, in priority order."""
    src = Sources(config, hf_quant_config, metadata)
    return [d for f in FAMILIES if (d := f.detect(src)) is not None]


def detect(config: Mapping[str, Any] | None = None,
           hf_quant_config: Mapping[str, Any] | None = None,
           metadata: Mapping[str, str] | None = None) -> Detection | None:
    """The scheme the checkpoint declares: the first family (by priority) that
    recognises config.json, hf_quant_config.json or the safetensors metadata."""
    src = Sources(config, hf_quant_config, metadata)
    for f in FAMILIES:
        d = f.detect(src)
        if d is not None:
            return d
    return None
