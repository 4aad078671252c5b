"""index.json against the shards: the C++ parse and join, checked against a
plain-dict reference on small checkpoints with every kind of disagreement."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from ckptscan import _core, scan
from ckptscan.checkpoint import open_checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

SHARDS = {
    "model-00001-of-00002.safetensors": ["a.0.w", "a.1.w", "b"],
    "model-00002-of-00002.safetensors": ["c", "d.weight", "e"],
}


def write(root: Path, shards: dict[str, list[str]], weight_map: dict[str, str] | None,
          extra: dict[str, object] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for file, names in shards.items():
        save_file({n: np.full(3, i, np.float32) for i, n in enumerate(names)}, str(root / file))
    if weight_map is not None:
        doc = {"metadata": {"total_size": 12 * sum(map(len, shards.values()))},
               "weight_map": weight_map, **(extra or {})}
        (root / "model.safetensors.index.json").write_text(json.dumps(doc))
    return root


def exact_map() -> dict[str, str]:
    return {n: f for f, names in SHARDS.items() for n in names}


def codes(root: Path) -> dict[str, set[str | None]]:
    out: dict[str, set[str | None]] = {}
    for f in scan(root).findings:
        out.setdefault(f.code, set()).add(f.tensor)
    return out


def test_agreeing_index_gives_nothing(tmp_path: Path) -> None:
    assert codes(write(tmp_path, SHARDS, exact_map())) == {}


def test_every_disagreement_is_named(tmp_path: Path) -> None:
    wm = exact_map()
    wm["b"] = "model-00002-of-00002.safetensors"        # in shard 1 really
    del wm["e"]                                          # unlisted
    wm["ghost"] = "model-00001-of-00002.safetensors"     # in no shard
    found = codes(write(tmp_path, SHARDS, wm))
    assert found == {"index-wrong-shard": {"b"}, "index-unlisted": {"e"},
                     "index-tensor-absent": {"ghost"}}


def test_duplicate_across_shards_with_and_without_index(tmp_path: Path) -> None:
    shards = {**SHARDS, "model-00002-of-00002.safetensors": ["c", "d.weight", "a.1.w"]}
    with_index = codes(write(tmp_path / "i", shards, exact_map()))
    assert with_index["tensor-duplicate"] == {"a.1.w"}
    without = codes(write(tmp_path / "n", shards, None))
    # without an index, a sharded set is named as such (loaders need the index)
    assert without == {"tensor-duplicate": {"a.1.w"}, "index-absent": {None}}


def test_missing_and_unreadable_shards_count_their_tensors(tmp_path: Path) -> None:
    root = write(tmp_path, SHARDS, exact_map())
    (root / "model-00002-of-00002.safetensors").unlink()
    (found,) = [f for f in scan(root).findings if f.code == "shard-missing"]
    assert found.detail["lost_tensors"] == 3
    (root / "model-00002-of-00002.safetensors").write_bytes(b"version https://git-lfs\n")
    report = scan(root)
    assert {f.code for f in report.findings} == {"lfs-pointer"}
    (lfs,) = report.findings
    assert lfs.detail["lost_tensors"] == 3


@pytest.mark.parametrize("text", [
    "{", '{"weight_map": [1]}', '{"metadata": {}}', '{"weight_map": {"a": "x"}} trailing',
    b"\xff\xfe".decode("latin-1"),
])
def test_unusable_index_is_reported_and_ignored(text: str, tmp_path: Path) -> None:
    root = write(tmp_path, SHARDS, None)
    (root / "model.safetensors.index.json").write_text(text, encoding="latin-1")
    ckpt = open_checkpoint(root)
    assert ckpt.index is None
    assert [p.code for p in ckpt.problems] == ["index-invalid"]
    assert ckpt.num_tensors == 6


def test_index_problems_keep_the_rest(tmp_path: Path) -> None:
    root = write(tmp_path, SHARDS, None)
    text = json.dumps({"weight_map": exact_map()})[:-2] + ', "bad": 7}}'
    (root / "model.safetensors.index.json").write_text(text)
    ckpt = open_checkpoint(root)
    assert ckpt.index is not None and len(ckpt.index) == 6
    (problem,) = ckpt.problems
    assert problem.tensor == "bad" and problem.offset == text.index('"bad": 7') + len('"bad": ')


name = st.text(alphabet="ab.0123", min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(name, max_size=6, unique=True), min_size=1, max_size=4),
       st.dictionaries(name, st.integers(0, 5), max_size=12))
def test_join_matches_a_dict_reference(shard_names: list[list[str]], wm: dict[str, int]) -> None:
    """entry_row / row_entry / dup_of against the same computation on dicts."""
    tables = []
    for names in shard_names:
        header = {n: {"dtype": "U8", "shape": [1], "data_offsets": [k, k + 1]}
                  for k, n in enumerate(names)}
        blob = json.dumps(header).encode()
        prefix = len(blob).to_bytes(8, "little")
        tables.append(_core.parse_bytes(prefix + blob + b"\0" * len(names)))
    files = [f"s{i}" for i in range(len(shard_names))]
    index = _core.parse_index(json.dumps({"weight_map": {k: f"s{v}" for k, v in wm.items()}})
                              .encode())
    pos = [files.index(n) if n in files else -1 for n in index.shard_names]
    entry_row, row_entry, dup_of = _core.match_names(index, tables, pos)

    rows = [(s, n) for s, t in enumerate(tables) for n in t.names()]
    entries = list(zip(index.names(), (index.shard_names[i] for i in index.shard_ids), strict=True))
    for e, (n, f) in enumerate(entries):
        holders = [r for r, (s, m) in enumerate(rows) if m == n]
        home = [r for r in holders if f == files[rows[r][0]]]
        want = home[0] if home else (holders[0] if holders else -1)
        assert entry_row[e] == want
    listed = {n: e for e, (n, _) in enumerate(entries)}
    first_row: dict[str, int] = {}
    for r, (_, n) in enumerate(rows):
        assert row_entry[r] == listed.get(n, -1)
        first_row.setdefault(n, r)
        same = [q for q, (_, m) in enumerate(rows) if m == n]
        assert (dup_of[r] >= 0) == (len(same) > 1 and r != entry_row[listed[n]]
                                    if n in listed and entry_row[listed[n]] >= 0
                                    else len(same) > 1 and r != first_row[n])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12), st.sampled_from(["a", "b\u00e9", 'c"q']),
                       max_size=12),
       st.sampled_from([{"indent": 2}, {"separators": (",", ":")}, {"ensure_ascii": False},
                        {"indent": "\t", "ensure_ascii": False}]))
def test_weight_map_in_any_layout(wm: dict[str, str], layout: dict[str, object]) -> None:
    """Names and files, in order, whatever the whitespace and escapes (names
    read in place, or decoded by the general path)."""
    text = json.dumps({"metadata": {"total_size": 7}, "weight_map": wm}, **layout)  # type: ignore[arg-type]
    index = _core.parse_index(text.encode())
    assert index.problems == [] and index.total_size == 7
    assert index.names() == list(wm)
    assert [index.shard_names[i] for i in index.shard_ids] == list(wm.values())


def test_unreadable_index_is_named(tmp_path: Path) -> None:
    fifo = tmp_path / "model.safetensors.index.json"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate((1 << 30) + 1)  # sparse: costs nothing on disk
    cases = ((fifo, "FIFO"), (tmp_path / "absent.json", "No such file"), (tmp_path, "directory"),
             (huge, "more than the 1 GiB"))
    for path, why in cases:
        [(kind, offset, tensor, msg)] = _core.read_index(str(path)).problems
        assert kind == "io-error" and why in msg and offset is None and tensor is None
    save_file({"a": np.zeros(2, np.float32)}, str(tmp_path / "model.safetensors"))
    ckpt = open_checkpoint(tmp_path)  # must not block on the FIFO
    assert [(p.code, "FIFO" in p.message) for p in ckpt.problems] == [("index-invalid", True)]


def test_total_size_disagreement_is_info(tmp_path: Path) -> None:
    root = write(tmp_path, SHARDS, exact_map(), {"metadata": {"total_size": 1234.0}})
    assert codes(root) == {}  # a float total_size is not an integer claim: ignored
    doc = json.loads((root / "model.safetensors.index.json").read_text())
    doc["metadata"]["total_size"] = 999
    (root / "model.safetensors.index.json").write_text(json.dumps(doc))
    (found,) = scan(root).findings
    assert (found.code, str(found.severity), found.detail) == (
        "index-total-size", "info", {"declared": 999, "actual": 72})


def test_a_million_entries_half_of_them_bad() -> None:
    """10^6 entries, every other one not a file name: the 500,000 good ones
    are read, the first MAX_PROBLEMS_PER_CODE bad ones reported, the rest counted."""
    cap = _core.MAX_PROBLEMS_PER_CODE
    names = [f"model.layers.{i // 1000}.mlp.experts.{i % 1000}.w1.weight" for i in range(1_000_000)]
    files = [f"model-{i % 7 + 1:05d}-of-00007.safetensors" for i in range(7)]
    members = [f'"{n}":"{files[i % 7]}"' if i % 2 == 0 else f'"{n}":7' for i, n in enumerate(names)]
    text = '{"metadata":{"total_size":3},"weight_map":{' + ",".join(members) + "}}"
    index = _core.parse_index(text.encode())
    assert len(index) == 500_000 and index.total_size == 3
    assert index.names() == names[::2]
    assert [index.shard_names[s] for s in index.shard_ids[:14]] == [files[i % 7]
                                                                    for i in range(0, 28, 2)]
    assert [(p[0], p[2]) for p in index.problems] == [("not-an-object", names[i])
                                                     for i in range(1, 2 * cap, 2)]
    assert index.suppressed == {"not-an-object": 500_000 - cap}


def test_index_names_past_the_limit() -> None:
    limit = _core.MAX_NAME_BYTES
    wm = {"a" * limit: "s1", "b" * (limit + 1): "s1", "c": "s2",
          "\u00e9" * (limit // 2) + "d": "s2"}
    for layout in ({}, {"ensure_ascii": False}):  # escaped (general path) or read in place
        text = json.dumps({"weight_map": wm}, **layout)  # type: ignore[arg-type]
        index = _core.parse_index(text.encode())
        assert index.names() == ["a" * limit, "c"]
        assert [(p[0], p[2]) for p in index.problems] == [
            ("name-too-long", "b" * 100 + "..."), ("name-too-long", "\u00e9" * 50 + "...")]
        assert index.suppressed == {}
