"""The HTML pages of ``ckptscan verify`` and ``ckptscan diff``: self-contained
(no external reference, the CSP of the HTML report), hostile names shown as text,
and in a real browser (headless Chromium, tests/browser.py) the numbers shown
against the JSON of the same run; a screenshot of each under the test's
temporary directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import orjson
import pytest
from browser import Browser, require_chromium
from ckptscan.cli import main
from safetensors.numpy import save_file

E4M3 = ml_dtypes.float8_e4m3fn
HOSTILE = "model.layers.0.<img src=x onerror=alert(1)>.weight"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    exe = require_chromium()
    b = Browser(exe)
    yield b
    b.close()


def quantize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E4M3 per 64 x 64 tile, scale absmax / 448."""
    r, c = w.shape
    amax = np.abs(w).reshape(r // 64, 64, c // 64, 64).max(axis=(1, 3)).astype(np.float32)
    s = (amax / np.float32(448)).astype(np.float32)
    full = np.repeat(np.repeat(s, 64, 0), 64, 1)
    return (w / full).astype(E4M3), s


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A faulty FP8 export (one scale inverted, a hostile name) and its source,
    verified and diffed by the CLI as JSON and as HTML."""
    root = tmp_path_factory.mktemp("pages")
    rng = np.random.default_rng(0)
    names = [f"model.layers.{i}.mlp.{p}.weight" for i in range(3) for p in ("up_proj",
                                                                             "down_proj")]
    names.append(HOSTILE)
    src = {n: (rng.standard_normal((128, 128)) * 0.02 * rng.uniform(0.5, 3)).astype(np.float32)
           for n in names}
    src["model.norm.weight"] = np.ones(128, np.float32)
    cfg = {"model_type": "llama", "num_hidden_layers": 3, "hidden_size": 128}
    (root / "src").mkdir()
    save_file({k: v.astype(ml_dtypes.bfloat16) for k, v in src.items()},
              str(root / "src" / "model.safetensors"))
    (root / "src" / "config.json").write_text(json.dumps(cfg))
    cand: dict[str, np.ndarray] = {"model.norm.weight": src["model.norm.weight"].astype(
        ml_dtypes.bfloat16)}
    for n in names:
        q, s = quantize(src[n].astype(ml_dtypes.bfloat16).astype(np.float32))
        cand[n], cand[n + "_scale_inv"] = q, s
    bad = "model.layers.1.mlp.up_proj.weight"
    cand[bad + "_scale_inv"] = (1 / cand[bad + "_scale_inv"]).astype(np.float32)
    (root / "cand").mkdir()
    save_file(cand, str(root / "cand" / "model.safetensors"))
    (root / "cand" / "config.json").write_text(json.dumps({**cfg, "quantization_config": {
        "quant_method": "fp8", "weight_block_size": [64, 64]}}))
    out: dict[str, Any] = {"root": root, "bad": bad}
    for fmt in ("json", "html"):
        path = root / f"verify.{fmt}"
        assert main(["verify", str(root / "cand"), "--against", str(root / "src"),
                     "--format", fmt, "-o", str(path)]) == 1
        out[f"verify.{fmt}"] = path
        path = root / f"diff.{fmt}"
        assert main(["diff", str(root / "src"), str(root / "cand"), "--format", fmt, "-o",
                     str(path)]) == 1
        out[f"diff.{fmt}"] = path
    return out


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.parametrize("page", ["verify.html", "diff.html"])
def test_pages_are_self_contained_and_escape_names(pages: dict[str, Any], page: str) -> None:
    html = pages[page].read_text()
    p = _Tags()
    p.feed(html)
    tags = [t for t, _ in p.tags]
    assert "img" not in tags  # the hostile name stayed text
    assert HOSTILE in "".join(p.text)
    for tag, attrs in p.tags:
        assert tag not in ("link", "iframe", "object", "embed", "base")
        if tag == "script":
            assert "src" not in attrs
        for key in ("src", "href", "action", "xlink:href"):
            value = attrs.get(key) or ""
            assert not value or value.startswith("#"), (tag, key, value)
    assert "url(" not in html and "@import" not in html
    csp = next(a["content"] for t, a in p.tags if t == "meta"
               and a.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and "default-src 'none'" in csp


def test_verify_page_shows_what_the_json_says(browser: Browser, pages: dict[str, Any],
                                              tmp_path: Path) -> None:
    doc = orjson.loads(pages["verify.json"].read_bytes())
    page = browser.open(pages["verify.html"])
    js = page.js
    assert js("document.querySelector('[data-k=tensors]').textContent") == \
        str(doc["compared"])
    for sev in ("error", "warning", "info"):
        text = js(f"document.querySelector('[data-k=count-{sev}]').textContent")
        assert int(text.split()[0]) == doc["counts"][sev]
    rows = js("Array.from(document.querySelectorAll('table.tensors tbody tr')).map("
              "r => [r.dataset.name, r.querySelector('[data-k=rel]').dataset.v])")
    by_name = {t["name"]: t for t in doc["tensors"]}
    assert len(rows) == len(by_name)
    for name, rel in rows:
        assert float(rel) == pytest.approx(by_name[name]["rel_error"], rel=1e-12)
    flagged = js("Array.from(document.querySelectorAll('table.tensors tr.row-error')).map("
                 "r => r.dataset.name)")
    assert flagged == [pages["bad"]]
    codes = js("Array.from(document.querySelectorAll('input[data-filter=code]')).map("
               "i => i.value)")
    assert codes == sorted({f["code"] for f in doc["findings"]}) == ["verify-scale-inverted"]
    # the filter hides the finding; the charts are drawn
    page.click("input[data-filter=code][value=verify-scale-inverted]")
    assert js("document.querySelector('#findings .shown').textContent") == "0"
    assert js("document.querySelectorAll('svg.errbars rect').length") == len(doc["roles"])
    assert js("document.querySelectorAll('svg.layers rect').length") == len(doc["layers"])
    png = page.screenshot(tmp_path / "verify.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "verify.png").stat().st_size > 10_000
    page.close()


def test_diff_page_shows_what_the_json_says(browser: Browser, pages: dict[str, Any],
                                            tmp_path: Path) -> None:
    doc = orjson.loads(pages["diff.json"].read_bytes())
    page = browser.open(pages["diff.html"])

    def n(key: str) -> int:
        return int(page.js(f"document.querySelector('[data-k=n-{key}]').textContent")
                   .replace(",", ""))

    assert n("same-name") == doc["same_name"]
    assert n("added") == len(doc["added"]) > 0
    assert n("removed") == len(doc["removed"]) == 0
    assert n("dtype") == sum(1 for c in doc["changes"] if c["what"] == "dtype")
    assert page.js("document.querySelector('[data-k=verdict]').textContent").startswith(
        "they differ")
    added = page.js("Array.from(document.querySelectorAll('#added tbody tr td:first-child'))"
                    ".map(td => td.textContent)")
    assert sorted(added) == sorted(t["name"] for t in doc["added"])
    # sorting by a column (a real click) reorders the rows
    page.click("#added thead th:first-child button")
    page.click("#added thead th:first-child button")
    desc = page.js("Array.from(document.querySelectorAll('#added tbody tr td:first-child'))"
                   ".map(td => td.textContent)")
    assert desc == sorted(desc, reverse=True)
    page.screenshot(tmp_path / "diff.png")
    assert (tmp_path / "diff.png").stat().st_size > 10_000
    page.close()
