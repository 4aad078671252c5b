"""The core reader against the reference `safetensors` library and hand-made bad input."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import ckptscan
import numpy as np
import pytest
from ckptscan import _core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file


def raw_file(header: bytes | str | dict, data: bytes = b"", *, length: int | None = None) -> bytes:
    """A safetensors file from a header given as bytes, text or a dict (JSON-encoded)."""
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode()
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def codes(data: bytes, file_size: int | None = None) -> list[str]:
    return [p[0] for p in _core.parse_bytes(data, file_size).problems]


def reference_accepts(path: Path) -> bool:
    try:
        with safe_open(str(path), "numpy") as f:
            for k in f.keys():
                f.get_slice(k)
        return True
    except Exception:  # the reference raises several types (SafetensorError, OSError ...)
        return False


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}

# (case id, file bytes, expected first problem code)
INVALID = [
    ("too-small", b"\x01\x02\x03", "header-too-small"),
    ("too-large", struct.pack("<Q", 100_000_001) + b"{}", "header-too-large"),
    ("length-past-end", raw_file("{}", length=64), "header-length-invalid"),
    ("lfs-pointer", b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n",
     "lfs-pointer"),
    ("bad-utf8", raw_file(b'{"a\xff":{}}'), "header-not-utf8"),
    ("overlong-utf8", raw_file(b'{"a\xc0\xaf":{}}'), "header-not-utf8"),
    ("utf8-surrogate", raw_file(b'{"a\xed\xa0\x80":{}}'), "header-not-utf8"),
    ("not-json", raw_file("{,}"), "json-syntax"),
    ("top-level-array", raw_file("[]"), "json-syntax"),
    ("unterminated", raw_file('{"a'), "json-syntax"),
    ("control-char", raw_file('{"a\x01b":{}}'), "json-syntax"),
    ("lone-low-surrogate", raw_file('{"\\udc00":{}}'), "json-syntax"),
    ("lone-high-surrogate", raw_file('{"\\ud800x":{}}'), "json-syntax"),
    ("high-then-non-low", raw_file('{"\\ud800\\u0041":{}}'), "json-syntax"),
    ("bad-escape", raw_file('{"\\x41":{}}'), "json-syntax"),
    ("leading-zero", raw_file('{"a":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}}',
                              b"\0" * 8), "json-syntax"),
    ("garbage-after", raw_file("{} x"), "json-syntax"),
    # 2 + 126 containers: one more than the reference's serde_json accepts
    ("too-deep", raw_file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":'
                          + "[" * 126 + "]" * 126 + "}}", b"\0" * 8), "json-too-deep"),
    ("nul-padding", raw_file(b"{}\0\0\0\0\0\0"), "header-padding"),
    ("entry-not-object", raw_file('{"a":5}'), "not-an-object"),
    ("duplicate-name", raw_file('{"a":' + json.dumps(F32x2) + ',"a":' + json.dumps(F32x2) + "}",
                                b"\0" * 8), "duplicate-key"),
    ("duplicate-field", raw_file('{"a":{"dtype":"F32","dtype":"F16","shape":[2],'
                                 '"data_offsets":[0,8]}}', b"\0" * 8), "duplicate-key"),
    ("metadata-number", raw_file({"__metadata__": {"a": 1}}), "metadata-invalid"),
    ("metadata-list", raw_file({"__metadata__": []}), "metadata-invalid"),
    ("missing-dtype", raw_file({"a": {"shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
     "missing-field"),
    ("missing-offsets", raw_file({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8),
     "missing-field"),
    ("dtype-fn-suffix", raw_file({"a": dict(F32x2, dtype="F8_E4M3FN")}, b"\0" * 8),
     "unknown-dtype"),
    ("dtype-lowercase", raw_file({"a": dict(F32x2, dtype="f32")}, b"\0" * 8), "unknown-dtype"),
    ("dtype-number", raw_file({"a": dict(F32x2, dtype=3)}, b"\0" * 8), "unknown-dtype"),
    ("shape-string", raw_file({"a": dict(F32x2, shape="2")}, b"\0" * 8), "shape-invalid"),
    ("shape-element-string", raw_file({"a": dict(F32x2, shape=["2"])}, b"\0" * 8),
     "shape-invalid"),
    ("offsets-one", raw_file({"a": dict(F32x2, data_offsets=[0])}, b"\0" * 8), "offsets-invalid"),
    ("offsets-three", raw_file({"a": dict(F32x2, data_offsets=[0, 8, 8])}, b"\0" * 8),
     "offsets-invalid"),
    ("offsets-reversed", raw_file({"a": dict(F32x2, data_offsets=[8, 0])}, b"\0" * 8),
     "offsets-invalid"),
    ("shape-negative", raw_file('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}',
                                b"\0" * 8), "number-invalid"),
    ("shape-float", raw_file('{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}',
                             b"\0" * 8), "number-invalid"),
    ("shape-exponent", raw_file('{"a":{"dtype":"F32","shape":[2e0],"data_offsets":[0,8]}}',
                                b"\0" * 8), "number-invalid"),
    ("offset-beyond-u64", raw_file('{"a":{"dtype":"F32","shape":[2],'
                                   '"data_offsets":[0,18446744073709551616]}}', b"\0" * 8),
     "number-invalid"),
    ("numel-overflow", raw_file({"a": dict(F32x2, shape=[2**32, 2**32, 2])}, b"\0" * 8),
     "size-overflow"),
    ("bytes-overflow", raw_file({"a": dict(F32x2, shape=[2**62])}, b"\0" * 8), "size-overflow"),
    ("f4-odd", raw_file({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, b"\0" * 2),
     "not-byte-aligned"),
    ("f6-odd", raw_file({"a": {"dtype": "F6_E2M3", "shape": [3], "data_offsets": [0, 3]}},
                        b"\0" * 3), "not-byte-aligned"),
    ("size-mismatch", raw_file({"a": dict(F32x2, data_offsets=[0, 4])}, b"\0" * 4),
     "size-mismatch"),
    ("gap-at-start", raw_file({"a": dict(F32x2, data_offsets=[4, 12])}, b"\0" * 12), "data-gap"),
    ("gap-between", raw_file({"a": F32x2, "b": dict(F32x2, data_offsets=[12, 20])}, b"\0" * 20),
     "data-gap"),
    ("overlap", raw_file({"a": F32x2, "b": dict(F32x2, data_offsets=[4, 12])}, b"\0" * 12),
     "data-overlap"),
    ("same-range", raw_file({"a": F32x2, "b": F32x2}, b"\0" * 8), "data-overlap"),
    ("truncated", raw_file({"a": F32x2}, b"\0" * 5), "truncated"),
    ("trailing", raw_file({"a": F32x2}, b"\0" * 11), "trailing-bytes"),
    ("empty-header-trailing", raw_file("{}", b"\0"), "trailing-bytes"),
    ("name-too-long", raw_file({"a" * 4097: F32x2}, b"\0" * 8), "name-too-long"),
]

# Rejected on purpose where the reference accepts: a repeated name (the
# reference keeps the last one) and a name past MAX_NAME_BYTES (no limit there).
STRICTER_THAN_REFERENCE = {"duplicate-name", "name-too-long"}

VALID = [
    ("empty", raw_file("{}")),
    ("empty-metadata", raw_file({"__metadata__": {}})),
    ("null-metadata", raw_file({"__metadata__": None})),
    ("whitespace-padding", raw_file(" \t\r\n{} \n\t  ")),
    ("space-padded", raw_file(json.dumps({"a": F32x2}) + "    ", b"\0" * 8)),
    ("deepest-accepted", raw_file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":'
                                  + "[" * 125 + "]" * 125 + "}}", b"\0" * 8)),
    ("unknown-field", raw_file({"a": dict(F32x2, extra={"x": [1, 2.5, None, True]})}, b"\0" * 8)),
    ("scalar", raw_file({"s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]}}, b"\0" * 8)),
    ("zero-size-shared", raw_file({"z1": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
                                   "z2": {"dtype": "I8", "shape": [4, 0], "data_offsets": [0, 0]},
                                   "a": F32x2}, b"\0" * 8)),
    ("escapes", raw_file('{"a\\u00e9\\ud83d\\ude00\\n\\"/":' + json.dumps(F32x2) + "}", b"\0" * 8)),
    ("f4-even", raw_file({"a": {"dtype": "F4", "shape": [4], "data_offsets": [0, 2]}}, b"\0" * 2)),
    ("e8m0", raw_file({"a": {"dtype": "F8_E8M0", "shape": [3], "data_offsets": [0, 3]}},
                      b"\0" * 3)),
]


@pytest.mark.parametrize(("case", "data", "code"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_input_table(case: str, data: bytes, code: str, tmp_path: Path) -> None:
    found = codes(data)
    assert found, f"{case}: accepted"
    assert found[0] == code, f"{case}: {found}"
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(data)
    # Through the file API the same problem is reported, naming the file.
    with pytest.raises(ckptscan.HeaderError) as err:
        ckptscan.open_shard(path)
    assert err.value.code == code and err.value.path == str(path)
    assert isinstance(err.value, ValueError)
    # ckptscan rejects everything the reference rejects and more only where the
    # reference is lax on purpose.
    if case in STRICTER_THAN_REFERENCE:
        assert reference_accepts(path), f"{case}: the reference rejects it too"
    else:
        assert not reference_accepts(path), f"{case}: the reference accepts it"


@pytest.mark.parametrize(("case", "data"), VALID, ids=[c[0] for c in VALID])
def test_valid_input_table(case: str, data: bytes, tmp_path: Path) -> None:
    assert codes(data) == []
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(data)
    assert reference_accepts(path), f"{case}: the reference rejects it"
    with safe_open(str(path), "numpy") as ref, ckptscan.open_shard(path) as shard:
        assert sorted(shard.names) == sorted(ref.keys())
        for name in ref.keys():
            assert list(shard[name].shape) == ref.get_slice(name).get_shape()
            assert shard[name].dtype == ref.get_slice(name).get_dtype()


def test_every_error_code_is_tested() -> None:
    tested = {code for _, _, code in INVALID} | {"io-error"}
    assert tested == set(_core.ERROR_CODES)


def test_problem_locations() -> None:
    data = raw_file({"a": F32x2, "b": dict(F32x2, dtype="F8_E4M3FN", data_offsets=[8, 16])},
                    b"\0" * 16)
    (problem,) = _core.parse_bytes(data).problems
    code, offset, tensor, message = problem
    assert (code, tensor) == ("unknown-dtype", "b")
    assert data[offset:offset + len('"F8_E4M3FN"')] == b'"F8_E4M3FN"'
    assert "F8_E4M3FN" in message


def test_all_problems_are_collected() -> None:
    header = {"a": dict(F32x2, dtype="X"), "b": dict(F32x2, shape=[3], data_offsets=[8, 16]),
              "c": {"dtype": "F32"}}
    found = codes(raw_file(header, b"\0" * 16))
    assert found == ["unknown-dtype", "size-mismatch", "missing-field", "missing-field"]


def test_truncated_and_trailing_say_how_many_bytes() -> None:
    (t,) = _core.parse_bytes(raw_file({"a": F32x2}, b"\0" * 3)).problems
    assert "truncated by 5 bytes" in t[3]
    (x,) = _core.parse_bytes(raw_file({"a": F32x2}, b"\0" * 20)).problems
    assert "12 trailing bytes" in x[3]


def test_not_safetensors_is_named() -> None:
    (p,) = _core.parse_bytes(b"<!DOCTYPE html><html>" + b" " * 100).problems
    assert p[0] == "header-too-large" and "<!DOCTYP" in p[3]


def test_name_template() -> None:
    assert _core.name_template("model.layers.10.mlp.experts.255.w1.weight") == (
        "model.layers.{}.mlp.experts.{}.w1.weight", (10, 255))
    assert _core.name_template("h.0.attn.c_attn.weight") == ("h.{}.attn.c_attn.weight", (0,))
    assert _core.name_template("a.07.b.0") == ("a.07.b.{}", (0,))  # kept: would not round-trip
    assert _core.name_template("fc1.weight") == ("fc1.weight", ())


def template_by_rule(name: str) -> tuple[str, tuple[int, ...]]:
    """The documented rule, written independently of the C++: a dotted
    component of 1-18 ASCII digits without a leading zero becomes "{}"; a name
    with a literal "{}" component is its own template."""
    parts = name.split(".")
    if "{}" in parts:
        return name, ()
    ints = []
    out = []
    for part in parts:
        numeric = (0 < len(part) <= 18 and all("0" <= c <= "9" for c in part)
                   and (len(part) == 1 or part[0] != "0"))
        out.append("{}" if numeric else part)
        if numeric:
            ints.append(int(part))
    return ".".join(out), tuple(ints)


# Components that exercise every branch: numbers at the 18/19-digit limit,
# leading zeros, empty components, braces, non-ASCII, and names past the
# 128 bytes the fast path handles as bit masks.
_component = st.one_of(
    st.integers(0, 10**19).map(str),
    st.sampled_from(["", "0", "00", "07", "{}", "{", "}", "1e3", "-1", "layers", "w1", "é", "1é",
                     "9" * 18, "1" + "0" * 18, "weight_scale_inv", "x" * 40]),
    st.text(alphabet="0123456789abc._{}", max_size=6),
)


@settings(max_examples=600, deadline=None)
@given(st.lists(_component, min_size=1, max_size=14))
def test_name_template_matches_the_rule(components: list[str]) -> None:
    name = ".".join(components)
    assert _core.name_template(name) == template_by_rule(name)


def test_name_templates_of_a_shard(tmp_path: Path) -> None:
    names = [f"model.layers.{i}.mlp.experts.{e}.w{w}.weight" for i in (0, 7, 61)
             for e in (0, 9, 10, 255) for w in (1, 3)] + ["lm_head.weight", "a.07.b.0"]
    path = tmp_path / "t.safetensors"
    save_file({n: np.zeros(2, np.float32) for n in names}, str(path))
    core = ckptscan.open_shard(path).core
    got = [(core.templates[t], tuple(core.ints[core.int_starts[r]:core.int_starts[r + 1]]))
           for r, t in enumerate(core.template_ids)]
    assert got == [template_by_rule(n) for n in core.names()]
    assert sorted(set(core.templates)) == sorted({template_by_rule(n)[0] for n in names})


# ---- the writers' layout (the parser's fast path) and any other layout -------


def writer_text(entries: list[tuple[str, str, list[int], int, int]], spaced: bool = False) -> bytes:
    """A header in the exact layout safetensors writes ('"name":{"dtype":...}',
    no whitespace), or with spaces after every ':' and ',' (read by the general
    path). Names may repeat, which a dict could not express."""
    sep = (", ", ": ") if spaced else (",", ":")
    members = [json.dumps(n) + sep[1] + json.dumps(
        {"dtype": d, "shape": shape, "data_offsets": [b, e]}, separators=sep)
        for n, d, shape, b, e in entries]
    return ("{" + sep[0].join(members) + "}").encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d.0", "d.1", "e.10", "f\u00e9", "g"]),
                min_size=1, max_size=40))
def test_repeated_names_in_any_order(names: list[str]) -> None:
    """Every repeat is reported once (the first MAX_PROBLEMS_PER_CODE, then
    counted), at its second and later appearances, and the table keeps the
    first: in sorted runs, across runs, past the few runs compared in order
    (then hashed), in both layouts."""
    entries = [(n, "U8", [2], 2 * i, 2 * i + 2) for i, n in enumerate(names)]
    first = {}
    for i, n in enumerate(names):
        first.setdefault(n, i)
    repeats = [i for i, n in enumerate(names) if first[n] != i]
    for spaced in (False, True):
        text = writer_text(entries, spaced)
        core = _core.parse_bytes(raw_file(text, b"\0" * (2 * len(names))))
        dups = [p for p in core.problems if p[0] == "duplicate-key"]
        kept = repeats[:_core.MAX_PROBLEMS_PER_CODE]  # the rest are counted
        assert [p[2] for p in dups] == [names[i] for i in kept]
        assert core.suppressed.get("duplicate-key", 0) == len(repeats) - len(kept)
        assert core.names() == [n for i, n in enumerate(names) if first[n] == i]
        # The repeats' bytes are read as a gap: nothing else is wrong.
        assert {p[0] for p in core.problems} <= {"duplicate-key", "data-gap", "trailing-bytes"}


@pytest.mark.parametrize("digits", range(1, 21))
def test_numbers_of_every_length(digits: int) -> None:
    """Shape and offsets of 1-20 digits: the eight-digits-at-a-time reader and
    the general one agree, up to the largest u64 and past it."""
    for v in {10 ** (digits - 1), 10 ** digits - 1, min(2**64 - 1, 10 ** digits - 1),
              int("1" * digits)}:
        for spaced in (False, True):
            text = writer_text([("t", "U8", [v], 0, v)], spaced)
            core = _core.parse_bytes(raw_file(text), min(8 + len(text) + v, 2**64 - 1))
            got = [p[0] for p in core.problems]
            if v >= 2**64:
                assert "number-invalid" in got and len(core) == 0
            elif v * 8 >= 2**64:  # its size in bits overflows
                assert got[0] == "size-overflow" and len(core) == 0, got
            else:
                assert got == [] and core.numels.tolist() == [v] and core.dims.tolist() == [v]
                assert core.ends.tolist() == [8 + len(text) + v]


@pytest.mark.parametrize("text", [
    b'{"t":{"dtype":"U8","shape":[012],"data_offsets":[0,12]}}',
    b'{"t":{"dtype":"U8","shape":[12],"data_offsets":[00,12]}}',
    b'{"t":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}}',
    b'{"t":{"dtype":"U8","shape":[1e2],"data_offsets":[0,100]}}',
    b'{"t":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}',
    b'{"t":{"dtype":"U8","shape":[12345678901],"data_offsets":[0,12345678901.5]}}',
])
def test_numbers_that_are_not_u64_in_the_writers_layout(text: bytes) -> None:
    got = codes(raw_file(text), 1 << 40)
    assert got and got[0] in ("json-syntax", "number-invalid"), got


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                 b"\xe2\x82"])
def test_invalid_utf8_anywhere_is_the_one_problem(bad: bytes) -> None:
    """Invalid UTF-8 at any position of a header (in a name, a value, the
    metadata, between members, after the end) is reported alone, at its
    offset: as the reference, which decodes the whole header before parsing."""
    tensors = writer_text([("a.0.w", "F32", [2], 0, 8), ("a.1.w", "F32", [2], 8, 16),
                           ("b", "U8", [4], 16, 20)])
    text = b'{"__metadata__":{"format":"pt"},' + tensors[1:] + b"  "
    for i in range(len(text) + 1):
        data = text[:i] + bad + text[i:]
        core = _core.parse_bytes(raw_file(data, b"\0" * 20))
        assert [(p[0], p[1]) for p in core.problems] == [("header-not-utf8", 8 + i)], i
        assert len(core) == 0 and core.metadata is None


def wait_for_child(pid: int, hang: str) -> int:
    """The child's exit code; fails with `hang` if it has not ended in ~10 s."""
    for _ in range(1000):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(hang)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork with threads
def test_fork_while_threads_parse() -> None:
    """Parsed tables come from a pool behind a lock; a fork() while another
    thread holds it must not leave the child's copy locked (a child that
    parses would then hang)."""
    import threading

    header = raw_file(writer_text([(f"t.{i}", "U8", [2], 2 * i, 2 * i + 2) for i in range(50)]),
                      b"\0" * 100)
    stop = threading.Event()

    def parse_forever() -> None:
        while not stop.is_set():
            _core.parse_bytes(header)

    threads = [threading.Thread(target=parse_forever) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(300):
            pid = os.fork()
            if pid == 0:  # the child: parse once, then leave at once
                os._exit(0 if len(_core.parse_bytes(header)) == 50 else 1)
            assert wait_for_child(pid, "a child forked while threads parsed hung") == 0
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_header_threads_after_fork(tmp_path: Path) -> None:
    """Header-reading threads are kept between calls; a forked child (which
    has none of them) must start its own instead of waiting on the parent's."""
    for i in range(4):
        save_file({f"t{i}": np.zeros(2, np.float32)}, str(tmp_path / f"m{i}.safetensors"))
    assert ckptscan.open_checkpoint(tmp_path, jobs=2).num_tensors == 4
    pid = os.fork()
    if pid == 0:
        os._exit(0 if ckptscan.open_checkpoint(tmp_path, jobs=2).num_tensors == 4 else 1)
    assert wait_for_child(pid, "a forked child waited on its parent's header threads") == 0


def test_out_of_order_rows_are_sorted_and_checked() -> None:
    entries = [("b", "U8", [4], 4, 8), ("a", "U8", [4], 0, 4), ("c", "U8", [4], 8, 12)]
    core = _core.parse_bytes(raw_file(writer_text(entries), b"\0" * 12))
    assert core.problems == [] and core.names() == ["a", "b", "c"]
    gap = [("a", "U8", [4], 0, 4), ("c", "U8", [4], 8, 12)]
    assert codes(raw_file(writer_text(gap), b"\0" * 12)) == ["data-gap"]


# ---- differential against the reference, on files it writes ------------------

NUMPY_DTYPES = ["bool", "uint8", "int8", "int16", "uint16", "float16", "int32", "uint32",
                "float32", "int64", "uint64", "float64"]
name_text = st.text(alphabet=st.sampled_from(list("abcxyz._0123456789é漢🙂")), min_size=1,
                    max_size=24)


@st.composite
def tensor_dicts(draw: st.DrawFn) -> dict[str, np.ndarray]:
    names = draw(st.lists(name_text, min_size=0, max_size=12, unique=True))
    out = {}
    for name in names:
        dtype = draw(st.sampled_from(NUMPY_DTYPES))
        shape = tuple(draw(st.lists(st.integers(0, 5), max_size=4)))
        n = int(np.prod(shape, dtype=np.int64))
        raw = draw(st.binary(min_size=n * np.dtype(dtype).itemsize,
                             max_size=n * np.dtype(dtype).itemsize))
        out[name] = np.frombuffer(raw, dtype=np.uint8).view(dtype).reshape(shape).copy()
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tensors=tensor_dicts(),
       metadata=st.none() | st.dictionaries(name_text, st.text(max_size=10), max_size=3))
def test_differential_numpy_files(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None,
                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("diff") / "x.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    if not reference_accepts(path):
        # safetensors 0.8 writes `{},"__metadata__":{}}` for no tensors and empty
        # metadata, which it cannot read back itself: both must reject it.
        with pytest.raises(ckptscan.HeaderError):
            ckptscan.open_shard(path)
        return
    with safe_open(str(path), "numpy") as ref, ckptscan.open_shard(path) as shard:
        assert sorted(shard.names) == sorted(ref.keys())
        assert (shard.metadata or None) == (ref.metadata() or None)
        for info in shard.tensors:
            sl = ref.get_slice(info.name)
            assert info.dtype == sl.get_dtype()
            assert list(info.shape) == sl.get_shape()
            want = np.ascontiguousarray(ref.get_tensor(info.name))
            assert info.nbytes == want.nbytes and info.numel == want.size
            assert shard.raw(info.name).tobytes() == want.tobytes()
            assert shard.raw(info.name, populate=True).tobytes() == want.tobytes()
            # (the reference's numpy reader returns scalars with shape (1,))
            np.testing.assert_array_equal(shard.array(info.name), want.reshape(info.shape))
        offsets = [t.offsets for t in shard.tensors]
        assert offsets == sorted(offsets)


def test_large_dims_and_exotic_dtypes(tmp_path: Path) -> None:
    """Dtypes numpy cannot write, checked by what the reference reads of the header."""
    import ml_dtypes

    header = {}
    data = b""
    specs = [("BF16", [3, 5]), ("F8_E4M3", [128, 3]), ("F8_E5M2", [7]), ("F8_E8M0", [4]),
             ("F8_E4M3FNUZ", [2]), ("F8_E5M2FNUZ", [2]), ("C64", [2]), ("F4", [6]),
             ("F6_E3M2", [4]), ("F6_E2M3", [8]), ("U8", [1, 2**40, 0])]
    for i, (dtype, shape) in enumerate(specs):
        nbytes = int(np.prod(shape)) * _bits(dtype) // 8
        header[f"t{i}.{dtype}"] = {"dtype": dtype, "shape": shape,
                                   "data_offsets": [len(data), len(data) + nbytes]}
        data += bytes((i * 7 + k) % 256 for k in range(nbytes))
    path = tmp_path / "exotic.safetensors"
    path.write_bytes(raw_file(header, data))
    with safe_open(str(path), "numpy") as ref, ckptscan.open_shard(path) as shard:
        for name in ref.keys():
            assert shard[name].dtype == ref.get_slice(name).get_dtype()
            assert list(shard[name].shape) == ref.get_slice(name).get_shape()
        bf = shard.array("t0.BF16")
        assert bf.dtype == ml_dtypes.bfloat16 and bf.shape == (3, 5)
        assert shard.raw("t1.F8_E4M3").tobytes() == data[30:30 + 384]
        with pytest.raises(TypeError):
            shard.array("t7.F4")


def _bits(dtype: str) -> int:
    return dict(_core.DTYPES)[dtype]


# ---- property: arbitrary and mutated input never crashes or reads out of bounds ---

@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    shard = _core.parse_bytes(data)
    _check_table(shard, len(data))


_SEED = raw_file({"__metadata__": {"format": "pt"},
                  "model.layers.0.w": {"dtype": "F8_E4M3", "shape": [2, 3], "data_offsets": [0, 6]},
                  "model.layers.1.s": {"dtype": "F32", "shape": [1], "data_offsets": [6, 10]}},
                 b"\x7e" * 10)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_SEED) - 1), st.integers(0, 255)), max_size=6),
       st.integers(-12, 12))
def test_mutated_headers_never_crash(edits: list[tuple[int, int]], resize: int) -> None:
    data = bytearray(_SEED)
    for pos, byte in edits:
        data[pos] = byte
    data = data[:max(0, len(data) + resize)] if resize < 0 else data + b"\0" * resize
    shard = _core.parse_bytes(bytes(data))
    _check_table(shard, len(data))


def _check_table(shard: object, size: int) -> None:
    core = shard
    n = len(core)  # type: ignore[arg-type]
    begins, ends = core.begins, core.ends  # type: ignore[attr-defined]
    assert len(core.names()) == n == len(core.dtype_codes)  # type: ignore[attr-defined]
    assert list(begins) == sorted(begins)
    assert all(b <= e for b, e in zip(begins, ends, strict=True))
    if not core.problems:  # type: ignore[attr-defined]
        assert core.data_end == size  # type: ignore[attr-defined]
        assert all(e <= size for e in ends)


# ---- the file API ------------------------------------------------------------

def test_views_outlive_close_and_are_read_only(tmp_path: Path) -> None:
    path = tmp_path / "v.safetensors"
    save_file({"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, str(path))
    shard = ckptscan.open_shard(path)
    view = shard.array("w")
    shard.close()
    with pytest.raises(ValueError):
        len(shard)
    del shard
    np.testing.assert_array_equal(view, np.arange(12, dtype=np.float32).reshape(3, 4))
    assert not view.flags.writeable
    with pytest.raises(ValueError):
        view[0, 0] = 1
    assert path.read_bytes()[-4:] == np.float32(11).tobytes()


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ckptscan.ShardIOError) as err:
        ckptscan.open_shard(tmp_path / "nope.safetensors")
    assert isinstance(err.value, OSError) and "nope.safetensors" in str(err.value)
    with pytest.raises(ckptscan.CkptScanError):
        ckptscan.open_shard(tmp_path)


def test_shrunk_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "s.safetensors"
    save_file({"a": np.ones(4096, np.float32), "b": np.ones(4096, np.float32)}, str(path))
    shard = ckptscan.open_shard(path)
    os.truncate(path, 4096)
    with pytest.raises(ckptscan.ShardIOError, match="file has 4096 bytes"):
        shard.raw("b")


def test_checkpoint_goes_on_past_broken_shards(tmp_path: Path) -> None:
    save_file({"a": np.ones(3, np.float32)}, str(tmp_path / "model-00001-of-00003.safetensors"))
    (tmp_path / "model-00002-of-00003.safetensors").write_bytes(
        b"version https://git-lfs.github.com/spec/v1\n")
    save_file({"c": np.ones(3, np.float32)}, str(tmp_path / "model-00003-of-00003.safetensors"))
    index = {"metadata": {"total_size": 24}, "weight_map": {
        "a": "model-00001-of-00003.safetensors", "b": "model-00002-of-00003.safetensors",
        "c": "model-00003-of-00003.safetensors", "d": "model-00004-of-00003.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text("{not json")
    os.symlink(tmp_path / "nowhere", tmp_path / "model-dangling.safetensors")
    views = []
    for jobs in (1, 4):  # one call into the core for all shards, or a thread pool
        ckpt = ckptscan.open_checkpoint(tmp_path, jobs=jobs)
        assert ckpt.files == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)] + [
            "model-dangling.safetensors"]
        assert ckpt.num_tensors == 2
        assert ckpt.missing == ["model-00004-of-00003.safetensors"]
        by_code = {p.code: p for p in ckpt.problems}
        assert set(by_code) == {"lfs-pointer", "io-error", "shard-missing", "config-invalid"}
        assert by_code["lfs-pointer"].path.endswith("model-00002-of-00003.safetensors")
        assert by_code["io-error"].path.endswith("model-dangling.safetensors")
        assert ckpt.config is None and ckpt.index is not None
        views.append([(s.names, s.core.begins.tolist(), s.problems) for s in ckpt.shards])
    assert views[0] == views[1]


def test_single_file_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "one.safetensors"
    save_file({"a": np.ones(3, np.float32)}, str(path))
    ckpt = ckptscan.open_checkpoint(path)
    assert ckpt.files == ["one.safetensors"] and not ckpt.problems
    with pytest.raises(ckptscan.ShardIOError):
        ckptscan.open_checkpoint(tmp_path / "absent")



def test_fifo_named_like_a_shard_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "model.safetensors")
    os.mkfifo(tmp_path / "config.json")
    save_file({"a": np.ones(3, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ckptscan.ShardIOError, match="FIFO"):
        ckptscan.open_shard(tmp_path / "model.safetensors")
    ckpt = ckptscan.open_checkpoint(tmp_path)  # would hang on open() without O_NONBLOCK
    assert {p.code for p in ckpt.problems} == {"io-error", "config-invalid"}
    assert ckpt.num_tensors == 1


# ---- bounded work on hostile headers -------------------------------------------
# A few MB can repeat one fault a million times, or hold one name of 90 MB. The
# parser keeps MAX_PROBLEMS_PER_CODE problems of each code (the first ones, in
# file order) and counts the rest in `suppressed`; a name past MAX_NAME_BYTES
# is one name-too-long problem and no row.

CAP = _core.MAX_PROBLEMS_PER_CODE


def shown(name: str) -> str:
    """A long name as problems show it: its first 100 bytes, cut back to a
    character boundary, then '...'."""
    b = name.encode()
    if len(b) <= 100:
        return name
    cut = 100
    while cut and b[cut] & 0xC0 == 0x80:
        cut -= 1
    return b[:cut].decode() + "..."


def test_error_descriptions_are_one_table() -> None:
    assert list(_core.ERROR_DESCRIPTIONS) == list(_core.ERROR_CODES)
    for code, text in _core.ERROR_DESCRIPTIONS.items():
        assert text and text == text.strip() and "\n" not in text, code
    assert f"{_core.MAX_NAME_BYTES:,}" in _core.ERROR_DESCRIPTIONS["name-too-long"]


@pytest.mark.parametrize("spaced", [False, True])
def test_problems_capped_per_code_in_file_order(spaced: bool) -> None:
    """Two faults repeated 20 times each, interleaved: the first CAP of each
    code are kept in file order, 20 - CAP of each counted."""
    entries = []
    for i in range(20):
        entries.append((f"u{i:02d}", "F8_E4M3FN", [1], 9 * i, 9 * i + 1))  # unknown dtype
        entries.append((f"s{i:02d}", "F32", [1], 9 * i + 1, 9 * i + 9))    # 8 bytes for 4
    core = _core.parse_bytes(raw_file(writer_text(entries, spaced), b"\0" * 180))
    want = []
    for i in range(CAP):
        want += [("unknown-dtype", f"u{i:02d}"), ("size-mismatch", f"s{i:02d}")]
    assert [(p[0], p[2]) for p in core.problems] == want
    assert core.suppressed == {"unknown-dtype": 20 - CAP, "size-mismatch": 20 - CAP}
    assert core.names() == [f"s{i:02d}" for i in range(20)]


def test_a_million_copies_of_one_metadata_key() -> None:
    """14 MB of one repeated __metadata__ key: once 999,999 problems (1.5 GB
    of memory, a 300 MB report)."""
    prefix = b'{"__metadata__":{'
    header = prefix + b",".join([b'"key":"value"'] * 1_000_000) + (
        b'},"t":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}')
    core = _core.parse_bytes(raw_file(header, b"\0" * 4))
    assert [p[0] for p in core.problems] == ["duplicate-key"] * CAP
    # The 2nd to the 17th copies, each 14 bytes after the previous one.
    assert [p[1] for p in core.problems] == [8 + len(prefix) + 14 * k for k in range(1, CAP + 1)]
    assert core.suppressed == {"duplicate-key": 1_000_000 - 1 - CAP}
    assert core.metadata == {"key": "value"} and core.names() == ["t"]


def test_100k_tensors_on_one_byte_range() -> None:
    """safetensors' own abuse attempt: 100,000 [200, 200] F32 tensors all on
    bytes [0, 160000)."""
    n = 200 * 200 * 4
    entry = f'{{"dtype":"F32","shape":[200,200],"data_offsets":[0,{n}]}}'
    header = "{" + ",".join(f'"weight_{i}":{entry}' for i in range(100_000)) + "}"
    core = _core.parse_bytes(raw_file(header, b"\0" * n))
    assert len(core) == 100_000 and core.ends.tolist() == [8 + len(header) + n] * 100_000
    assert [p[0] for p in core.problems] == ["data-overlap"] * CAP
    assert core.suppressed == {"data-overlap": 100_000 - 1 - CAP}


def test_a_90_mb_name_is_one_problem_and_no_row() -> None:
    """One name of 45 M numeric parts: its template once took 65 s and 4.9 GB
    downstream. Its entry's bytes stay claimed (no gap, no trailing bytes)."""
    name = b"1." * 45_000_000 + b"w"
    header = b'{"' + name + b'":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}'
    data = b"".join([struct.pack("<Q", len(header)), header, b"\0" * 4])
    core = _core.parse_bytes(data)
    [(code, offset, tensor, message)] = core.problems
    assert (code, offset, tensor) == ("name-too-long", 9, "1." * 50 + "...")
    assert f"{len(name)} bytes" in message
    assert len(core) == 0 and core.suppressed == {} and core.data_end == len(data)


LIMIT = _core.MAX_NAME_BYTES
# At the limit (in UTF-8 bytes, after unescaping), one byte past it.
AT_LIMIT = ["a" * LIMIT, "\u00e9" * (LIMIT // 2), "1." * (LIMIT // 2 - 1) + "w."]
PAST_LIMIT = ["a" * (LIMIT + 1), "\u00e9" * (LIMIT // 2) + "a", "1." * (LIMIT // 2) + "1"]


@pytest.mark.parametrize("spaced", [False, True])
def test_name_length_limit(spaced: bool) -> None:
    """Names of MAX_NAME_BYTES are read (and templated by the rule, 2047
    integers and all); one byte more is name-too-long, its bytes still
    claimed. json.dumps escapes the non-ASCII names: the limit counts the
    decoded bytes, not the JSON text."""
    assert all(len(n.encode()) == LIMIT for n in AT_LIMIT)
    assert all(len(n.encode()) == LIMIT + 1 for n in PAST_LIMIT)
    names = [n for pair in zip(AT_LIMIT, PAST_LIMIT, strict=True) for n in pair]
    entries = [(n, "U8", [1], i, i + 1) for i, n in enumerate(names)]
    core = _core.parse_bytes(raw_file(writer_text(entries, spaced), b"\0" * len(names)))
    assert [(p[0], p[2]) for p in core.problems] == [("name-too-long", shown(n))
                                                     for n in PAST_LIMIT]
    assert core.names() == AT_LIMIT and core.suppressed == {}
    got = [(core.templates[t], tuple(core.ints[core.int_starts[r]:core.int_starts[r + 1]]))
           for r, t in enumerate(core.template_ids)]
    assert got == [template_by_rule(n) for n in AT_LIMIT]


def test_not_utf8_forgets_the_counts() -> None:
    """Invalid UTF-8 is the one problem of a header: counts found before it go too."""
    header = b'{"__metadata__":{' + b",".join([b'"k":"v"'] * 40) + b'},"\xff":{}}'
    core = _core.parse_bytes(raw_file(header))
    assert [p[0] for p in core.problems] == ["header-not-utf8"] and core.suppressed == {}
