"""What a URL holds, in the layouts `ckptscan.layout` knows for paths.

`resolve_url` is `layout.resolve` for a URL (``ckptscan report URL``,
`ckptscan.scan(url)`); `discover_url` is `layout.discover` for a farm root. A
directory's files are classified by the same rules as a local directory's
(`layout._dir_specs`); only the listing differs:

- ``hf://ORG/NAME[@REV][/SUBDIR]``: one API request lists the repository at
  the commit REV resolves to, with sizes and LFS hashes; ``hf://ORG``: the
  organisation's models, each listed so;
- ``s3://``, ``gs://``, ``az://``: the prefix's objects (sizes, ETags), one
  request per 1,000 keys;
- ``http(s)://`` directories cannot be listed: index.json names the shards
  (read once, reused by the scan) and config.json is probed beside it.

A URL ending in ``.safetensors`` is one file, scanned as a shard of its
directory's checkpoint when an index lies beside it (as for a local file).
Only listings, index.json, config.json and model_index.json are read here;
when a URL resolves to one checkpoint, the reads its scan starts with (its
headers) begin at once, in the background (`remote.fetch.prefetch`).
"""

from __future__ import annotations

import importlib
import posixpath
import sys
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from ..layout import (
    CONFIG_NAME,
    INDEX_NAME,
    INDEX_SUFFIX,
    MODEL_INDEX,
    SHARD_NAME,
    SHARD_SUFFIX,
    SKIP_DIRS,
    CheckpointSpec,
    Discovery,
    FileStat,
    LayoutError,
    Note,
    _dir_specs,
)
from ..sources import SourceError, open_source, scrub_url
from ..sources.base import Entry, Source
from ..sources.hf import HubSource, org_models, parse_hf_org, parse_hf_url
from .fetch import prefetch
from .refs import RemoteOptions, RemoteRef, join

#: repositories of an organisation listed at once
ORG_LISTINGS_IN_FLIGHT = 8
# A probe that finds nothing: the sibling is absent (a presigned URL's
# signature does not cover its siblings: refused is absent too).
_ABSENT = ("not-found", "forbidden", "unauthorized")


@dataclass(frozen=True)
class _Item:
    """A listed file as `_dir_specs` sees it: its name in its directory and its URL."""

    name: str
    path: str
    entry: Entry


@dataclass
class _Root:
    """An open source and how its files are named and shown."""

    src: Source
    shown: str            # the source's root URL as shown (no secrets, no trailing /)
    reopen: str           # the URL a worker opens (the Hub: pinned to the commit)
    hf: tuple[str, str] | None  # (repo, commit) on the Hub
    options: RemoteOptions


def resolve_url(url: str, *, revision: str | None = None,
                options: RemoteOptions | None = None) -> list[CheckpointSpec]:
    """The checkpoints a URL holds, as ``ckptscan report URL`` scans them.
    Raises `LayoutError` when the URL cannot be listed (naming why)."""
    options = options or RemoteOptions()
    _import_meanwhile()
    try:
        if parse_hf_org(url) is not None:
            found = Discovery([], [])
            discover_url(url, found, options)
            if found.unlisted and not found.checkpoints:
                raise LayoutError("; ".join(str(n) for n in found.notes))
            return found.checkpoints
        return _resolve(url, revision, options)
    except SourceError as exc:
        raise LayoutError(str(exc)) from None


def discover_url(url: str, out: Discovery, options: RemoteOptions | None = None) -> None:
    """Adds every checkpoint under the URL to `out` (a farm root): an object-store
    prefix walked whole, ``hf://ORG`` (each model), one repository, or one
    checkpoint's URL. What cannot be listed is noted and kept in `out.unlisted`."""
    options = options or RemoteOptions()
    shown = scrub_url(url).rstrip("/")
    out.roots.append(shown)
    try:
        if parse_hf_org(url) is not None:
            _discover_org(url, out, options)
            return
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("http", "https") or url.endswith(SHARD_SUFFIX):
            out.checkpoints += _resolve(url, None, options)
            return
        root = _open(url, None, options)[0]
        entries = root.src.list(recursive=True)
        out.checkpoints += _walk(root, entries)
    except (SourceError, LayoutError) as exc:
        out.notes.append(Note(shown, f"cannot list: {_reason(exc)}"))
        out.unlisted.append(shown)


def _import_meanwhile() -> None:
    """The scan that follows a resolve needs the pipeline (numpy, the checks,
    the taxonomy: 0.1-0.3 s of imports): import it while the listing waits on
    the network, not after."""
    if "ckptscan.pipeline" not in sys.modules:
        threading.Thread(target=importlib.import_module, args=("ckptscan.pipeline",),
                         name="ckptscan-import", daemon=True).start()


# ---------------------------------------------------------------- opening


def _open(url: str, revision: str | None, options: RemoteOptions) -> tuple[_Root, str | None]:
    """The source of the URL's directory and the file it names (None: the
    directory itself)."""
    scheme = urlsplit(url).scheme.lower()
    kw: dict[str, Any] = {"max_requests": options.max_requests, "retry": options.retry}
    if scheme == "hf":
        repo, rev, subdir = parse_hf_url(url)
        if revision is not None and rev is not None and revision != rev:
            raise LayoutError(f"{url}: two revisions given ({rev} and --revision {revision})")
        rev = revision or rev
        single = None
        if subdir.endswith(SHARD_SUFFIX):
            subdir, _, single = subdir.rpartition("/")
        at = f"@{quote(rev, safe='')}" if rev else ""
        tail = f"/{subdir}" if subdir else ""
        hub = HubSource(f"hf://{repo}{at}{tail}", **kw)
        commit = hub.resolve()  # the listing: one request
        return _Root(hub, f"hf://{repo}{at}{tail}", f"hf://{repo}@{commit}{tail}",
                     (repo, commit), options), single
    if revision is not None:
        raise LayoutError(f"{scrub_url(url)}: --revision applies to hf:// URLs and Hugging "
                          "Face cache repositories")
    parts = urlsplit(url)
    single = None
    if parts.path.endswith(SHARD_SUFFIX):
        single = posixpath.basename(parts.path)
    if scheme in ("http", "https"):
        src = open_source(url, **kw)  # knows a single file itself
        directory = parts._replace(path=posixpath.dirname(parts.path) + "/") if single \
            else parts
        return _Root(src, scrub_url(directory.geturl()).rstrip("/"), url, None, options), single
    if single is not None:
        url = parts._replace(path=posixpath.dirname(parts.path)).geturl()
    src = open_source(url, **kw)
    return _Root(src, src.url.rstrip("/"), url, None, options), single


def _resolve(url: str, revision: str | None, options: RemoteOptions) -> list[CheckpointSpec]:
    root, single = _open(url, revision, options)
    try:
        if single is not None:
            specs = [_single(root, single)]
        elif root.src.lists_files:
            entries = root.src.list(recursive=True)
            specs = _directory(root, "", entries)
        else:
            specs = [_http_directory(root)]
    except BaseException:
        root.src.close()
        raise
    if len(specs) == 1 and specs[0].remote is not None:  # the listing was for it alone
        specs[0].remote.listing = root.src.stats.as_dict()
        prefetch(specs[0])  # its headers are read while the caller gets ready to scan
    return specs


# ---------------------------------------------------------------- classifying


def _file(root: _Root, name: str, entry: Entry | None) -> FileStat:
    """A listed file (or one an index names: its size is learnt when read)."""
    path = join(root.shown, name)
    return FileStat(posixpath.basename(name), path, "file",
                    entry.size if entry else None, version=entry.version if entry else None)


def _ref(root: _Root, spec: CheckpointSpec, prefix: str) -> CheckpointSpec:
    files = [f for f in (spec.index, spec.config, *spec.shards, *spec.copies) if f is not None]
    names = {f.path: prefix + f.name for f in files}
    entries = tuple(e for n in names.values() if (e := root.src._known(n)) is not None)
    ref = RemoteRef(root.reopen, root.src.kind, names, entries,
                    root.hf[1] if root.hf else None, root.options,
                    endpoint=getattr(root.src, "endpoint", None), _live=root.src)
    return replace(spec, remote=ref, boundary=None)


def _single(root: _Root, name: str) -> CheckpointSpec:
    """One .safetensors URL, with its directory's config.json and index (as for a local file)."""
    src = root.src
    path = join(root.shown, name)
    repo, rev = root.hf if root.hf else (None, None)
    if src.lists_files:
        listed = {e.name: e for e in src.list(recursive=False)}
        if name not in listed:
            raise SourceError("not-found", path, "no such file")
        fs = _file(root, name, listed[name])
        indexes = sorted(n for n in listed if n.endswith(INDEX_SUFFIX))
        idx_name = INDEX_NAME if INDEX_NAME in listed else (indexes[0] if indexes else None)
        idx = _file(root, idx_name, listed[idx_name]) if idx_name else None
        cfg = _file(root, CONFIG_NAME, listed[CONFIG_NAME]) if CONFIG_NAME in listed else None
    else:  # plain HTTP: probe the siblings while nothing else waits
        fs = FileStat(name, path, "file")
        with ThreadPoolExecutor(2, thread_name_prefix="ckptscan-probe") as pool:
            idx_f, cfg_f = (pool.submit(_probe, root, n) for n in (INDEX_NAME, CONFIG_NAME))
            idx, cfg = idx_f.result(), cfg_f.result()
    sharded = SHARD_NAME.match(name) is not None or idx is not None
    spec = CheckpointSpec(path, "shard" if sharded else "file", [fs], idx if sharded else None,
                          cfg, repo, rev)
    return _ref(root, spec, "")


def _probe(root: _Root, name: str) -> FileStat | None:
    try:
        data = root.src.read_all(name)
    except SourceError as exc:
        if exc.code in _ABSENT:
            return None
        return FileStat(name, join(root.shown, name), "error", error=f"{exc.code}: {exc.reason}",
                        code=error_code(exc.code))
    known = root.src._known(name)
    return FileStat(name, join(root.shown, name), "file", len(data),
                    version=known.version if known else None)


def _http_directory(root: _Root) -> CheckpointSpec:
    """A plain HTTP directory: index.json names the shards; config.json probed."""
    from ..sources import discover

    found = discover(root.src)
    shards = [FileStat(n, join(root.shown, n), "file") for n in found.shards]
    idx = cfg = None
    if found.index_name is not None:
        known = root.src._known(found.index_name)
        idx = FileStat(found.index_name, join(root.shown, found.index_name), "file",
                       len(found.index_data or b""), version=known.version if known else None)
    if found.config_data is not None:
        known = root.src._known(CONFIG_NAME)
        cfg = FileStat(CONFIG_NAME, join(root.shown, CONFIG_NAME), "file",
                       len(found.config_data), version=known.version if known else None)
    elif CONFIG_NAME in found.errors:
        err = found.errors[CONFIG_NAME]
        cfg = FileStat(CONFIG_NAME, join(root.shown, CONFIG_NAME), "error",
                       error=f"{err.code}: {err.reason}", code=error_code(err.code))
    return _ref(root, CheckpointSpec(root.shown, "dir", shards, idx, cfg), "")


def _directory(root: _Root, prefix: str, entries: Sequence[Entry],
               component: str | None = None) -> list[CheckpointSpec]:
    """The checkpoints one listed directory's own files make (`prefix`: its
    path under the source's root, "" or ending in "/")."""
    here = [e for e in entries if e.name.startswith(prefix) and "/" not in e.name[len(prefix):]]
    items = [_Item(e.name[len(prefix):], join(root.shown, e.name), e) for e in here]
    path = join(root.shown, prefix.rstrip("/"))
    components = _diffusers(root, prefix, items, entries) if component is None else None
    if components:
        return [replace(s, kind="diffusers-component", component=c)
                for c in components for s in _directory(root, f"{prefix}{c}/", entries, c)]

    def stat(item: _Item) -> FileStat:
        return FileStat(item.name, item.path, "file", item.entry.size,
                        version=item.entry.version)

    specs = _dir_specs(path, items, path, root.hf, stat)  # type: ignore[arg-type]
    if not specs and component is None:
        repo, rev = root.hf if root.hf else (None, None)
        specs = [CheckpointSpec(path, "hf-snapshot" if root.hf else "dir", [], repo=repo,
                                revision=rev)]
    return [_ref(root, s, prefix) for s in specs]


def _diffusers(root: _Root, prefix: str, items: Sequence[_Item],
               entries: Sequence[Entry]) -> list[str] | None:
    """The component folders model_index.json names (None: not a diffusers pipeline)."""
    if not any(i.name == MODEL_INDEX for i in items):
        return None
    try:
        data = orjson.loads(root.src.read_all(prefix + MODEL_INDEX, 1 << 20))
    except (SourceError, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    dirs = {e.name[len(prefix):].partition("/")[0] for e in entries
            if e.name.startswith(prefix) and "/" in e.name[len(prefix):]}
    return sorted(k for k, v in data.items() if not k.startswith("_") and isinstance(v, list)
                  and len(v) == 2 and v[0] is not None and k in dirs)


def _walk(root: _Root, entries: Sequence[Entry]) -> list[CheckpointSpec]:
    """Every checkpoint in a listing: each directory's own, diffusers pipelines
    as their components (what `layout.discover` finds on disk)."""
    dirs: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        parent = e.name.rpartition("/")[0]
        if not SKIP_DIRS.intersection(parent.split("/")):
            dirs[parent].append(e)
    out: list[CheckpointSpec] = []
    inside: list[str] = []  # diffusers pipelines: their folders are components
    for d in sorted(dirs):
        if any(d == p or d.startswith(p + "/") for p in inside):
            continue
        prefix = f"{d}/" if d else ""
        specs = _directory(root, prefix, entries)
        if any(s.kind == "diffusers-component" for s in specs):
            inside.append(d)
        out += [s for s in specs if s.shards or s.index is not None]
    return out


def _discover_org(url: str, out: Discovery, options: RemoteOptions) -> None:
    models, _stats = org_models(url, max_requests=options.max_requests, retry=options.retry)

    def listed(model: tuple[str, str | None]) -> tuple[str, list[CheckpointSpec] | Exception]:
        repo, sha = model
        try:
            src = HubSource(f"hf://{repo}@{sha or 'main'}", max_requests=options.max_requests,
                            retry=options.retry)
        except SourceError as exc:
            return repo, exc
        try:
            entries = src.list()
            commit = src.resolve()
            root = _Root(src, f"hf://{repo}", f"hf://{repo}@{commit}", (repo, commit), options)
            return repo, _walk(root, entries)
        except SourceError as exc:
            src.close()
            return repo, exc

    in_flight = min(ORG_LISTINGS_IN_FLIGHT, options.max_requests or ORG_LISTINGS_IN_FLIGHT)
    with ThreadPoolExecutor(in_flight, thread_name_prefix="ckptscan-org") as pool:
        for repo, got in pool.map(listed, models):
            if isinstance(got, Exception):
                out.notes.append(Note(f"hf://{repo}", f"cannot list: {_reason(got)}"))
                out.unlisted.append(f"hf://{repo}")
            else:
                out.checkpoints += got


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SourceError):
        return f"{exc.code}: {exc.reason}"
    return str(exc)


# SourceError code -> finding code (ckptscan.codes) for a file that could not be read.
_ERROR_CODES = {
    "not-found": "shard-missing", "unauthorized": "remote-denied", "forbidden": "remote-denied",
    "changed": "file-changed", "truncated": "truncated", "connection": "remote-unreachable",
    "server-error": "remote-unreachable", "rate-limited": "remote-rate-limited",
    "too-large": "limit-exceeded",
}


def error_code(source_code: str) -> str:
    """The finding code of a read that failed with this SourceError code."""
    return _ERROR_CODES.get(source_code, "remote-error")


__all__ = ["discover_url", "error_code", "resolve_url"]
