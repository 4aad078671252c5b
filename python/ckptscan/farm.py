"""Checkpoint farms: discovery, parallel scanning, incremental rescans, Dask.

    result = scan_farm(["/models", "~/.cache/huggingface/hub"], db="farm.db")

1. `discover(roots)` walks the roots (stat only: nothing is opened) and finds
   every checkpoint: a directory holding ``*.safetensors`` and/or an index;
   the Hugging Face cache layout ``models--ORG--NAME/snapshots/REV/`` (files
   are symlinks into ``blobs/``); single ``.safetensors`` files. Each file is
   fingerprinted by (name, size, mtime_ns, ctime_ns, inode).
2. A checkpoint whose fingerprint (shards + index.json + config.json) equals the
   one stored is not opened at all: rescanning an unchanged farm reads no file.
3. The others are scanned in parallel: `scan_group` opens the shards (header
   reads in a pool of their own: on network storage a header costs a round
   trip), builds the frame, runs every check and builds the same `Report` that
   `ckptscan report` prints. Checkpoints sharing a file (HF revisions sharing
   blobs) form one group, so a shared blob is read once.
4. The caller's thread writes each result in one transaction (`store.Store`).

`scan_group` is a plain function of picklable arguments: threads (default),
worker processes or a Dask cluster (``dask=ADDRESS``) run the same code, and
the results land in the store the same way.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import Report
    from .shard import Shard
    from .store import ShardRow

__all__ = [
    "CheckpointSpec", "Discovery", "FarmProgress", "FarmResult", "FileStat", "Note",
    "Outcome", "discover", "scan_farm", "scan_group",
]

INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
SHARD_SUFFIX = ".safetensors"
INDEX_SUFFIX = ".safetensors.index.json"
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})
HF_PREFIX = "models--"
DEFAULT_IO_JOBS = 16
FINGERPRINT_VERSION = "1"

_SHARD_NAME = re.compile(r"-\d+-of-\d+\.safetensors$")


# ---------------------------------------------------------------- discovery


@dataclass(frozen=True)
class FileStat:
    """One file as `stat` saw it at discovery. `kind` is ``file``, ``dir``,
    ``fifo``, ``socket``, ``char-device``, ``block-device``, or ``error`` (the
    stat failed: `error` says why, e.g. a dangling symlink or a symlink loop)."""

    name: str
    path: str
    kind: str
    size: int | None = None
    mtime_ns: int | None = None
    ctime_ns: int | None = None
    inode: int | None = None
    dev: int | None = None
    target: str | None = None  # a symlink's resolved path
    error: str | None = None

    def key(self) -> tuple[Any, ...]:
        return (self.name, self.kind, self.size, self.mtime_ns, self.ctime_ns, self.inode,
                self.error)


_KINDS = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISFIFO, "fifo"),
          (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "char-device"),
          (stat.S_ISBLK, "block-device"))


def stat_file(path: str, name: str | None = None,
              entry: os.DirEntry[str] | None = None) -> FileStat:
    """A `FileStat` of `path`, following symlinks; never raises."""
    name = os.path.basename(path) if name is None else name
    try:
        is_link = entry.is_symlink() if entry is not None else os.path.islink(path)
    except OSError:
        is_link = False
    try:
        st = entry.stat() if entry is not None else os.stat(path)
    except OSError as exc:
        return FileStat(name, path, "error", error=_stat_error(path, exc, is_link))
    kind = next((k for test, k in _KINDS if test(st.st_mode)), "other")
    target = os.path.realpath(path) if is_link else None
    return FileStat(name, path, kind, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                    st.st_dev, target)


def _stat_error(path: str, exc: OSError, is_link: bool) -> str:
    link = ""
    if is_link:
        with contextlib.suppress(OSError):
            link = os.readlink(path)
    if exc.errno == errno.ELOOP:
        return f"symlink loop ({path} -> {link})" if link else "symlink loop"
    if exc.errno == errno.ENOENT and is_link:
        return f"dangling symlink: {link} does not exist"
    if exc.errno == errno.ENOENT:
        return "vanished before it could be read"
    return f"cannot stat: {exc.strerror or exc}"


@dataclass
class CheckpointSpec:
    """A checkpoint found on disk: where, what kind, and how its files looked."""

    path: str
    kind: str  # dir | hf-snapshot | file
    shards: list[FileStat]
    index: FileStat | None = None
    config: FileStat | None = None
    repo: str | None = None
    revision: str | None = None

    def fingerprint(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((FINGERPRINT_VERSION, self.kind, [s.key() for s in self.shards],
                       self.index.key() if self.index else None,
                       self.config.key() if self.config else None)).encode())
        return h.hexdigest()


@dataclass(frozen=True)
class Note:
    """Something under a root that is no checkpoint's finding (a line in the summary)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Discovery:
    roots: list[str]
    checkpoints: list[CheckpointSpec]
    notes: list[Note] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)  # dirs (or roots) that could not be read


def _hf_context(path: str) -> tuple[str, str, bool] | None:
    """(repo, revision, is_snapshot_top) when `path` is inside models--X/snapshots/REV."""
    parts = path.split(os.sep)
    for i in range(len(parts) - 2):
        if parts[i].startswith(HF_PREFIX) and parts[i + 1] == "snapshots":
            repo = parts[i][len(HF_PREFIX):].replace("--", "/")
            return repo, parts[i + 2], len(parts) == i + 3
    return None


def discover(roots: Sequence[str | os.PathLike[str]]) -> Discovery:
    """Every checkpoint under `roots`, in path order. Only stats and directory
    listings: no file is opened, nothing is written."""
    out = Discovery([], [])
    visited: dict[tuple[int, int], str] = {}
    for r in roots:
        root = os.path.abspath(os.path.expanduser(os.fspath(r)))
        out.roots.append(root)
        try:
            st = os.stat(root)
        except OSError as exc:
            out.notes.append(Note(root, f"cannot read: {exc.strerror or exc}"))
            out.unlisted.append(root)
            continue
        if stat.S_ISDIR(st.st_mode):
            _walk(root, st, visited, out)
        elif root.endswith(SHARD_SUFFIX):
            out.checkpoints.append(CheckpointSpec(root, "file", [stat_file(root)]))
        else:
            out.notes.append(Note(root, "not a directory or a .safetensors file"))
    seen: set[str] = set()
    unique = []
    for spec in sorted(out.checkpoints, key=lambda s: s.path):
        if spec.path not in seen:  # overlapping roots
            seen.add(spec.path)
            unique.append(spec)
    out.checkpoints = unique
    return out


def _walk(top: str, top_stat: os.stat_result, visited: dict[tuple[int, int], str],
          out: Discovery) -> None:
    # stack of (path, stat, ancestors' keys)
    stack: list[tuple[str, os.stat_result, tuple[tuple[int, int], ...]]] = [(top, top_stat, ())]
    while stack:
        path, st, ancestors = stack.pop()
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            out.notes.append(Note(path, "symlink loop: leads back to a directory above it; "
                                        "not followed"))
            continue
        if key in visited:
            if visited[key] != path:
                out.notes.append(Note(path, f"same directory as {visited[key]}; scanned once"))
            continue
        visited[key] = path
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            out.notes.append(Note(path, f"cannot list directory: {exc.strerror or exc}"))
            out.unlisted.append(path)
            continue
        hf = _hf_context(path)
        name = os.path.basename(path)
        subdirs: list[tuple[str, os.stat_result]] = []
        if name.startswith(HF_PREFIX) and hf is None and any(
                e.name == "snapshots" for e in entries):
            # A Hugging Face cache repo: only its snapshots are checkpoints
            # (blobs/ holds the same data under hashes, refs/ names revisions).
            snaps = next(e for e in entries if e.name == "snapshots")
            try:
                with os.scandir(snaps.path) as it:
                    revs = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                out.notes.append(Note(snaps.path, f"cannot list directory: {exc.strerror or exc}"))
                out.unlisted.append(snaps.path)
                continue
            for e in revs:
                sub = _dir_stat(e)
                if sub is not None:
                    subdirs.append((e.path, sub))
            stack.extend((p, s, (*ancestors, key)) for p, s in reversed(subdirs))
            continue
        shards: list[FileStat] = []
        index_names: list[os.DirEntry[str]] = []
        config: os.DirEntry[str] | None = None
        for e in entries:
            if e.name.endswith(SHARD_SUFFIX):
                shards.append(stat_file(e.path, e.name, e))
            elif e.name.endswith(INDEX_SUFFIX):
                index_names.append(e)
            elif e.name == CONFIG_NAME:
                config = e
            elif e.name not in SKIP_DIRS:
                sub = _dir_stat(e)
                if sub is not None:
                    subdirs.append((e.path, sub))
        index = next((e for e in index_names if e.name == INDEX_NAME),
                     index_names[0] if index_names else None)
        snapshot_top = hf is not None and hf[2]
        kind = "hf-snapshot" if hf else "dir"
        repo, rev = (hf[0], hf[1]) if hf else (None, None)
        if index is not None or snapshot_top or (
                shards and (config is not None or len(shards) == 1
                            or all(_SHARD_NAME.search(s.name) for s in shards))):
            out.checkpoints.append(CheckpointSpec(
                path, kind, shards,
                stat_file(index.path, index.name, index) if index is not None else None,
                stat_file(config.path, config.name, config) if config is not None else None,
                repo, rev))
        elif shards:
            # Unrelated single-file models side by side (no index, no config,
            # no -NNNNN-of-NNNNN names): each file is a checkpoint of its own.
            for s in shards:
                out.checkpoints.append(CheckpointSpec(s.path, "file", [s], repo=repo,
                                                      revision=rev))
        elif not entries:
            out.notes.append(Note(path, "empty directory"))
        stack.extend((p, s, (*ancestors, key)) for p, s in reversed(subdirs))


def _dir_stat(e: os.DirEntry[str]) -> os.stat_result | None:
    """The stat of a directory entry that is (or links to) a directory."""
    try:
        if not e.is_dir():  # follows symlinks; False for loops and dangling links
            return None
        return e.stat()
    except OSError:
        return None


# ---------------------------------------------------------------- scanning (any worker)


@dataclass
class Outcome:
    """One checkpoint scanned by `scan_group`: what the store needs."""

    path: str
    report: Report
    shards: list[ShardRow]
    seconds: float
    opened: int  # shard files this scan opened (a blob shared in the group counts once)
    failed: bool = False


def scan_group(specs: Sequence[CheckpointSpec], deep: bool = False,
               io_jobs: int = DEFAULT_IO_JOBS, deep_jobs: int | None = None) -> list[Outcome]:
    """Scans checkpoints that share files (usually just one): each shared file is
    parsed once. Never raises for a checkpoint: a failure becomes its finding."""
    cache: dict[Any, Any] = {}
    out = []
    for spec in specs:
        t0 = time.perf_counter()
        try:
            out.append(_scan_one(spec, cache, deep, io_jobs, deep_jobs, t0))
        except Exception as exc:  # noqa: BLE001 - one checkpoint must not stop a farm
            out.append(_failed(spec, exc, time.perf_counter() - t0))
    return out


def _scan_one(spec: CheckpointSpec, cache: dict[Any, Any], deep: bool,
              io_jobs: int, deep_jobs: int | None, t0: float) -> Outcome:
    from pathlib import Path

    from . import checks
    from .checkpoint import assemble, load_shards, read_index, read_json
    from .errors import Problem
    from .frame import build_frame
    from .scan import build_report
    from .shard import Shard, load_shard
    from .store import ShardRow

    problems: list[Problem] = []
    readable = [fs for fs in spec.shards if fs.kind in ("file", "dir")]
    for fs in spec.shards:
        if fs.kind == "error":
            problems.append(Problem("io-error", str(fs.error), fs.path))
        elif fs.kind not in ("file", "dir"):
            problems.append(Problem("io-error", f"not a regular file ({fs.kind}): not read",
                                    fs.path))

    opened = 0

    def load(fs: FileStat) -> Shard:
        nonlocal opened
        key = (fs.dev, fs.inode) if fs.kind == "file" and fs.inode is not None else None
        core = cache.get(key) if key is not None else None
        if core is None:
            shard = load_shard(fs.path)
            opened += 1
            if key is not None:
                cache[key] = shard.core
            return shard
        # The same file under another name (a blob shared by two revisions).
        shard = Shard(core)
        shard.path = fs.path
        shard.problems = [Problem(p.code, p.message, fs.path, p.offset, p.tensor)
                          for p in Shard(core).problems]
        return shard

    shards = load_shards(readable, io_jobs, load)

    # A file that changed or vanished while we read it: the report may not
    # describe what is on disk now (and the next scan will read it again).
    for fs, shard in zip(readable, shards, strict=True):
        if fs.kind != "file":
            continue
        msg = _changed(fs, shard)
        if msg:
            problems.append(Problem("io-error", msg, fs.path))

    index = config = None
    if spec.index is not None:
        index = _read_meta(spec.index, "index-invalid", problems, read_index, cache)
    if spec.config is not None:
        config = _read_meta(spec.config, "config-invalid", problems, read_json, cache)
    ckpt = assemble(Path(spec.path), shards, index, config, problems)

    frame = build_frame(ckpt)
    findings = checks.run_all(ckpt, frame)
    deep_summary = None
    if deep:
        from .deep import deep_scan

        deep_findings, deep_summary = deep_scan(ckpt, frame, jobs=deep_jobs)
        findings = checks.sort_findings(findings + deep_findings)
    report = build_report(ckpt, frame, findings, deep_summary)

    by_path = {s.path: s for s in shards}
    rows = []
    for fs in spec.shards:
        s: Shard | None = by_path.get(fs.path)
        ok = s is not None and s._core is not None and bool(s.core.opened)
        err = fs.error if fs.kind == "error" else (
            f"not a regular file ({fs.kind})" if fs.kind not in ("file",) else None)
        if s is not None and not ok and s.problems:
            err = s.problems[0].message
        header = int(s.header_size) if ok and s is not None else None
        if header is not None and 8 + header > (s.file_size if s is not None else 0):
            header = None  # a length that is no header's (not safetensors, truncated)
        rows.append(ShardRow(fs.name, fs.path, fs.target, fs.size, fs.mtime_ns, fs.ctime_ns,
                             fs.inode, fs.dev, len(s) if ok and s is not None else None,
                             header, len(s.problems) if s is not None else 1, err))
    ckpt.close()
    return Outcome(spec.path, report, rows, time.perf_counter() - t0, opened)


def _changed(fs: FileStat, shard: Shard) -> str | None:
    try:
        now = os.stat(fs.path)
    except OSError:
        return "vanished while being scanned"
    core = shard._core
    seen = int(core.file_size) if core is not None and core.opened else None
    if seen is not None and seen != fs.size:
        return f"changed while being scanned: {fs.size:,} bytes when found, {seen:,} when read"
    if (now.st_size, now.st_mtime_ns, now.st_ino) != (fs.size, fs.mtime_ns, fs.inode):
        return (f"changed while being scanned: {fs.size:,} bytes when found, "
                f"{now.st_size:,} now")
    return None


def _read_meta(fs: FileStat, code: str, problems: list[Any], read: Callable[..., Any],
               cache: dict[Any, Any]) -> Any:
    """index.json / config.json; a file shared in the group (an HF blob) is read once."""
    from dataclasses import replace
    from pathlib import Path

    from .errors import Problem

    if fs.kind != "file":
        why = fs.error if fs.kind == "error" else f"not a regular file ({fs.kind})"
        problems.append(Problem(code, f"cannot read: {why}", fs.path))
        return None
    key = ("json", code, fs.dev, fs.inode)
    if key not in cache:
        found: list[Any] = []
        cache[key] = (read(Path(fs.path), code, found), found)
    data, found = cache[key]
    problems.extend(replace(p, path=fs.path) for p in found)
    return data


def _failed(spec: CheckpointSpec, exc: BaseException, seconds: float) -> Outcome:
    from .findings import Finding, Severity
    from .result import Count, Quantization, Report, Shards

    report = Report(
        checkpoint=spec.path, model_type=None, family="unknown",
        shards=Shards(sorted(s.name for s in spec.shards), [], []), total=Count(),
        dtypes={}, roles={}, quantization=Quantization(None, None, None, 0, 0, [], []),
        examples={},
        findings=[Finding("io-error", Severity.ERROR,
                          f"ckptscan failed on this checkpoint: {type(exc).__name__}: {exc}",
                          spec.path)])
    return Outcome(spec.path, report, [], seconds, 0, failed=True)


# ---------------------------------------------------------------- the farm driver


@dataclass
class FarmProgress:
    checkpoints_done: int
    checkpoints_total: int
    shards_done: int
    shards_total: int
    unchanged: int


@dataclass
class FarmResult:
    """What `scan_farm` did. `rows` are the store's summary rows (dicts, see
    `store.SUMMARY_COLUMNS`) of every checkpoint found, by path; `report(path)`
    gives a checkpoint's full `Report` from the store."""

    db: str
    roots: list[str]
    rows: list[dict[str, Any]]
    scanned: list[str]
    unchanged: list[str]
    failed: list[str]
    removed: list[str]
    notes: list[Note]
    shards_opened: int
    seconds: float

    def report(self, path: str) -> Report | None:
        from .store import Store

        with Store(self.db, create=False) as store:
            return store.load_report(path)  # type: ignore[no-any-return]


def _groups(specs: Sequence[CheckpointSpec]) -> list[list[CheckpointSpec]]:
    """Checkpoints that share a file (by device and inode) go together."""
    parent = list(range(len(specs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[tuple[int, int], int] = {}
    for i, spec in enumerate(specs):
        for fs in spec.shards:
            if fs.kind == "file" and fs.inode is not None and fs.dev is not None:
                j = owner.setdefault((fs.dev, fs.inode), i)
                if j != i:
                    parent[find(i)] = find(j)
    groups: dict[int, list[CheckpointSpec]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(find(i), []).append(spec)
    return list(groups.values())


def scan_farm(roots: Sequence[str | os.PathLike[str]], db: str | os.PathLike[str] | None = None,
              jobs: int | None = None, deep: bool = False, *, io_jobs: int = DEFAULT_IO_JOBS,
              dask: Any = None, processes: bool = False, rescan: bool = False,
              progress: Callable[[FarmProgress], None] | None = None) -> FarmResult:
    """Finds every checkpoint under `roots`, scans the new and changed ones in
    parallel and records them in the store `db` (default
    ``~/.cache/ckptscan/farm.db``; ``":memory:"`` keeps nothing).

    `jobs`: checkpoints scanned at once (default: one per core; with `dask`, the
    cluster's threads). `io_jobs`: header reads in flight per checkpoint (raise it
    on network storage). `dask`: a scheduler address or a `distributed.Client`;
    its workers must see the same paths. `processes`: worker processes instead of
    threads. `rescan`: ignore fingerprints and scan everything.

    Ctrl-C (KeyboardInterrupt) stops between checkpoints: every checkpoint
    written so far stays in the store, and the next call resumes from there.
    """
    from . import __version__
    from .store import CheckpointRecord, Store

    t0 = time.perf_counter()
    found = discover(roots)
    specs = found.checkpoints
    store = Store(db)
    try:
        known = store.known()
        fps = {s.path: s.fingerprint() for s in specs}
        todo, unchanged = [], []
        for spec in specs:
            k = known.get(spec.path)
            if (not rescan and k is not None and k[0] == fps[spec.path] and (k[1] or not deep)
                    and k[2] == __version__):
                unchanged.append(spec.path)
            else:
                todo.append(spec)
        by_path = {s.path: s for s in todo}
        status = FarmProgress(0, len(specs), 0, sum(len(s.shards) for s in todo),
                              len(unchanged))
        if progress is not None:
            progress(status)
        scanned: list[str] = []
        failed: list[str] = []
        opened = 0
        groups = _groups(todo)
        cores = os.cpu_count() or 1
        for outcomes in _run(groups, jobs, deep, io_jobs, dask, processes, cores):
            for o in outcomes:
                spec = by_path[o.path]
                store.put(CheckpointRecord(
                    o.path, spec.kind, o.report, "" if o.failed else fps[o.path], o.shards,
                    spec.repo, spec.revision, deep, o.seconds, __version__))
                (failed if o.failed else scanned).append(o.path)
                opened += o.opened
                status.checkpoints_done += 1
                status.shards_done += len(spec.shards)
            if progress is not None:
                progress(status)
        keep = [s.path for s in specs]
        removed = store.prune(found.roots, keep, protect=found.unlisted)
        rows = store.query(paths=keep)
    finally:
        store.close()
    return FarmResult(store.path, found.roots, rows, sorted(scanned), unchanged, sorted(failed),
                      removed, found.notes, opened, time.perf_counter() - t0)


def _run(groups: list[list[CheckpointSpec]], jobs: int | None, deep: bool, io_jobs: int,
         dask: Any, processes: bool, cores: int) -> Iterator[list[Outcome]]:
    """Results of `scan_group` over `groups`, as they complete, on threads,
    processes or Dask. Stopping the iteration (Ctrl-C) cancels what has not started."""
    if not groups:
        return
    if dask is not None:
        yield from _run_dask(groups, dask, deep, io_jobs, jobs)
        return
    workers = max(1, min(jobs or (1 if deep else cores), len(groups)))
    deep_jobs = max(1, cores // workers)
    ex: Executor
    if processes:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() \
            else "spawn"
        ex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                 initializer=_ignore_sigint)
    else:
        from concurrent.futures import ThreadPoolExecutor

        ex = ThreadPoolExecutor(workers, thread_name_prefix="ckptscan-farm")
    pending: set[Future[list[Outcome]]] = set()
    finished = False
    try:
        queue = iter(groups)
        # Keep a bounded number of groups in flight: finished results are written
        # as they come, and little is lost to Ctrl-C.
        for g in queue:
            pending.add(ex.submit(scan_group, g, deep, io_jobs, deep_jobs))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(ex.submit(scan_group, nxt, deep, io_jobs, deep_jobs))
                yield fut.result()
        finished = True
    finally:
        for fut in pending:
            fut.cancel()
        # After Ctrl-C do not wait: running scans finish in the background and
        # nothing more is written.
        ex.shutdown(wait=finished, cancel_futures=True)


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_dask(groups: list[list[CheckpointSpec]], dask: Any, deep: bool, io_jobs: int,
              jobs: int | None) -> Iterator[list[Outcome]]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        from .errors import CkptScanError

        raise CkptScanError("--dask needs dask.distributed: pip install 'ckptscan[dask]'") from None
    own = not isinstance(dask, Client)
    client = Client(dask, set_as_default=False) if own else dask  # type: ignore[no-untyped-call]
    futures: list[Any] = []
    try:
        futures = [client.submit(scan_group, g, deep, io_jobs, None, pure=False,
                                 key=f"ckptscan-farm-{i}-{os.getpid()}-{time.time_ns()}")
                   for i, g in enumerate(groups)]
        for fut in as_completed(futures, loop=client.loop):  # type: ignore[no-untyped-call]
            result = fut.result()
            fut.release()
            yield result
    finally:
        live = [f for f in futures if f.status == "pending"]
        if live:
            client.cancel(live)
        if own:
            client.close()


# ---------------------------------------------------------------- rendering (CLI)


class FarmProgressBar:
    """One line on stderr (the CLI shows it only on a terminal)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.last = ""

    def __call__(self, p: FarmProgress) -> None:
        todo = p.checkpoints_total - p.unchanged
        pct = 100 * p.shards_done // p.shards_total if p.shards_total else 100
        line = (f"\r  farm [{'#' * (pct // 4):<25}] {pct:3d}% {p.checkpoints_done:,}/{todo:,} "
                f"checkpoints, {p.shards_done:,}/{p.shards_total:,} shards"
                f" ({p.unchanged:,} unchanged)")
        if line == self.last:
            return
        self.last = line
        self.stream.write(line)
        if p.checkpoints_done >= todo:
            self.stream.write("\n")
        self.stream.flush()


_TABLE = (("path", "PATH"), ("model_type", "MODEL"), ("shards", "SHARDS"),
          ("tensors", "TENSORS"), ("parameters", "PARAMS"), ("bytes", "SIZE"),
          ("dtypes", "DTYPES (by parameters)"), ("quant", "QUANT"), ("errors", "ERR"),
          ("warnings", "WARN"))
_FINDINGS_TABLE = (("severity", "SEVERITY"), ("code", "CODE"), ("checkpoint", "CHECKPOINT"),
                   ("where", "FILE / TENSOR"), ("message", "MESSAGE"))
_RIGHT = {"shards", "tensors", "parameters", "bytes", "errors", "warnings"}


def dtype_mix(dtypes_json: str, top: int = 3) -> str:
    """'F8_E4M3 99.4%, BF16 0.6%' from the stored dtype counts (share of parameters)."""
    import orjson

    d = orjson.loads(dtypes_json) if dtypes_json else {}
    total = sum(v["parameters"] for v in d.values())
    if not total:
        return "-"
    items = sorted(d.items(), key=lambda kv: -kv[1]["parameters"])
    parts = [f"{k} {100 * v['parameters'] / total:.1f}%" for k, v in items[:top]]
    if len(items) > top:
        parts.append(f"+{len(items) - top}")
    return ", ".join(parts)


def _quant(row: dict[str, Any]) -> str:
    parts = [row.get("quant_method"), row.get("quant_format"), row.get("quant_block")]
    return " ".join(str(p) for p in parts if p) or "-"


def format_rows(rows: list[dict[str, Any]], fmt: str, findings: bool = False,
                color: bool = False) -> str:
    """Store rows (checkpoints or findings) as a table, JSON, JSON Lines or CSV."""
    import orjson

    from .store import SCHEMA_NAME

    if fmt in ("json", "jsonl"):
        objs = [_decoded(r) for r in rows]
        if fmt == "jsonl":
            return "".join(orjson.dumps(o).decode() + "\n" for o in objs)
        key = "findings" if findings else "checkpoints"
        return orjson.dumps({"schema": SCHEMA_NAME, key: objs},
                            option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        return buf.getvalue()
    return _table(rows, findings, color)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    import orjson

    out = dict(row)
    for k in ("dtypes", "detail"):
        if isinstance(out.get(k), str):
            out[k] = orjson.loads(out[k])
    if "deep" in out:
        out["deep"] = bool(out["deep"])
    return out


def _table(rows: list[dict[str, Any]], findings: bool, color: bool) -> str:
    from .report import human_bytes, human_count

    cols: tuple[tuple[str, str], ...]
    if findings:
        cols = _FINDINGS_TABLE
        cells = [[r["severity"], r["code"], r["checkpoint"],
                  " ".join(x for x in (os.path.basename(r["file"] or ""), r["tensor"] or "") if x),
                  r["message"]] for r in rows]
    else:
        cols = _TABLE
        cells = [[r["path"], r["model_type"] or "-", f"{r['shards']:,}", f"{r['tensors']:,}",
                  human_count(r["parameters"]), human_bytes(r["bytes"]),
                  dtype_mix(r["dtypes"]), _quant(r), str(r["errors"]), str(r["warnings"])]
                 for r in rows]
    if not cells:
        return "(no rows)\n"
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(cols)]
    widths[-1] = len(cols[-1][1]) if findings else widths[-1]

    def line(values: list[str]) -> str:
        out = []
        for (key, _), v, w in zip(cols, values, widths, strict=True):
            out.append(v.rjust(w) if key in _RIGHT else v.ljust(w))
        return "  ".join(out).rstrip()

    lines = [line([h for _, h in cols])]
    for r, c in zip(rows, cells, strict=True):
        text = line(c)
        if color:
            bad = r["severity"] == "error" if findings else r["errors"] > 0
            warn = r["severity"] == "warning" if findings else r["warnings"] > 0
            if bad:
                text = f"\x1b[31;1m{text}\x1b[0m"
            elif warn:
                text = f"\x1b[33m{text}\x1b[0m"
        lines.append(text)
    return "\n".join(lines) + "\n"


def summary_lines(result: FarmResult, max_notes: int = 20) -> list[str]:
    """The summary the CLI prints on stderr after the rows."""
    n = len(result.rows)
    bad = sum(1 for r in result.rows if r["errors"])
    warn = sum(1 for r in result.rows if r["warnings"] and not r["errors"])
    out = [f"{n:,} checkpoints: {len(result.scanned):,} scanned, {len(result.unchanged):,} "
           f"unchanged ({result.shards_opened:,} shards opened) in {result.seconds:.2f} s; "
           f"{bad:,} with errors, {warn:,} with warnings only; store: {result.db}"]
    if result.failed:
        out.append(f"{len(result.failed):,} checkpoints could not be scanned (see their "
                   "findings); they will be tried again next time")
    if result.removed:
        out.append(f"{len(result.removed):,} checkpoints gone from disk removed from the store")
    for note in result.notes[:max_notes]:
        out.append(f"note: {note}")
    if len(result.notes) > max_notes:
        out.append(f"note: ... and {len(result.notes) - max_notes:,} more")
    return out
