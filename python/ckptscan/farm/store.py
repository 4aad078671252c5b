"""The farm's result store: one SQLite file (Python's sqlite3, WAL mode).

Tables (schema version in ``PRAGMA user_version``, see ``SCHEMA_SQL``):

- ``checkpoints``: one row per checkpoint, keyed by its absolute path: the
  summary columns of its `Report`, the fingerprint of its files, and the whole
  report as JSON (``report``), so that any renderer can show a stored
  checkpoint without opening it again.
- ``shards``: one row per ``*.safetensors`` file of a checkpoint with the
  fingerprint fields (size, mtime_ns, ctime_ns, inode, dev) it was scanned at.
- ``findings``: one row per finding of a checkpoint.

Every checkpoint is written in one short transaction (its rows deleted and
inserted again), so a reader or a second writer only ever sees a checkpoint
wholly before or wholly after a scan, and an interrupted scan loses nothing
that was committed. Readers run under an authorizer that allows reads only.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import CkptScanError
from ..render.console import printable

if TYPE_CHECKING:
    from ..pipeline import ShardRow

SCHEMA_VERSION = 3
SCHEMA_NAME = "ckptscan.farm/3"
BUSY_TIMEOUT_MS = 60_000

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS checkpoints (
    path             TEXT PRIMARY KEY,  -- absolute path as discovered (HF snapshots not resolved)
    kind             TEXT NOT NULL,     -- dir, hf-snapshot, file, shard, diffusers-component
    format           TEXT NOT NULL,     -- safetensors, or another format (named, not read)
    component        TEXT,              -- diffusers pipeline: the component's name
    repo             TEXT,              -- Hugging Face cache: ORG/NAME
    revision         TEXT,              -- Hugging Face cache: snapshot (commit) id
    model_type       TEXT,              -- config.json model_type
    family           TEXT,              -- taxonomy family used
    shards           INTEGER NOT NULL,  -- .safetensors files found
    missing_shards   INTEGER NOT NULL,  -- named by index.json, not on disk
    tensors          INTEGER NOT NULL,
    parameters       INTEGER NOT NULL,  -- logical weights (packed values counted, scales not)
    bytes            INTEGER NOT NULL,  -- tensor data bytes
    dtypes           TEXT NOT NULL,     -- JSON {dtype: {tensors, parameters, bytes}}
    main_dtype       TEXT,              -- logical format of most of the decoder's weights
    quant_method     TEXT,              -- declared scheme (fp8, compressed-tensors/..., mlx/...)
    quant_format     TEXT,              -- quantized weights' format (E4M3, E2M1, INT4, mixed: ...)
    quant_block      TEXT,              -- block size as "128x128"
    schemes          TEXT,              -- stored layouts, comma separated
    bits_per_weight  REAL,              -- stored bits per parameter, scales included
    fp8_tensors      INTEGER NOT NULL,
    scale_tensors    INTEGER NOT NULL,
    errors           INTEGER NOT NULL,
    warnings         INTEGER NOT NULL,
    infos            INTEGER NOT NULL,
    deep             INTEGER NOT NULL,  -- 1 when scanned with --deep
    fingerprint      TEXT NOT NULL,     -- digest of the files (size, mtime_ns, ctime_ns, inode)
    ckptscan_version TEXT NOT NULL,
    scanned_at       TEXT NOT NULL,     -- UTC, ISO 8601
    scan_seconds     REAL NOT NULL,
    report           TEXT NOT NULL      -- Report.to_dict() as JSON
);
CREATE TABLE IF NOT EXISTS shards (
    checkpoint   TEXT NOT NULL REFERENCES checkpoints(path) ON DELETE CASCADE,
    name         TEXT NOT NULL,         -- file name inside the checkpoint
    path         TEXT NOT NULL,         -- as discovered (may be a symlink)
    target       TEXT,                  -- what a symlink resolves to (HF blobs)
    size         INTEGER,               -- NULL when stat failed
    mtime_ns     INTEGER,
    ctime_ns     INTEGER,
    inode        INTEGER,
    dev          INTEGER,
    tensors      INTEGER,               -- NULL when not parsed
    header_bytes INTEGER,
    problems     INTEGER NOT NULL,      -- problems the reader found in this file
    error        TEXT,                  -- why it could not be read, if so
    PRIMARY KEY (checkpoint, name)
);
CREATE TABLE IF NOT EXISTS findings (
    checkpoint TEXT NOT NULL REFERENCES checkpoints(path) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,        -- order in the report
    code       TEXT NOT NULL,
    severity   TEXT NOT NULL,           -- error | warning | info
    message    TEXT NOT NULL,
    file       TEXT,
    tensor     TEXT,
    detail     TEXT,                    -- JSON object or NULL
    cause      INTEGER,                 -- seq of the root cause that explains it (NULL: none)
    PRIMARY KEY (checkpoint, seq)
);
CREATE INDEX IF NOT EXISTS findings_code ON findings(code);
CREATE INDEX IF NOT EXISTS shards_inode ON shards(dev, inode);
"""

#: The columns of `checkpoints` a listing shows (everything but the report blob).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "path", "kind", "format", "component", "repo", "revision", "model_type", "family", "shards",
    "missing_shards", "tensors", "parameters", "bytes", "dtypes", "main_dtype", "quant_method",
    "quant_format", "quant_block", "schemes", "bits_per_weight", "fp8_tensors", "scale_tensors",
    "errors", "warnings", "infos",
    "deep", "fingerprint", "ckptscan_version", "scanned_at", "scan_seconds",
)
FINDING_COLUMNS: tuple[str, ...] = (
    "checkpoint", "seq", "code", "severity", "message", "file", "tensor", "detail", "cause")


class StoreError(CkptScanError):
    """The store cannot be used (newer schema, not a ckptscan store) or a query is invalid."""


def default_db_path() -> Path:
    """``$XDG_CACHE_HOME/ckptscan/farm.db`` (default ``~/.cache/ckptscan/farm.db``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ckptscan" / "farm.db"


@dataclass
class CheckpointRecord:
    """What the store keeps of one scanned checkpoint: its Report and how its files looked."""

    path: str
    kind: str
    report: Any  # result.Report
    fingerprint: str
    shards: list[ShardRow] = field(default_factory=list)
    repo: str | None = None
    revision: str | None = None
    deep: bool = False
    seconds: float = 0.0
    version: str = ""


# ---------------------------------------------------------------- read-only queries

#: `--where` is run by a trusted operator, but still only reads: these SQL
#: functions and nothing else (no load_extension, no fts3_tokenizer ...).
ALLOWED_FUNCTIONS = frozenset({
    "abs", "avg", "coalesce", "count", "date", "datetime", "glob", "group_concat", "hex",
    "ifnull", "iif", "instr", "json", "json_array_length", "json_each", "json_extract",
    "json_type", "json_valid", "julianday", "length", "like", "lower", "ltrim", "max", "min",
    "nullif", "printf", "format", "regexp", "replace", "round", "rtrim", "sign", "strftime",
    "substr", "substring", "sum", "time", "total", "trim", "typeof", "unixepoch", "upper",
})
#: A `--where` query that runs longer than this is stopped.
QUERY_SECONDS = 10.0


def _read_only(action: int, arg1: str | None, arg2: str | None, *_args: Any) -> int:
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in ALLOWED_FUNCTIONS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def store_error(path: str, exc: BaseException, doing: str) -> StoreError:
    """One clear sentence for what SQLite or the OS said."""
    text = str(exc)
    low = text.lower()
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        why = f"is corrupt ({text}): move it away, the next scan builds a new one"
    elif "disk is full" in low or "no space" in low or getattr(exc, "errno", None) == 28:
        why = ("the disk is full: the store keeps every checkpoint written before this one "
               f"({text})")
    elif "readonly" in low or "read-only" in low:
        why = f"is read-only ({text})"
    elif "locked" in low or "busy" in low:
        why = f"is locked by another process ({text})"
    elif "unable to open" in low or isinstance(exc, OSError):
        why = f"cannot be opened ({text})"
    else:
        why = f"failed ({text})"
    return StoreError(f"{path}: {doing}: the store {why}")


class Store:
    """A farm store. One connection; use it from one thread (the farm's writer).

    `readonly=True` opens it for queries only (nothing is written, so a store on
    a read-only mount or without write permission can be queried). Every SQLite
    or OS error becomes a `StoreError` with one clear sentence.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, create: bool = True,
                 readonly: bool = False) -> None:
        self.path = str(default_db_path() if path is None else path)
        self.readonly = readonly
        self.upgraded_from: int | None = None  # an older store dropped (a rescan follows)
        memory = self.path == ":memory:"
        if not memory:
            self._check_file(create and not readonly)
        try:
            if readonly and not memory:
                self.conn = self._connect_read_only()
            else:
                self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                            isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise store_error(self.path, exc, "opening") from None
        try:
            if readonly:
                self._check_version(self.conn.execute("PRAGMA user_version").fetchone()[0])
            else:
                self._setup_retrying()
        except (sqlite3.Error, OSError) as exc:
            self.conn.close()
            raise store_error(self.path, exc, "opening") from None
        except StoreError:
            self.conn.close()
            raise

    def _check_file(self, create: bool) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if not create:
                raise StoreError(f"{self.path}: no such store") from None
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise store_error(self.path, exc, "creating") from None
            return
        except OSError as exc:
            raise store_error(self.path, exc, "opening") from None
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the open
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise StoreError(f"{self.path}: {kind}, not a ckptscan store")

    def _connect_read_only(self) -> sqlite3.Connection:
        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path))
        try:
            conn = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA user_version").fetchone()
            return conn
        except sqlite3.OperationalError:
            # A WAL store on a read-only mount cannot create its -shm file: read it
            # as an immutable file (nobody can be writing to a read-only mount).
            return sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None,
                                   check_same_thread=False)

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: store schema {version} is newer than this ckptscan "
                             f"({SCHEMA_VERSION}); upgrade ckptscan or use another --db")
        if 0 < version < SCHEMA_VERSION:
            raise StoreError(f"{self.path}: store schema {version} is older than this ckptscan's "
                             f"({SCHEMA_VERSION}); a scan (farm ROOT ...) upgrades it")

    def _setup_retrying(self) -> None:
        """Switching a new store to WAL takes an exclusive lock, and SQLite answers
        "database is locked" at once (no busy handler) when another process is
        doing the same: retry within the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.005
        while True:
            try:
                self._setup()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    # ---- schema ---------------------------------------------------------------
    def _setup(self) -> None:
        c = self.conn
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        c.execute("PRAGMA journal_mode = WAL")  # ":memory:" stays "memory"
        c.execute("PRAGMA synchronous = NORMAL")
        c.execute("PRAGMA foreign_keys = ON")
        version = c.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            self._check_version(version)
        with self.transaction():
            version = c.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in c.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables - {"meta", "checkpoints", "shards", "findings"}:
                raise StoreError(f"{self.path}: holds other tables; not a ckptscan store")
            if 0 < version < SCHEMA_VERSION:
                # The store is a cache of scans: an older layout is dropped and the
                # next run scans everything again (say so: `upgraded_from`).
                for table in ("findings", "shards", "checkpoints", "meta"):
                    c.execute(f"DROP TABLE IF EXISTS {table}")
                self.upgraded_from = version
                version = 0
            if version == 0:
                for stmt in SCHEMA_SQL.split(";"):
                    if stmt.strip():
                        c.execute(stmt)
                c.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_NAME,))
                c.execute("INSERT OR REPLACE INTO meta VALUES ('created_at', ?)", (_utc_now(),))
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back on any exception (Ctrl-C included).
        SQLite and OS errors (a full disk ...) become a `StoreError`."""
        c = self.conn
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:  # SQLite may have rolled back already (disk full)
                    with contextlib.suppress(sqlite3.Error):
                        c.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            raise store_error(self.path, exc, "writing") from None

    @contextmanager
    def _reading(self, doing: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise store_error(self.path, exc, doing) from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing ----------------------------------------------------------------
    def known(self) -> dict[str, tuple[str, bool, str]]:
        """path -> (fingerprint, deep, ckptscan_version) of every stored checkpoint."""
        with self._reading("reading"):
            return {p: (fp, bool(d), v) for p, fp, d, v in self.conn.execute(
                "SELECT path, fingerprint, deep, ckptscan_version FROM checkpoints")}

    def put(self, rec: CheckpointRecord) -> None:
        """Replaces one checkpoint's rows in one transaction. Paths and names that
        are not UTF-8 are stored with their bytes escaped (`printable`)."""
        from ..render.json import jsonable

        r = rec.report
        summary = jsonable(r.to_dict())
        rec = replace(rec, path=printable(rec.path), shards=[
            replace(x, name=printable(x.name), path=printable(x.path),
                    target=None if x.target is None else printable(x.target),
                    error=None if x.error is None else printable(x.error))
            for x in rec.shards])
        counts = summary["summary"]
        dtypes = summary["dtypes"]
        q = r.quantization
        src = r.source
        row = (
            rec.path, rec.kind, src.format, src.component, rec.repo, rec.revision, r.model_type,
            r.family,
            len(r.shards.found), len(r.shards.missing), r.total.tensors, r.total.parameters,
            r.total.bytes, _json(dtypes), q.main_format, q.method, q.format,
            "x".join(map(str, q.block_size)) if q.block_size else None,
            ",".join(str(x["name"]) for x in q.schemes) or None, q.bits_per_weight,
            q.fp8_tensors, q.scale_tensors, counts["error"], counts["warning"], counts["info"],
            int(rec.deep), rec.fingerprint, rec.version, _utc_now(), round(rec.seconds, 6),
            _json(summary),
        )
        shard_rows = [(rec.path, s.name, s.path, s.target, s.size, s.mtime_ns, s.ctime_ns,
                       s.inode, s.dev, s.tensors, s.header_bytes, s.problems, s.error)
                      for s in rec.shards]
        finding_rows: list[tuple[Any, ...]] = []
        for f in r.findings:  # a root cause, then what it explains (cause = its seq)
            cause = len(finding_rows)
            for g, parent in ((f, None), *((x, cause) for x in f.explains)):
                finding_rows.append((rec.path, len(finding_rows), g.code, str(g.severity),
                                     printable(g.message), _opt(g.file), _opt(g.tensor),
                                     _json(jsonable(g.detail)) if g.detail else None, parent))
        with self.transaction() as c:
            c.execute("DELETE FROM findings WHERE checkpoint = ?", (rec.path,))
            c.execute("DELETE FROM shards WHERE checkpoint = ?", (rec.path,))
            c.execute("DELETE FROM checkpoints WHERE path = ?", (rec.path,))
            c.execute(f"INSERT INTO checkpoints VALUES ({', '.join('?' * len(row))})", row)
            c.executemany("INSERT INTO shards VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", shard_rows)
            c.executemany("INSERT INTO findings VALUES (?,?,?,?,?,?,?,?,?)", finding_rows)

    def prune(self, roots: Sequence[str], keep: Iterable[str],
              protect: Sequence[str] = ()) -> list[str]:
        """Deletes checkpoints stored under `roots` (or equal to one) that are not in
        `keep` (they are gone from disk), except those under `protect` (directories
        that could not be listed this time). Returns the paths removed."""
        keep = set(keep)
        gone = []
        for path in self.paths():
            if (path not in keep and any(_under(path, root) for root in roots)
                    and not any(_under(path, p) for p in protect)):
                gone.append(path)
        if gone:
            with self.transaction() as c:
                for path in gone:
                    c.execute("DELETE FROM findings WHERE checkpoint = ?", (path,))
                    c.execute("DELETE FROM shards WHERE checkpoint = ?", (path,))
                    c.execute("DELETE FROM checkpoints WHERE path = ?", (path,))
        return gone

    # ---- reading ----------------------------------------------------------------
    def paths(self) -> list[str]:
        with self._reading("reading"):
            return [p for (p,) in self.conn.execute(
                "SELECT path FROM checkpoints ORDER BY path")]

    def query(self, where: str | None = None, paths: Iterable[str] | None = None,
              table: str = "checkpoints") -> list[dict[str, Any]]:
        """Rows of `checkpoints` (summary columns) or `findings`, filtered by a SQL
        boolean expression `where` (read-only: anything but a read is refused) and
        optionally restricted to checkpoints in `paths`. Ordered by path."""
        if table == "checkpoints":
            cols, key, order = SUMMARY_COLUMNS, "path", "path"
        elif table == "findings":
            cols, key, order = FINDING_COLUMNS, "checkpoint", "checkpoint, seq"
        else:
            raise StoreError(f"unknown table {table!r}")
        sql = f"SELECT {', '.join(cols)} FROM {table}"
        if where:
            sql += f" WHERE ({where})"
        sql += f" ORDER BY {order}"
        wanted = None if paths is None else set(paths)
        c = self.conn
        deadline = time.monotonic() + QUERY_SECONDS
        c.set_authorizer(_read_only)
        # Checked every 10,000 SQLite steps: a cross join cannot run forever.
        c.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            cur = c.execute(sql)
            rows = [dict(zip(cols, r, strict=True)) for r in cur]
        except (sqlite3.ProgrammingError, sqlite3.Warning) as exc:  # two statements ...
            raise StoreError(f"invalid --where {where!r}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            text = str(exc).lower()
            if "interrupted" in text:
                raise StoreError(f"--where {where!r} ran past {QUERY_SECONDS:g} s: "
                                 "stopped") from None
            if "not authorized" in text:
                raise StoreError(f"--where {where!r}: only reads of the store's columns and "
                                 "the usual SQL functions are allowed") from None
            if where and isinstance(exc, sqlite3.OperationalError) and not any(
                    w in text for w in ("malformed", "not a database", "disk i/o", "locked")):
                raise StoreError(f"invalid --where {where!r}: {exc}") from None
            raise store_error(self.path, exc, "reading") from None
        except (sqlite3.Error, OSError) as exc:
            raise store_error(self.path, exc, "reading") from None
        finally:
            c.set_authorizer(None)
            c.set_progress_handler(None, 0)
        if wanted is not None:
            rows = [r for r in rows if r[key] in wanted]
        return rows

    def load_report(self, path: str) -> Any:
        """The stored `Report` of one checkpoint (None if not stored)."""
        with self._reading("reading"):
            row = self.conn.execute("SELECT report FROM checkpoints WHERE path = ?",
                                    (path,)).fetchone()
        if row is None:
            return None
        from ..result import Report

        return Report.from_dict(orjson.loads(row[0]))

    def integrity(self) -> str:
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])


def _opt(text: str | None) -> str | None:
    return None if text is None else printable(text)


def _under(path: str, root: str) -> bool:
    root = root.rstrip(os.sep) or os.sep
    return path == root or path.startswith(root if root.endswith(os.sep) else root + os.sep)


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
