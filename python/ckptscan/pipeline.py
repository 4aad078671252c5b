"""The one pipeline: a checkpoint found on disk -> one `Report`.

`scan_spec` is what ``ckptscan report``, `ckptscan.scan()` and the farm (threads,
processes, Dask) all run, so that they agree finding for finding:

1. open: every file the layout names is stat'ed (symlinks leaving the
   checkpoint, loops, special files, interrupted downloads are root causes and
   are not opened); shards are parsed by the C++ core (a file shared by two
   revisions of a Hugging Face cache is parsed once per scan group); a file
   whose bytes are another format is named by its magic bytes;
2. index.json and config.json, read within their limits;
3. the frame (every readable tensor as numpy columns) and the `ScanContext`;
4. the checks, then with ``deep`` the data checks (`ckptscan.deep`);
5. the one grouping policy (`ckptscan.policy`) and the `Report`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import checks, codes
from .checkpoint import (
    DEFAULT_HEADER_JOBS,
    Checkpoint,
    Index,
    json_object,
    load_shards,
    read_index,
    read_json,
)
from .config import MAX_CONFIG_BYTES
from .context import FP8_DTYPES, ScanContext
from .errors import CkptScanError, Problem
from .findings import Finding
from .frame import Frame, build_frame
from .layout import CheckpointSpec, FileStat, LayoutError, resolve
from .overview import config_summary, precision_grids
from .quantmap import QuantMap
from .result import (
    Count,
    DeepSummary,
    Deployment,
    Quantization,
    Report,
    RoleSummary,
    Shards,
    Source,
    TensorRow,
)
from .shard import DTYPE_NAMES, Shard, load_shard
from .taxonomy import KIND_CODE, MOE_EXPERT, ROLES

EXAMPLES_PER_ROLE = 16

__all__ = ["Outcome", "ScanOptions", "ShardRow", "scan", "scan_all", "scan_spec"]


@dataclass
class ShardRow:
    """How one file of a checkpoint looked (stat) and what its header held: what
    the farm's store keeps to know, next time, whether the file changed."""

    name: str
    path: str
    target: str | None
    size: int | None
    mtime_ns: int | None
    ctime_ns: int | None
    inode: int | None
    dev: int | None
    tensors: int | None = None
    header_bytes: int | None = None
    problems: int = 0
    error: str | None = None


@dataclass
class ScanOptions:
    """`deep`: read every tensor's data. `jobs`: threads for the data reads (default
    one per core). `io_jobs`: header reads in flight (network storage wants many).
    `progress` is called after each tensor of a deep scan; `cancel` stops it.
    `max_bytes`: a deep scan that would read more tensor bytes is refused
    (`ReadBudgetExceeded`) before it reads any. `against`: a Hub URL (or its
    listing, `remote.against.Reference`) whose file sizes (and with `hash`,
    SHA-256) the local files are compared with. `inspect`: see the field."""

    deep: bool = False
    jobs: int | None = None
    io_jobs: int = DEFAULT_HEADER_JOBS
    progress: Callable[[Any], None] | None = None
    cancel: threading.Event | None = None
    max_bytes: int | None = None
    against: Any = None  # a URL, or its listing (`ckptscan.remote.against.Reference`)
    hash: bool = False
    # Called with the ScanContext after the checks (and the deep pass), while the
    # shards are open, before the findings are finished: what a command built on
    # the pipeline reads (`ckptscan.verify`), its findings added to ctx.findings.
    inspect: Callable[[ScanContext], None] | None = None


@dataclass
class Outcome:
    """One checkpoint scanned: its Report and what the farm's store needs."""

    path: str
    report: Report
    shards: list[ShardRow] = field(default_factory=list)
    seconds: float = 0.0
    opened: int = 0  # shard files this scan parsed (a blob shared in a group counts once)
    failed: bool = False


# ---------------------------------------------------------------- entry points


def scan(path: str | os.PathLike[str], deep: bool = False, jobs: int | None = None,
         progress: Callable[[Any], None] | None = None, *,
         revision: str | None = None, max_bytes: int | None = None,
         max_requests: int | None = None) -> Report:
    """Scans one checkpoint (a directory, a file, an HF cache repository or repo
    id, or a URL: ``hf://ORG/NAME[@REV][/SUBDIR]``, ``http(s)://``, ``s3://``,
    ``gs://``, ``az://``). `deep` reads every tensor's data (NaN/Inf, FP8 codes,
    block scales); `max_bytes` refuses a deep scan that would read more
    (`ReadBudgetExceeded`); `max_requests` bounds a remote source's requests in
    flight. A path that holds several checkpoints (a diffusers pipeline, the HF
    cache root ...) raises `CkptScanError`: use `scan_all`."""
    specs = _resolve(path, revision, max_requests)
    try:
        if len(specs) != 1:
            names = ", ".join(os.path.relpath(s.path, os.fspath(path)) for s in specs[:6])
            raise CkptScanError(f"{os.fspath(path)} holds {len(specs)} checkpoints ({names}"
                                f"{' ...' if len(specs) > 6 else ''}): use ckptscan.scan_all()")
        options = ScanOptions(deep=deep, jobs=jobs, progress=progress, max_bytes=max_bytes)
        return scan_spec(specs[0], options).report
    finally:
        _close(specs)


def scan_all(path: str | os.PathLike[str], deep: bool = False, jobs: int | None = None,
             progress: Callable[[Any], None] | None = None, *,
             revision: str | None = None, max_bytes: int | None = None,
             max_requests: int | None = None) -> list[Report]:
    """One Report per checkpoint `path` holds (see `ckptscan.layout.resolve`)."""
    options = ScanOptions(deep=deep, jobs=jobs, progress=progress, max_bytes=max_bytes)
    specs = _resolve(path, revision, max_requests)
    try:
        return [scan_spec(s, options).report for s in specs]
    finally:
        _close(specs)


def _resolve(path: str | os.PathLike[str], revision: str | None,
             max_requests: int | None = None) -> list[CheckpointSpec]:
    remote = None
    if max_requests is not None:
        from .remote import RemoteOptions

        remote = RemoteOptions(max_requests=max_requests)
    try:
        return resolve(path, revision=revision, remote=remote)
    except LayoutError as exc:
        raise CkptScanError(str(exc)) from None


def _close(specs: list[CheckpointSpec]) -> None:
    """Remote sources a listing opened (local specs have none)."""
    if any(s.remote is not None for s in specs):
        from .remote import close_sources

        close_sources(specs)


def scan_spec(spec: CheckpointSpec, options: ScanOptions | None = None,
              cache: dict[Any, Any] | None = None) -> Outcome:
    """The pipeline. Never raises for a checkpoint: an unexpected failure
    (out of memory included) becomes that checkpoint's finding. `cache` is shared
    by the checkpoints of one scan group (files they share are parsed once).
    Raises only `Cancelled` / KeyboardInterrupt, `ReadBudgetExceeded` (a deep
    scan beyond `max_bytes`) and environment errors."""
    from .deep import Cancelled, ReadBudgetExceeded, check_environment

    options = options or ScanOptions()
    t0 = time.perf_counter()
    if options.deep:
        check_environment()
    try:
        return _scan(spec, options, {} if cache is None else cache, t0)
    except (Cancelled, ReadBudgetExceeded, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - one checkpoint must not stop the others
        return failed_outcome(spec, exc, time.perf_counter() - t0)


# ---------------------------------------------------------------- the steps


def _scan(spec: CheckpointSpec, options: ScanOptions, cache: dict[Any, Any],
          t0: float) -> Outcome:
    remote = None
    if spec.remote is not None:  # read through its source, not the file system
        from .remote.scan import RemoteScan

        remote = RemoteScan(spec)
        spec = remote.spec  # as read: a file that could not be had is an error
    problems: list[Problem] = [] if remote is None else list(remote.problems)
    head = _head if remote is None else remote.head
    readable, unreadable = readable_shards(spec.shards)
    problems += unreadable
    if spec.format != "safetensors":
        return _other_format(spec, readable, problems, t0, head)

    opened = 0

    def load(fs: FileStat) -> Shard:
        nonlocal opened
        key = (fs.dev, fs.inode) if fs.inode is not None else None
        core = cache.get(key) if key is not None else None
        if core is None:
            shard = load_shard(fs.path)
            opened += 1
            if key is not None:
                cache[key] = shard.core
            return shard
        return Shard(core, fs.path)  # the same file under another name (a shared blob)

    if remote is None:
        shards = load_shards(readable, options.io_jobs, load)
    else:
        shards = [remote.shard(fs) for fs in readable]
        opened = remote.opened
    for fs, shard in zip(readable, shards, strict=True):
        msg = _changed(fs, shard) if remote is None else None  # a source checks versions
        if msg:
            problems.append(Problem("file-changed", msg, fs.path))
        if shard.problems and _sniff_other(shard, problems, head):
            shard.problems = [p for p in shard.problems if p.code == "io-error"]

    index = config = None
    read_index, read_config = ((_read_index, _read_config) if remote is None
                               else (remote.read_index, remote.read_config))
    if spec.index is not None:
        index = _read_meta(spec.index, "index-invalid", problems, read_index, cache)
    if spec.config is not None:
        config = _read_meta(spec.config, "config-invalid", problems, read_config, cache)
    hf_quant = None
    if spec.hf_quant_config is not None and remote is None:
        hf_quant = _read_meta(spec.hf_quant_config, "quant-config-invalid", problems,
                              _read_hf_quant_config, cache)
    partial = spec.kind == "shard"
    root = Path(spec.path) if remote is None else remote.root
    found = [fs.name for fs in spec.shards]
    ckpt = Checkpoint(root, shards, config, problems, index=index, found=found,
                      partial=partial)
    healthy = [s for s in shards if not s.problems and s._core is not None]
    gone = {fs.name: fs.path for fs in spec.shards if fs not in readable}
    gone.update({os.path.basename(s.path): s.path for s in shards if s not in healthy})
    gone.update({name: str(root / name) for name in (*ckpt.missing, *ckpt.outside)})
    for p in problems:  # a file that changed under the scan is not trusted either
        if p.code == "file-changed":
            gone.setdefault(os.path.basename(p.path), p.path)
    frame = build_frame(ckpt, shards=healthy)
    ctx = ScanContext(ckpt, frame, partial=partial, gone=gone, copies=spec.copies,
                      hf_quant_config=hf_quant,
                      hf_quant_path=spec.hf_quant_config.path if spec.hf_quant_config else None)
    if options.against is not None:  # why a file is broken comes first: it was copied so
        from .remote.against import check_against

        check_against(ctx, spec, options.against, options.hash)
    checks.run(ctx)
    deep_summary = None
    if options.deep:
        from .deep import deep_scan

        deep_summary = deep_scan(ctx, jobs=options.jobs, progress=options.progress,
                                 cancel=options.cancel, max_bytes=options.max_bytes)
        by_path = {s.path: s for s in healthy}
        for fs in readable if remote is None else ():  # changed under the deep scan: say so
            msg = _changed(fs, by_path[fs.path]) if fs.path in by_path else None
            if msg:
                ctx.findings.root(fs.path, codes.finding("file-changed", msg, fs.path))
    if options.inspect is not None:
        options.inspect(ctx)
    findings = ctx.findings.finish()
    report = build_report(spec, ckpt, frame, findings, deep_summary, ctx)
    if remote is not None:
        remote.finish(report)
    rows = shard_rows(spec, shards)
    ckpt.close()
    return Outcome(spec.path, report, rows, time.perf_counter() - t0, opened)


def readable_shards(shards: Sequence[FileStat]) -> tuple[list[FileStat], list[Problem]]:
    """The shards that can be opened, and a problem for each one that cannot."""
    readable: list[FileStat] = []
    problems: list[Problem] = []
    for fs in shards:
        p = file_problem(fs)
        if p is None:
            readable.append(fs)
        else:
            problems.append(p)
    return readable, problems


def file_problem(fs: FileStat) -> Problem | None:
    """Why a file found by the layout cannot be read, or None."""
    if fs.kind == "file":
        return None
    if fs.kind == "outside":
        return Problem("path-outside", f"{fs.error}: not followed (--follow-symlinks to read "
                                       "it)", fs.path)
    if fs.kind == "incomplete":
        return Problem("download-incomplete", str(fs.error), fs.path)
    if fs.kind == "error":
        err = str(fs.error)
        if fs.code is not None:  # a remote read: the source said how it failed
            return Problem(fs.code, err, fs.path)
        if err.startswith("symlink loop"):
            return Problem("symlink-loop", err, fs.path)
        if err.startswith("dangling symlink") or err.startswith("vanished"):
            return Problem("shard-missing", err, fs.path)
        return Problem("io-error", err, fs.path)
    what = "a directory" if fs.kind == "dir" else f"a {fs.kind.replace('-', ' ')}"
    return Problem("special-file", f"{what}, not a file: not read", fs.path)


def _changed(fs: FileStat, shard: Shard) -> str | None:
    """A file that changed or vanished while it was read: the report may not
    describe what is on disk now (and the farm's next scan reads it again)."""
    try:
        now = os.stat(fs.path)
    except OSError:
        return "vanished while being scanned"
    core = shard._core
    seen = int(core.file_size) if core is not None and core.opened else None
    if seen is not None and seen != fs.size:
        return f"changed while being scanned: {fs.size:,} bytes when found, {seen:,} when read"
    if (now.st_size, now.st_mtime_ns, now.st_ino) != (fs.size, fs.mtime_ns, fs.inode):
        return f"changed while being scanned: {fs.size:,} bytes when found, {now.st_size:,} now"
    return None


# Magic bytes of formats people save under a .safetensors name (or ship instead).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GGUF", "a GGUF file (llama.cpp)"),
    (b"PK\x03\x04", "a zip archive (PyTorch's torch.save format?)"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras?)"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"<!DOCTYPE", "an HTML page (a download that saved an error page?)"),
    (b"<!doctype", "an HTML page (a download that saved an error page?)"),
    (b"<html", "an HTML page (a download that saved an error page?)"),
    (b"lmgg", "a legacy GGML file"), (b"tjgg", "a legacy GGJT file"),
)


def sniff(head: bytes) -> str | None:
    """What the first bytes of a file say it is (None: nothing known)."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"a Python pickle (protocol {head[1]}: PyTorch's legacy format?)"
    return None


def _head(path: str, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _sniff_other(shard: Shard, problems: list[Problem],
                 head: Callable[[str], bytes] = _head) -> bool:
    """A shard the parser refused whose bytes are a known other format."""
    header_level = {"header-too-large", "header-length-invalid", "json-syntax",
                    "header-not-utf8", "header-too-small"}
    if not any(p.code in header_level for p in shard.problems):
        return False
    what = sniff(head(shard.path))
    if what is None:
        return False
    problems.append(Problem("not-safetensors", f"this is {what}, not safetensors", shard.path))
    return True


def _read_meta(fs: FileStat, code: str, problems: list[Problem], read: Callable[..., Any],
               cache: dict[Any, Any]) -> Any:
    """index.json / config.json; a file shared in the group (an HF blob) is read once."""
    p = file_problem(fs)
    if p is not None:
        problems.append(Problem(code, f"cannot read: {p.message}", fs.path))
        return None
    key = ("json", code, fs.dev, fs.inode)
    if key not in cache:
        found: list[Problem] = []
        cache[key] = (read(fs, found), found)
    data, found = cache[key]
    problems.extend(Problem(q.code, q.message, fs.path, q.offset, q.tensor) for q in found)
    return data


def _read_index(fs: FileStat, problems: list[Problem]) -> Index | None:
    return read_index(Path(fs.path), "index-invalid", problems)


def _read_config(fs: FileStat, problems: list[Problem]) -> dict[str, Any] | None:
    return read_json(Path(fs.path), "config-invalid", problems)


def _read_hf_quant_config(fs: FileStat, problems: list[Problem]) -> dict[str, Any] | None:
    """ModelOpt's hf_quant_config.json, within config.json's size limit."""
    return read_json(Path(fs.path), "quant-config-invalid", problems)


def config_over_limit(fs: FileStat, problems: list[Problem]) -> bool:
    """A config.json whose listed size is beyond the limit is not read (remote)."""
    if fs.size is not None and fs.size > MAX_CONFIG_BYTES:
        problems.append(Problem("limit-exceeded", f"config.json is {fs.size:,} bytes, beyond "
                                f"the {MAX_CONFIG_BYTES:,}-byte limit (real ones are < 1 MB): "
                                "not read", fs.path))
        return True
    return False


def parse_config(data: bytes, fs: FileStat, problems: list[Problem]) -> dict[str, Any] | None:
    """config.json's bytes fetched from a remote source: a JSON object, or None."""
    return json_object(data, Path(fs.path), "config-invalid", problems, MAX_CONFIG_BYTES)


def _other_format(spec: CheckpointSpec, readable: list[FileStat], problems: list[Problem],
                  t0: float, head: Callable[[str], bytes] = _head) -> Outcome:
    """A checkpoint in another format: named (by its magic bytes where they
    say), counted in bytes, not read."""
    size = sum(fs.size or 0 for fs in readable)
    what = sniff(head(readable[0].path)) if readable else None
    fmt = spec.format
    hazard = (" Loading a pickle runs code from the file: prefer safetensors."
              if fmt == "pytorch" and what is not None and "pickle" in what else "")
    msg = (f"{fmt} checkpoint ({len(spec.shards)} file{'s' if len(spec.shards) > 1 else ''}, "
           f"{size:,} bytes{': ' + what if what else ''}): ckptscan reads safetensors only, "
           f"its tensors were not read.{hazard}")
    fs = FindingCollector()
    for p in problems:
        fs.add(codes.finding(p.code, p.message, p.path))
    fs.add(codes.finding("other-format", msg, spec.path, format=fmt, bytes=size))
    report = Report(
        checkpoint=spec.path, model_type=None, family="unknown",
        shards=Shards(sorted(f.name for f in spec.shards), [], []),
        total=Count(0, 0, size), dtypes={}, roles={},
        quantization=Quantization(None, None, None, 0, 0, [], []), examples={},
        findings=fs.items, source=_source(spec))
    return Outcome(spec.path, report, shard_rows(spec, []), time.perf_counter() - t0, 0)


class FindingCollector:
    """A plain list of findings (for reports with no tensors to group)."""

    def __init__(self) -> None:
        self.items: list[Finding] = []

    def add(self, f: Finding) -> None:
        self.items.append(f)


def failed_outcome(spec: CheckpointSpec, exc: BaseException, seconds: float) -> Outcome:
    kind = "out of memory" if isinstance(exc, MemoryError) else type(exc).__name__
    report = Report(
        checkpoint=spec.path, model_type=None, family="unknown",
        shards=Shards(sorted(s.name for s in spec.shards), [], []), total=Count(),
        dtypes={}, roles={}, quantization=Quantization(None, None, None, 0, 0, [], []),
        examples={}, source=_source(spec),
        findings=[codes.finding("scan-failed", f"ckptscan could not finish this checkpoint "
                                f"({kind}: {exc})", spec.path)])
    return Outcome(spec.path, report, shard_rows(spec, []), seconds, 0, failed=True)


def shard_rows(spec: CheckpointSpec, shards: Sequence[Shard]) -> list[ShardRow]:
    by_path = {s.path: s for s in shards}
    rows = []
    for fs in spec.shards:
        s = by_path.get(fs.path)
        ok = s is not None and s._core is not None and (bool(s.core.opened) or s.remote)
        p = file_problem(fs)
        err = p.message if p is not None else None
        if s is not None and s.problems:
            err = s.problems[0].message
        header = int(s.header_size) if ok and s is not None else None
        if header is not None and s is not None and 8 + header > s.file_size:
            header = None  # a length that is no header's (not safetensors, truncated)
        rows.append(ShardRow(fs.name, fs.path, fs.target, fs.size, fs.mtime_ns, fs.ctime_ns,
                             fs.inode, fs.dev, len(s) if ok and s is not None else None,
                             header, len(s.problems) if s is not None else 1, err))
    return rows


# ---------------------------------------------------------------- the report


def _source(spec: CheckpointSpec) -> Source:
    source = Source(spec.kind, spec.format, spec.repo, spec.revision, spec.component)
    if spec.remote is not None:
        source.url = spec.path
    return source


def build_report(spec: CheckpointSpec, ckpt: Checkpoint, frame: Frame,
                 findings: list[Finding], deep: DeepSummary | None = None,
                 ctx: ScanContext | None = None) -> Report:
    """The Report. Parameters are logical weights (`QuantMap.params`: a packed
    container counts its values; scales and other bookkeeping count none)."""
    config = ckpt.config or {}
    qmap = ctx.quant_map if ctx is not None else QuantMap(frame, None)
    params = qmap.params.astype(np.float64)
    nbytes = frame.nbytes.astype(np.float64)
    nd = len(DTYPE_NAMES)

    def bins(key: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.bincount(key, minlength=size), np.bincount(key, params, minlength=size),
                np.bincount(key, nbytes, minlength=size))

    t, p, b = bins(frame.dtype.astype(np.int64), nd)
    dtypes = {DTYPE_NAMES[d]: Count(int(t[d]), int(p[d]), int(b[d]))
              for d in np.flatnonzero(t).tolist()}
    role_key = frame.role.astype(np.int64) * nd + frame.dtype
    rt, rp, rb = bins(role_key, len(ROLES) * nd)
    roles: dict[str, RoleSummary] = {}
    for key in np.flatnonzero(rt).tolist():
        r, d = divmod(key, nd)
        summary = roles.setdefault(ROLES[r], RoleSummary())
        summary.tensors += int(rt[key])
        summary.parameters += int(rp[key])
        summary.bytes += int(rb[key])
        summary.dtypes[DTYPE_NAMES[d]] = int(rt[key])
    readable = {id(s) for s in frame.shards}
    model_type = config.get("model_type")
    tp = ctx.tensor_parallel if ctx is not None else None
    deployment = Deployment(tensor_parallel=tp)
    if deep is not None:
        deployment.e4m3_negative_zero = deep.e4m3_negative_zero
        if deep.block_scales:
            deployment.block_scales_pow2 = round(deep.block_scales_pow2 / deep.block_scales, 6)
    return Report(
        checkpoint=spec.path,
        model_type=model_type if isinstance(model_type, str) else None,
        family=frame.taxonomy.family,
        shards=Shards(ckpt.files, ckpt.referenced, ckpt.missing,
                      sorted(os.path.basename(s.path) for s in ckpt.shards
                             if id(s) not in readable) +
                      sorted(fs.name for fs in spec.shards if file_problem(fs) is not None),
                      [c.name for c in spec.copies]),
        total=Count(len(frame), int(qmap.params.sum()), int(frame.nbytes.sum())),
        dtypes=dtypes,
        roles=dict(sorted(roles.items(), key=lambda kv: ROLES.index(kv[0]))),
        quantization=_quantization(frame, qmap),
        examples=_examples(frame),
        findings=findings,
        deep=deep,
        source=_source(spec),
        config=config_summary(frame, ckpt.config),
        precision=precision_grids(frame, qmap.params),
        deployment=deployment,
    )


def _quantization(frame: Frame, qmap: QuantMap) -> Quantization:
    """The precision statement: the declared scheme, its layouts in use, formats."""
    det = qmap.det
    is_fp8 = np.isin(frame.dtype, [DTYPE_NAMES.index(d) for d in FP8_DTYPES])
    weights = frame.kind == KIND_CODE["weight"]
    quantized = np.zeros(len(frame), dtype=bool)
    quantized[qmap.quantized_rows()] = True
    if det is None:
        quantized |= is_fp8 & weights
    q_roles = set(np.unique(frame.role[quantized]).tolist())
    weight_roles = set(np.unique(frame.role[weights]).tolist())
    formats = qmap.formats()
    blocks = {tuple(ws.layout.granularity.block) for ws in qmap.sets
              if ws.layout.granularity.block is not None}
    scale_fmt = None
    exclusions: list[str] | None = None
    if det is not None:
        raw = det.config.get("scale_fmt")
        scale_fmt = raw if isinstance(raw, str) else None
        exclusions = list(det.exclusions.entries) if det.exclusions.key else None
    return Quantization(
        method=det.method if det else None,
        format=(formats[0] if len(formats) == 1 else
                "mixed: " + ", ".join(sorted(formats)) if formats else None),
        block_size=list(blocks.pop()) if len(blocks) == 1 else None,
        scale_tensors=int((frame.kind == KIND_CODE["scale"]).sum()),
        fp8_tensors=int(is_fp8.sum()),
        quantized_roles=[ROLES[r] for r in sorted(q_roles)],
        unquantized_roles=[ROLES[r] for r in sorted(weight_roles - q_roles)],
        modules_to_not_convert=exclusions,
        scale_fmt=scale_fmt,
        family=det.family if det else None,
        source=det.source if det else None,
        schemes=qmap.schemes(),
        overhead_bytes=qmap.overhead_bytes(),
        bits_per_weight=qmap.bits_per_weight(),
        main_format=qmap.main_format(),
        exclusions_key=det.exclusions.key or None if det else None,
    )


def _examples(frame: Frame) -> dict[str, list[TensorRow]]:
    """Per role, the tensors of its first layer (and first expert): what a user
    reads to see how one block of the model is stored."""
    out: dict[str, list[TensorRow]] = {}
    role, layer, expert = frame.role, frame.layer, frame.expert
    for r in np.unique(role).tolist():
        rows = np.flatnonzero(role == r)
        lay = layer[rows]
        if (lay >= 0).any():
            rows = rows[lay == lay[lay >= 0].min()]
        if ROLES[r] == MOE_EXPERT:
            ex = expert[rows]
            if (ex >= 0).any():
                rows = rows[ex == ex[ex >= 0].min()]
        # Name order among the first few in file order: no 96k-name list needed.
        named = {i: frame.name(i) for i in rows[:4 * EXAMPLES_PER_ROLE].tolist()}
        picked = sorted(named, key=named.__getitem__)[:EXAMPLES_PER_ROLE]
        out[ROLES[r]] = [TensorRow(named[i], frame.dtype_name(i), frame.shape(i),
                                   os.path.basename(frame.file(i))) for i in picked]
    return dict(sorted(out.items(), key=lambda kv: ROLES.index(kv[0])))

