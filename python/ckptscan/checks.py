"""Checkpoint cross-checks: index vs files vs headers, quantization_config vs
tensors, config.json vs tensors. Each returns Findings with stable codes.

`CODES` is the registry: every code ckptscan emits, its severity and what it
means (the README's table is checked against it by the tests).
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from .checkpoint import Checkpoint
from .errors import Problem
from .findings import Finding, Severity
from .frame import Frame
from .kernels import FINDING_CODES as KERNEL_CODES
from .shard import DTYPE_NAMES
from .taxonomy import EMBEDDING, KIND_CODE, LM_HEAD, MTP, ROLE_CODE

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

CODES: dict[str, tuple[Severity, str]] = {
    # files and headers (the C++ parser's codes are added below)
    "shard-missing": (E, "a shard named by index.json is not on disk"),
    "shard-unreferenced": (W, "a shard on disk that index.json does not mention"),
    "shard-count-name": (INFO, "the -of-NNNNN in shard names does not match the number of files"),
    "index-invalid": (E, "index.json is unreadable, not JSON, or has no weight_map"),
    "config-invalid": (W, "config.json is unreadable or not JSON"),
    "no-shards": (E, "no .safetensors file was found"),
    "index-tensor-absent": (E, "a tensor in index.json is in no shard"),
    "index-wrong-shard": (E, "index.json places a tensor in a shard that does not hold it"),
    "index-unlisted": (W, "a tensor in a shard that index.json does not list (loaders skip it)"),
    "index-total-size": (INFO, "index.json's total_size differs from the tensors' bytes"),
    "tensor-duplicate": (E, "the same tensor name in two shards"),
    "tensor-missing-in-grid": (E, "one layer/expert lacks a tensor all its siblings have"),
    # quantization
    "fp8-scale-missing": (E, "an FP8 weight without its scale: it would be used ~scale times off"),
    "scale-orphan": (E, "a scale tensor whose weight does not exist"),
    "scale-on-unquantized": (W, "a scale tensor whose weight is not FP8"),
    "scale-shape": (E, "scale shape is not [ceil(rows/br), ceil(cols/bc)] for the block size"),
    "scale-dtype": (E, "scale dtype is not F32 (or F8_E8M0 with scale_fmt ue8m0)"),
    "fp8-not-converted": (E, "an FP8 tensor that modules_to_not_convert says stays unquantized"),
    "unquantized-linear": (W, "a linear weight neither FP8 nor listed in modules_to_not_convert"),
    "unquantized-linear-info": (INFO, "a linear weight kept unquantized (config lists no modules)"),
    "fp8-without-config": (W, "FP8 tensors but no quantization_config in config.json"),
    "quant-config-invalid": (E, "quantization_config has an unusable weight_block_size or fmt"),
    "fp8-format-mismatch": (E, "FP8 tensors in another format than quantization_config's fmt"),
    # config.json vs tensors
    "config-layers": (E, "num_hidden_layers disagrees with the layers in the tensors"),
    "config-experts": (E, "the expert count disagrees with the experts in the tensors"),
    "config-hidden-size": (E, "hidden_size disagrees with the embedding's width"),
    "config-vocab": (W, "vocab_size disagrees with the embedding or lm_head rows"),
    "mtp-absent": (INFO, "config.json declares MTP modules that the checkpoint does not hold"),
}

# The C++ parser's codes (see csrc/errors.h): a broken shard is an error.
_HEADER_CODES = {
    "io-error": "a file could not be opened or read",
    "header-too-small": "file shorter than the 8-byte header length",
    "header-too-large": "header length above 100,000,000 (not a safetensors file?)",
    "header-length-invalid": "header length runs past the end of the file",
    "lfs-pointer": "a Git LFS pointer saved in place of the shard",
    "header-not-utf8": "header bytes are not UTF-8",
    "json-syntax": "header is not valid JSON",
    "json-too-deep": "header JSON nested too deeply",
    "header-padding": "header padded with NUL bytes instead of spaces",
    "not-an-object": "a tensor entry is not a JSON object",
    "duplicate-key": "a tensor name (or a field) appears twice in one header",
    "metadata-invalid": "__metadata__ is not a map of strings",
    "missing-field": "a tensor entry lacks dtype, shape or data_offsets",
    "unknown-dtype": "dtype is not one of the 22 safetensors dtypes",
    "shape-invalid": "shape is not a list of integers",
    "offsets-invalid": "data_offsets is not [begin, end] with begin <= end",
    "number-invalid": "a negative, fractional or too large number",
    "size-overflow": "element count times dtype width overflows",
    "not-byte-aligned": "a 4/6-bit tensor that does not fill whole bytes",
    "size-mismatch": "data_offsets span differs from what dtype and shape need",
    "data-gap": "unused bytes between tensors",
    "data-overlap": "two tensors' data overlap",
    "truncated": "the file is shorter than its header says (by N bytes)",
    "trailing-bytes": "bytes after the last tensor",
    "deep-read-failed": "a tensor's data could not be read during --deep",
}
CODES.update({code: (E, text) for code, text in _HEADER_CODES.items()})
# --deep: the data checks of one FP8 weight + scale (kernels.py), and these.
CODES.update(KERNEL_CODES)
CODES.update({
    "float-nan": (E, "NaN values in a BF16 / F16 / F32 tensor"),
    "float-inf": (W, "Inf values in a BF16 / F16 / F32 tensor"),
    "e8m0-nan": (E, "NaN (0xFF) codes in an F8_E8M0 scale tensor"),
})

# Tensors of one template beyond this many collapse into one finding.
COLLAPSE_AFTER = 5

SCALE_SUFFIXES = ("weight_scale_inv", "weight_scale", "scale_weight")
FP8_DTYPES = {"F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ"}
_FMT_TO_DTYPE = {
    "e4m3": "F8_E4M3", "float8_e4m3fn": "F8_E4M3", "e4m3fn": "F8_E4M3",
    "e5m2": "F8_E5M2", "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ", "e4m3fnuz": "F8_E4M3FNUZ",
}


def finding(code: str, message: str, file: str | None = None, tensor: str | None = None,
            **detail: Any) -> Finding:
    return Finding(code, CODES[code][0], message, file, tensor, detail)


def from_problem(p: Problem) -> Finding:
    code = p.code if p.code in CODES else "io-error"
    detail = {} if p.offset is None else {"offset": p.offset}
    return Finding(code, CODES[code][0], p.message, p.path, p.tensor, detail)


def collapse(findings: Iterable[tuple[str, Finding]]) -> list[Finding]:
    """Keeps the first few findings of each (code, template) and folds the rest
    into one line: a dropped pattern must not print 48k lines."""
    groups: dict[tuple[str, str], list[Finding]] = defaultdict(list)
    for template, f in findings:
        groups[(f.code, template)].append(f)
    out: list[Finding] = []
    for (code, template), items in groups.items():
        if len(items) <= COLLAPSE_AFTER:
            out.extend(items)
            continue
        first = items[0]
        out.append(Finding(code, first.severity,
                           f"{len(items)} tensors like {template}: {first.message}",
                           first.file, first.tensor,
                           {"count": len(items), "template": template,
                            "examples": [f.tensor for f in items[:COLLAPSE_AFTER]]}))
    return out


def emit(frame: Frame, rows: np.ndarray, code: str, message: Callable[[int], str],
         **detail: Any) -> list[Finding]:
    """Findings for `rows`, grouped by template like `collapse`; `message(row)` is
    called only for the rows that get a line of their own."""
    if not len(rows):
        return []
    rows = np.asarray(rows, dtype=np.int64)
    tmpl = frame.template[rows]
    order = np.argsort(tmpl, kind="stable")
    rows = rows[order]
    bounds = np.flatnonzero(np.diff(tmpl[order])) + 1
    name = frame.name
    out: list[Finding] = []
    for group in np.split(rows, bounds):
        if len(group) <= COLLAPSE_AFTER:
            out += [finding(code, message(i), frame.file(i), name(i), **detail)
                    for i in group.tolist()]
            continue
        i = int(group[0])
        template = frame.templates[int(frame.template[i])]
        out.append(Finding(code, CODES[code][0],
                           f"{len(group)} tensors like {template}: {message(i)}",
                           frame.file(i), name(i),
                           {**detail, "count": len(group), "template": template,
                            "examples": [name(j) for j in group[:COLLAPSE_AFTER].tolist()]}))
    return out


# ---- files, index, headers ---------------------------------------------------

_OF_N = re.compile(r"-(\d+)-of-(\d+)\.safetensors$")


def check_files(ckpt: Checkpoint, frame: Frame) -> list[Finding]:
    files = ckpt.files
    join = _join(ckpt, frame)
    lost = _lost_per_shard(ckpt, frame, join)
    out = []
    told: set[str] = set()
    for p in ckpt.problems:
        f = from_problem(p)
        name = os.path.basename(p.path)
        n = lost.get(name, 0)
        if p.code == "shard-missing":
            f = finding("shard-missing", f"listed in the index with {n} tensors, not on disk",
                        p.path, lost_tensors=n)
        elif n and name not in told:  # the first problem of a shard that lost tensors
            f = Finding(f.code, f.severity, f"{f.message} ({n} tensors the index places in it "
                        "cannot be read)", f.file, f.tensor, {**f.detail, "lost_tensors": n})
        told.add(name)
        out.append(f)
    declared = {int(m.group(2)) for f in files if (m := _OF_N.search(f))}
    if len(declared) == 1 and (n := declared.pop()) != len(files):
        out.append(finding("shard-count-name",
                           f"shard names say -of-{n} but there are {len(files)} files "
                           "(harmless: the index is what loaders follow)",
                           str(ckpt.path), declared=n, files=len(files)))
    out += _duplicates(frame, join)
    if ckpt.index is None:
        return out
    referenced = set(ckpt.referenced)
    for name in files:
        if name not in referenced:
            out.append(finding("shard-unreferenced", "on disk but not in the index",
                               os.path.join(ckpt.path, name)))
    out += _index_vs_headers(ckpt, frame, join)
    total = ckpt.index.total_size
    actual = int(frame.nbytes.sum())
    if total is not None and total != actual and not lost:  # lost shards explain it
        out.append(finding("index-total-size",
                           f"index.json says total_size {total:,}; the tensors hold {actual:,} "
                           "bytes (some writers store another size: not an error)",
                           str(ckpt.index_path), declared=total, actual=actual))
    return out


@dataclass
class _Join:
    """Names matched across index.json and the shards (see _core.match_names)."""

    entry_row: np.ndarray  # per index entry: its row, -1 when in no shard
    row_entry: np.ndarray  # per row: its index entry, -1 when unlisted
    dup_of: np.ndarray     # per row: another row with the same name, or -1
    entry_shard: np.ndarray  # per index entry: position in frame.shards, -1 if absent


def _join(ckpt: Checkpoint, frame: Frame) -> _Join:
    position = {os.path.basename(s.path): i for i, s in enumerate(frame.shards)}
    idx = ckpt.index
    shard_pos = [position.get(n, -1) for n in idx.shard_names] if idx is not None else []
    entry_row, row_entry, dup_of = _core.match_names(
        None if idx is None else idx.core, [s.core for s in frame.shards], shard_pos)
    entry_shard = (np.asarray(shard_pos, dtype=np.int64)[idx.core.shard_ids]
                   if idx is not None and len(idx) else np.zeros(0, np.int64))
    return _Join(entry_row, row_entry, dup_of, entry_shard)


def _lost_per_shard(ckpt: Checkpoint, frame: Frame, join: _Join) -> dict[str, int]:
    """Index entries in no shard, per shard file named for them: missing or
    unreadable shards take their tensors along (one error, not one per tensor)."""
    if ckpt.index is None:
        return {}
    absent = np.flatnonzero(join.entry_row < 0)
    ids = ckpt.index.core.shard_ids[absent]
    counts = np.bincount(ids, minlength=len(ckpt.index.shard_names))
    gone = {os.path.basename(s.path) for s in frame.shards if s.problems} | set(ckpt.missing)
    names = ckpt.index.shard_names
    return {names[i]: int(counts[i]) for i in np.flatnonzero(counts).tolist()
            if names[i] in gone}


def _index_vs_headers(ckpt: Checkpoint, frame: Frame, join: _Join) -> list[Finding]:
    assert ckpt.index is not None
    idx = ckpt.index
    root = ckpt.path
    shard_names = idx.shard_names
    entry_name = idx.core.names if len(idx) else None
    out: list[tuple[str, Finding]] = []
    lost = set(_lost_per_shard(ckpt, frame, join))
    absent = np.flatnonzero(join.entry_row < 0)
    if len(absent):
        names = entry_name() if entry_name else []
        for e in absent.tolist():
            shard = shard_names[int(idx.core.shard_ids[e])]
            if shard in lost:
                continue
            out.append((shard, finding("index-tensor-absent",
                                       f"index.json places it in {shard}, no shard holds it",
                                       os.path.join(root, shard), names[e])))
    # Listed, found, but in another shard than the index says (a copy in the
    # right shard would have been matched first).
    has = np.flatnonzero(join.entry_row >= 0)
    wrong = has[frame.shard_of[join.entry_row[has]] != join.entry_shard[has]]
    for e in wrong.tolist():
        r = int(join.entry_row[e])
        shard = shard_names[int(idx.core.shard_ids[e])]
        out.append((shard, finding("index-wrong-shard",
                                   f"index.json says {shard}, but it is in "
                                   f"{os.path.basename(frame.file(r))}", frame.file(r),
                                   frame.name(r))))
    for r in np.flatnonzero(join.row_entry < 0).tolist():
        out.append((frame.file(r), finding("index-unlisted", "in the shard but not in index.json",
                                           frame.file(r), frame.name(r))))
    return collapse(out)


def _duplicates(frame: Frame, join: _Join) -> list[Finding]:
    out = []
    for r in np.flatnonzero(join.dup_of >= 0).tolist():
        j = int(join.dup_of[r])
        first, second = min(j, r), max(j, r)
        out.append(finding("tensor-duplicate", f"also in {os.path.basename(frame.file(first))}",
                           frame.file(second), frame.name(second)))
    return out


def check_grid(frame: Frame) -> list[Finding]:
    """A template with layer and expert slots should hold every (layer, expert)
    pair of the values it has: one missing is a dropped tensor."""
    out: list[tuple[str, Finding]] = []
    layer, expert = frame.layer, frame.expert
    both = np.flatnonzero((layer >= 0) & (expert >= 0))
    if not len(both):
        return []
    tmpl = frame.template[both]
    order = np.argsort(tmpl, kind="stable")
    bounds = np.flatnonzero(np.diff(tmpl[order])) + 1
    for group in np.split(both[order], bounds):
        layers, experts = np.unique(layer[group]), np.unique(expert[group])
        if len(group) == len(layers) * len(experts):
            continue
        have = set(zip(layer[group].tolist(), expert[group].tolist(), strict=True))
        template = frame.templates[int(frame.template[group[0]])]
        what = template.rsplit("{}", 1)[-1].lstrip(".")  # e.g. w1.weight_scale_inv
        for lay in layers.tolist():
            for ex in experts.tolist():
                if (lay, ex) not in have:
                    name = _fill(template, frame, int(group[0]), lay, ex)
                    out.append((template, finding(
                        "tensor-missing-in-grid",
                        f"layer {lay} expert {ex} has no {what} while the other experts do",
                        None, name, layer=lay, expert=ex)))
    return collapse(out)


def _fill(template: str, frame: Frame, row: int, layer: int, expert: int) -> str:
    """The name `template` would have for (layer, expert), other integers from `row`."""
    ints = frame.ints[frame.int_starts[row]:frame.int_starts[row + 1]].tolist()
    cls = frame.table.classes[int(frame.template[row])]
    if cls.layer_slot is not None:
        ints[cls.layer_slot] = layer
    if cls.expert_slot is not None:
        ints[cls.expert_slot] = expert
    return template.replace("{}", "%d") % tuple(ints)


# ---- quantization_config vs tensors -------------------------------------------

@dataclass
class QuantConfig:
    method: str | None
    fmt: str | None
    block: tuple[int, int] | None
    scale_fmt: str | None
    not_convert: list[str] | None
    raw: dict[str, Any]


def quant_config(config: Mapping[str, Any] | None) -> QuantConfig | None:
    q = (config or {}).get("quantization_config")
    if not isinstance(q, dict):
        tc = (config or {}).get("text_config")
        q = tc.get("quantization_config") if isinstance(tc, dict) else None
    if not isinstance(q, dict):
        return None
    block = q.get("weight_block_size")
    ok_block = (isinstance(block, list) and len(block) == 2
                and all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block))
    ntc = q.get("modules_to_not_convert", q.get("ignored_layers"))
    return QuantConfig(
        method=q.get("quant_method") if isinstance(q.get("quant_method"), str) else None,
        fmt=q.get("fmt") if isinstance(q.get("fmt"), str) else None,
        block=(int(block[0]), int(block[1])) if ok_block and block is not None else None,
        scale_fmt=q.get("scale_fmt") if isinstance(q.get("scale_fmt"), str) else None,
        not_convert=[m for m in ntc if isinstance(m, str)] if isinstance(ntc, list) else None,
        raw=q,
    )


def not_convert_match(name: str, entries: list[str]) -> str | None:
    """The entry of modules_to_not_convert that covers `name`, matching whole dotted
    components (`gate` is MiniMax's block_sparse_moe.gate, not a gate_proj)."""
    parts = name.split(".")
    for entry in entries:
        want = entry.strip(".").split(".")
        k = len(want)
        if any(parts[i:i + k] == want for i in range(len(parts) - k + 1)):
            return entry
    return None


def _match_rows(frame: Frame, a_rows: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
    """For each row of template A, the row of template B with the same integers
    (-1 if none): pairs X.weight_scale_inv with X.weight without touching names."""
    out = np.full(len(a_rows), -1, dtype=np.int64)
    if not len(a_rows) or not len(b_rows):
        return out
    am, bm = frame.int_matrix(a_rows), frame.int_matrix(b_rows)
    if am.shape[1] != bm.shape[1]:
        return out
    if am.shape[1] == 0:
        out[:] = b_rows[0]
        return out
    # One sortable key per row of integers.
    ak = np.ascontiguousarray(am).view(np.dtype((np.void, 8 * am.shape[1]))).ravel()
    bk = np.ascontiguousarray(bm).view(np.dtype((np.void, 8 * bm.shape[1]))).ravel()
    order = np.argsort(bk, kind="stable")
    sorted_b = bk[order]
    pos = np.clip(np.searchsorted(sorted_b, ak), 0, len(bk) - 1)
    hit = sorted_b[pos] == ak
    out[hit] = b_rows[order[pos[hit]]]
    return out


def scale_pairs(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """(scale row of each row or -1, weight row of each row or -1), matched per
    template: `P.weight_scale_inv` (or weight_scale / scale_weight) <-> `P.weight`."""
    n = len(frame)
    scale_of = np.full(n, -1, dtype=np.int64)
    weight_of = np.full(n, -1, dtype=np.int64)
    tmpl_id = {t: i for i, t in enumerate(frame.templates)}
    by_t = frame.rows_by_template
    scale_kind = KIND_CODE["scale"]
    for t, template in enumerate(frame.templates):
        if frame.table.kind[t] != scale_kind:
            continue
        suffix = next((x for x in SCALE_SUFFIXES if template.endswith("." + x)), None)
        if suffix is None:
            continue
        w_t = tmpl_id.get(template[: -len(suffix)] + "weight")
        s_rows = by_t[t]
        w_rows = by_t[w_t] if w_t is not None else np.zeros(0, np.int64)
        match = _match_rows(frame, s_rows, w_rows)
        weight_of[s_rows] = match
        ok = match >= 0
        scale_of[match[ok]] = s_rows[ok]
    return scale_of, weight_of


def _not_convert_rows(frame: Frame, entries: list[str]) -> tuple[np.ndarray, list[str | None]]:
    """Rows covered by modules_to_not_convert, and the entry that covers each row
    (decided per template; per name only where an entry names a number)."""
    n = len(frame)
    covered = np.zeros(n, dtype=bool)
    entry_of: list[str | None] = [None] * n
    for t, template in enumerate(frame.templates):
        parts = template.split(".")
        for entry in entries:
            want = entry.strip(".").split(".")
            k = len(want)
            exact = wild = False
            for i in range(len(parts) - k + 1):
                window = parts[i:i + k]
                if window == want:
                    exact = True
                    break
                if all(p == w or (p == "{}" and w.isdigit())
                       for p, w in zip(window, want, strict=True)):
                    wild = True
            if not (exact or wild):
                continue
            rows = frame.rows_by_template[t]
            if not exact:  # e.g. "model.layers.0.mlp": only some rows of this template
                rows = np.array([r for r in rows.tolist()
                                 if not_convert_match(frame.name(r), [entry])], dtype=np.int64)
            for r in rows.tolist():
                if not covered[r]:
                    covered[r] = True
                    entry_of[r] = entry
    return covered, entry_of


def check_quantization(ckpt: Checkpoint, frame: Frame) -> list[Finding]:
    qc = quant_config(ckpt.config)
    fp8_codes = [DTYPE_NAMES.index(d) for d in FP8_DTYPES]
    is_fp8 = np.isin(frame.dtype, fp8_codes)
    if qc is None:
        if not is_fp8.any():
            return []
        return [finding("fp8-without-config",
                        f"{int(is_fp8.sum())} FP8 tensors but config.json has no "
                        "quantization_config: loaders will not know the block size",
                        str(ckpt.path))]
    out: list[Finding] = []
    if qc.method == "fp8" and qc.block is None and "weight_block_size" in qc.raw:
        out.append(finding("quant-config-invalid",
                           f"weight_block_size {qc.raw.get('weight_block_size')!r} is not "
                           "two positive integers", str(ckpt.path)))
    dname = frame.dtype_name
    want_dtype = _FMT_TO_DTYPE.get((qc.fmt or "").lower())
    if want_dtype is not None:
        other = is_fp8 & (frame.dtype != DTYPE_NAMES.index(want_dtype))
        out += emit(frame, np.flatnonzero(other), "fp8-format-mismatch",
                    lambda i: f"{dname(i)} but quantization_config fmt is {qc.fmt!r}")

    scale_of, weight_of = scale_pairs(frame)
    scale_rows = np.flatnonzero(frame.kind == KIND_CODE["scale"])
    paired_scales = scale_rows[weight_of[scale_rows] >= 0]
    out += emit(frame, scale_rows[(weight_of[scale_rows] < 0)
                                  & _has_scale_suffix(frame, scale_rows)],
                "scale-orphan", lambda i: "no weight of this name exists")
    w_of_s = weight_of[paired_scales]
    out += emit(frame, paired_scales[~is_fp8[w_of_s]], "scale-on-unquantized",
                lambda i: f"its weight {frame.name(int(weight_of[i]))} is "
                          f"{dname(int(weight_of[i]))}")
    fp8_pairs = paired_scales[is_fp8[w_of_s]]
    # Block scales (weight_scale_inv, DeepSeek's convention) are F32, or E8M0
    # where the config says ue8m0; multipliers (weight_scale, scale_weight of
    # compressed-tensors / ModelOpt exports) may be any float type.
    block = block_scale_rows(frame, fp8_pairs)
    for rows, ok_dtypes in (
            (fp8_pairs[block], {"F32"} | ({"F8_E8M0"} if _ue8m0(qc) else set())),
            (fp8_pairs[~block], {"F32", "BF16", "F16", "F8_E8M0"})):
        ok_codes = [DTYPE_NAMES.index(d) for d in ok_dtypes]
        want_txt = " or ".join(sorted(ok_dtypes))
        def wrong_dtype(i: int, want: str = want_txt) -> str:
            return f"scale is {dname(i)}, expected {want}"

        out += emit(frame, rows[~np.isin(frame.dtype[rows], ok_codes)], "scale-dtype",
                    wrong_dtype)
    if qc.block is not None:
        out += _scale_shapes(frame, fp8_pairs, weight_of, qc.block)

    fp8_weights = np.flatnonzero(is_fp8 & (frame.kind == KIND_CODE["weight"]))
    out += emit(frame, fp8_weights[scale_of[fp8_weights] < 0], "fp8-scale-missing",
                lambda i: f"{dname(i)} weight has no weight_scale_inv "
                          "(a loader would use raw FP8 codes as weights)")
    entries = qc.not_convert
    covered, entry_of = (_not_convert_rows(frame, entries) if entries
                         else (np.zeros(len(frame), bool), []))
    out += emit(frame, np.flatnonzero(is_fp8 & covered), "fp8-not-converted",
                lambda i: f"FP8 although modules_to_not_convert lists {entry_of[i]!r}")
    if qc.method == "fp8":
        unq = frame.linear & ~is_fp8 & (frame.kind == KIND_CODE["weight"]) & ~covered
        code = "unquantized-linear" if entries is not None else "unquantized-linear-info"
        why = ("not in modules_to_not_convert" if entries is not None
               else "the config does not list modules kept unquantized")
        out += emit(frame, np.flatnonzero(unq), code,
                    lambda i: f"{dname(i)} linear weight ({frame.role_name(i)}); {why}")
    return out


def _has_scale_suffix(frame: Frame, rows: np.ndarray) -> np.ndarray:
    ok = np.array([t.endswith(tuple("." + x for x in SCALE_SUFFIXES))
                   for t in frame.templates], dtype=bool)
    return ok[frame.template[rows]] if len(frame.templates) else np.zeros(len(rows), bool)


def _ue8m0(qc: QuantConfig) -> bool:
    return (qc.scale_fmt or "").lower() == "ue8m0"


def block_scale_rows(frame: Frame, rows: np.ndarray) -> np.ndarray:
    """Which of `rows` are block scales (`*.weight_scale_inv`), decided per template."""
    inv = np.array([t.endswith(".weight_scale_inv") for t in frame.templates], dtype=bool)
    return inv[frame.template[rows]] if len(inv) else np.zeros(len(rows), dtype=bool)


def _scale_shapes(frame: Frame, scales: np.ndarray, weight_of: np.ndarray,
                  block: tuple[int, int]) -> list[Finding]:
    """weight_scale_inv must be [ceil(rows/br), ceil(cols/bc)] for a 2-D weight."""
    rows, cols = frame.rows_2d()
    inv = block_scale_rows(frame, scales)
    w = weight_of[scales]
    two = (rows[w] >= 0) & inv
    s, w = scales[two], w[two]
    br, bc = block
    want_r = -(-rows[w] // br)
    want_c = -(-cols[w] // bc)
    srows, scols = rows[s], cols[s]
    bad = s[(srows != want_r) | (scols != want_c)]

    def msg(i: int) -> str:
        wi = int(weight_of[i])
        want = [math.ceil(int(rows[wi]) / br), math.ceil(int(cols[wi]) / bc)]
        return (f"scale shape {list(frame.shape(i))} but weight {list(frame.shape(wi))} with "
                f"block {list(block)} needs {want}")

    return emit(frame, bad, "scale-shape", msg)


# ---- config.json vs tensors ------------------------------------------------------

def _cfg_int(config: Mapping[str, Any], *keys: str) -> int | None:
    for source in (config, config.get("text_config")):
        if isinstance(source, Mapping):
            for k in keys:
                v = source.get(k)
                if isinstance(v, int) and not isinstance(v, bool):
                    return v
    return None


def check_config(ckpt: Checkpoint, frame: Frame) -> list[Finding]:
    config = ckpt.config
    if not config or not len(frame):
        return []
    out: list[Finding] = []
    where = str(ckpt.path / "config.json") if ckpt.path.is_dir() else str(ckpt.path)
    role, layer, expert = frame.role, frame.layer, frame.expert
    mtp = role == ROLE_CODE[MTP]
    decoder_layers = np.unique(layer[(layer >= 0) & ~mtp & (role != ROLE_CODE["vision"])])
    n_layers = _cfg_int(config, "num_hidden_layers", "n_layer", "num_layers")
    if n_layers is not None and len(decoder_layers):
        have = set(decoder_layers.tolist())
        absent = sorted(set(range(n_layers)) - have)
        extra = sorted(x for x in have if x >= n_layers)
        if absent or extra:
            msg = f"num_hidden_layers is {n_layers}"
            if absent:
                msg += f"; no tensors for layers {_ranges(absent)}"
            if extra:
                msg += f"; tensors for layers {_ranges(extra)} beyond it"
            out.append(finding("config-layers", msg, where, expected=n_layers,
                               absent=absent[:50], extra=extra[:50]))
    n_experts = _cfg_int(config, "n_routed_experts", "num_local_experts", "num_experts")
    moe = (expert >= 0) & (role == ROLE_CODE["moe_expert"])
    if n_experts is not None and moe.any():
        top = int(expert[moe].max()) + 1
        distinct = len(np.unique(expert[moe]))
        if top != n_experts or distinct != n_experts:
            out.append(finding("config-experts",
                               f"config says {n_experts} experts; tensors hold {distinct} "
                               f"(indices up to {top - 1})", where,
                               expected=n_experts, found=distinct))
    emb = np.flatnonzero((role == ROLE_CODE[EMBEDDING]) & (frame.ndim == 2)
                         & (frame.kind == KIND_CODE["weight"]))
    hidden = _cfg_int(config, "hidden_size", "n_embd", "d_model")
    vocab = _cfg_int(config, "vocab_size")
    for i in emb[:1].tolist():
        rows_, width = frame.shape(i)
        if hidden is not None and width != hidden:
            out.append(finding("config-hidden-size",
                               f"hidden_size is {hidden}, the embedding is {rows_} x {width}",
                               frame.file(i), frame.name(i)))
        if vocab is not None and rows_ != vocab:
            out.append(finding("config-vocab", f"vocab_size is {vocab}, the embedding has "
                               f"{rows_} rows", frame.file(i), frame.name(i)))
    heads = np.flatnonzero((role == ROLE_CODE[LM_HEAD]) & (frame.ndim == 2))
    for i in heads[:1].tolist():
        rows_ = frame.shape(i)[0]
        if vocab is not None and rows_ != vocab:
            out.append(finding("config-vocab", f"vocab_size is {vocab}, lm_head has "
                               f"{rows_} rows", frame.file(i), frame.name(i)))
    n_mtp = _cfg_int(config, "num_nextn_predict_layers", "num_mtp_modules",
                     "mtp_num_hidden_layers")
    if n_mtp and not mtp.any():
        out.append(finding("mtp-absent", f"config declares {n_mtp} MTP modules; the checkpoint "
                           "holds none (fine for inference without speculative decoding)",
                           where, declared=n_mtp))
    return out


def _ranges(values: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7' (at most a few groups)."""
    groups: list[list[int]] = []
    for v in values:
        if groups and v == groups[-1][-1] + 1:
            groups[-1].append(v)
        else:
            groups.append([v])
    parts = [f"{g[0]}-{g[-1]}" if len(g) > 1 else str(g[0]) for g in groups[:8]]
    return ", ".join(parts) + (" ..." if len(groups) > 8 else "")


def run_all(ckpt: Checkpoint, frame: Frame) -> list[Finding]:
    out = check_files(ckpt, frame) + check_grid(frame)
    out += check_quantization(ckpt, frame) + check_config(ckpt, frame)
    return sort_findings(out)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.severity, f.code, f.file or "", f.tensor or ""))


def iter_codes() -> Iterator[tuple[str, Severity, str]]:
    for code, (sev, text) in sorted(CODES.items()):
        yield code, sev, text
