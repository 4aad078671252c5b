"""Terminal and API habits: 80 columns in a pipe and the terminal's width on a
terminal, paths relative to the checkpoint, --color / NO_COLOR / FORCE_COLOR,
-q / -qq, several paths per report in every format, --select / --ignore,
baselines, codes CODE, doctor --format json, GitHub annotations, reprs,
Shard iteration, severity strings, the tensor table and `ckptscan tensors`,
and closed pipes."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import ckptscan
import ml_dtypes
import numpy as np
import orjson
import pytest
from ckptscan import codes as codes_registry
from ckptscan.findings import Severity
from ckptscan.render.console import ProgressLine, elide, wants_color, width_of
from ckptscan.render.github import escape_data, escape_property
from ckptscan.selection import Baseline
from ckptscan.synth import write_small_minimax
from safetensors import safe_open
from safetensors.numpy import save_file

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two planted header-level defects: an FP8 weight without its scale and a
    scale of the wrong shape (two errors, one info-level finding or so)."""
    path, _ = write_small_minimax(tmp_path_factory.mktemp("bad"), plant=["dropped_scale",
                                                                         "scale_shape"])
    return path


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = write_small_minimax(tmp_path_factory.mktemp("clean"))
    return path


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")}
    out["TERM"] = "xterm-256color"
    return out | extra


def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ckptscan", *args], capture_output=True,
                          text=True, check=False, stdin=subprocess.DEVNULL,
                          env=kw.pop("env", env()), **kw)


def run_on_tty(args: list[str], environ: dict[str, str], columns: int = 100) -> tuple[int, str]:
    """Runs ckptscan with stdout on a pseudo-terminal `columns` wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "ckptscan", *args], stdout=slave,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=environ)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(), b"".join(chunks).decode().replace("\r\n", "\n")


# ---------------------------------------------------------------- width and paths


def test_report_fits_80_columns_in_a_pipe_with_relative_paths(bad: Path) -> None:
    r = run("report", str(bad))
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert max(len(x) for x in lines) <= 80
    assert lines[0] == "=" * 80
    # The full path once, at the top; files relative to the checkpoint below.
    assert sum(str(bad) in x for x in lines) == 1 and lines[2] == str(bad)
    assert "          in model-00001-of-00002.safetensors" in lines
    assert "fp8-scale-missing" in r.stdout and "scale-shape" in r.stdout


def test_columns_env_and_terminal_width(bad: Path) -> None:
    wide = run("report", str(bad), env=env(COLUMNS="120"))
    assert max(len(x) for x in wide.stdout.splitlines()) == 120
    narrow = run("report", str(bad), env=env(COLUMNS="60"))
    assert max(len(x) for x in narrow.stdout.splitlines()) <= 60
    code, out = run_on_tty(["report", str(bad)], env(), columns=100)
    plain = ANSI.sub("", out)
    assert code == 1 and plain.splitlines()[0] == "=" * 100
    assert max(len(x) for x in plain.splitlines()) <= 100


def test_elide_and_width_helpers() -> None:
    name = "model.layers.0.block_sparse_moe.experts.0.w2.weight_scale_inv"
    short = elide(name, 30)
    assert len(short) == 30 and short.startswith("model.layers.0") and short.endswith(
        "scale_inv") and "..." in short
    assert elide(name, 200) == name and elide("abcdef", 2) == "ab"
    assert width_of(io.StringIO()) == 80


# ---------------------------------------------------------------- colour


def test_color_flags_and_environment(bad: Path) -> None:
    def colored(*extra: str, **e: str) -> bool:
        return "\x1b[" in run("report", str(bad), *extra, env=env(**e)).stdout

    assert not colored()                                  # a pipe: auto is off
    assert colored(FORCE_COLOR="1")                       # FORCE_COLOR forces it
    assert colored("--color", "always", NO_COLOR="1")     # the flag wins
    assert not colored("--color", "never", FORCE_COLOR="1")
    assert colored("--color", "always")
    code, out = run_on_tty(["report", str(bad)], env())   # a terminal: on
    assert code == 1 and "\x1b[31;1mERROR" in out
    code, out = run_on_tty(["report", str(bad)], env(NO_COLOR="1"))
    assert code == 1 and "\x1b[" not in out
    code, out = run_on_tty(["report", str(bad)], env(TERM="dumb"))
    assert "\x1b[" not in out


def test_wants_color_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(var, raising=False)
    s = io.StringIO()
    assert not wants_color(s) and wants_color(s, "always") and not wants_color(s, "never")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert wants_color(s)
    with pytest.raises(ValueError, match="colour mode"):
        wants_color(s, "sometimes")


# ---------------------------------------------------------------- quiet, several paths


def test_quiet_levels(bad: Path, clean: Path) -> None:
    q = run("report", str(bad), "-q")
    full = ckptscan.scan(bad)
    assert q.returncode == 1
    heads = [x for x in q.stdout.splitlines() if not x.startswith(" ")]
    assert heads == [f"{f.file or bad}: {f.severity} {f.code}: {f.message}"
                     + (f" [{f.tensor}]" if f.tensor else "") for f in full.findings]
    assert "Data types" not in q.stdout
    qq = run("report", str(bad), "-qq")
    assert (qq.returncode, qq.stdout, qq.stderr) == (1, "", "")
    ok = run("report", str(clean), "-q", "--fail-on", "warning")
    assert (ok.returncode, ok.stdout) == (0, "")
    assert run("report", str(bad), "-qq", "--format", "json").stdout == ""


def test_several_paths_in_every_format(bad: Path, clean: Path) -> None:
    paths = (str(bad), str(clean))
    text = run("report", *paths)
    assert text.returncode == 1
    assert text.stdout.count("ckptscan report: ") == 2
    assert max(len(x) for x in text.stdout.splitlines()) <= 80
    assert "=\n\n=" in text.stdout  # a blank line between the two reports
    doc = orjson.loads(run("report", *paths, "--format", "json").stdout)
    assert doc["schema"] == "ckptscan.reports/2"
    assert [r["checkpoint"] for r in doc["reports"]] == [str(bad), str(clean)]
    md = run("report", *paths, "--format", "md").stdout
    assert md.count("\n# ckptscan report: ") + md.startswith("# ckptscan report: ") == 2
    gh = run("report", *paths, "--format", "github").stdout.splitlines()
    n_bad = len(ckptscan.scan(bad).findings)
    n_clean = len(ckptscan.scan(clean).findings)
    assert len(gh) == n_bad + n_clean
    quiet = run("report", *paths, "-q").stdout
    assert str(bad) in quiet and (str(clean) in quiet) == (n_clean > 0)


# ---------------------------------------------------------------- select / ignore


def test_select_and_ignore_by_code_and_prefix(bad: Path) -> None:
    full = ckptscan.scan(bad)
    all_codes = {f.code for f in full.findings}
    assert {"fp8-scale-missing", "scale-shape"} <= all_codes

    def codes_of(*args: str) -> tuple[int, set[str]]:
        r = run("report", str(bad), "--format", "json", *args)
        return r.returncode, {f["code"] for f in orjson.loads(r.stdout)["findings"]}

    assert codes_of("--select", "scale-") == (1, {c for c in all_codes
                                                  if c.startswith("scale-")})
    assert codes_of("--select", "fp8")[1] == {c for c in all_codes if c.startswith("fp8-")}
    assert codes_of("--select", "scale-shape,fp8-scale-missing") == (
        1, {"scale-shape", "fp8-scale-missing"})
    rc, left = codes_of("--ignore", "scale-shape", "--ignore", "fp8-scale-missing")
    assert left == all_codes - {"scale-shape", "fp8-scale-missing"}
    errors_left = any(codes_registry.get(c).severity == Severity.ERROR for c in left)
    assert rc == (1 if errors_left else 0)
    rc, left = codes_of("--select", "scale-shape", "--ignore", "scale-")
    assert (rc, left) == (0, set())
    bad_sel = run("report", str(bad), "--select", "scale-shap")
    assert bad_sel.returncode == 2 and "unknown finding code or prefix 'scale-shap'" in \
        bad_sel.stderr and "scale-shape" in bad_sel.stderr
    note = run("report", str(bad), "--ignore", "scale-shape")
    assert "1 finding left out by --select/--ignore" in note.stderr


def test_root_causes_keep_their_explains(tmp_path: Path) -> None:
    path, _ = write_small_minimax(tmp_path / "m")
    (path / "model-00001-of-00002.safetensors").unlink()
    full = ckptscan.scan(path)
    cause = [f for f in full.findings if f.code == "shard-missing"]
    assert len(cause) == 1 and cause[0].explains
    kept = full.filtered(select=["shard-missing"])
    assert kept.findings == cause and kept.findings[0].explains == cause[0].explains
    gone = full.filtered(ignore=["shard-"])
    explained = {x.code for x in cause[0].explains}
    assert not any(f.code == "shard-missing" for f in gone.findings)
    assert not explained & {f.code for f in gone.findings}
    r = run("report", str(path), "--select", "shard-missing", "--format", "json")
    doc = orjson.loads(r.stdout)
    assert r.returncode == 1 and [f["code"] for f in doc["findings"]] == ["shard-missing"]
    assert {x["code"] for x in doc["findings"][0]["explains"]} == explained


# ---------------------------------------------------------------- baselines


def test_baseline_from_a_json_report_lets_fail_on_warning_pass(tmp_path: Path) -> None:
    path, _ = write_small_minimax(tmp_path / "m", plant=["scale_shape"])
    report = tmp_path / "report.json"
    first = run("report", str(path), "--format", "json", "-o", str(report))
    assert first.returncode == 1
    again = run("report", str(path), "--baseline", str(report), "--fail-on", "warning")
    assert again.returncode == 0, again.stdout
    assert "Findings: 0 error(s), 0 warning(s), 0 info" in again.stdout
    assert "left out by the baseline" in again.stderr
    # robust to reworded messages: the match is code + file + tensor
    doc = orjson.loads(report.read_bytes())
    for f in doc["findings"]:
        f["message"] = "reworded"
    report.write_bytes(orjson.dumps(doc))
    assert run("report", str(path), "--baseline", str(report), "--fail-on",
               "warning", "-qq").returncode == 0
    # a new defect is not in the baseline: only it is shown, and it fails
    path2, planted = write_small_minimax(tmp_path / "m2", plant=["scale_shape",
                                                                 "dropped_scale"])
    r = run("report", str(path2), "--baseline", str(report), "--format", "json")
    new = orjson.loads(r.stdout)["findings"]
    assert r.returncode == 1 and [f["code"] for f in new] == ["fp8-scale-missing"]
    assert new[0]["tensor"] + "_scale_inv" == planted["dropped_scale"]["tensor"]


def test_write_baseline_and_collapsed_groups(tmp_path: Path) -> None:
    def moe(where: Path, dropped: list[int]) -> Path:
        where.mkdir()
        t: dict[str, np.ndarray] = {}
        for e in range(16):
            name = f"model.layers.0.mlp.experts.{e}.gate_proj.weight"
            t[name] = np.ones((128, 128), ml_dtypes.float8_e4m3fn)
            if e not in dropped:
                t[name + "_scale_inv"] = np.ones((1, 1), np.float32)
        save_file(t, str(where / "model.safetensors"))
        (where / "config.json").write_text(json.dumps({"quantization_config": {
            "quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}}))
        return where

    a = moe(tmp_path / "a", list(range(8)))
    base = tmp_path / "base.json"
    r = run("report", str(a), "--select", "fp8-scale-missing", "--write-baseline", str(base))
    assert r.returncode == 0 and "wrote 1 accepted findings" in r.stderr
    doc = orjson.loads(base.read_bytes())
    assert doc["schema"] == "ckptscan.baseline/1"
    assert doc["findings"] == [{"code": "fp8-scale-missing", "file": None, "tensor": None,
                                "template": "model.layers.{}.mlp.experts.{}.gate_proj.weight",
                                "count": 8}]
    for dropped, fails in ((list(range(8)), False), ([0, 1], False), (list(range(9)), True)):
        c = moe(tmp_path / f"c{len(dropped)}", dropped)
        rc = run("report", str(c), "--select", "fp8-scale-missing", "--baseline", str(base),
                 "-qq").returncode
        assert rc == (1 if fails else 0), dropped
    broken = tmp_path / "broken.json"
    broken.write_text("{\"schema\": \"something/1\"}")
    r = run("report", str(a), "--baseline", str(broken))
    assert r.returncode == 2 and "not a ckptscan baseline" in r.stderr
    assert len(Baseline.load(base)) == 1


# ---------------------------------------------------------------- codes, doctor, github


def test_codes_explains_one_code_and_json() -> None:
    r = run("codes", "fp8-scale-missing")
    c = codes_registry.get("fp8-scale-missing")
    assert r.returncode == 0 and r.stdout.startswith("fp8-scale-missing: error, about the "
                                                     "quantization")
    assert c.description in " ".join(r.stdout.split())
    fam = run("codes", "scale-")
    heads = [x.split(":")[0] for x in fam.stdout.splitlines() if not x.startswith(" ")]
    assert heads == [k.code for k in codes_registry.iter_codes() if k.code.startswith("scale-")]
    root = run("codes", "shard-missing").stdout
    assert "a root cause" in root
    unknown = run("codes", "nope")
    assert unknown.returncode == 2 and "unknown finding code" in unknown.stderr
    doc = orjson.loads(run("codes", "--format", "json").stdout)
    assert [d["code"] for d in doc] == [k.code for k in codes_registry.iter_codes()]
    assert doc[0].keys() == {"code", "severity", "subject", "description", "root_cause"}
    assert {d["code"]: d["severity"] for d in doc} == {
        k: str(v.severity) for k, v in codes_registry.CODES.items()}


def test_doctor_json() -> None:
    r = run("doctor", "--format", "json")
    doc = orjson.loads(r.stdout)
    assert r.returncode == 0 and doc["schema"] == "ckptscan.doctor/1"
    assert doc["ckptscan"] == ckptscan.__version__ and doc["numpy"] == np.__version__
    assert doc["optional"]["ml_dtypes"] == ml_dtypes.__version__
    assert doc["simd"]["active"] == ckptscan.simd_info()["active"]


def test_github_annotations(tmp_path: Path) -> None:
    assert escape_data("50% a\r\nb") == "50%25 a%0D%0Ab"
    assert escape_property("a,b:c%") == "a%2Cb%3Ac%25"
    path, planted = write_small_minimax(tmp_path / "x,y:z", plant=["dropped_scale"])
    r = subprocess.run([sys.executable, "-m", "ckptscan", "report", str(path), "--format",
                        "github"], capture_output=True, text=True, check=False, cwd=tmp_path,
                       env=env())
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    report = ckptscan.scan(path)
    assert len(lines) == len(report.findings)
    level = {"error": "error", "warning": "warning", "info": "notice"}
    for line, f in zip(lines, report.findings, strict=True):
        m = re.fullmatch(r"::(\w+) file=([^,]*),title=([^:]*)::(.*)", line)
        assert m is not None, line
        assert m.group(1) == level[str(f.severity)]
        assert m.group(3) == f"ckptscan {f.code}"
        # relative to the working directory, ',' and ':' escaped
        rel = os.path.relpath(f.file or report.checkpoint, tmp_path)
        assert m.group(2) == rel.replace("%", "%25").replace(":", "%3A").replace(",", "%2C")
        assert m.group(4).startswith(f.message.replace("%", "%25"))
    miss = [x for x in lines if "fp8-scale-missing" in x]
    weight = planted["dropped_scale"]["tensor"].removesuffix("_scale_inv")
    assert len(miss) == 1 and miss[0].endswith(f"%0Atensor: {weight}")


# ---------------------------------------------------------------- Python objects


def test_reprs_iteration_and_severity_strings(bad: Path) -> None:
    report = ckptscan.scan(bad)
    text = repr(report)
    assert text.startswith(f"<Report {str(bad)!r}: ") and len(text) < 200
    assert f"{report.total.tensors:,} tensors" in text
    assert f"{report.count(Severity.ERROR)} errors" in text
    assert report.count("error") == report.count(Severity.ERROR) == 2
    assert report.count("WARNING") == report.count(Severity.WARNING)
    assert report.fails("error") and report.fails(Severity.WARNING) and not report.fails("never")
    with pytest.raises(ValueError, match="unknown severity"):
        report.count("fatal")
    ckpt = ckptscan.open_checkpoint(bad)
    with ckpt:
        r = repr(ckpt)
        assert r.startswith(f"<Checkpoint {str(bad)!r}: 2 shards, ") and "tensors" in r
        assert f"{ckpt.num_tensors:,} tensors" in r
        shard = ckpt.shards[0]
        assert repr(shard) == (f"<Shard {shard.path!r}: {len(shard):,} tensors, "
                               f"{shard.file_size:,} bytes>")
        with safe_open(shard.path, "numpy") as ref:
            keys = set(ref.keys())
        infos = list(shard)
        assert {t.name for t in infos} == keys and infos == list(shard.tensors)
        tl = shard.tensors
        assert repr(tl).startswith(f"<TensorList {len(tl):,} tensors: {infos[0].name}")
        name = infos[3].name
        assert tl[name] == shard[name] == infos[3] and name in tl and infos[3] in tl
        assert "nope" not in tl
        with pytest.raises(KeyError):
            tl["nope"]
        with pytest.raises(IndexError):
            tl[len(tl)]
        assert tl[-1] == infos[-1]
    assert repr(ckpt).startswith(f"<Checkpoint {str(bad)!r}: 2 shards, 2 closed")


# ---------------------------------------------------------------- the tensor table


def _header(path: str) -> tuple[int, dict[str, Any]]:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return 8 + n, json.loads(f.read(n))


def _reference(ckpt_dir: Path) -> dict[str, dict[str, Any]]:
    """Every tensor from the files' own headers (parsed here with json)."""
    out = {}
    for p in sorted(ckpt_dir.glob("*.safetensors")):
        start, header = _header(str(p))
        for name, e in header.items():
            if name == "__metadata__":
                continue
            b, end = e["data_offsets"]
            m = re.search(r"\.layers\.(\d+)\.", name)
            x = re.search(r"\.experts\.(\d+)\.", name)
            out[name] = {"dtype": e["dtype"], "shape": tuple(e["shape"]), "shard": p.name,
                         "begin": start + b, "end": start + end, "nbytes": end - b,
                         "numel": int(np.prod(e["shape"], dtype=np.int64)),
                         "layer": int(m.group(1)) if m else -1,
                         "expert": int(x.group(1)) if x else -1}
    return out


def test_checkpoint_table_against_the_headers(bad: Path) -> None:
    ref = _reference(bad)
    with ckptscan.open_checkpoint(bad) as ckpt:
        table = ckpt.table()
    assert len(table) == len(ref) and table.columns[:3] == ("name", "dtype", "shape")
    assert repr(table).startswith(f"<TensorTable {len(ref):,} tensors x 13 columns")
    names = table["name"].tolist()
    assert sorted(names) == sorted(ref)
    for col in ("dtype", "shape", "shard", "begin", "end", "nbytes", "numel", "layer",
                "expert"):
        got = table[col].tolist()
        assert got == [ref[n][col] for n in names], col
    roles = dict(zip(names, table["role"].tolist(), strict=True))
    assert roles["model.layers.0.block_sparse_moe.experts.0.w1.weight"] == "moe_expert"
    assert roles["model.embed_tokens.weight"] == "embedding"
    assert set(table["component"].tolist()) == {"decoder"}
    assert table["scheme"].tolist() == [None] * len(ref)


def test_table_to_arrow_pandas_polars_without_copies(bad: Path) -> None:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

    with ckptscan.open_checkpoint(bad) as ckpt:
        table = ckpt.table()
    at = table.to_arrow()
    assert at.column_names == list(table.columns) and at.num_rows == len(table)
    begin = at.column("begin").chunk(0)
    assert begin.buffers()[1].address == table.numeric["begin"].ctypes.data  # wrapped
    assert at.column("dtype").type == pa.dictionary(pa.int8(), pa.string()) or \
        pa.types.is_dictionary(at.column("dtype").type)
    assert at.column("shape").to_pylist() == [list(s) for s in table["shape"].tolist()]
    assert at.column("scheme").null_count == len(table)
    df = table.to_pandas()
    assert np.shares_memory(df["begin"].to_numpy(), table.numeric["begin"])
    assert isinstance(df["role"].dtype, pd.CategoricalDtype)
    assert df["name"].tolist() == table["name"].tolist()
    assert df["dtype"].astype(str).tolist() == table["dtype"].tolist()
    pf = table.to_polars()
    assert pf["nbytes"].to_list() == table["nbytes"].tolist()
    assert pf["shape"].to_list() == [list(s) for s in table["shape"].tolist()]
    via_stream = pl.DataFrame(table)  # the Arrow PyCapsule stream
    assert via_stream["name"].to_list() == table["name"].tolist()


def test_tensors_command_csv_jsonl_parquet(bad: Path, tmp_path: Path) -> None:
    ref = _reference(bad)
    r = run("tensors", str(bad))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == len(ref)
    for row in rows:
        e = ref[row["name"]]
        assert row["dtype"] == e["dtype"] and row["shard"] == e["shard"]
        assert json.loads(row["shape"]) == list(e["shape"])
        assert int(row["begin"]) == e["begin"] and int(row["end"]) == e["end"]
        assert row["layer"] == ("" if e["layer"] < 0 else str(e["layer"]))
    out = tmp_path / "t.jsonl"
    assert run("tensors", str(bad), "--format", "jsonl", "-o", str(out)).returncode == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert {x["name"]: (x["nbytes"], x["expert"]) for x in recs} == {
        n: (e["nbytes"], None if e["expert"] < 0 else e["expert"]) for n, e in ref.items()}
    import pyarrow.parquet as pq

    pqf = tmp_path / "t.parquet"
    assert run("tensors", str(bad), "--format", "parquet", "-o", str(pqf)).returncode == 0
    back = pq.read_table(pqf)
    assert back.column("name").to_pylist() == [x["name"] for x in recs]
    assert back.column("numel").to_pylist() == [ref[x["name"]]["numel"] for x in recs]


def test_parquet_without_pyarrow_is_a_clear_error(bad: Path, tmp_path: Path) -> None:
    block = ("import sys\n"
             "class Block:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name == 'pyarrow' or name.startswith('pyarrow.'):\n"
             "            raise ImportError('blocked')\n"
             "sys.meta_path.insert(0, Block())\n"
             "from ckptscan.cli import main\n"
             f"sys.exit(main(['tensors', {str(bad)!r}, '--format', 'parquet', '-o', "
             f"{str(tmp_path / 'x.parquet')!r}]))\n")
    r = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                       check=False, env=env())
    assert r.returncode == 2 and "needs pyarrow: pip install pyarrow" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.parquet").exists()


# ---------------------------------------------------------------- pipes, progress, --help


def test_closed_pipe_is_quiet(bad: Path) -> None:
    for args in (["tensors", str(bad)], ["report", str(bad)], ["codes"]):
        p = subprocess.run(f"{sys.executable} -m ckptscan {' '.join(args)} | head -1",
                           shell=True, capture_output=True, text=True, check=False, env=env())
        assert p.stdout.count("\n") == 1 and "Traceback" not in p.stderr, args


def test_progress_line_redraws_in_place() -> None:
    out = io.StringIO()
    bar = ProgressLine(out, "deep scan")
    bar.update(0, 10, "0/10")
    bar.update(5, 10, "5/10")  # within 0.1 s of the last: skipped
    bar.update(10, 10, "10/10", final=True)
    text = out.getvalue()
    assert text.startswith("\r  deep scan [") and text.endswith("100% 10/10\n")
    assert "5/10" not in text and text.count("\r") == 2


def test_polars_without_pyarrow(bad: Path) -> None:
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'pyarrow' or name.startswith('pyarrow.'):\n"
            "            raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import ckptscan, json\n"
            f"t = ckptscan.open_checkpoint({str(bad)!r}).table()\n"
            "df = t.to_polars()\n"
            "assert 'pyarrow' not in sys.modules\n"
            "print(json.dumps({c: [str(v) for v in df[c].to_list()] for c in df.columns}))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=False, env=env())
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    with ckptscan.open_checkpoint(bad) as ckpt:
        table = ckpt.table()
    assert list(got) == list(table.columns)
    for col in table.columns:
        want = [list(v) if col == "shape" else v for v in table[col].tolist()]
        assert got[col] == [str(v) for v in want], col
