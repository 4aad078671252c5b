"""config.json against the tensors: layers, experts, hidden size, vocabulary, MTP."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .. import codes
from ..config import MAX_EXPERTS, MAX_LAYERS, ConfigValue, config_int
from ..context import ScanContext, ranges
from ..taxonomy import EMBEDDING, KIND_CODE, LM_HEAD, MTP, ROLE_CODE

# An embedding matrix that is not the token embedding (its rows are no vocabulary).
_NOT_TOKEN_EMBEDDING = ("position", "pos_emb", "token_type", "patch", "segment", "relative")


def check(ctx: ScanContext) -> None:
    config, frame, fs = ctx.config, ctx.frame, ctx.findings
    if not config:
        return
    problems: list[ConfigValue] = []
    where = ctx.where_config
    role, layer, expert = frame.role, frame.layer, frame.expert
    mtp = role == ROLE_CODE[MTP]
    n_layers = config_int(config, "num_hidden_layers", "n_layer", "num_layers", minimum=1,
                          maximum=MAX_LAYERS, problems=problems)
    n_experts = config_int(config, "n_routed_experts", "num_local_experts", "num_experts",
                           minimum=1, maximum=MAX_EXPERTS, problems=problems)
    hidden = config_int(config, "hidden_size", "n_embd", "d_model", minimum=1,
                        problems=problems)
    vocab = config_int(config, "vocab_size", minimum=1, problems=problems)
    n_mtp = config_int(config, "num_nextn_predict_layers", "num_mtp_modules",
                       "mtp_num_hidden_layers", problems=problems)
    for p in problems:
        fs.add(codes.finding("config-value", p.message, where, key=p.key))
    if not len(frame):
        return
    if not ctx.partial:
        decoder = (layer >= 0) & ~mtp & (role != ROLE_CODE["vision"])
        _layers(ctx, n_layers, np.unique(layer[decoder]), where)
        moe = (expert >= 0) & (role == ROLE_CODE["moe_expert"])
        if n_experts is not None and moe.any():
            found = np.unique(expert[moe])
            if int(found[-1]) + 1 != n_experts or len(found) != n_experts:
                fs.add(codes.finding("config-experts",
                                     f"config says {n_experts} experts; tensors hold {len(found)} "
                                     f"(indices up to {int(found[-1])})", where,
                                     expected=n_experts, found=len(found)))
        if n_mtp and not mtp.any():
            fs.add(codes.finding("mtp-absent", f"config declares {n_mtp} MTP modules; the "
                                 "checkpoint holds none (fine for inference without "
                                 "speculative decoding)", where, declared=n_mtp))
    emb = _token_embedding(ctx)
    if emb is not None:
        rows_, width = frame.shape(emb)
        if hidden is not None and width != hidden:
            fs.add(codes.finding("config-hidden-size", f"hidden_size is {hidden}, the embedding "
                                 f"is {rows_} x {width}", frame.file(emb), frame.name(emb)))
        if vocab is not None and rows_ != vocab:
            fs.add(codes.finding("config-vocab", f"vocab_size is {vocab}, the embedding has "
                                 f"{rows_} rows", frame.file(emb), frame.name(emb)))
    heads = np.flatnonzero((role == ROLE_CODE[LM_HEAD]) & (frame.ndim == 2))
    for i in heads[:1].tolist():
        rows_ = frame.shape(i)[0]
        if vocab is not None and rows_ != vocab:
            fs.add(codes.finding("config-vocab", f"vocab_size is {vocab}, lm_head has "
                                 f"{rows_} rows", frame.file(i), frame.name(i)))


def _layers(ctx: ScanContext, n_layers: int | None, have: np.ndarray, where: str) -> None:
    if n_layers is None or not len(have):
        return
    absent = np.setdiff1d(np.arange(n_layers), have).tolist()
    extra = have[have >= n_layers].tolist()
    if not absent and not extra:
        return
    msg = f"num_hidden_layers is {n_layers}"
    if absent:
        msg += f"; no tensors for layers {ranges(absent)}"
    if extra:
        msg += f"; tensors for layers {ranges(extra)} beyond it"
    f = codes.finding("config-layers", msg, where, expected=n_layers, absent=absent[:50],
                      extra=extra[:50])
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


def _token_embedding(ctx: ScanContext) -> int | None:
    """The token embedding: a 2-D embedding weight whose name is no position /
    type / patch embedding; the one with the most rows when several qualify."""
    frame = ctx.frame
    cand = np.flatnonzero((frame.role == ROLE_CODE[EMBEDDING]) & (frame.ndim == 2)
                          & (frame.kind == KIND_CODE["weight"]))
    ok = [i for i in cand[:64].tolist()
          if not any(w in frame.name(i).lower() for w in _NOT_TOKEN_EMBEDDING)]
    if not ok:
        return None
    return int(max(ok, key=lambda i: frame.shape(i)[0]))
