"""A checkpoint: a directory of shards (plus index.json and config.json), or one file."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import _core
from .config import MAX_CONFIG_BYTES
from .errors import Problem, ShardIOError
from .shard import Shard, load_shard

if TYPE_CHECKING:
    from .table import TensorTable

INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"

# Header reads on network storage cost a round trip each, not bandwidth: keep
# many in flight. (Data scans use their own, smaller pool: one per core.)
DEFAULT_HEADER_JOBS = 16


@dataclass(eq=False)
class Index:
    """model.safetensors.index.json, parsed by the C++ core into columns
    (a 96k-entry weight_map is no 96k-item dict unless someone asks for one)."""

    path: Path
    core: Any  # _core.Index

    def __len__(self) -> int:
        return len(self.core)

    @cached_property
    def shard_names(self) -> list[str]:
        """The shard file names the weight_map uses, in first-use order."""
        return self.core.shard_names  # type: ignore[no-any-return]

    @property
    def total_size(self) -> int | None:
        return self.core.total_size  # type: ignore[no-any-return]

    @cached_property
    def weight_map(self) -> dict[str, str]:
        names = self.shard_names
        return dict(zip(self.core.names(), (names[i] for i in self.core.shard_ids.tolist()),
                        strict=True))


class Checkpoint:
    """What was found on disk, what was parsed, and what went wrong doing it.

    `shards` holds every safetensors file found (broken ones too: their
    `problems` say why, and the tensors that could be parsed are there);
    `problems` gathers those and the checkpoint-level ones (missing shard,
    unreadable index.json ...). index.json is read on first use of `index`,
    `problems` or anything derived from them: a 96k-entry index is as big as
    all the headers together, and reading a tensor does not need it.
    """

    def __init__(self, path: Path, shards: list[Shard], config: dict[str, Any] | None = None,
                 problems: Sequence[Problem] = (), *, index: Index | None = None,
                 index_path: Path | None = None, found: Sequence[str] | None = None,
                 partial: bool = False) -> None:
        self.path = path
        self.shards = shards
        self.config = config
        # Shard file names on disk, readable or not (default: those opened).
        self._found_names = None if found is None else sorted(found)
        self.partial = partial  # one shard of a sharded checkpoint: others are not missing
        self._found = list(problems)  # while opening: filesystem, config.json
        self._index_path = index.path if index is not None else index_path
        self._index = index
        self._index_read = index is not None or index_path is None
        self._index_problems: list[Problem] = []

    @property
    def index(self) -> Index | None:
        if not self._index_read:
            # Assigned together, and the flag last: two threads asking at once
            # both read it, and neither sees half a result.
            assert self._index_path is not None
            found: list[Problem] = []
            index = read_index(self._index_path, "index-invalid", found)
            self._index, self._index_problems = index, found
            self._index_read = True
        return self._index

    @property
    def index_path(self) -> Path | None:
        return self._index_path

    @cached_property
    def problems(self) -> list[Problem]:
        """The shards' problems, then the checkpoint's own (index.json,
        config.json, filesystem), then shards the index lists but the disk lacks."""
        out = [p for s in self.shards for p in s.problems]
        out += self._found
        self.index  # noqa: B018  (reads index.json: its problems come next)
        out += self._index_problems
        for name in self.outside:
            out.append(Problem("path-outside", "index.json places tensors in a file outside "
                               "the checkpoint: not followed", str(self.path / name)))
        for name in self.missing:
            out.append(Problem("shard-missing", "listed in the index but not on disk",
                               str(self.path / name)))
        if not self.files and not self.missing and not self.outside:
            out.append(Problem("no-shards", "no .safetensors file found", str(self.path)))
        return out

    @property
    def files(self) -> list[str]:
        """Shard file names found, sorted."""
        if self._found_names is not None:
            return self._found_names
        return [os.path.basename(s.path) for s in self.shards]

    @property
    def weight_map(self) -> dict[str, str]:
        return {} if self.index is None else self.index.weight_map

    @cached_property
    def referenced(self) -> list[str]:
        """Shard file names that index.json refers to, sorted."""
        return [] if self.index is None else sorted(self.index.shard_names)

    @property
    def missing(self) -> list[str]:
        """Shards the index refers to that are not on disk."""
        if self.partial:
            return []
        found = set(self.files)
        outside = set(self.outside)
        return [n for n in self.referenced if n not in found and n not in outside]

    @cached_property
    def outside(self) -> list[str]:
        """Shard names in the index that lead outside the checkpoint (``../x``, ``/x``):
        never opened, never stat'ed."""
        root = os.path.normpath(self.path if self.path.is_dir() else self.path.parent)
        return [n for n in self.referenced
                if not os.path.normpath(os.path.join(root, n)).startswith(root + os.sep)]

    @property
    def num_tensors(self) -> int:
        return sum(len(s) for s in self.shards)

    def close(self) -> None:
        for s in self.shards:
            s.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def table(self) -> TensorTable:
        """One row per tensor of the readable shards: name, dtype, shape, role,
        component, layer, expert, shard, begin, end, numel, nbytes, scheme; as
        numpy columns, `to_arrow()`, `to_pandas()`, `to_polars()` (see
        `ckptscan.table`)."""
        from .table import checkpoint_table

        return checkpoint_table(self)

    def __repr__(self) -> str:
        open_ = [s for s in self.shards if s._core is not None]
        tensors = sum(len(s) for s in open_)
        size = sum(s.file_size for s in open_)
        broken = sum(1 for s in self.shards if s._core is not None and s.problems)
        state = f", {broken} with problems" if broken else ""
        if len(open_) < len(self.shards):
            state += f", {len(self.shards) - len(open_)} closed"
        return (f"<Checkpoint {str(self.path)!r}: {len(self.shards)} shard"
                f"{'s' * (len(self.shards) != 1)}{state}, {tensors:,} tensors, "
                f"{_size(size)}>")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _regular_bytes(path: Path, code: str, problems: list[Problem],
                   limit: int) -> bytes | None:
    """The file's bytes, read only when it is a regular file within `limit` bytes."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read
            problems.append(Problem(code, "not a regular file", str(path)))
            return None
        if st.st_size > limit:
            problems.append(Problem("limit-exceeded", f"{path.name} is {st.st_size:,} bytes, "
                                    f"beyond the {limit:,}-byte limit: not read", str(path)))
            return None
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        problems.append(Problem(code, f"cannot read: {exc.strerror or exc}", str(path)))
        return None
    if len(data) > limit:  # it grew since the stat
        problems.append(Problem("limit-exceeded", f"{path.name} is beyond the {limit:,}-byte "
                                "limit: not read", str(path)))
        return None
    return data


def read_json(path: Path, code: str, problems: list[Problem],
              limit: int = MAX_CONFIG_BYTES) -> dict[str, Any] | None:
    """config.json and the like: a JSON object within `limit` bytes, or None with a
    problem recorded."""
    data = _regular_bytes(path, code, problems, limit)
    return None if data is None else json_object(data, path, code, problems, limit)


def json_object(data: bytes, path: Path, code: str, problems: list[Problem],
                limit: int = MAX_CONFIG_BYTES) -> dict[str, Any] | None:
    """A JSON object from a file's bytes (read from disk or fetched), or None with
    a problem recorded."""
    if len(data) > limit:
        problems.append(Problem("limit-exceeded", f"{path.name} is beyond the {limit:,}-byte "
                                "limit: not read", str(path)))
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        problems.append(Problem(code, f"not valid JSON: {exc}", str(path)))
        return None
    if not isinstance(obj, dict):
        problems.append(Problem(code, "top level is not a JSON object", str(path)))
        return None
    return obj


# Shard files one index may name: real ones name < 2,000 (a 10^6-shard index is an
# attack on the report, not a checkpoint).
MAX_INDEX_SHARDS = 100_000


def read_index(path: Path, code: str, problems: list[Problem]) -> Index | None:
    """index.json through the C++ parser. None when it is unusable (unreadable,
    not JSON, no weight_map, beyond the limits); its other problems are recorded
    either way."""
    return index_from_core(_core.read_index(os.fsencode(path)), path, code, problems)


def index_from_core(core: Any, path: Path, code: str, problems: list[Problem]) -> Index | None:
    """An index the core parsed (from a file or from bytes fetched remotely):
    None when unusable (not JSON, no weight_map, beyond the limits); its
    problems are recorded either way."""
    found = core.problems
    unreadable = [msg for kind, _, _, msg in found if kind == "io-error"]
    if unreadable:
        problems.append(Problem(code, unreadable[0], str(path)))
        return None
    for kind, offset, tensor, msg in found:
        problems.append(Problem(code, f"{kind}: {msg}", str(path), offset, tensor))
    for kind, n in core.suppressed.items():
        problems.append(Problem(code, f"{kind}: {n:,} more problems of this kind (counted, not "
                                "listed)", str(path)))
    fatal = {"json-syntax", "json-too-deep", "header-not-utf8", "missing-field"}
    if any(kind in fatal for kind, *_ in found) or (
            any(kind == "not-an-object" and tensor is None for kind, _, tensor, _ in found)):
        return None
    if len(core.shard_names) > MAX_INDEX_SHARDS:
        problems.append(Problem("limit-exceeded", f"index.json names {len(core.shard_names):,} "
                                f"shard files, beyond the limit of {MAX_INDEX_SHARDS:,} (real "
                                "ones name < 2,000): not used", str(path)))
        return None
    return Index(path, core)


def _find_index(directory: Path) -> Path | None:
    default = directory / INDEX_NAME
    if default.exists():
        return default
    others = sorted(directory.glob("*.safetensors.index.json"))
    return others[0] if others else None


def assemble(root: Path, shards: list[Shard], index: Index | None,
             config: dict[str, Any] | None, problems: Sequence[Problem] = ()) -> Checkpoint:
    """A Checkpoint from what was read (an index already parsed, or None).
    `problems`: the index/config/filesystem ones found while reading."""
    return Checkpoint(root, shards, config, problems, index=index)


_header_pools: dict[int, ThreadPoolExecutor] = {}
_header_pools_lock = threading.Lock()


def _header_pool(workers: int) -> ThreadPoolExecutor:
    """Header-reading threads, kept from call to call: a thread started per
    call costs more than the headers it reads (its stack, its malloc arena and
    its read buffer all fault in fresh pages)."""
    with _header_pools_lock:
        pool = _header_pools.get(workers)
        if pool is None:
            pool = _header_pools[workers] = ThreadPoolExecutor(
                workers, thread_name_prefix=f"ckptscan-header-{workers}")
        return pool


def _forget_header_pools() -> None:
    _header_pools.clear()  # their threads do not exist in a forked child


os.register_at_fork(after_in_child=_forget_header_pools)


def load_shards(files: Sequence[Any], jobs: int | None,
                load: Callable[[Any], Shard] = load_shard) -> list[Shard]:
    """Loads shards on a thread pool (the core releases the GIL while parsing)."""
    workers = min(jobs or DEFAULT_HEADER_JOBS, max(1, len(files)))
    if load is load_shard:
        # A header parses in ~50 µs: a pool task per file would cost as much
        # in Python. One call into the core per chunk of files, a few chunks
        # per worker so that slow files (network storage) do not stall one.
        paths = [os.fspath(f) for f in files]
        encoded = [os.fsencode(p) for p in paths]  # any file name, UTF-8 or not
        size = max(1, -(-len(paths) // (workers * 4)))
        chunks = [encoded[i:i + size] for i in range(0, len(paths), size)]
        if workers <= 1 or len(chunks) <= 1:
            cores = _core.open_shards(encoded)
        else:
            cores = [c for part in _header_pool(workers).map(_core.open_shards, chunks)
                     for c in part]
        return [Shard(core, str(p)) for core, p in zip(cores, paths, strict=True)]
    if workers <= 1:
        return [load(f) for f in files]
    return list(_header_pool(workers).map(load, files))


def _shard_files(directory: Path) -> list[str]:
    """The directory's *.safetensors files (not directories so named), sorted.
    Plain strings: a Path per shard costs more than reading its header."""
    with os.scandir(directory) as it:
        return sorted(e.path for e in it if e.name.endswith(".safetensors") and not e.is_dir())


def open_checkpoint(path: str | os.PathLike[str], jobs: int | None = None) -> Checkpoint:
    """Opens every shard of a checkpoint directory (or a single .safetensors
    file, or a URL: headers fetched, tensor bytes read on demand by `raw()`).

    Nothing stops at a broken shard: its problems are recorded and the other
    shards are read. index.json is read when first needed (`Checkpoint.index`,
    `.problems`). Raises `ShardIOError` only when `path` itself is unusable.
    """
    if isinstance(path, str) and "://" in path:  # (no import for a plain path)
        from .layout import is_url

        if is_url(path):
            from .remote.scan import open_remote_checkpoint

            return open_remote_checkpoint(path)
    root = Path(path)
    problems: list[Problem] = []
    index_path = config = None
    files: list[str] | list[Path]
    if root.is_dir():
        files = _shard_files(root)
        index_path = _find_index(root)
        if (root / CONFIG_NAME).exists():
            config = read_json(root / CONFIG_NAME, "config-invalid", problems)
    elif root.exists():
        files = [root]
    else:
        raise ShardIOError(str(root), "no such file or directory")
    return Checkpoint(root, load_shards(files, jobs), config, problems, index_path=index_path)
