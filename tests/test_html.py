"""The HTML report (`--format html`): what it shows, checked in a real browser
(headless Chromium from the distribution, driven over the DevTools protocol:
tests/browser.py) against the JSON report of the same checkpoint; hostile names
shown as text, never as markup; no external reference; the farm page; and the
Report data behind the page (precision map, deep heat maps, code histograms)
against independent computations from the files (the `safetensors` library for
headers, ml_dtypes for values, numpy for blocks and histograms)."""

from __future__ import annotations

import json
import math
import re
import struct
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import orjson
import pytest
from browser import Browser, Page, require_chromium
from ckptscan import scan
from ckptscan.cli import main
from ckptscan.deepmap import SAMPLE_BYTES, sample_histogram, sample_spans
from ckptscan.farm.store import Store
from ckptscan.render.html import to_html, to_html_summary
from ckptscan.result import Report
from ckptscan.synth import PLANTS, write_small_minimax
from safetensors import safe_open

CLI = [sys.executable, "-c", "import sys; from ckptscan.cli import main; sys.exit(main())"]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_chromium()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    b = Browser(chromium)
    yield b
    b.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    """The demo checkpoint (every defect planted), its JSON report and its HTML
    page, both written by the CLI with --deep."""
    root = tmp_path_factory.mktemp("demo")
    ckpt, _ = write_small_minimax(root / "demo", plant=list(PLANTS))
    page = root / "demo.html"
    for fmt, out in (("json", root / "demo.json"), ("html", page)):
        assert main(["report", str(ckpt), "--deep", "--format", fmt, "-o", str(out)]) == 1
    return ckpt, orjson.loads((root / "demo.json").read_bytes()), page


def open_page(browser: Browser, path: Path) -> Page:
    return browser.open(path)


def num(text: str) -> int:
    return int(text.replace(",", "").strip())


def fmt_bytes(n: float) -> str:
    """Binary units, one decimal (bytes as a whole number): the test's own formatter."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def finding_codes(doc: dict[str, Any]) -> set[str]:
    return {c for f in doc["findings"] for c in [f["code"]] + [x["code"] for x in
                                                              f.get("explains", [])]}


# ---------------------------------------------------------------- no external references


class _Refs(HTMLParser):
    """Every tag, attribute and style/script text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._in = tag
            (self.scripts if tag == "script" else self.styles).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts[-1] += data
        elif self._in == "style":
            self.styles[-1] += data
        else:
            self.text.append(data)


NETWORK = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:|//)", re.I)


def assert_self_contained(page: str) -> _Refs:
    """No src/href/… to anything but the page itself or its folder; no @import;
    no url() but data: or #fragments; a CSP that forbids every fetch."""
    p = _Refs()
    p.feed(page)
    p.close()
    for tag, attrs in p.tags:
        assert tag not in ("link", "iframe", "object", "embed", "base", "img", "audio",
                           "video", "source", "frame"), tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("src", "href", "xlink:href", "action", "formaction", "poster",
                        "data", "srcset", "background"):
                assert value is not None
                assert not NETWORK.match(value) or value.startswith("data:"), (tag, value)
                assert not value.lower().startswith("javascript:"), value
            if name == "style":
                assert "url(" not in (value or "").lower() and "@import" not in (value or "")
    for css in p.styles:
        assert "@import" not in css
        for m in re.finditer(r"url\(\s*['\"]?([^'\")]*)", css, re.I):
            assert m.group(1).startswith(("data:", "#")), m.group(1)
    csp = [a["content"] for t, a in p.tags
           if t == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy"]
    assert csp and "default-src 'none'" in (csp[0] or "")
    assert "script-src 'sha256-" in (csp[0] or "") and "unsafe-inline" not in \
        (csp[0] or "").split("script-src")[1].split(";")[0]
    return p


# ---------------------------------------------------------------- the demo page


def test_demo_page_shows_what_the_json_says(browser: Browser, demo: tuple[Path, dict[str, Any],
                                                                          Path],
                                            tmp_path: Path) -> None:
    ckpt, doc, path = demo
    page = open_page(browser, path)
    try:
        k = page.js("Object.fromEntries([...document.querySelectorAll('[data-k]')]"
                    ".filter(e => !e.matches('table')).map(e => [e.dataset.k, "
                    "e.textContent]))")
        assert num(k["tensors"]) == doc["tensors"]
        assert num(k["parameters"]) == doc["parameters"]
        assert k["bytes"] == fmt_bytes(doc["bytes"])
        assert page.js("document.querySelector('[data-k=bytes]').title") == \
            f"{doc['bytes']:,} bytes"
        assert k["checkpoint"] == str(ckpt)
        assert k["model_type"] == doc["model_type"]
        assert num(k["shards"]) == len(doc["shards"]["found"])
        for sev in ("error", "warning", "info"):
            assert num(k[f"count-{sev}"].split()[0]) == doc["summary"][sev]
        for key in ("fp8_nan_codes", "float_nan", "float_inf"):
            assert num(k[key]) == doc["deep"][key]
        cfg = json.loads((ckpt / "config.json").read_text())
        assert num(k["config-layers"]) == cfg["num_hidden_layers"]
        assert num(k["config-hidden-size"]) == cfg["hidden_size"]
        assert num(k["config-vocabulary"]) == cfg["vocab_size"]
        assert num(k["config-routed-experts"]) == cfg["num_local_experts"]

        # the dtype and role tables, row by row
        for key in ("dtypes", "roles"):
            rows = page.js(f"[...document.querySelectorAll('table[data-k={key}] tbody tr')]"
                           ".map(r => [r.dataset.name, ...[...r.cells].map(c => c.textContent),"
                           " r.cells[5].title])")
            order = (sorted(doc[key], key=lambda n: -doc[key][n]["bytes"]) if key == "dtypes"
                     else list(doc[key]))
            assert [r[0] for r in rows] == order
            for name, _, tensors, _, params, _, nbytes, _, *rest in rows:
                want = doc[key][name]
                assert num(tensors) == want["tensors"] and num(params) == want["parameters"]
                assert nbytes == fmt_bytes(want["bytes"])
                assert rest[-1] == f"{want['bytes']:,} bytes"

        # findings: one group per finding, every code shown, severities as in the JSON
        groups = page.js("[...document.querySelectorAll('tbody.group')].map(g => "
                         "[g.dataset.sev, [...g.rows].map(r => r.dataset.code)])")
        assert len(groups) == len(doc["findings"])
        for (sev, codes), f in zip(groups, doc["findings"], strict=True):
            assert sev == f["severity"]
            assert codes == [f["code"]] + [x["code"] for x in f.get("explains", [])]
        shown = set(page.js("[...document.querySelectorAll('tr[data-code] td:nth-child(2) "
                            "code')].map(c => c.textContent)"))
        assert shown == finding_codes(doc)

        # precision map cells: main dtype and bits per weight of each cell
        cells = page.js("[...document.querySelectorAll('table.pmap tbody tr')].map(r => "
                        "[+r.dataset.first, +r.dataset.last, [...r.cells].slice(1).map(c => "
                        "c.dataset.dtype ? [c.dataset.dtype, +c.dataset.bpw] : null)])")
        grid = doc["precision"][0]
        assert len(cells) == len(grid["rows"])
        for (first, last, shown_cells), row in zip(cells, grid["rows"], strict=True):
            assert (first, last) == (row["first"], row["last"])
            for col, c in zip(grid["columns"], shown_cells, strict=True):
                want = row["cells"].get(col)
                if want is None:
                    assert c is None
                    continue
                main_dtype = max(want["dtypes"].items(), key=lambda kv: kv[1])[0]
                assert c[0] == main_dtype
                assert c[1] == pytest.approx(8 * want["bytes"] / want["weights"], abs=1e-3)

        # the deep section: where the planted NaN code and bad scales are
        nan_map = next(m for m in doc["deep"]["maps"] if m["column"] == "moe_expert")
        hot = [i for i, v in enumerate(nan_map["nan"]) if v]
        n_exp = len(nan_map["experts"])
        worst = page.js("[...document.querySelectorAll('figure[data-metric=nan] .worst')]"
                        ".map(p => p.textContent)")
        for i in hot:
            layer, expert = nan_map["layers"][i // n_exp], nan_map["experts"][i % n_exp]
            assert f"layer {layer} expert {expert}: {nan_map['nan'][i]} NaN" in worst[0]
        hists = page.js("[...document.querySelectorAll('figure[data-column]')].map(f => "
                        "[f.dataset.column, f.dataset.dtype, "
                        "f.querySelectorAll('rect').length])")
        assert hists == [[h["column"], h["dtype"], 256] for h in doc["deep"]["histograms"]]

        # nothing was fetched but the page; no script error; fits 1280 px
        requested = {e["params"]["request"]["url"] for e in page.events(
            "Network.requestWillBeSent")}
        assert requested == {path.resolve().as_uri()}
        assert not page.events("Runtime.exceptionThrown")
        assert page.js("document.documentElement.scrollWidth") <= 1280
        assert page.js("document.documentElement.classList.contains('js')")

        png = page.screenshot(tmp_path / "demo.png")
        width, height = png_size(png)
        assert width == 1280 and height > 2000
        # printing: the controls are hidden, the rest prints
        page.call("Emulation.setEmulatedMedia", {"media": "print"})
        assert page.js("getComputedStyle(document.querySelector('.filters')).display") == "none"
        assert page.js("getComputedStyle(document.querySelector('table.findings')).display") \
            == "table"
        assert page.pdf().startswith(b"%PDF")
    finally:
        page.close()


def test_findings_filters_hide_the_right_rows(browser: Browser,
                                             demo: tuple[Path, dict[str, Any], Path]) -> None:
    _, doc, path = demo
    page = open_page(browser, path)
    findings = doc["findings"]

    def visible() -> list[int]:
        return page.js("[...document.querySelectorAll('tbody.group')].map((g, i) => "
                       "g.offsetParent === null ? -1 : i).filter(i => i >= 0)")

    try:
        assert visible() == list(range(len(findings)))
        page.click("input[data-filter=sev][value=error]")
        want = [i for i, f in enumerate(findings) if f["severity"] != "error"]
        assert want and visible() == want
        assert num(page.js("document.querySelector('.shown').textContent")) == len(want)
        page.click("input[data-filter=sev][value=info]")
        assert visible() == [i for i, f in enumerate(findings) if f["severity"] == "warning"]
        page.click("input[data-filter=sev][value=error]")
        page.click("input[data-filter=sev][value=info]")
        assert visible() == list(range(len(findings)))
        # codes: leave one checked
        keep = "fp8-nan"
        for code in sorted(finding_codes(doc) - {keep}):
            page.click(f"input[data-filter=code][value='{code}']")
        assert visible() == [i for i, f in enumerate(findings)
                             if keep in {f["code"], *(x["code"] for x in f.get("explains", []))}]
        assert not page.events("Runtime.exceptionThrown")
    finally:
        page.close()


def test_page_reads_without_script(browser: Browser,
                                   demo: tuple[Path, dict[str, Any], Path]) -> None:
    """With JavaScript off every finding is listed and the filters are not shown."""
    _, doc, path = demo
    page = browser.open(path, script=False)
    try:
        assert not page.js("document.documentElement.classList.contains('js')")
        assert page.js("[...document.querySelectorAll('tbody.group')].filter(g => "
                       "g.offsetParent !== null).length") == len(doc["findings"])
        assert page.js("getComputedStyle(document.querySelector('.filters')).display") == "none"
        assert num(page.js("document.querySelector('[data-k=tensors]').textContent")) == \
            doc["tensors"]
    finally:
        page.close()


# ---------------------------------------------------------------- hostile input


HOSTILE = [
    "model.layers.0.<script>window.__pwned=1</script>.weight",
    'model.layers.0."><img src=x onerror="window.__pwned=2">.weight',
    "model.layers.0.</style></code><b>bold</b>.weight",
    "model.layers.0.\x1b[2J\x1b[31mred.weight",
    "model.layers.0.\u202etxt.exe.weight",
    "model.layers.0.javascript:alert(3).weight",
]


def test_hostile_names_are_text_not_markup(browser: Browser, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    root = tmp_path / "<svg onload=window.__pwned=4>"
    root.mkdir()
    tensors = {n: np.full((4, 4), i, np.float32) for i, n in enumerate(HOSTILE)}
    tensors["model.embed_tokens.weight"] = np.zeros((8, 4), np.float32)
    save_file(tensors, str(root / "model-00001-of-00002.safetensors"))
    save_file({"lm_head.weight": np.zeros((8, 4), np.float32)},
              str(root / "model-00002-of-00002.safetensors"))
    # the index leaves the hostile tensors out: each becomes a finding naming it
    (root / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors",
        "gone<script>window.__pwned=5</script>": "<img src=x onerror=window.__pwned=6>"}}))
    (root / "config.json").write_text(json.dumps({
        "model_type": "<script>window.__pwned=7</script>",
        "architectures": ["</title><script>window.__pwned=8</script>"],
        "torch_dtype": "\"><iframe src=//evil.example>"}))
    report = scan(root)
    page_text = to_html(report)
    refs = assert_self_contained(page_text)
    assert len(refs.scripts) == 1  # the page's own
    assert not any(t in ("svg",) and "onload" in a for t, a in refs.tags)
    text = "".join(refs.text)
    for name in HOSTILE:  # shown as text, control characters escaped
        shown = name.replace("\x1b", "\\x1b").replace("\u202e", "\\u202e")
        assert shown in text, shown
    assert "\x1b" not in page_text and "\u202e" not in page_text
    path = tmp_path / "hostile.html"
    path.write_text(page_text, encoding="utf-8")
    page = open_page(browser, path)
    try:
        assert page.js("window.__pwned") is None
        assert page.js("document.scripts.length") == 1
        assert page.js("document.querySelectorAll('img, iframe, svg[onload]').length") == 0
        assert not page.js("[...document.querySelectorAll('b')].some(b => "
                           "b.textContent === 'bold')")
        shown_names = page.js("[...document.querySelectorAll('code')].map(c => c.textContent)")
        assert HOSTILE[0] in shown_names
        assert "<script>window.__pwned=7</script>" in shown_names  # model_type, as text
        assert page.js("document.title").startswith("ckptscan: <svg onload=")
    finally:
        page.close()
    summary = to_html_summary(report)
    assert "<script" not in summary and "window.__pwned=7" in summary
    assert "<script>window" not in summary
    assert report._repr_html_() == summary


# ---------------------------------------------------------------- replica, farm, CLI


def test_full_size_replica_page(browser: Browser, minimax_replica: Path, tmp_path: Path) -> None:
    report = scan(minimax_replica)
    page_text = to_html(report)
    assert_self_contained(page_text)
    size = len(page_text.encode())
    assert size < 100_000, size  # 96,103 tensors, a page of a few dozen KB
    path = tmp_path / "minimax.html"
    path.write_text(page_text, encoding="utf-8")
    doc = report.to_dict()
    page = open_page(browser, path)
    try:
        assert num(page.js("document.querySelector('[data-k=tensors]').textContent")) == 96_103
        assert num(page.js("document.querySelector('[data-k=parameters]').textContent")) == \
            doc["parameters"]
        rows = page.js("[...document.querySelectorAll('table.pmap tbody tr')].map(r => "
                       "[r.cells[0].textContent, [...r.cells].slice(1).map(c => c.dataset.dtype "
                       "|| null)])")
        assert rows == [["outside layers", ["BF16", None, None, None, "BF16", "BF16"]],
                        ["layers 0–61 (62)", [None, "F8_E4M3", "F8_E4M3", "F32", "BF16",
                                              None]]]
        assert page.js("document.documentElement.scrollWidth") <= 1280
        png = page.screenshot(tmp_path / "minimax.png")
        assert png_size(png)[0] == 1280
    finally:
        page.close()


def test_farm_page(browser: Browser, minimax_replica: Path, tmp_path: Path) -> None:
    from ckptscan.replica import copy_replica

    root = tmp_path / "farm"
    write_small_minimax(root / "demo-a", plant="nan_code")
    write_small_minimax(root / "demo-b")
    copy_replica(minimax_replica, root / "MiniMax-M2")
    (root / "demo-b" / "model-00001-of-00002.safetensors").unlink()  # a missing shard
    db, out = tmp_path / "farm.db", tmp_path / "out" / "farm.html"
    out.parent.mkdir()
    run = subprocess.run([*CLI, "farm", str(root), "--db", str(db), "--format", "html", "-o",
                          str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr
    rows = orjson.loads(subprocess.run([*CLI, "farm", "--db", str(db), "--format", "json"],
                                       capture_output=True, timeout=120).stdout)["checkpoints"]
    assert len(rows) == 3
    html_text = out.read_text(encoding="utf-8")
    assert_self_contained(html_text)
    pages = sorted((tmp_path / "out" / "farm.html.d").iterdir())
    assert [p.name for p in pages] == ["0000-MiniMax-M2.html", "0001-demo-a.html",
                                       "0002-demo-b.html"]
    for p in pages:
        text = p.read_text(encoding="utf-8")
        assert_self_contained(text)
        assert 'href="../farm.html"' in text
    page = open_page(browser, out)
    try:
        table = page.js("[...document.querySelectorAll('table.farm tbody tr')].map(r => "
                        "[r.dataset.path, r.querySelector('a').getAttribute('href'), "
                        "...[...r.cells].map(c => c.dataset.v ?? c.textContent)])")
        heads = page.js("[...document.querySelectorAll('table.farm thead th')]"
                        ".map(h => h.textContent)")
        col = {h: i + 2 for i, h in enumerate(heads)}
        assert [r[0] for r in table] == [r["path"] for r in rows]
        for shown, row in zip(table, rows, strict=True):
            assert (tmp_path / "out" / shown[1]).is_file()
            for key, head in (("errors", "err"), ("warnings", "warn"), ("infos", "info"),
                              ("parameters", "params"), ("tensors", "tensors"),
                              ("bytes", "size")):
                assert int(shown[col[head]]) == row[key], (head, row["path"])
            assert shown[col["model type"]] == row["model_type"]
            assert shown[col["main dtype"]] == row["main_dtype"]
        by_params = sorted(rows, key=lambda r: r["parameters"])
        page.click("table.farm thead th:nth-child(4) button")
        order = page.js("[...document.querySelectorAll('table.farm tbody tr')]"
                        ".map(r => r.dataset.path)")
        assert order == [r["path"] for r in by_params]
        page.click("table.farm thead th:nth-child(4) button")
        order = page.js("[...document.querySelectorAll('table.farm tbody tr')]"
                        ".map(r => r.dataset.path)")
        assert order == [r["path"] for r in reversed(by_params)]
        assert not page.events("Runtime.exceptionThrown")
    finally:
        page.close()
    # a checkpoint page shows its stored report
    with Store(db, create=False) as store:
        stored = store.load_report(rows[1]["path"])
    assert to_html(stored, back="../farm.html") == pages[1].read_text(encoding="utf-8")
    # the page and its folder are rewritten, stale pages removed
    (tmp_path / "out" / "farm.html.d" / "0009-old.html").write_text("x")
    assert main(["farm", "--db", str(db), "--where", "errors = 0", "--format", "html",
                 "-o", str(out)]) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "farm.html.d").iterdir()) == \
        ["0000-MiniMax-M2.html", "0001-demo-a.html"]


def test_cli_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, _ = write_small_minimax(tmp_path / "a")
    b, _ = write_small_minimax(tmp_path / "b", plant="bf16_nan")
    assert main(["report", str(a), "--format", "html"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<!DOCTYPE html>") and out.count("<article") == 1
    assert main(["report", str(a), str(b), "--deep", "--format", "html", "-o",
                 str(tmp_path / "two.html")]) == 1
    two = (tmp_path / "two.html").read_text(encoding="utf-8")
    assert two.count("<article") == 2 and 'id="r1-findings"' in two
    assert_self_contained(two)
    assert main(["demo", "--format", "html", "-o", str(tmp_path / "demo.html")]) == 0
    assert "Deep scan" in (tmp_path / "demo.html").read_text(encoding="utf-8")
    db = tmp_path / "f.db"
    assert main(["farm", str(a), "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["farm", "--db", str(db), "--format", "html"]) == 2
    assert "give -o FILE" in capsys.readouterr().err
    assert main(["farm", "--db", str(db), "--findings", "--format", "html", "-o",
                 str(tmp_path / "x.html")]) == 2
    assert not (tmp_path / "x.html").exists()


# ---------------------------------------------------------------- the data behind the page


def _raw(path: Path) -> tuple[dict[str, Any], bytes]:
    """A safetensors file's header and data, read here (not by ckptscan)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def _tensors(ckpt: Path) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    out = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        header, data = _raw(f)
        with safe_open(str(f), "numpy") as ref:  # the reference agrees on names and shapes
            assert set(ref.keys()) == set(header) - {"__metadata__"}
        for name, e in header.items():
            if name != "__metadata__":
                a, b = e["data_offsets"]
                out[name] = (e["dtype"], tuple(e["shape"]), data[a:b])
    return out


def test_deep_maps_and_histograms_against_numpy(demo: tuple[Path, dict[str, Any],
                                                            Path]) -> None:
    ckpt, doc, _ = demo
    t = _tensors(ckpt)
    e4m3 = np.frombuffer(bytes(range(256)), np.uint8).view(ml_dtypes.float8_e4m3fn)
    value = e4m3.astype(np.float64)
    expert = re.compile(r"model\.layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.w\d\.weight$")
    cells: dict[tuple[int, int], dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    hist = np.zeros(256, np.int64)
    for name, (dtype, shape, data) in t.items():
        m = expert.match(name)
        if not m:
            continue
        assert dtype == "F8_E4M3"
        c = cells[int(m[1]), int(m[2])]
        codes = np.frombuffer(data, np.uint8).reshape(shape)
        hist += np.bincount(codes.ravel(), minlength=256)
        mag = codes & 0x7F
        c["tensors"] += 1
        c["nan"] += int((mag == 0x7F).sum())
        c["saturated"] += int((mag == 0x7E).sum())
        c["codes"] += codes.size
        scale = t.get(name + "_scale_inv")
        if scale is None:  # read without a block scale: no blocks
            continue
        rb, cb = math.ceil(shape[0] / 128), math.ceil(shape[1] / 128)
        for i in range(rb):
            for j in range(cb):
                blk = codes[i * 128:(i + 1) * 128, j * 128:(j + 1) * 128]
                v = value[blk]
                has_nan = bool(np.isnan(v).any())
                top = float(np.abs(v[~np.isnan(v)]).max())
                c["blocks"] += 1
                c["zero"] += int(not has_nan and top == 0)
                c["low"] += int(not has_nan and 0 < top < 448 / 4)
        s = np.frombuffer(scale[2], np.float32)
        if scale[1] == (rb, cb):  # a scale of another shape is not read as this grid
            good = s[np.isfinite(s) & (s > 0)]
            c["bad"] += s.size - good.size
            c["log2"] += float(np.log2(good.astype(np.float64)).sum())
            c["n_log2"] += good.size
    m = next(x for x in doc["deep"]["maps"] if x["column"] == "moe_expert")
    assert m["layers"] == [0, 1] and m["experts"] == [0, 1, 2, 3]
    for i, (layer, ex) in enumerate((la, e) for la in m["layers"] for e in m["experts"]):
        c = cells[layer, ex]
        assert m["tensors"][i] == c["tensors"]
        assert m["nan"][i] == c["nan"] and m["inf"] == []
        assert m["blocks"][i] == c["blocks"]
        assert m["zero_blocks"][i] == c["zero"] and m["low_blocks"][i] == c["low"]
        assert m["bad_scales"][i] == c["bad"]
        assert m["saturated_ppm"][i] == round(1e6 * c["saturated"] / c["codes"])
        assert m["scale_log2"][i] == pytest.approx(c["log2"] / c["n_log2"], abs=0.006)
    # the planted defects land in their cells
    assert sum(m["nan"]) == 1 and m["nan"][1 * 4 + 2] == 1
    assert m["zero_blocks"][1 * 4 + 1] == 1 and m["low_blocks"][0 * 4 + 2] == 1
    assert m["bad_scales"][0 * 4 + 1] == 1 and m["bad_scales"][1 * 4 + 0] == 1
    # float NaN in the norm column (bf16_nan: layer 1's post-attention norm)
    norm = next(x for x in doc["deep"]["maps"] if x["column"] == "norm")
    bf = {n: np.frombuffer(d, np.uint16).view(ml_dtypes.bfloat16).astype(np.float32)
          for n, (dt, _, d) in t.items() if dt == "BF16" and "layernorm" in n}
    for i, layer in enumerate(norm["layers"]):
        assert norm["nan"][i] == sum(int(np.isnan(v).sum()) for n, v in bf.items()
                                     if f".layers.{layer}." in n)
    # every expert weight is under 64 KiB: the histogram counts all of them
    h = next(x for x in doc["deep"]["histograms"] if x["column"] == "moe_expert")
    assert all(len(d) <= SAMPLE_BYTES for n, (_, _, d) in t.items() if expert.match(n))
    assert h["dtype"] == "F8_E4M3" and h["counts"] == hist.tolist()
    assert h["sampled"] == h["total"] == int(hist.sum())


def test_sample_histogram_spans() -> None:
    rng = np.random.default_rng(1)
    for n in (0, 1, 1000, SAMPLE_BYTES, SAMPLE_BYTES + 1, 3 << 20, (3 << 20) + 12345):
        data = rng.integers(0, 256, n, dtype=np.uint8)
        spans = sample_spans(n)
        if n <= SAMPLE_BYTES:
            assert spans == [(0, n)]
        else:
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert sum(b - a for a, b in spans) == SAMPLE_BYTES
            assert all(a2 >= b1 for (_, b1), (a2, _) in zip(spans, spans[1:], strict=False))
        want = sum((np.bincount(data[a:b], minlength=256) for a, b in spans),
                   np.zeros(256, np.int64))
        assert sample_histogram(data).tolist() == want.tolist()


def test_precision_map_against_headers(minimax_replica: Path,
                                       demo: tuple[Path, dict[str, Any], Path]) -> None:
    """Per layer, the cells add up to the layer's tensors as the headers list them."""
    for ckpt in (minimax_replica, demo[0]):
        report = scan(ckpt)
        per_layer: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
        for f in sorted(ckpt.glob("*.safetensors")):
            with safe_open(str(f), "numpy") as ref:
                for name in ref.keys():
                    sl = ref.get_slice(name)
                    shape = sl.get_shape()
                    width = {"F8_E4M3": 1, "BF16": 2, "F32": 4}[sl.get_dtype()]
                    m = re.search(r"\.layers\.(\d+)\.", name)
                    acc = per_layer[int(m[1]) if m else -1]
                    acc[0] += 1
                    # parameters are logical weights: block scales are overhead (#11)
                    acc[1] += 0 if name.endswith("_scale_inv") else math.prod(shape)
                    acc[2] += math.prod(shape) * width
        (grid,) = report.precision
        seen: dict[int, list[int]] = {}
        for row in grid.rows:
            sums = [sum(c.tensors for c in row.cells.values()),
                    sum(c.parameters for c in row.cells.values()),
                    sum(c.bytes for c in row.cells.values())]
            for layer in range(row.first, row.last + 1):
                seen[layer] = sums
        assert seen == dict(per_layer)
    # MiniMax-M2, hand-checked: every layer's experts are 256 x 3 FP8 matrices of
    # 3072 x 1536 with F32 128x128 block scales
    (grid,) = scan(minimax_replica).precision
    assert [(r.first, r.last) for r in grid.rows] == [(-1, -1), (0, 61)]
    cell = grid.rows[1].cells["moe_expert"]
    weights = 256 * 3 * 3072 * 1536
    assert cell.dtypes == {"F8_E4M3": weights} and cell.weights == weights
    assert cell.bytes == weights + 256 * 3 * (24 * 12) * 4
    assert cell.bits_per_weight == pytest.approx(8 + 32 / (128 * 128))


def test_report_round_trips_with_the_new_fields(demo: tuple[Path, dict[str, Any],
                                                            Path]) -> None:
    report = Report.from_dict(demo[1])
    assert orjson.loads(orjson.dumps(report.to_dict())) == demo[1]
    notebook = report._repr_html_()  # the compact summary: numbers as in the JSON
    doc = demo[1]
    assert f"{doc['tensors']:,} tensors, {doc['parameters']:,} parameters" in notebook
    for sev in ("error", "warning", "info"):
        assert f'<span class="sev {sev}">{doc["summary"][sev]:,} {sev}</span>' in notebook
    for name, c in doc["dtypes"].items():
        assert f'{name}</td><td class="num">{c["tensors"]:,}</td><td class="num">' \
               f'{c["parameters"]:,}</td>' in notebook
    assert "<script" not in notebook
    assert to_html(Report.from_dict(report.to_dict())) == to_html(report)
    # a report stored before these fields existed still loads and renders
    old = {k: v for k, v in demo[1].items() if k not in ("config", "precision")}
    old["deep"] = {k: v for k, v in old["deep"].items() if k not in ("maps", "histograms")}
    legacy = Report.from_dict(old)
    assert legacy.precision == [] and legacy.deep is not None and legacy.deep.maps == []
    assert "<table class=\"findings\"" in to_html(legacy)


def test_large_heat_maps_stay_small(tmp_path: Path) -> None:
    """A 62-layer x 256-expert map with varied values (what a real MoE gives)
    is drawn as one path per colour: the page stays well under a megabyte."""
    rng = np.random.default_rng(0)
    cells = 62 * 256
    a, _ = write_small_minimax(tmp_path / "a")
    doc = scan(a, deep=True).to_dict()
    m = next(x for x in doc["deep"]["maps"] if x["column"] == "moe_expert")
    m.update(layers=list(range(62)), experts=list(range(256)), tensors=[3] * cells,
             nan=[0] * cells, blocks=[864] * cells,
             zero_blocks=[int(x) for x in rng.random(cells) < 0.001],
             saturated_ppm=[int(x) for x in rng.integers(100, 300, cells)],
             scale_log2=[round(float(x), 2) for x in rng.normal(-12, 0.3, cells)],
             low_blocks=[], bad_scales=[], inf=[])
    page = to_html(Report.from_dict(doc))
    assert len(page.encode()) < 1_500_000, len(page)
    assert_self_contained(page)
    assert page.count('<path fill="') <= 2 * 8 + 2 * 6 + 8  # a path per colour and map
