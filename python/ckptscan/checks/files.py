"""Files, index.json and headers: root causes first, then what the index says.

Every problem with one file (missing, unreadable, another format, a rejected
header ...) becomes one root-cause finding for that file, naming what the file
held (from index.json, or from what its header listed) and how many of those
tensors cannot be read; the other problems of the same file are attached to it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import numpy as np

from .. import codes
from ..context import ScanContext
from ..errors import Problem
from ..findings import Finding
from ..taxonomy import template_of

_OF_N = re.compile(r"-(\d+)-of-(\d+)\.safetensors$")

# Among one file's problems, the one that names the trouble best comes first.
_FIRST = ("scan-failed", "shard-missing", "path-outside", "symlink-loop", "special-file",
          "download-incomplete", "not-safetensors", "lfs-pointer", "file-changed",
          "limit-exceeded", "io-error", "truncated")


def check(ctx: ScanContext) -> None:
    root_causes(ctx)
    for copy in ctx.copies:
        ctx.findings.add(codes.finding(
            "consolidated-copy", f"{copy.name} ({copy.size or 0:,} bytes) beside the shards "
            "holds the same weights in another layout (Mistral's): counted once, not read",
            copy.path))
    if ctx.partial:
        index_for_one_shard(ctx)
        return
    shard_names(ctx)
    duplicates(ctx)
    if ctx.ckpt.index is not None:
        index_vs_headers(ctx)


def root_causes(ctx: ScanContext) -> None:
    fs = ctx.findings
    by_file: dict[str, list[Problem]] = {}
    others: list[Problem] = []
    for p in ctx.ckpt.problems:
        if codes.is_root(p.code):
            by_file.setdefault(p.path, []).append(p)
        else:
            others.append(p)
    lost = ctx.lost_by_cause()
    suppressed = {s.path: s.suppressed for s in ctx.ckpt.shards
                  if s._core is not None and s.problems}
    for path, problems in by_file.items():
        problems.sort(key=lambda p: (_FIRST.index(p.code) if p.code in _FIRST else len(_FIRST)))
        first = problems[0]
        message = first.message
        names = lost.get(path, [])
        detail: dict[str, object] = {}
        if first.offset is not None:
            detail["offset"] = first.offset
        if names:
            message += (f"; {len(names):,} tensors it holds cannot be read: "
                        f"{ctx.describe(names)}")
            detail["lost_tensors"] = len(names)
        fs.root(path, codes.finding(first.code, message, path, first.tensor, **detail))
        for p in problems[1:]:
            fs.add(_from_problem(p), cause=path)
        for code, n in suppressed.get(path, {}).items():  # counted by the parser, not kept
            fs.add(codes.finding(code, f"{n:,} more {code} problems (counted, not listed)",
                                 path, count=n), cause=path)
    for p in others:
        fs.add(_from_problem(p))


def _from_problem(p: Problem) -> Finding:
    detail = {} if p.offset is None else {"offset": p.offset}
    return codes.finding(p.code if p.code in codes.CODES else "io-error", p.message, p.path,
                         p.tensor, **detail)


def shard_names(ctx: ScanContext) -> None:
    """-of-N names against the files; without an index, the sequence itself."""
    ckpt, fs = ctx.ckpt, ctx.findings
    files = ckpt.files
    declared = {int(m.group(2)) for f in files if (m := _OF_N.search(f))}
    if ckpt.index is not None:
        if len(declared) == 1 and (n := declared.pop()) != len(files):
            fs.add(codes.finding("shard-count-name",
                                 f"shard names say -of-{n} but there are {len(files)} files "
                                 "(harmless: the index is what loaders follow)",
                                 str(ckpt.path), declared=n, files=len(files)))
        referenced = set(ckpt.referenced)
        for name in files:
            if name not in referenced:
                fs.add(codes.finding("shard-unreferenced", "on disk but not in the index",
                                     os.path.join(ckpt.path, name)))
        return
    numbered = [(int(m.group(1)), int(m.group(2)), f) for f in files if (m := _OF_N.search(f))]
    if len(numbered) < 2 or len(declared) != 1 or ckpt.index_path is not None:
        return
    n = declared.pop()
    have = sorted(k for k, _, _ in numbered)
    fs.add(codes.finding("index-absent",
                         f"{len(numbered)} shards named -of-{n} (numbers {have[0]}-{have[-1]}) "
                         "and no model.safetensors.index.json: loaders need it to find the "
                         "tensors", str(ckpt.path), shards=len(numbered), declared=n))
    sample = numbered[0][2]
    m = _OF_N.search(sample)
    assert m is not None
    width = m.end(1) - m.start(1)
    present = set(have)
    for k in range(have[0], have[-1] + 1):  # holes inside the sequence are certain
        if k not in present:
            name = f"{sample[:m.start(1)]}{k:0{width}d}{sample[m.end(1):]}"
            path = os.path.join(ckpt.path, name)
            fs.root(path, codes.finding(
                "shard-missing", f"missing from the -of-{n} sequence (shards {have[0]}-"
                f"{have[-1]} are present; without an index, what it held is unknown)", path))


def duplicates(ctx: ScanContext) -> None:
    frame, fs = ctx.frame, ctx.findings
    dup_of = ctx.join.dup_of
    pairs = {(min(r, int(dup_of[r])), max(r, int(dup_of[r])))
             for r in np.flatnonzero(dup_of >= 0).tolist()}
    for first, second in sorted(pairs):
        fs.add(codes.finding("tensor-duplicate", f"also in {os.path.basename(frame.file(first))}",
                             frame.file(second), frame.name(second)),
               group=frame.templates[int(frame.template[second])])


def index_vs_headers(ctx: ScanContext) -> None:
    ckpt, frame, fs, join = ctx.ckpt, ctx.frame, ctx.findings, ctx.join
    idx = ckpt.index
    assert idx is not None
    root = ckpt.path
    shard_names = idx.shard_names
    absent = np.flatnonzero(join.entry_row < 0).tolist()
    names = ctx.index_names if absent else []  # 96k strings: only when needed
    for e in absent:
        shard = shard_names[int(idx.core.shard_ids[e])]
        fs.missing("index-tensor-absent", names[e], template_of(names[e])[0],
                   f"index.json places it in {shard}, no shard holds it",
                   os.path.join(root, shard))
    has = np.flatnonzero(join.entry_row >= 0)
    wrong = has[frame.shard_of[join.entry_row[has]] != join.entry_shard[has]]
    for e in wrong.tolist():
        r = int(join.entry_row[e])
        shard = shard_names[int(idx.core.shard_ids[e])]
        if shard in ctx.gone:  # a copy of a lost shard's tensor, found elsewhere
            continue
        message = (f"index.json says {shard}, but it is in "
                   f"{os.path.basename(frame.file(r))}")
        fs.rows("index-wrong-shard", [r], _const(message))
    fs.rows("index-unlisted", np.flatnonzero(join.row_entry < 0),
            lambda r: "in the shard but not in index.json")
    total = idx.total_size
    actual = int(frame.nbytes.sum())
    if total is not None and total != actual and not ctx.gone:  # lost shards explain it
        fs.add(codes.finding("index-total-size",
                             f"index.json says total_size {total:,}; the tensors hold "
                             f"{actual:,} bytes (some writers store another size: not an "
                             "error)", str(ckpt.index_path), declared=total, actual=actual))


def index_for_one_shard(ctx: ScanContext) -> None:
    """One shard scanned with its checkpoint's index: only what concerns it."""
    ckpt, frame, fs, join = ctx.ckpt, ctx.frame, ctx.findings, ctx.join
    idx = ckpt.index
    if idx is None or not frame.shards:
        return
    mine = os.path.basename(frame.shards[0].path)
    if mine not in idx.shard_names:
        fs.add(codes.finding("shard-unreferenced", "not in the checkpoint's index.json",
                             frame.shards[0].path))
    else:
        sid = idx.shard_names.index(mine)
        ours = idx.core.shard_ids == sid
        names = ctx.index_names
        for e in np.flatnonzero(ours & (join.entry_row < 0)).tolist():
            fs.missing("index-tensor-absent", names[e], template_of(names[e])[0],
                       f"index.json places it in {mine}, which does not hold it",
                       frame.shards[0].path)
    listed = set(ctx.index_names)
    fs.rows("index-unlisted", [r for r in range(len(frame)) if frame.name(r) not in listed],
            lambda r: "in the shard but not in index.json")


def _const(message: str) -> Callable[[int], str]:
    return lambda _row: message
