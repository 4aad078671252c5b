"""What a path holds: the checkpoints under it, as loaders and producers lay them out.

`resolve(path)` is what ``ckptscan report PATH`` and `ckptscan.scan` see;
`discover(roots)` walks whole trees for the farm. Both classify a directory the
same way (`_dir_specs`) and only stat and list: nothing is opened here (the
scan sniffs magic bytes), nothing is ever written.

Layouts understood:

- a plain directory: ``*.safetensors`` shards, ``model.safetensors.index.json``
  (or another ``*.safetensors.index.json``), ``config.json``; sharded files
  (``-NNNNN-of-NNNNN``) without an index are one checkpoint whose sequence is
  checked; unrelated single-file models side by side are one checkpoint each;
  ``consolidated*.safetensors`` beside HF shards is a second copy of the same
  weights (Mistral's format), noted and not counted;
- one ``.safetensors`` file; a shard of a sharded checkpoint is scanned as such,
  with its siblings' ``config.json`` and index;
- the Hugging Face cache: the cache root (one checkpoint per repository), a
  repository folder ``models--ORG--NAME`` (its ``refs/`` resolve to a snapshot;
  ``revision`` picks another), an ``ORG/NAME`` repo id looked up in
  ``HF_HUB_CACHE`` / ``HF_HOME``; a snapshot file whose blob is still
  ``.incomplete`` is an interrupted download;
- a diffusers pipeline (``model_index.json``): one checkpoint per component
  folder, each with its own ``config.json``;
- other formats by name (GGUF, PyTorch ``.bin`` / ``.pt`` / ``.pth``, ONNX,
  Keras HDF5, Flax msgpack ...): a checkpoint of that format, named, not read.

A checkpoint is what lies under its root: a symlink leaving it (for an HF
snapshot: leaving the repository folder) is reported, not followed, unless
`follow_symlinks`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .remote.refs import RemoteOptions, RemoteRef

__all__ = [
    "CheckpointSpec", "Discovery", "FileStat", "LayoutError", "Note", "discover",
    "resolve", "stat_file",
]

INDEX_NAME = "model.safetensors.index.json"
INDEX_SUFFIX = ".safetensors.index.json"
CONFIG_NAME = "config.json"
HF_QUANT_CONFIG_NAME = "hf_quant_config.json"  # NVIDIA ModelOpt's quantization settings
SHARD_SUFFIX = ".safetensors"
MODEL_INDEX = "model_index.json"  # diffusers pipelines
HF_PREFIX = "models--"
HF_KINDS = ("models--", "datasets--", "spaces--")
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".cache", ".locks"})
FINGERPRINT_VERSION = "2"

SHARD_NAME = re.compile(r"^(?P<stem>.+)-(?P<k>\d+)-of-(?P<n>\d+)\.safetensors$")
_CONSOLIDATED = re.compile(r"^consolidated(\.\d+)?\.safetensors$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# Other checkpoint formats, by file name (the scan confirms by magic bytes).
_OTHER_SUFFIXES = {
    ".gguf": "gguf", ".pt": "pytorch", ".pth": "pytorch", ".ckpt": "pytorch",
    ".onnx": "onnx", ".h5": "keras-hdf5", ".keras": "keras", ".msgpack": "flax-msgpack",
    ".pdparams": "paddle", ".nemo": "nemo", ".npz": "numpy",
}
_PYTORCH_BIN = re.compile(r"^(pytorch_model|model|adapter_model|diffusion_pytorch_model)"
                          r"([-.].*)?\.bin$")


class LayoutError(Exception):
    """The path cannot be resolved to anything (no such file, unknown repo id)."""


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(text: str) -> bool:
    """A location read remotely (hf://, http(s)://, s3:// ...): not a path."""
    return _URL.match(text) is not None and not text.lower().startswith("file://")


# ---------------------------------------------------------------- files


@dataclass(frozen=True)
class FileStat:
    """One file as `stat` saw it. `kind`: ``file``, ``dir``, ``fifo``, ``socket``,
    ``char-device``, ``block-device``, ``outside`` (a symlink leaving the
    checkpoint: not followed, not stat'ed), ``incomplete`` (an HF blob still
    downloading) or ``error`` (`error` says why: dangling symlink, loop ...)."""

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
    version: str | None = None  # a remote file's version tag (ETag, LFS sha256 ...)
    code: str | None = None  # kind "error" from a remote read: its finding code

    def key(self) -> tuple[Any, ...]:
        return (self.name, self.kind, self.size, self.mtime_ns, self.ctime_ns, self.inode,
                self.error)

    @property
    def readable(self) -> bool:
        return self.kind == "file"


_KINDS = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISFIFO, "fifo"),
          (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "char-device"),
          (stat.S_ISBLK, "block-device"))


def _under(path: str, root: str) -> bool:
    root = root.rstrip(os.sep) or os.sep
    return path == root or path.startswith(root if root.endswith(os.sep) else root + os.sep)


def stat_file(path: str, name: str | None = None, entry: os.DirEntry[str] | None = None,
              boundary: str | None = None) -> FileStat:
    """A `FileStat` of `path`; never raises. A symlink is followed only when its
    target stays under `boundary` (None: follow anything)."""
    name = os.path.basename(path) if name is None else name
    try:
        is_link = entry.is_symlink() if entry is not None else os.path.islink(path)
    except OSError:
        is_link = False
    target = None
    if is_link:
        target = os.path.realpath(path)
        if boundary is not None and not _under(target, os.path.realpath(boundary)):
            return FileStat(name, path, "outside", target=target,
                            error=f"a symlink leaving the checkpoint (to {target})")
    try:
        st = entry.stat() if entry is not None else os.stat(path)
    except OSError as exc:
        incomplete = _incomplete_blob(path, target) if is_link else None
        if incomplete is not None:
            return incomplete
        return FileStat(name, path, "error", target=target,
                        error=_stat_error(path, exc, is_link))
    kind = next((k for test, k in _KINDS if test(st.st_mode)), "other")
    return FileStat(name, path, kind, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                    st.st_dev, target)


def _incomplete_blob(path: str, target: str | None) -> FileStat | None:
    """A snapshot symlink into blobs/ whose blob is still ``<hash>.incomplete``."""
    if target is None:
        return None
    partial = target + ".incomplete"
    try:
        st = os.stat(partial)
    except OSError:
        return None
    return FileStat(os.path.basename(path), path, "incomplete", st.st_size, st.st_mtime_ns,
                    st.st_ctime_ns, st.st_ino, st.st_dev, partial,
                    f"interrupted download: {os.path.basename(partial)} holds "
                    f"{st.st_size:,} bytes and the blob itself is absent")


def _stat_error(path: str, exc: OSError, is_link: bool) -> str:
    link = ""
    if is_link:
        with contextlib.suppress(OSError):
            link = os.readlink(path)
    if exc.errno == errno.ELOOP:
        return f"symlink loop ({link})" if link else "symlink loop"
    if exc.errno == errno.ENOENT and is_link:
        return f"dangling symlink: {link} does not exist"
    if exc.errno == errno.ENOENT:
        return "vanished before it could be read"
    return f"cannot stat: {exc.strerror or exc}"


# ---------------------------------------------------------------- checkpoints


@dataclass
class CheckpointSpec:
    """A checkpoint found: where, what kind, its files and how they looked.

    `kind`: ``dir``, ``hf-snapshot``, ``file``, ``shard`` (one shard of a sharded
    checkpoint, scanned with its siblings' index and config) or
    ``diffusers-component``. `format`: ``safetensors`` or another format's name
    (such a checkpoint is named, not read). `copies`: second copies of the
    weights beside the shards (``consolidated.safetensors``), not counted.
    `boundary`: the directory symlinks may not leave. `remote`: where a
    checkpoint found at a URL is read from (None: a local one, memory-mapped).
    """

    path: str
    kind: str
    shards: list[FileStat]
    index: FileStat | None = None
    config: FileStat | None = None
    repo: str | None = None
    revision: str | None = None
    format: str = "safetensors"
    component: str | None = None
    copies: list[FileStat] = field(default_factory=list)
    boundary: str | None = None
    remote: RemoteRef | None = None
    hf_quant_config: FileStat | None = None  # beside config.json (ModelOpt exports)

    def fingerprint(self) -> str:
        import hashlib  # the farm's: a report never needs it

        h = hashlib.blake2b(digest_size=16)
        h.update(repr((FINGERPRINT_VERSION, self.kind, self.format, self.component,
                       [s.key() for s in self.shards],
                       self.index.key() if self.index else None,
                       self.config.key() if self.config else None,
                       [c.key() for c in self.copies],
                       self.hf_quant_config.key() if self.hf_quant_config else None)
                      ).encode("utf-8", "surrogateescape"))
        if self.remote is not None:  # what a listing says changes: versions, the commit
            h.update(repr(self.remote.fingerprint(self)).encode("utf-8", "surrogateescape"))
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


def _other_format(name: str) -> str | None:
    lower = name.lower()
    if _PYTORCH_BIN.match(lower):
        return "pytorch"
    return next((f for suf, f in _OTHER_SUFFIXES.items() if lower.endswith(suf)), None)


def _dir_specs(path: str, entries: Sequence[os.DirEntry[str]], boundary: str | None,
               hf: tuple[str, str] | None = None,
               stat: Callable[[Any], FileStat] | None = None) -> list[CheckpointSpec]:
    """The checkpoints a directory's own files make (subdirectories aside).
    `entries` need only `name` and `path` when `stat` says what each one is
    (a remote listing's files)."""
    kind = "hf-snapshot" if hf else "dir"
    repo, rev = hf if hf else (None, None)

    def st(e: os.DirEntry[str]) -> FileStat:
        return stat(e) if stat is not None else stat_file(e.path, e.name, e, boundary)

    shards = [e for e in entries if e.name.endswith(SHARD_SUFFIX)]
    indexes = [e for e in entries if e.name.endswith(INDEX_SUFFIX)]
    config = next((e for e in entries if e.name == CONFIG_NAME), None)
    hq = next((e for e in entries if e.name == HF_QUANT_CONFIG_NAME), None)
    index = next((e for e in indexes if e.name == INDEX_NAME), indexes[0] if indexes else None)
    copies = [e for e in shards if _CONSOLIDATED.match(e.name)]
    sharded = [e for e in shards if SHARD_NAME.match(e.name)]
    if copies and (index is not None or sharded) and len(copies) < len(shards):
        # HF shards beside Mistral's consolidated file: the same weights twice.
        shards = [e for e in shards if e not in copies]
    else:
        copies = []
    cfg = st(config) if config is not None else None
    if shards or index is not None:
        if index is None and config is None and len(shards) > 1 and len(sharded) < len(shards):
            return _side_by_side(path, kind, shards, st, repo, rev, boundary)
        return [CheckpointSpec(path, kind, [st(e) for e in shards],
                               st(index) if index is not None else None, cfg, repo, rev,
                               copies=[st(e) for e in copies], boundary=boundary,
                               hf_quant_config=st(hq) if hq is not None else None)]
    others = [(e, f) for e in entries if (f := _other_format(e.name)) is not None]
    if not others:
        return []
    formats = {f for _, f in others}
    if len(formats) == 1 and len(others) > 1 and (
            config is not None or all("-of-" in e.name for e, _ in others)):
        return [CheckpointSpec(path, kind, [st(e) for e, _ in others], None, cfg, repo, rev,
                               format=formats.pop(), boundary=boundary)]
    return [CheckpointSpec(e.path, "file", [st(e)], repo=repo, revision=rev, format=f,
                           boundary=boundary) for e, f in others]


def _side_by_side(path: str, kind: str, shards: list[os.DirEntry[str]], st: Any,
                  repo: str | None, rev: str | None,
                  boundary: str | None) -> list[CheckpointSpec]:
    """Files with no index and no config to tie them: each -of-N set is one
    checkpoint (the directory's, if it is the only set), every other file its own."""
    sets: dict[tuple[str, str], list[os.DirEntry[str]]] = {}
    singles = []
    for e in shards:
        m = SHARD_NAME.match(e.name)
        if m:
            sets.setdefault((m["stem"], m["n"]), []).append(e)
        else:
            singles.append(e)
    out = [CheckpointSpec(path if len(sets) == 1 else members[0].path, kind,
                          [st(e) for e in members], repo=repo, revision=rev, boundary=boundary)
           for members in sets.values()]
    out += [CheckpointSpec(e.path, "file", [st(e)], repo=repo, revision=rev, boundary=boundary)
            for e in singles]
    return out


def _list(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def _list_noted(path: str, out: Discovery) -> list[os.DirEntry[str]] | None:
    """A directory's entries for discovery, or None with a note when it cannot be listed."""
    try:
        return _list(path)
    except OSError as exc:
        out.notes.append(Note(path, f"cannot list directory: {exc.strerror or exc}"))
        out.unlisted.append(path)
        return None


# ---------------------------------------------------------------- the Hugging Face cache


def _hf_snapshot_of(path: str) -> tuple[str, str, str] | None:
    """(repo, revision, repo folder) when `path` is inside models--X/snapshots/REV."""
    parts = path.split(os.sep)
    for i in range(len(parts) - 2):
        if parts[i].startswith(HF_PREFIX) and parts[i + 1] == "snapshots":
            repo = parts[i][len(HF_PREFIX):].replace("--", "/")
            return repo, parts[i + 2], os.sep.join(parts[:i + 1]) or os.sep
    return None


def _is_hf_repo(path: str) -> bool:
    return (os.path.basename(path.rstrip(os.sep)).startswith(HF_PREFIX)
            and os.path.isdir(os.path.join(path, "snapshots")))


def _is_hf_cache_root(entries: Sequence[os.DirEntry[str]]) -> bool:
    return any(e.name.startswith(HF_KINDS) and e.is_dir() for e in entries)


def hf_cache_dirs() -> list[str]:
    """Where the Hub's client keeps its cache: HF_HUB_CACHE, HF_HOME/hub, the default."""
    out = []
    if os.environ.get("HF_HUB_CACHE"):
        out.append(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface")
    out.append(os.path.join(home, "hub"))
    return out


def resolve_revision(repo_dir: str, revision: str | None = None) -> str:
    """The snapshot folder of `revision` (a ref such as ``main`` or ``pr/1``, a
    commit or a commit prefix) in an HF cache repository folder."""
    snaps = os.path.join(repo_dir, "snapshots")
    want = revision or "main"
    ref = os.path.join(repo_dir, "refs", want)
    with contextlib.suppress(OSError):
        with open(ref, encoding="utf-8") as f:
            commit = f.read(200).strip()
        if commit and os.path.isdir(os.path.join(snaps, commit)):
            return os.path.join(snaps, commit)
    try:
        commits = sorted(os.listdir(snaps))
    except OSError as exc:
        raise LayoutError(f"{repo_dir}: cannot list snapshots: {exc.strerror or exc}") from None
    if revision is not None:
        hits = [c for c in commits if c.startswith(revision)]
        if len(hits) == 1:
            return os.path.join(snaps, hits[0])
        raise LayoutError(f"{repo_dir}: no revision {revision!r} in the cache "
                          f"(refs: {', '.join(_refs(repo_dir)) or 'none'}; "
                          f"snapshots: {', '.join(c[:12] for c in commits) or 'none'})")
    if len(commits) == 1:
        return os.path.join(snaps, commits[0])
    if not commits:
        raise LayoutError(f"{repo_dir}: the cache holds no snapshot of this repository")
    # No refs/main: the most recent snapshot, as the Hub's client would have left it.
    return max((os.path.join(snaps, c) for c in commits), key=_mtime)


def _refs(repo_dir: str) -> list[str]:
    base = os.path.join(repo_dir, "refs")
    out = []
    for top, _dirs, files in os.walk(base):
        out += [os.path.relpath(os.path.join(top, f), base) for f in files]
    return sorted(out)


def _mtime(p: str) -> int:
    try:
        return os.stat(p).st_mtime_ns
    except OSError:
        return 0


def find_repo_id(repo_id: str) -> str | None:
    """The cache folder of ``ORG/NAME`` (models), or None."""
    if not _REPO_ID.match(repo_id):
        return None
    folder = HF_PREFIX + repo_id.replace("/", "--")
    for cache in hf_cache_dirs():
        candidate = os.path.join(cache, folder)
        if os.path.isdir(candidate):
            return candidate
    return None


# ---------------------------------------------------------------- diffusers


def _diffusers_components(path: str, entries: Sequence[os.DirEntry[str]]) -> list[str] | None:
    """The component folders model_index.json names (None: not a diffusers pipeline)."""
    if not any(e.name == MODEL_INDEX for e in entries):
        return None
    import orjson

    try:
        with open(os.path.join(path, MODEL_INDEX), "rb") as f:
            data = orjson.loads(f.read(1 << 20))
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    names = {e.name for e in entries if e.is_dir()}
    return sorted(k for k, v in data.items()
                  if not k.startswith("_") and isinstance(v, list) and len(v) == 2
                  and v[0] is not None and k in names)


def _component_specs(path: str, components: list[str], bound: str | None,
                     hf: tuple[str, str] | None) -> list[CheckpointSpec]:
    """One checkpoint per diffusers component folder (each its own boundary)."""
    specs = []
    for name in components:
        sub = os.path.join(path, name)
        try:
            sub_entries = _list(sub)
        except OSError:
            continue
        specs += [replace(s, kind="diffusers-component", component=name)
                  for s in _dir_specs(sub, sub_entries, None if bound is None else sub, hf)]
    return specs


# ---------------------------------------------------------------- resolve (report)


def resolve(path: str | os.PathLike[str], *, revision: str | None = None,
            follow_symlinks: bool = False,
            remote: RemoteOptions | None = None) -> list[CheckpointSpec]:
    """The checkpoints `path` holds, as ``ckptscan report`` scans them. A URL
    (``hf://``, ``http(s)://``, ``s3://``, ``gs://``, ``az://``) is listed
    remotely (`ckptscan.remote.layout`); `remote` sets how its source reads.

    Raises `LayoutError` when `path` does not exist (and is no cached repo id)."""
    raw = os.fspath(path)
    if is_url(raw):
        from .remote.layout import resolve_url

        return resolve_url(raw, revision=revision, options=remote)
    p = os.path.abspath(os.path.expanduser(raw))
    if not os.path.lexists(p):
        repo_dir = find_repo_id(raw)
        if repo_dir is None:
            where = ", ".join(hf_cache_dirs())
            raise LayoutError(f"{raw}: no such file or directory" + (
                f", and no such repository in the Hugging Face cache ({where})"
                if _REPO_ID.match(raw) else ""))
        p = repo_dir
    if os.path.isdir(p):
        return _resolve_dir(p, revision, follow_symlinks)
    if revision is not None:
        raise LayoutError(f"{raw}: --revision applies to a Hugging Face cache repository")
    return [_resolve_file(p, follow_symlinks)]


def _resolve_file(p: str, follow_symlinks: bool) -> CheckpointSpec:
    parent = os.path.dirname(p)
    hf = _hf_snapshot_of(parent)
    boundary = None if follow_symlinks else (hf[2] if hf else parent)
    fs = stat_file(p, boundary=None if follow_symlinks else (hf[2] if hf else None))
    repo, rev = (hf[0], hf[1]) if hf else (None, None)
    name = os.path.basename(p)
    if not name.endswith(SHARD_SUFFIX):
        fmt = _other_format(name) or "unknown"
        return CheckpointSpec(p, "file", [fs], repo=repo, revision=rev, format=fmt,
                              boundary=boundary)
    try:
        siblings = _list(parent)
    except OSError:
        siblings = []
    config = next((e for e in siblings if e.name == CONFIG_NAME), None)
    indexes = [e for e in siblings if e.name.endswith(INDEX_SUFFIX)]
    index = next((e for e in indexes if e.name == INDEX_NAME), indexes[0] if indexes else None)
    cfg = stat_file(config.path, config.name, config, boundary) if config else None
    idx = stat_file(index.path, index.name, index, boundary) if index else None
    hq = next((e for e in siblings if e.name == HF_QUANT_CONFIG_NAME), None)
    sharded = SHARD_NAME.match(name) is not None or idx is not None
    return CheckpointSpec(p, "shard" if sharded else "file", [fs], idx if sharded else None,
                          cfg, repo, rev, boundary=boundary,
                          hf_quant_config=stat_file(hq.path, hq.name, hq, boundary) if hq
                          else None)


def _resolve_dir(p: str, revision: str | None, follow_symlinks: bool) -> list[CheckpointSpec]:
    try:
        entries = _list(p)
    except OSError as exc:
        raise LayoutError(f"{p}: cannot list directory: {exc.strerror or exc}") from None
    if _is_hf_repo(p):
        snap = resolve_revision(p, revision)
        return _resolve_dir(snap, None, follow_symlinks)
    if revision is not None:
        raise LayoutError(f"{p}: --revision applies to a Hugging Face cache repository")
    hf = _hf_snapshot_of(p)
    boundary = p if not hf else hf[2]
    bound = None if follow_symlinks else boundary
    if _is_hf_cache_root(entries) and not any(e.name.endswith(SHARD_SUFFIX) for e in entries):
        specs = []
        for e in entries:
            if e.name.startswith(HF_PREFIX) and _is_hf_repo(e.path):
                with contextlib.suppress(LayoutError):
                    specs += _resolve_dir(resolve_revision(e.path), None, follow_symlinks)
        return specs
    components = _diffusers_components(p, entries)
    if components:
        return _component_specs(p, components, bound, (hf[0], hf[1]) if hf else None)
    specs = _dir_specs(p, entries, bound, (hf[0], hf[1]) if hf else None)
    if not specs:
        return [CheckpointSpec(p, "hf-snapshot" if hf else "dir", [],
                               repo=hf[0] if hf else None, revision=hf[1] if hf else None,
                               boundary=bound)]
    return specs


# ---------------------------------------------------------------- discover (farm)


def discover(roots: Iterable[str | os.PathLike[str]], *,
             follow_symlinks: bool = False,
             remote: RemoteOptions | None = None) -> Discovery:
    """Every checkpoint under `roots`, in path order. Only stats and directory
    listings: no file is opened, nothing is written. A root that does not exist
    is noted and listed in `unlisted`. A URL root (an object-store prefix,
    ``hf://ORG``, one checkpoint's URL) is listed remotely."""
    out = Discovery([], [])
    visited: dict[tuple[int, int], str] = {}
    for r in roots:
        if is_url(os.fspath(r)):
            from .remote.layout import discover_url

            discover_url(os.fspath(r), out, remote)
            continue
        root = os.path.abspath(os.path.expanduser(os.fspath(r)))
        out.roots.append(root)
        try:
            st = os.stat(root)
        except OSError as exc:
            out.notes.append(Note(root, f"cannot read: {exc.strerror or exc}"))
            out.unlisted.append(root)
            continue
        if stat.S_ISDIR(st.st_mode):
            _walk(root, st, visited, out, None if follow_symlinks else root)
        elif root.endswith(SHARD_SUFFIX) or _other_format(os.path.basename(root)):
            out.checkpoints.append(_resolve_file(root, follow_symlinks))
        else:
            out.notes.append(Note(root, "not a directory or a checkpoint file"))
    seen: set[str] = set()
    unique = []
    for spec in sorted(out.checkpoints, key=lambda s: s.path):
        if spec.path not in seen:  # overlapping roots
            seen.add(spec.path)
            unique.append(spec)
    out.checkpoints = unique
    return out


def _walk(top: str, top_stat: os.stat_result, visited: dict[tuple[int, int], str],
          out: Discovery, boundary: str | None) -> None:
    stack: list[tuple[str, os.stat_result, tuple[tuple[int, int], ...]]] = [(top, top_stat, ())]
    real_boundary = os.path.realpath(boundary) if boundary is not None else None
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
        entries = _list_noted(path, out)
        if entries is None:
            continue
        hf = _hf_snapshot_of(path)
        name = os.path.basename(path)
        if name.startswith(HF_PREFIX) and hf is None and any(
                e.name == "snapshots" for e in entries):
            # A Hugging Face cache repo: only its snapshots are checkpoints
            # (blobs/ holds the same data under hashes, refs/ names revisions).
            snaps = os.path.join(path, "snapshots")
            revs = _list_noted(snaps, out)
            if revs is None:
                continue
            snapshots = [(e.path, s) for e in revs if (s := _dir_stat(e)) is not None]
            stack.extend((p, s, (*ancestors, key)) for p, s in reversed(snapshots))
            continue
        # Inside an HF snapshot, symlinks point into the repository's blobs/.
        bound = None if boundary is None else (hf[2] if hf else boundary)
        hf_ids = (hf[0], hf[1]) if hf else None
        components = _diffusers_components(path, entries)
        if components:
            out.checkpoints += _component_specs(path, components, bound, hf_ids)
            for comp in components:  # walked as components: not again as plain folders
                with contextlib.suppress(OSError):
                    st_c = os.stat(os.path.join(path, comp))
                    visited[(st_c.st_dev, st_c.st_ino)] = os.path.join(path, comp)
        else:
            specs = _dir_specs(path, entries, bound, hf_ids)
            out.checkpoints += specs
            if not specs and not entries:
                out.notes.append(Note(path, "empty directory"))
        subdirs: list[tuple[str, os.stat_result]] = []
        for e in entries:
            if e.name in SKIP_DIRS or e.name.endswith(SHARD_SUFFIX):
                continue
            dst = _dir_stat(e)
            if dst is None:
                continue
            if real_boundary is not None and e.is_symlink() and not _under(
                    os.path.realpath(e.path), real_boundary):
                out.notes.append(Note(e.path, f"a symlink leaving the root (to "
                                              f"{os.path.realpath(e.path)}): not followed"))
                continue
            subdirs.append((e.path, dst))
        stack.extend((p, s, (*ancestors, key)) for p, s in reversed(subdirs))


def _dir_stat(e: os.DirEntry[str]) -> os.stat_result | None:
    """The stat of a directory entry that is (or links to) a directory."""
    try:
        if not e.is_dir():  # follows symlinks; False for loops and dangling links
            return None
        return e.stat()
    except OSError:
        return None
