"""``ckptscan report LOCAL --against hf://ORG/NAME[@REV]``: is my copy intact?

Every file the reference lists (the Hub's API gives each file's size, and the
LFS sha256 or git blob id, without downloading anything) is compared with the
local copy: a file that is absent, shorter (an interrupted download), of
another size, or (``--hash``) of other content is a root-cause finding for
that file, so that the parser's "header is malformed" for the same file is
explained by it; a local file the reference lacks is a warning. Directories
tools keep beside a copy (``.git``, ``.cache`` ...) are not compared.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .. import codes
from ..context import ScanContext
from ..errors import CkptScanError
from ..layout import SKIP_DIRS, CheckpointSpec
from ..sources import SourceError, open_source, scrub_url
from ..sources.base import Entry

_CHUNK = 8 << 20
#: files hashed at once (hashlib releases the GIL on large updates)
HASH_JOBS = 4


@dataclass(frozen=True)
class Reference:
    """The listing of what a copy is compared with: file name -> what the
    source says of it (size, LFS sha256 or git blob id)."""

    url: str
    files: dict[str, Entry]


def reference(url: str, hash: bool = False) -> Reference:
    """Lists `url` (hf://, or an object-store prefix for sizes alone). Raises
    `CkptScanError` when it cannot be listed."""
    return Reference(scrub_url(url), _listing(url, hash))


def check_against(ctx: ScanContext, spec: CheckpointSpec, ref: Reference | str,
                  hash: bool) -> None:
    """Findings, in `ctx.findings`, for each local file that differs from the
    reference (a `Reference`, or a URL listed now)."""
    if isinstance(ref, str):
        ref = reference(ref, hash)
    url = ref.url
    if spec.kind in ("file", "shard"):
        root, only = os.path.dirname(spec.path), os.path.basename(spec.path)
    else:
        root, only = spec.path, None
    listed = ref.files
    if only is not None:
        listed = {n: e for n, e in listed.items() if n == only}
    local = _local_files(root) if only is None else (
        {only: os.path.getsize(spec.path)} if os.path.exists(spec.path) else {})
    fs = ctx.findings
    to_hash: list[tuple[str, Entry]] = []
    for name, entry in sorted(listed.items()):
        path = os.path.join(root, *name.split("/"))
        want = entry.size
        if name not in local:
            fs.root(path, codes.finding("copy-missing", f"the reference ({url}) has it "
                                        f"({_size(want)}); this copy does not", path,
                                        expected_size=want))
        elif want is not None and local[name] < want:
            fs.root(path, codes.finding(
                "copy-truncated", f"{local[name]:,} bytes where the reference has {want:,} "
                f"({want - local[name]:,} missing: an interrupted download?)", path,
                size=local[name], expected_size=want))
        elif want is not None and local[name] != want:
            fs.root(path, codes.finding(
                "copy-corrupt", f"{local[name]:,} bytes where the reference has {want:,}",
                path, size=local[name], expected_size=want))
        elif hash:
            to_hash.append((path, entry))
    for path, got, want_hash, kind in _hashed(to_hash):
        fs.root(path, codes.finding(
            "copy-corrupt", f"{kind} {got} differs from the reference's {want_hash} (same "
            "size, other bytes)", path, **{kind.replace("-", "_"): got, "expected": want_hash}))
    for name in sorted(set(local) - set(listed)):
        path = os.path.join(root, *name.split("/"))
        fs.add(codes.finding("copy-extra", f"not in the reference ({url})", path))


def _listing(url: str, hash: bool) -> dict[str, Entry]:
    try:
        with open_source(url) as src:
            if not src.lists_files:
                raise CkptScanError(f"--against {url}: a source that can list its files "
                                    "(hf://, s3://, gs://, az://)")
            entries = src.list(recursive=True)
            kind = src.kind
    except SourceError as exc:
        raise CkptScanError(f"--against: {exc}") from None
    if hash and kind != "hf":
        raise CkptScanError("--hash compares the Hub's SHA-256: --against an hf:// URL")
    return {e.name: e for e in entries if not SKIP_DIRS.intersection(e.name.split("/")[:-1])}


def _local_files(root: str) -> dict[str, int]:
    """Every file under `root` (name relative, with /) and its size."""
    out: dict[str, int] = {}
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        rel = os.path.relpath(top, root)
        for f in files:
            name = f if rel == "." else f"{rel.replace(os.sep, '/')}/{f}"
            try:
                out[name] = os.path.getsize(os.path.join(top, f))
            except OSError:
                continue  # a dangling link: absent
    return out


def _hashed(items: list[tuple[str, Entry]]) -> list[tuple[str, str, str, str]]:
    """(path, local digest, reference digest, what) of each mismatch."""
    def one(item: tuple[str, Entry]) -> tuple[str, str, str, str] | None:
        path, entry = item
        if entry.sha256:  # an LFS file: its content's SHA-256
            h = hashlib.sha256()
            want, kind = entry.sha256, "sha256"
        elif entry.version:  # a small file in git: sha1 of "blob SIZE\0" + content
            h = hashlib.sha1(b"blob %d\0" % os.path.getsize(path))
            want, kind = entry.version, "git-blob-id"
        else:
            return None
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        got = h.hexdigest()
        return None if got == want else (path, got, want, kind)

    with ThreadPoolExecutor(HASH_JOBS, thread_name_prefix="ckptscan-hash") as pool:
        return [r for r in pool.map(one, items) if r is not None]


def _size(n: int | None) -> str:
    return "size unknown" if n is None else f"{n:,} bytes"


__all__ = ["HASH_JOBS", "Reference", "check_against", "reference"]
