"""config.json against the tensors, component by component: the decoder's
layers, experts, hidden size and vocabulary against the decoder's tensors; a
tower's depth against its own config section; MTP modules declared but absent.

Values the checks read are validated first: a wrong type or an impossible
value is a `config-value` finding naming the key, and that value is not used.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import codes
from ..config import MAX_EXPERTS, MAX_LAYERS
from ..context import ScanContext, ranges
from ..taxonomy import (
    AUDIO,
    COMPONENT_CODE,
    DECODER,
    EMBEDDING,
    ENCODER,
    KIND_CODE,
    LM_HEAD,
    MOE_EXPERT,
    MTP,
    ROLE_CODE,
    VISION,
)
from ..taxonomy import rules as R

# An embedding matrix that is not the token embedding (its rows are no vocabulary).
_NOT_TOKEN_EMBEDDING = ("position", "pos_emb", "token_type", "patch", "segment", "relative")
# Bounds per kind of count (limits derived from real checkpoints, see ckptscan.config).
_BOUNDS = {"layers": MAX_LAYERS, "experts": MAX_EXPERTS, "hidden": 1 << 24,
           "vocab": 1 << 28, "mtp": MAX_LAYERS}


def check(ctx: ScanContext) -> None:
    config, frame = ctx.config, ctx.frame
    if not config:
        return
    tax = frame.taxonomy
    invalid = _validate(ctx, config)
    if not len(frame):
        return
    spec = tax.component_spec(DECODER)
    comp, part, layer = frame.component, frame.part, frame.layer
    decoder = comp == COMPONENT_CODE[DECODER]

    def ok(value: int | None, kind: str, keys: tuple[str, ...]) -> int | None:
        return None if value is None or any(k in invalid for k in keys) else value

    layer_keys = (R.ENC_DEC_DECODER_LAYER_KEYS if tax.encoder_decoder
                  else R.LAYER_KEYS[DECODER])
    n_layers = ok(spec.layers, "layers", layer_keys)
    if not ctx.partial:
        _layers(ctx, "num_hidden_layers", n_layers, np.unique(layer[decoder & (layer >= 0)]))
        for tower in (VISION, AUDIO, ENCODER):
            tspec = tax.component_spec(tower)
            rows = (comp == COMPONENT_CODE[tower]) & (layer >= 0)
            if tspec.layers is not None and rows.any() and not any(
                    k in invalid for k in R.LAYER_KEYS[tower]):
                _layers(ctx, f"{tower} layers", tspec.layers, np.unique(layer[rows]), tower)
        n_experts = ok(spec.experts, "experts", R.EXPERT_KEYS)
        moe = decoder & (frame.expert >= 0) & (part == ROLE_CODE[MOE_EXPERT])
        if n_experts is not None and moe.any():
            found = np.unique(frame.expert[moe])
            if int(found[-1]) + 1 != n_experts or len(found) != n_experts:
                ctx.findings.add(codes.finding(
                    "config-experts", f"config says {n_experts} experts; tensors hold "
                    f"{len(found)} (indices up to {int(found[-1])})", ctx.where_config,
                    expected=n_experts, found=len(found)))
        n_mtp = next((v for s in (tax.component_config(DECODER), config)
                      if isinstance(s, Mapping) and (v := _positive(s, R.MTP_COUNT_KEYS))), None)
        if n_mtp and not (comp == COMPONENT_CODE[MTP]).any():
            ctx.findings.add(codes.finding(
                "mtp-absent", f"config declares {n_mtp} MTP modules; the checkpoint holds none "
                "(fine for inference without speculative decoding)", ctx.where_config,
                declared=n_mtp))
    hidden = ok(spec.hidden, "hidden", R.HIDDEN_KEYS)
    vocab = ok(spec.vocab, "vocab", R.VOCAB_KEYS)
    emb = _token_embedding(ctx, decoder)
    logical = ctx.quant_map.logical_shape  # packed containers (MLX U32, GPTQ) unpacked
    heads = np.flatnonzero(decoder & (part == ROLE_CODE[LM_HEAD]) & (frame.ndim == 2)
                           & (frame.kind == KIND_CODE["weight"]))
    head_rows = [logical(i)[0] for i in heads[:1].tolist()]
    if emb is not None:
        rows_, width = logical(emb)
        if hidden is not None and width != hidden:
            ctx.findings.add(codes.finding(
                "config-hidden-size", f"hidden_size is {hidden}, the embedding is {rows_} x "
                f"{width}", frame.file(emb), frame.name(emb)))
        # Rows past vocab_size with a head of exactly vocab_size rows are input-only
        # tokens (Llama 3.2 Vision's image tokens): the model never predicts them.
        input_only = rows_ > (vocab or 0) and head_rows == [vocab]
        if vocab is not None and rows_ != vocab and not input_only:
            ctx.findings.add(codes.finding(
                "config-vocab", f"vocab_size is {vocab}, the embedding has {rows_} rows",
                frame.file(emb), frame.name(emb)))
    for i in heads[:1].tolist():
        rows_ = logical(i)[0]
        if vocab is not None and rows_ != vocab:
            ctx.findings.add(codes.finding("config-vocab", f"vocab_size is {vocab}, lm_head has "
                                           f"{rows_} rows", frame.file(i), frame.name(i)))


def _positive(section: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for k in keys:
        v = section.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _validate(ctx: ScanContext, config: Mapping[str, Any]) -> set[str]:
    """Names every count the checks read that is of the wrong type or out of
    bounds; returns the keys that must not be used."""
    tax = ctx.frame.taxonomy
    bad: set[str] = set()
    places: list[tuple[Mapping[str, Any] | None, dict[str, tuple[str, ...]]]] = [
        (tax.component_config(DECODER), {
            "layers": tuple(dict.fromkeys((*R.LAYER_KEYS[DECODER],
                                           *R.ENC_DEC_DECODER_LAYER_KEYS))),
            "experts": R.EXPERT_KEYS, "hidden": R.HIDDEN_KEYS, "vocab": R.VOCAB_KEYS,
            "mtp": R.MTP_COUNT_KEYS})]
    places += [(tax.component_config(t), {"layers": R.LAYER_KEYS[t]})
               for t in (VISION, AUDIO, ENCODER)]
    seen: set[int] = set()
    for section, kinds in places:
        if not isinstance(section, Mapping) or id(section) in seen:
            continue
        seen.add(id(section))
        prefix = _prefix(config, section)
        for kind, keys in kinds.items():
            for key in keys:
                if key not in section or section[key] is None:
                    continue
                v = section[key]
                where = prefix + key
                if not isinstance(v, int) or isinstance(v, bool):
                    msg = f"{where} is {_show(v)}, not an integer"
                elif not 0 < v <= _BOUNDS[kind] and not (kind == "mtp" and v == 0):
                    msg = f"{where} is {v:,}; it must be between 1 and {_BOUNDS[kind]:,}"
                else:
                    continue
                bad.add(key)
                ctx.findings.add(codes.finding("config-value", msg, ctx.where_config, key=where))
    return bad


def _prefix(config: Mapping[str, Any], section: Mapping[str, Any]) -> str:
    """The dotted path of a config section ('' for the top level)."""
    if section is config:
        return ""
    for k, v in config.items():
        if v is section:
            return f"{k}."
        if isinstance(v, Mapping):
            for k2, v2 in v.items():
                if v2 is section:
                    return f"{k}.{k2}."
    return ""


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _layers(ctx: ScanContext, what: str, n_layers: int | None, have: np.ndarray,
            tower: str | None = None) -> None:
    if n_layers is None or not len(have):
        return
    absent = np.setdiff1d(np.arange(n_layers), have).tolist()
    extra = have[have >= n_layers].tolist()
    if not absent and not extra:
        return
    msg = f"{what} is {n_layers}"
    if absent:
        msg += f"; no tensors for layers {ranges(absent)}"
    if extra:
        msg += f"; tensors for layers {ranges(extra)} beyond it"
    detail: dict[str, Any] = {"expected": n_layers, "absent": absent[:50], "extra": extra[:50]}
    if tower is not None:
        detail["component"] = tower
    f = codes.finding("config-layers", msg, ctx.where_config, **detail)
    ctx.findings.add(f, cause=_cause_of_layers(ctx, absent) if absent and not extra else None)


def _cause_of_layers(ctx: ScanContext, absent: list[int]) -> str | None:
    """The broken file whose lost tensors are exactly what the absent layers lack."""
    if not ctx.lost:
        return None
    tax = ctx.frame.taxonomy
    by_cause: dict[str, set[int]] = defaultdict(set)
    for name, key in ctx.lost.items():
        lay = tax.resolve(name).layer
        if lay is not None:
            by_cause[key].add(lay)
    want = set(absent)
    return next((key for key, layers in by_cause.items() if want <= layers), None)


def _token_embedding(ctx: ScanContext, decoder: np.ndarray) -> int | None:
    """The decoder's token embedding: a 2-D embedding weight that is no position /
    type / patch table; the one with the most rows when several qualify."""
    frame = ctx.frame
    cand = np.flatnonzero(decoder & (frame.part == ROLE_CODE[EMBEDDING]) & (frame.ndim == 2)
                          & (frame.kind == KIND_CODE["weight"]))
    ok = [i for i in cand[:64].tolist()
          if not any(w in frame.name(i).lower() for w in _NOT_TOKEN_EMBEDDING)]
    if not ok:
        return None
    return int(max(ok, key=lambda i: ctx.quant_map.logical_shape(i)[0]))
