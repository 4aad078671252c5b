"""Checkpoint farms: discovery (plain directories, the Hugging Face cache, single
files), the SQLite store, incremental rescans, interruption, concurrent scans,
bad input, and the Dask path on a real LocalCluster.

References are independent of the code under test: tensor counts come from the
arrays written with the `safetensors` library or from the replica layouts, the
store is read with plain `sqlite3`, file opens are counted by the kernel
(inotify), and nothing under a root may change (tree snapshots compared)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import math
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from ckptscan import scan
from ckptscan.cli import main
from ckptscan.farm import discover, scan_farm, scan_group
from ckptscan.farm.store import Store
from ckptscan.replica import LAYOUTS, copy_replica

safetensors_numpy = pytest.importorskip("safetensors.numpy")

INDEX = "model.safetensors.index.json"


# ---------------------------------------------------------------- building farms


def write_small(d: Path, n_shards: int = 2, layers: int = 2, seed: int = 0,
                index: bool = True, config: bool = True) -> dict[str, int]:
    """A small real checkpoint written with the safetensors library. Returns the
    expected totals, computed from the numpy arrays."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {"model.embed_tokens.weight":
                                      rng.standard_normal((32, 8)).astype(np.float16)}
    for i in range(layers):
        p = f"model.layers.{i}"
        tensors[f"{p}.self_attn.q_proj.weight"] = rng.standard_normal((8, 8)).astype(np.float16)
        tensors[f"{p}.mlp.up_proj.weight"] = rng.standard_normal((16, 8)).astype(np.float16)
        tensors[f"{p}.input_layernorm.weight"] = np.ones(8, np.float32)
    names = sorted(tensors)
    wm = {}
    for k in range(n_shards):
        part = names[k::n_shards]
        fname = (f"model-{k + 1:05d}-of-{n_shards:05d}.safetensors" if n_shards > 1
                 else "model.safetensors")
        safetensors_numpy.save_file({n: tensors[n] for n in part}, str(d / fname))
        wm.update(dict.fromkeys(part, fname))
    total = sum(a.nbytes for a in tensors.values())
    if index and n_shards > 1:
        (d / INDEX).write_bytes(orjson.dumps({"metadata": {"total_size": total},
                                              "weight_map": wm}))
    if config:
        (d / "config.json").write_bytes(orjson.dumps({"model_type": "tiny",
                                                      "num_hidden_layers": layers}))
    return {"tensors": len(tensors), "parameters": sum(a.size for a in tensors.values()),
            "bytes": total, "shards": n_shards}


def make_hf_cache(hub: Path) -> dict[str, Any]:
    """models--acme--tiny with two revisions sharing one shard blob, index and config."""
    repo = hub / "models--acme--tiny"
    blobs = repo / "blobs"
    blobs.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("rev2" + "0" * 36)
    expected = {}
    for rev, seed in (("rev1" + "0" * 36, 1), ("rev2" + "0" * 36, 2)):
        tmp = hub.parent / f"hf-src-{rev[:4]}"
        expected[rev] = write_small(tmp, seed=1)
        if seed == 2:  # the second shard differs in rev2
            t = {"model.extra_head.weight": np.zeros((4, 4), np.float32)}
            part = safetensors_numpy.load_file(str(tmp / "model-00002-of-00002.safetensors"))
            part.update(t)
            safetensors_numpy.save_file(part, str(tmp / "model-00002-of-00002.safetensors"))
            wm = orjson.loads((tmp / INDEX).read_bytes())
            wm["weight_map"]["model.extra_head.weight"] = "model-00002-of-00002.safetensors"
            (tmp / INDEX).write_bytes(orjson.dumps(wm))
            expected[rev]["tensors"] += 1
            expected[rev]["parameters"] += 16
            expected[rev]["bytes"] += 64
        snap = repo / "snapshots" / rev
        snap.mkdir(parents=True)
        for f in sorted(tmp.iterdir()):
            data = f.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if not (blobs / digest).exists():
                (blobs / digest).write_bytes(data)
            os.symlink(f"../../blobs/{digest}", snap / f.name)
        shutil.rmtree(tmp)
    return {"repo": repo, "expected": expected}


def tree_state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything a write under `root` would change (not atime)."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size, st.st_mtime_ns,
                                             st.st_ctime_ns, st.st_ino)
        st = os.lstat(dirpath)
        out[os.path.relpath(dirpath, root) + "/."] = (st.st_mode, st.st_mtime_ns, st.st_ctime_ns)
    return out


def db_dump(db: Path, skip: tuple[str, ...] = ("scanned_at", "scan_seconds")
            ) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read with plain sqlite3 (times left out)."""
    con = sqlite3.connect(db)
    try:
        out = {}
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            if table == "meta":
                continue
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
            keep = [c for c in cols if c not in skip]
            out[table] = sorted(con.execute(f"SELECT {', '.join(keep)} FROM {table}"),
                                key=repr)
        return out
    finally:
        con.close()


def sql(db: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(query, args).fetchall()
    finally:
        con.close()


# ---------------------------------------------------------------- inotify (kernel-counted opens)

IN_OPEN, IN_ISDIR, IN_Q_OVERFLOW = 0x20, 0x40000000, 0x4000


class OpenWatch:
    """Counts files opened under a tree, as the kernel reports them (inotify)."""

    def __init__(self, root: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            pytest.skip("inotify is not available")
        self.dirs: dict[int, str] = {}
        for dirpath, _dirs, _files in os.walk(root):
            wd = libc.inotify_add_watch(self.fd, dirpath.encode(), IN_OPEN)
            if wd < 0:
                pytest.skip("inotify_add_watch failed")
            self.dirs[wd] = dirpath

    def opened(self) -> list[str]:
        """Paths of files (not directories) opened since the last call."""
        out: list[str] = []
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return out
            i = 0
            while i < len(buf):
                wd, mask, _cookie, n = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + n].rstrip(b"\0").decode()
                i += 16 + n
                assert not mask & IN_Q_OVERFLOW, "inotify queue overflowed"
                if mask & IN_OPEN and not mask & IN_ISDIR and name:
                    out.append(os.path.join(self.dirs[wd], name))

    def close(self) -> None:
        os.close(self.fd)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory, llama_replica: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("farm")
    exp: dict[str, dict[str, int]] = {}
    exp["runs/a"] = write_small(root / "runs" / "a", n_shards=2, seed=1)
    exp["runs/b/checkpoint-100"] = write_small(root / "runs" / "b" / "checkpoint-100",
                                               n_shards=3, layers=3, seed=2)
    exp["runs/one"] = write_small(root / "runs" / "one", n_shards=1, seed=3)
    copy_replica(llama_replica, root / "replicas" / "llama")
    lay = LAYOUTS["llama_bf16"]()
    exp["replicas/llama"] = {"tensors": lay.num_tensors, "parameters": lay.num_params,
                             "bytes": lay.total_bytes, "shards": len(lay.shard_names)}
    # unrelated single-file models side by side: one checkpoint each
    for name, seed in (("lora-a", 4), ("lora-b", 5)):
        tmp = root / "loose" / name
        e = write_small(tmp, n_shards=1, seed=seed, config=False)
        (tmp / "model.safetensors").rename(root / "loose" / f"{name}.safetensors")
        tmp.rmdir()
        exp[f"loose/{name}.safetensors"] = e
    hf = make_hf_cache(root / "hub")
    for rev, e in hf["expected"].items():
        exp[f"hub/models--acme--tiny/snapshots/{rev}"] = e
    (root / "empty").mkdir()
    return {"root": root, "expected": exp, "hf": hf}


# ---------------------------------------------------------------- discovery


def test_discovery_finds_every_kind(farm: dict[str, Any]) -> None:
    root: Path = farm["root"]
    before = tree_state(root)
    found = discover([root])
    got = {os.path.relpath(s.path, root): (s.kind, len(s.shards)) for s in found.checkpoints}
    want = {k: (("hf-snapshot" if k.startswith("hub/") else
                 "file" if k.endswith(".safetensors") else "dir"), v["shards"])
            for k, v in farm["expected"].items()}
    assert got == want
    hf = [s for s in found.checkpoints if s.kind == "hf-snapshot"]
    assert {(s.repo, s.revision[:4]) for s in hf} == {("acme/tiny", "rev1"), ("acme/tiny", "rev2")}
    assert all(s.index is not None and s.config is not None for s in hf)
    assert [str(n) for n in found.notes] == [f"{root / 'empty'}: empty directory"]
    # a single file given as a root
    one = root / "loose" / "lora-a.safetensors"
    (spec,) = discover([one]).checkpoints
    assert (spec.path, spec.kind) == (str(one), "file")
    assert tree_state(root) == before


# ---------------------------------------------------------------- scan + store


def test_scan_farm_stores_what_single_scans_report(farm: dict[str, Any], tmp_path: Path) -> None:
    root: Path = farm["root"]
    db = tmp_path / "farm.db"
    before = tree_state(root)
    result = scan_farm([root], db=db, jobs=2)
    assert tree_state(root) == before, "the scan wrote under the root"
    assert len(result.scanned) == len(farm["expected"]) and result.unchanged == []

    assert sql(db, "PRAGMA journal_mode") == [("wal",)]
    assert sql(db, "PRAGMA user_version") == [(3,)]
    rows = {os.path.relpath(p, root): (t, n, b, s) for p, t, n, b, s in sql(
        db, "SELECT path, tensors, parameters, bytes, shards FROM checkpoints")}
    want = {k: (v["tensors"], v["parameters"], v["bytes"], v["shards"])
            for k, v in farm["expected"].items()}
    assert rows == want

    # the findings stored are the ones `ckptscan report` gives for each checkpoint
    for path in (root / "runs" / "a", root / "replicas" / "llama",
                 root / "hub" / "models--acme--tiny" / "snapshots" / ("rev2" + "0" * 36)):
        report = scan(path)
        stored = sql(db, "SELECT code, severity, message, file, tensor FROM findings "
                         "WHERE checkpoint = ? ORDER BY seq", str(path))
        assert stored == [(f.code, str(f.severity), f.message, f.file, f.tensor)
                          for f in report.findings]
        (n_err, n_warn, n_info, dtypes) = sql(
            db, "SELECT errors, warnings, infos, dtypes FROM checkpoints WHERE path = ?",
            str(path))[0]
        assert (n_err, n_warn, n_info) == tuple(
            sum(1 for f in report.findings if str(f.severity) == s)
            for s in ("error", "warning", "info"))
        assert orjson.loads(dtypes) == {k: v.to_dict() for k, v in report.dtypes.items()}
        with Store(db) as store:
            assert store.load_report(str(path)).to_dict() == report.to_dict()

    # the llama replica, by dtype, against its layout
    lay = LAYOUTS["llama_bf16"]()
    (dt,) = sql(db, "SELECT dtypes FROM checkpoints WHERE path = ?",
                str(root / "replicas" / "llama"))[0]
    assert {k: v["tensors"] for k, v in orjson.loads(dt).items()} == lay.dtype_counts()
    # fingerprints: one shards row per file, with the size on disk
    for p, name, size, inode in sql(db, "SELECT checkpoint, name, size, inode FROM shards"):
        f = Path(p) / name if Path(p).is_dir() else Path(p)
        assert (f.stat().st_size, f.stat().st_ino) == (size, inode)
    assert sql(db, "PRAGMA integrity_check") == [("ok",)]


def test_hf_blob_shared_by_two_revisions_is_read_once(farm: dict[str, Any],
                                                      tmp_path: Path) -> None:
    hub = farm["root"] / "hub"
    watch = OpenWatch(hub)
    try:
        result = scan_farm([hub], db=tmp_path / "f.db")
        opened = watch.opened()
    finally:
        watch.close()
    assert len(result.scanned) == 2
    blobs = [p for p in opened if "/blobs/" in p]
    assert blobs, "inotify saw no open of a blob"
    # every blob read (shards, index, config) was opened exactly once
    assert len(blobs) == len(set(blobs))
    # rev1 and rev2 hold 4 shard symlinks pointing at 3 distinct shard blobs
    shard_blobs = {os.path.realpath(p) for p in
                   (farm["hf"]["repo"] / "snapshots").glob("*/*.safetensors")}
    assert len(shard_blobs) == 3 and shard_blobs <= set(blobs)
    assert result.shards_opened == 3


def test_rescan_of_unchanged_farm_opens_nothing(farm: dict[str, Any], tmp_path: Path) -> None:
    root: Path = farm["root"]
    db = tmp_path / "farm.db"
    scan_farm([root], db=db)
    first = db_dump(db)
    watch = OpenWatch(root)
    try:
        again = scan_farm([root], db=db)
        opened = watch.opened()
    finally:
        watch.close()
    assert opened == []
    assert again.scanned == [] and len(again.unchanged) == len(farm["expected"])
    assert again.shards_opened == 0
    assert db_dump(db) == first


def test_changed_and_deleted_checkpoints(farm: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "farm"
    write_small(root / "a", seed=1)
    write_small(root / "b", seed=2)
    write_small(root / "c", seed=3)
    db = tmp_path / "farm.db"
    scan_farm([root], db=db)
    # b: a shard rewritten with one tensor more (same name); c: deleted
    path = root / "b" / "model-00002-of-00002.safetensors"
    part = safetensors_numpy.load_file(str(path))
    wm = orjson.loads((root / "b" / INDEX).read_bytes())
    part["model.extra.weight"] = np.zeros(3, np.float32)
    wm["weight_map"]["model.extra.weight"] = path.name
    safetensors_numpy.save_file(part, str(path))
    (root / "b" / INDEX).write_bytes(orjson.dumps(wm))
    shutil.rmtree(root / "c")
    watch = OpenWatch(root)
    try:
        result = scan_farm([root], db=db)
        opened = {os.path.relpath(p, root) for p in watch.opened()}
    finally:
        watch.close()
    assert result.scanned == [str(root / "b")]
    assert result.unchanged == [str(root / "a")]
    assert result.removed == [str(root / "c")]
    assert opened and all(p.startswith("b/") for p in opened)
    assert sql(db, "SELECT path, tensors FROM checkpoints ORDER BY path") == [
        (str(root / "a"), 7), (str(root / "b"), 8)]
    assert sql(db, "SELECT count(*) FROM shards WHERE checkpoint = ?", str(root / "c")) == [(0,)]


# ---------------------------------------------------------------- interruption


def test_keyboard_interrupt_between_checkpoints_keeps_finished_work(tmp_path: Path) -> None:
    root = tmp_path / "farm"
    for i in range(6):
        write_small(root / f"m{i}", seed=i)
    db = tmp_path / "farm.db"

    def stop_after_two(p: Any) -> None:
        if p.checkpoints_done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan_farm([root], db=db, jobs=1, progress=stop_after_two)
    assert sql(db, "PRAGMA integrity_check") == [("ok",)]
    done = [p for (p,) in sql(db, "SELECT path FROM checkpoints")]
    assert len(done) == 2
    assert sql(db, "SELECT count(*) FROM findings WHERE checkpoint NOT IN "
                   "(SELECT path FROM checkpoints)") == [(0,)]
    result = scan_farm([root], db=db)
    assert sorted(result.unchanged) == sorted(done)
    assert len(result.scanned) == 4
    assert sql(db, "SELECT count(*) FROM checkpoints") == [(6,)]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    code = "import sys; from ckptscan.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    src = str(Path(__file__).resolve().parents[1] / "python")
    import ckptscan

    if Path(ckptscan.__file__).resolve().is_relative_to(Path(src).resolve()):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def _wait_rows(db: Path, proc: subprocess.Popen[bytes], n: int, timeout: float = 60) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if db.exists():
            try:
                rows = sql(db, "SELECT count(*) FROM checkpoints")[0][0]
            except sqlite3.OperationalError:
                rows = 0
            if rows >= n:
                return int(rows)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    raise AssertionError("no rows appeared")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_signal_mid_scan_then_resume(sig: signal.Signals, minimax_replica: Path,
                                     tmp_path: Path) -> None:
    """A real Ctrl-C (or kill -9) while a CLI scan is running: the store stays
    consistent, and the next run resumes without scanning finished work again."""
    root = tmp_path / "farm"
    for i in range(6):
        copy_replica(minimax_replica, root / f"m2-{i}")
    db = tmp_path / "farm.db"
    proc = _cli("farm", str(root), "--db", str(db), "--jobs", "1", env=_env(tmp_path))
    _wait_rows(db, proc, 1)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err.decode()
        assert b"interrupted" in err
    assert sql(db, "PRAGMA integrity_check") == [("ok",)]
    done = sorted(p for (p,) in sql(db, "SELECT path FROM checkpoints"))
    assert 1 <= len(done) < 6
    for (p,) in sql(db, "SELECT path FROM checkpoints"):  # each stored checkpoint is whole
        assert sql(db, "SELECT count(*) FROM shards WHERE checkpoint = ?", p) == [(125,)]
    result = scan_farm([root], db=db)
    assert sorted(result.unchanged) == done
    assert len(result.scanned) == 6 - len(done)
    assert sql(db, "SELECT count(*), sum(tensors), sum(errors) FROM checkpoints") == [
        (6, 6 * 96_103, 0)]


# ---------------------------------------------------------------- concurrency


def test_two_scans_of_one_store_at_once(farm: dict[str, Any], tmp_path: Path) -> None:
    root: Path = farm["root"]
    db = tmp_path / "farm.db"
    env = _env(tmp_path)
    procs = [_cli("farm", str(root), "--db", str(db), "--format", "csv", "--rescan", env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode in (0, 1), err.decode()
    assert sql(db, "PRAGMA integrity_check") == [("ok",)]
    assert sql(db, "SELECT count(*) FROM checkpoints") == [(len(farm["expected"]),)]
    # both wrote everything; the store equals a single scan's
    single = tmp_path / "single.db"
    scan_farm([root], db=single)
    assert db_dump(db, skip=("scanned_at", "scan_seconds")) == db_dump(single)


# ---------------------------------------------------------------- bad input


def _bad_farm(root: Path) -> None:
    write_small(root / "good", seed=1)
    # a shard that is a FIFO (open() would block forever), listed in the index
    write_small(root / "fifo", seed=2)
    fifo = root / "fifo" / "model-00002-of-00002.safetensors"
    fifo.unlink()
    os.mkfifo(fifo)
    # a directory named like a shard
    write_small(root / "dirshard", seed=3)
    (root / "dirshard" / "model-00003-of-00003.safetensors").mkdir()
    # dangling symlink and symlink loop as shards
    write_small(root / "links", seed=4)
    os.symlink("nowhere.bin", root / "links" / "model-00003-of-00004.safetensors")
    os.symlink("model-00004-of-00004.safetensors",
               root / "links" / "model-00004-of-00004.safetensors.tmp")
    os.symlink("model-00004-of-00004.safetensors.tmp",
               root / "links" / "model-00004-of-00004.safetensors")
    # a directory symlink that loops back to the farm
    os.symlink("..", root / "links" / "up")
    # not safetensors at all, with the extension
    junk = root / "junk"
    junk.mkdir()
    (junk / "notes.safetensors").write_text("this is not a checkpoint\n")
    (junk / "pointer.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 9\n")
    (junk / "empty.safetensors").write_bytes(b"")
    (junk / "pickle.safetensors").write_bytes(b"PK\x03\x04" + os.urandom(200))
    # a truncated shard
    write_small(root / "cut", seed=5)
    cut = root / "cut" / "model-00001-of-00002.safetensors"
    os.truncate(cut, cut.stat().st_size - 10)
    # an index.json that is not JSON, a config.json that is a FIFO
    write_small(root / "badmeta", seed=6)
    (root / "badmeta" / INDEX).write_text("{not json")
    (root / "badmeta" / "config.json").unlink()
    os.mkfifo(root / "badmeta" / "config.json")
    (root / "emptydir").mkdir()


def _run_with_timeout(fn: Any, timeout: float = 60) -> Any:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the scan hung"
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_bad_input_becomes_findings_and_the_scan_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "farm"
    _bad_farm(root)
    before = tree_state(root)
    db = tmp_path / "farm.db"
    result = _run_with_timeout(lambda: scan_farm([root], db=db))
    assert tree_state(root) == before
    assert result.failed == []

    def codes(rel: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for code, msg, file in sql(db, "SELECT code, message, file FROM findings "
                                       "WHERE checkpoint = ?", str(root / rel)):
            out.setdefault(code, []).append(f"{os.path.basename(file or '')}: {msg}")
        return out

    assert sql(db, "SELECT errors FROM checkpoints WHERE path = ?", str(root / "good")) == [(0,)]
    fifo = codes("fifo")
    # one root cause that names the tensors the index places in it
    (msg,) = fifo["special-file"]
    assert "a fifo, not a file" in msg and "tensors it holds cannot be read" in msg
    assert any("a directory, not a file" in m for m in codes("dirshard")["special-file"])
    links = codes("links")
    assert any("dangling symlink" in m and "nowhere.bin" in m for m in links["shard-missing"])
    assert any("symlink loop" in m for m in links["symlink-loop"])
    for name, code in (("notes", "header-too-large"), ("pointer", "lfs-pointer"),
                       ("empty", "header-too-small"), ("pickle", "not-safetensors")):
        got = codes(f"junk/{name}.safetensors")
        assert code in got or "header-length-invalid" in got, (name, got)
    assert "truncated" in codes("cut")
    bad = codes("badmeta")
    assert "index-invalid" in bad
    assert any("fifo" in m for m in bad["config-invalid"])
    notes = [str(n) for n in result.notes]
    assert f"{root / 'emptydir'}: empty directory" in notes
    assert any(n.startswith(str(root / "links" / "up")) and "symlink loop" in n for n in notes)
    # every checkpoint found has a row; the good one is clean
    assert len(result.rows) == len(sql(db, "SELECT path FROM checkpoints")) == 10


def test_files_that_shrink_or_vanish_during_the_scan(tmp_path: Path) -> None:
    """Files change between the moment they are found (stat) and read: what a
    scan sees when a file is rewritten under it."""
    root = tmp_path / "farm"
    write_small(root / "shrinks", seed=1)
    write_small(root / "vanishes", seed=2)
    specs = {os.path.basename(s.path): s for s in discover([root]).checkpoints}
    victim = root / "shrinks" / "model-00001-of-00002.safetensors"
    os.truncate(victim, victim.stat().st_size // 2)
    (root / "vanishes" / "model-00002-of-00002.safetensors").unlink()
    (shrunk,) = scan_group([specs["shrinks"]])
    (gone,) = scan_group([specs["vanishes"]])
    # one root cause for the file, naming what it holds; the truncation it explains
    (root_cause,) = shrunk.report.findings
    assert root_cause.code == "file-changed"
    assert root_cause.message.startswith(
        f"changed while being scanned: {specs['shrinks'].shards[0].size:,} bytes when found, "
        f"{victim.stat().st_size:,} when read; 4 tensors it holds cannot be read")
    # the truncation, and the index entries it took along
    assert [x.code for x in root_cause.explains] == ["truncated", "index-tensor-absent"]
    assert any(f.code == "file-changed" and "vanished" in f.message
               for f in gone.report.findings)

    # a live race: one thread rewrites a shard over and over while farms are scanned
    db = tmp_path / "race.db"
    for i in range(4):
        write_small(root / f"r{i}", seed=i)
    target = root / "r0" / "model-00001-of-00002.safetensors"
    good = target.read_bytes()
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            os.truncate(target, len(good) // 3)
            with open(target, "r+b") as f:
                f.write(good)

    t = threading.Thread(target=churn, daemon=True)
    t.start()
    try:
        for _ in range(5):
            _run_with_timeout(lambda: scan_farm([root], db=db, rescan=True))
    finally:
        stop.set()
        t.join()
    assert sql(db, "PRAGMA integrity_check") == [("ok",)]
    final = scan_farm([root], db=db)  # quiet now: the stored result is the true one
    r0 = sql(db, "SELECT errors, tensors FROM checkpoints WHERE path = ?", str(root / "r0"))
    assert r0 == [(0, 7)] or str(root / "r0") in final.scanned


def _import_everything() -> None:
    """Imports every ckptscan module while still root: CI installs into a prefix
    under /root, which user nobody cannot traverse, so an import the code makes
    on first use would fail after the drop for reasons the test is not about."""
    import importlib
    import pkgutil

    import ckptscan

    for info in pkgutil.walk_packages(ckptscan.__path__, "ckptscan."):
        if info.name.endswith("__main__"):  # running it is not importing it
            continue
        with contextlib.suppress(ImportError):  # optional extras not installed
            importlib.import_module(info.name)


def _as_unprivileged(fn: Any, out: Path) -> tuple[int, str, str]:
    """Runs fn() in a forked child that has dropped root for user nobody
    (permission bits do not stop root). Returns (exit code, stdout, stderr)."""
    import pwd
    import traceback
    import warnings

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no unprivileged user to drop to")
    os.chown(out, nobody.pw_uid, nobody.pw_gid)
    files = [open(out / name, "w+", encoding="utf-8") for name in ("stdout", "stderr")]  # noqa: SIM115
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads alive
        pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 99
        try:
            sys.stdout, sys.stderr = files
            _import_everything()  # the installed package may sit where nobody cannot read
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            code = fn()
        except BaseException:  # noqa: BLE001
            traceback.print_exc(file=files[1])
        finally:
            for f in files:
                f.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    texts = []
    for f in files:
        f.seek(0)
        texts.append(f.read())
        f.close()
    return os.waitstatus_to_exitcode(status), texts[0], texts[1]


def test_unreadable_files_and_directories(tmp_path: Path) -> None:
    """Permission denied, for real. As root the scan runs in a forked child that
    has become user nobody; otherwise permission bits are enough."""
    base = Path(tempfile.mkdtemp(prefix="ckptscan-perm-"))
    try:
        os.chmod(base, 0o755)
        root = base / "farm"
        write_small(root / "ok", seed=1)
        write_small(root / "locked", seed=2)
        write_small(root / "hidden" / "inner", seed=3)
        for f in root.rglob("*"):  # the safetensors library writes files 0600
            os.chmod(f, 0o755 if f.is_dir() else 0o644)
        out = base / "out"
        out.mkdir()
        db = out / "farm.db"
        scan_farm([root], db=db)  # all readable: three clean checkpoints stored
        os.chmod(root / "locked" / "model-00001-of-00002.safetensors", 0)
        os.chmod(root / "hidden", 0)
        before = tree_state(root)
        args = ["farm", str(root), "--db", str(db), "--format", "jsonl"]
        if os.geteuid() == 0:
            import pwd

            with contextlib.suppress(KeyError):
                os.chown(db, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
            rc, stdout, stderr = _as_unprivileged(lambda: main(args), out)
        else:
            rc, stdout, stderr = main(args), "", ""
        assert rc == 1, stderr
        assert tree_state(root) == before
        # the directory that could not be listed keeps what was stored before
        assert [(p, e > 0) for p, e in sql(
            db, "SELECT path, errors FROM checkpoints ORDER BY path")] == [
            (str(root / "hidden" / "inner"), False), (str(root / "locked"), True),
            (str(root / "ok"), False)]
        assert sql(db, "SELECT code, message, file FROM findings WHERE checkpoint = ? "
                       "AND code = 'io-error'", str(root / "locked")) == [
            ("io-error", "cannot open: Permission denied; 4 tensors it holds cannot be read: "
             "1 embedding, 1 mlp (layer 0), 1 norm (layer 1), 1 attention (layer 1)",
             str(root / "locked" / "model-00001-of-00002.safetensors"))]
        if os.geteuid() == 0:
            assert f"note: {root / 'hidden'}: cannot list directory: Permission denied" \
                in stderr
            assert len(stdout.splitlines()) == 2
    finally:
        for dirpath, dirnames, _ in os.walk(base):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o755)
        shutil.rmtree(base)


# ---------------------------------------------------------------- queries and export


def test_cli_scan_query_and_export(farm: dict[str, Any], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    root: Path = farm["root"]
    db = tmp_path / "farm.db"
    assert main(["farm", str(root), "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["PATH", "MODEL", "SHARDS"]
    assert len(lines) == 1 + len(farm["expected"])
    assert f"{len(farm['expected'])} checkpoints:" in err
    llama = next(line for line in lines if line.startswith(str(root / "replicas" / "llama")))
    assert "llama" in llama and "BF16 100.0%" in llama and "8.03 B" in llama

    # query only (no ROOT): SQL conditions on the columns
    assert main(["farm", "--db", str(db), "--where", "kind = 'hf-snapshot'",
                 "--format", "jsonl"]) == 0
    rows = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["revision"][:4] for r in rows] == ["rev1", "rev2"]
    assert rows[1]["tensors"] == rows[0]["tensors"] + 1
    assert rows[0]["dtypes"]["F16"]["tensors"] == 5

    assert main(["farm", "--db", str(db), "--format", "csv",
                 "--where", "parameters > 1e9"]) == 0
    import csv
    import io

    recs = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["path"] for r in recs] == [str(root / "replicas" / "llama")]
    assert int(recs[0]["tensors"]) == 291

    assert main(["farm", "--db", str(db), "--format", "json", "--findings",
                 "--where", "severity = 'info'"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["schema"] == "ckptscan.farm/3"
    assert doc["findings"] and all(f["severity"] == "info" for f in doc["findings"])

    # the store is read-only to queries, and a bad condition is a usage error
    before = db_dump(db)
    for where in ("1); DELETE FROM checkpoints; --", "no_such_column > 0",
                  "(SELECT count(*) FROM (SELECT 1) WHERE 0) = 0; DROP TABLE shards"):
        assert main(["farm", "--db", str(db), "--where", where]) == 2
        assert "invalid --where" in capsys.readouterr().err
    assert db_dump(db) == before
    assert main(["farm", "--db", str(tmp_path / "absent.db")]) == 2
    assert not (tmp_path / "absent.db").exists()


def test_cli_exit_code_follows_the_findings(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "farm"
    write_small(root / "a", seed=1)
    db = tmp_path / "farm.db"
    assert main(["farm", str(root), "--db", str(db)]) == 0
    (root / "a" / "model-00002-of-00002.safetensors").unlink()
    assert main(["farm", str(root), "--db", str(db), "--findings"]) == 1
    out = capsys.readouterr().out
    assert "shard-missing" in out
    assert main(["farm", str(root), "--db", str(db), "--fail-on", "never"]) == 0


# ---------------------------------------------------------------- Dask


def test_dask_local_cluster_gives_the_same_store(farm: dict[str, Any], tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    root: Path = farm["root"]
    local_db, dask_db = tmp_path / "local.db", tmp_path / "dask.db"
    scan_farm([root], db=local_db)
    env_path = _env(tmp_path).get("PYTHONPATH")
    old = os.environ.get("PYTHONPATH")
    if env_path:  # spawned workers must import this ckptscan
        os.environ["PYTHONPATH"] = env_path
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as cluster:
            before = tree_state(root)
            result = scan_farm([root], db=dask_db, dask=cluster.scheduler_address)
            assert tree_state(root) == before
            with distributed.Client(cluster) as client:
                pids = set(client.run(os.getpid).values())
    finally:
        if env_path:
            if old is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = old
    assert os.getpid() not in pids and len(pids) == 2
    assert len(result.scanned) == len(farm["expected"])
    assert db_dump(dask_db) == db_dump(local_db)
    # and the Dask-written store is incremental like any other
    again = scan_farm([root], db=dask_db)
    assert again.scanned == [] and again.shards_opened == 0


def test_ray_local_instance_gives_the_same_store(farm: dict[str, Any], tmp_path: Path,
                                                 ray_instance: Any) -> None:
    root: Path = farm["root"]
    local_db, ray_db = tmp_path / "local.db", tmp_path / "ray.db"
    scan_farm([root], db=local_db)
    before = tree_state(root)
    result = scan_farm([root], db=ray_db, ray=True)
    assert tree_state(root) == before
    assert len(result.scanned) == len(farm["expected"])
    assert db_dump(ray_db) == db_dump(local_db)
    again = scan_farm([root], db=ray_db)
    assert again.scanned == [] and again.shards_opened == 0


def test_store_schema_version_is_checked(tmp_path: Path) -> None:
    db = tmp_path / "farm.db"
    Store(db).close()
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    from ckptscan.farm.store import StoreError

    with pytest.raises(StoreError, match="newer"):
        Store(db)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not a ckptscan store"):
        Store(other)


def test_parameters_column_matches_layout_math(deepseek_replica: Path, tmp_path: Path) -> None:
    db = tmp_path / "farm.db"
    scan_farm([deepseek_replica], db=db)
    lay = LAYOUTS["deepseek_v3"]()
    # logical weights: the F32 block scales (weight_scale_inv) are overhead, not parameters
    weights = sum(math.prod(s) for n, _, s in lay.tensors if not n.endswith("weight_scale_inv"))
    assert sql(db, "SELECT tensors, parameters, shards, errors, main_dtype, quant_method, "
               "quant_format, quant_block, schemes FROM checkpoints") == [
        (lay.num_tensors, weights, 163, 0, "E4M3", "fp8", "E4M3", "128x128",
         "hf-fp8/E4M3/block128x128")]


def test_processes_give_the_same_store(farm: dict[str, Any], tmp_path: Path) -> None:
    root: Path = farm["root"]
    a, b = tmp_path / "threads.db", tmp_path / "procs.db"
    scan_farm([root], db=a)
    env = _env(tmp_path).get("PYTHONPATH")
    old = os.environ.get("PYTHONPATH")
    if env:
        os.environ["PYTHONPATH"] = env
    try:
        scan_farm([root], db=b, processes=True, jobs=2)
    finally:
        if env:
            if old is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = old
    assert db_dump(a) == db_dump(b)


def test_deep_scans_are_stored_and_reused(tmp_path: Path) -> None:
    pytest.importorskip("ckptscan.deep")
    root = tmp_path / "farm"
    write_small(root / "a", seed=1)
    db = tmp_path / "farm.db"
    assert scan_farm([root], db=db).scanned == [str(root / "a")]
    deep = scan_farm([root], db=db, deep=True)  # a header-only result does not do for --deep
    assert deep.scanned == [str(root / "a")] and deep.failed == []
    again = scan_farm([root], db=db)  # a deep result does for a header-only scan
    assert again.unchanged == [str(root / "a")]
    assert sql(db, "SELECT deep FROM checkpoints") == [(1,)]
    report = again.report(str(root / "a"))
    assert report is not None and report.deep is not None and report.deep.tensors == 7
