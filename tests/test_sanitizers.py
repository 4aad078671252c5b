"""The C++ header parser under AddressSanitizer + UndefinedBehaviorSanitizer.

Builds ``tests/cpp/parser_driver.cc`` with the parser sources (``csrc/json_scan.cc``,
``header.cc``, ``index_json.cc``, ``name_match.cc``, ``name_template.cc``,
``column.cc``, ``shard.cc``, ``mapped_file.cc``) using g++ ``-fsanitize=address,undefined``
and runs it over the fuzz regressions (``tests/data/fuzz_regressions/``), the
fuzz seed corpus (``fuzz/corpus/``), files written by the real ``safetensors``
library and hand-made invalid headers covering every problem code. The driver
checks the parser's invariants itself (``fuzz/invariants.h``) and exits non-zero
on a violation; this test also wants no sanitizer report, the expected problem
codes for the hand-made files, and the same accept / reject verdict as the
reference library for every file.

Without g++ the test skips locally and fails when CI=true; a g++ that cannot
build with sanitizers always fails.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
FUZZ = ROOT / "fuzz"
DRIVER_SRC = ROOT / "tests" / "cpp" / "parser_driver.cc"
REGRESSIONS = ROOT / "tests" / "data" / "fuzz_regressions"
CORPUS = FUZZ / "corpus"
# Every parser file: the JSON scanner, the header and index.json grammars, the
# name join (the driver runs it on each input read as an index), templates.
SOURCES = [DRIVER_SRC, CSRC / "json_scan.cc", CSRC / "header.cc", CSRC / "index_json.cc",
           CSRC / "name_match.cc", CSRC / "name_template.cc", CSRC / "column.cc",
           CSRC / "shard.cc", CSRC / "mapped_file.cc"]
FLAGS = ["-std=c++17", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         "-fno-omit-frame-pointer", "-Wall", "-Wextra"]
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "UndefinedBehaviorSanitizer", "SUMMARY: ", "VIOLATION")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


# ---- build ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cxx = shutil.which("g++")
    if cxx is None:
        if IN_CI:
            pytest.fail("g++ is not installed: the sanitizer build must run in CI")
        pytest.skip("g++ is not installed")
    out = tmp_path_factory.mktemp("sanitizer_build")
    objs = [out / (src.stem + ".o") for src in SOURCES]

    def compile_one(src: Path, obj: Path) -> subprocess.CompletedProcess[str]:
        cmd = [cxx, *FLAGS, "-I", str(CSRC), "-I", str(FUZZ), "-c", str(src), "-o", str(obj)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(compile_one, SOURCES, objs))
    for src, r in zip(SOURCES, results, strict=True):
        if r.returncode != 0:
            pytest.fail(f"g++ cannot build {src.name} with sanitizers:\n{r.stderr[-4000:]}")
    exe = out / "parser_driver"
    link = [cxx, *FLAGS, *map(str, objs), "-o", str(exe)]
    r = subprocess.run(link, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail("g++ cannot link with -fsanitize=address,undefined (libasan/libubsan missing?):"
                    f"\n{r.stderr[-4000:]}")
    return exe


def sanitizer_env(detect_leaks: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = f"detect_leaks={int(detect_leaks)}:abort_on_error=0:halt_on_error=1"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


@pytest.fixture(scope="module")
def leak_detection(driver: Path) -> bool:
    """LeakSanitizer cannot run everywhere (e.g. under ptrace / some sandboxes)."""
    r = subprocess.run([str(driver), str(driver)], capture_output=True, text=True, timeout=60,
                       env=sanitizer_env(True))
    return "LeakSanitizer has encountered a fatal error" not in r.stderr


@dataclass(frozen=True)
class Verdict:
    n_tensors: int
    codes: tuple[str, ...]  # () when the file is valid

    @property
    def ok(self) -> bool:
        return not self.codes


def run_driver(driver: Path, leaks: bool, paths: list[Path]) -> dict[str, Verdict]:
    """Runs the driver once over all paths; fails on any violation or report."""
    assert paths
    r = subprocess.run([str(driver), *map(str, paths)], capture_output=True, text=True, timeout=300,
                       env=sanitizer_env(leaks))
    found = [m for m in SANITIZER_MARKERS if m in r.stderr]
    assert r.returncode == 0 and not found, (
        f"parser_driver exited {r.returncode}, reports {found}:\n{r.stderr[-8000:]}"
    )
    out: dict[str, Verdict] = {}
    for line in r.stdout.splitlines():
        path, n, codes = line.rsplit(" ", 2)
        out[path] = Verdict(int(n), () if codes == "ok" else tuple(codes.split(",")))
    assert len(out) == len(paths), r.stdout
    return out


# ---- the reference ---------------------------------------------------------------


def reference_accepts(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "numpy") as f:
            for k in f.keys():
                f.get_slice(k)
        return True
    except Exception:  # the reference raises several types (SafetensorError, OSError ...)
        return False


# Rejections ckptscan makes on purpose where the reference accepts. Reported, not
# hidden: each must be the only kind of problem in the file.
#  duplicate-key: repeated tensor names (the reference keeps the last one) and
#    repeated __metadata__ keys (the reference keeps the last one).
#  name-too-long: a tensor name past 4,096 bytes (the reference has no limit).
STRICTER_ON_PURPOSE = {"duplicate-key", "name-too-long"}
COVERAGE_CODES = {"data-gap", "data-overlap", "truncated", "trailing-bytes"}


def check_against_reference(verdicts: dict[str, Verdict], paths: list[Path]) -> None:
    pytest.importorskip("safetensors")
    bad = []
    for p in paths:
        v = verdicts[str(p)]
        ref = reference_accepts(p)
        if ref and not v.ok:
            codes = set(v.codes)
            # A dropped duplicate entry may also leave a hole or extra bytes.
            if codes & STRICTER_ON_PURPOSE and codes <= STRICTER_ON_PURPOSE | COVERAGE_CODES:
                continue
            bad.append(f"{p.name}: the reference accepts it, ckptscan reports {','.join(v.codes)}")
        elif not ref and v.ok:
            bad.append(f"{p.name}: the reference rejects it, ckptscan accepts it")
    assert not bad, "differential vs safetensors:\n" + "\n".join(bad)


# ---- hand-made files ---------------------------------------------------------------


def raw(header: bytes | str, data: bytes = b"", n: int | None = None) -> bytes:
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h) if n is None else n) + h + data


def entry(
    dtype: str = "U8", shape: object = (1,), offsets: object = (0, 1), **extra: object
) -> str:
    """A tensor entry as JSON text (tuples become arrays; other values go in as they are)."""
    d: dict[str, object] = {
        "dtype": dtype,
        "shape": list(shape) if isinstance(shape, tuple) else shape,
        "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets,
    }
    d.update(extra)
    return json.dumps(d)


E = entry()


def with_field(value: str) -> bytes:
    """A one-tensor file whose entry has an extra field holding the raw JSON `value`."""
    return raw('{"a":' + E[:-1] + ',"x":' + value + "}}", b"x")


BYTE_DTYPES = ["F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "BOOL", "I8", "U8"]
NO_FIELDS = ("missing-field",) * 3  # a non-object entry also lacks dtype, shape and data_offsets
LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"ab" * 32 + b"\nsize 1234\n"

def hdr(*items: tuple[str, str]) -> str:
    """A header object from (raw JSON key text, raw JSON value) pairs."""
    return "{" + ",".join(f'"{k}":{v}' for k, v in items) + "}"


def one(value: str, data: bytes = b"x") -> bytes:
    """A file with one tensor "a" whose entry is the raw JSON `value`."""
    return raw(hdr(("a", value)), data)


U8_2 = entry(shape=(2,), offsets=(0, 2))
U8_AT_1 = entry(offsets=(1, 2))
EMPTY_AT_0 = entry(shape=(0,), offsets=(0, 0))

# (case id, file bytes, expected problem codes in order; () = valid)
HAND_MADE: list[tuple[str, bytes, tuple[str, ...]]] = [
    # io-error: see test_io_error (a path that does not exist).
    ("empty-file", b"", ("header-too-small",)),
    ("three-bytes", b"\x01\x02\x03", ("header-too-small",)),
    ("too-large", raw("{}", n=100_000_001), ("header-too-large",)),
    ("too-large-max-u64", b"\xff" * 8 + b"{}", ("header-too-large",)),
    ("length-past-end", raw("{}", n=64), ("header-length-invalid",)),
    ("lfs-pointer", LFS, ("lfs-pointer",)),
    ("bad-utf8-ff", raw(b'{"a\xff":' + E.encode() + b"}", b"x"), ("header-not-utf8",)),
    ("bad-utf8-continuation", raw(b'{"\xc3\x28":' + E.encode() + b"}", b"x"), ("header-not-utf8",)),
    ("overlong-utf8", raw(b'{"a\xc0\xaf":' + E.encode() + b"}", b"x"), ("header-not-utf8",)),
    ("utf8-surrogate", raw(b'{"a\xed\xa0\x80":' + E.encode() + b"}", b"x"), ("header-not-utf8",)),
    ("utf8-above-10ffff", raw(b'{"a\xf4\x90\x80\x80":' + E.encode() + b"}", b"x"),
     ("header-not-utf8",)),
    ("utf8-cut-at-end", raw(b"{}\xe2\x82"), ("header-not-utf8",)),
    ("not-json", raw("{,}"), ("json-syntax",)),
    ("top-level-array", raw("[]"), ("json-syntax",)),
    ("empty-header", raw(""), ("json-syntax",)),
    ("unterminated", raw('{"a'), ("json-syntax",)),
    ("control-char", raw(hdr(("a\x01b", E)), b"x"), ("json-syntax",)),
    ("lone-high-surrogate", raw(hdr(("\\ud800", E)), b"x"), ("json-syntax",)),
    ("lone-low-surrogate", raw(hdr(("\\udc00", E)), b"x"), ("json-syntax",)),
    ("high-then-non-low", raw(hdr(("\\ud800\\u0041", E)), b"x"), ("json-syntax",)),
    ("surrogate-in-ignored-field", with_field('"\\udbff\\u0041"'), ("json-syntax",)),
    ("bad-escape", raw(hdr(("\\x41", E)), b"x"), ("json-syntax",)),
    ("trailing-comma", raw(hdr(("a", E))[:-1] + ",}", b"x"), ("json-syntax",)),
    ("nan-in-ignored-field", with_field("NaN"), ("json-syntax",)),
    ("leading-zero", one('{"dtype":"U8","shape":[01],"data_offsets":[0,1]}'), ("json-syntax",)),
    ("garbage-after", raw("{} x"), ("json-syntax",)),
    ("rows-then-syntax-error", raw(hdr(("a", E), ("b", U8_AT_1))[:-1] + ",", b"xy"),
     ("json-syntax",)),
    ("deep-200", with_field("[" * 200 + "]" * 200), ("json-too-deep",)),
    ("deep-metadata", raw(hdr(("__metadata__", '{"k":' * 200 + '"v"' + "}" * 200))),
     ("json-too-deep",)),
    ("nul-padding", raw(b"{}\0\0\0\0\0\0"), ("header-padding",)),
    ("nul-padding-after-ws", raw(b"{}  \0\0"), ("header-padding",)),
    ("entry-is-number", one("1", b""), ("not-an-object", *NO_FIELDS)),
    ("entry-is-null", one("null", b""), ("not-an-object", *NO_FIELDS)),
    ("entry-is-array", one("[]", b""), ("not-an-object", *NO_FIELDS)),
    ("duplicate-name", raw(hdr(("a", E), ("a", E)), b"x"), ("duplicate-key",)),
    ("duplicate-field", one('{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}'),
     ("duplicate-key",)),
    ("duplicate-metadata-key", raw(hdr(("__metadata__", '{"k":"1","k":"2"}'))), ("duplicate-key",)),
    ("duplicate-metadata", raw(hdr(("__metadata__", "{}"), ("__metadata__", "null"))),
     ("duplicate-key",)),
    ("metadata-number", raw(hdr(("__metadata__", '{"k":1}'))), ("metadata-invalid",)),
    ("metadata-string", raw(hdr(("__metadata__", '"x"'))), ("metadata-invalid",)),
    ("metadata-array", raw(hdr(("__metadata__", "[]"))), ("metadata-invalid",)),
    ("no-dtype", one('{"shape":[1],"data_offsets":[0,1]}'), ("missing-field",)),
    ("no-shape", one('{"dtype":"U8","data_offsets":[0,1]}'), ("missing-field",)),
    ("no-offsets", one('{"dtype":"U8","shape":[1]}', b""), ("missing-field",)),
    ("dtype-e4m3fn", one(entry("F8_E4M3FN")), ("unknown-dtype",)),
    ("dtype-lowercase", one(entry("u8")), ("unknown-dtype",)),
    ("dtype-not-string", one('{"dtype":8,"shape":[1],"data_offsets":[0,1]}'), ("unknown-dtype",)),
    ("shape-string", one(entry(shape="x")), ("shape-invalid",)),
    ("shape-null-item", one(entry(shape=[1, None])), ("shape-invalid",)),
    ("offsets-one", one(entry(offsets=[0]), b""), ("offsets-invalid",)),
    ("offsets-three", one(entry(offsets=[0, 1, 1]), b""), ("offsets-invalid",)),
    ("offsets-reversed", one(entry(shape=(0,), offsets=(1, 0)), b""), ("offsets-invalid",)),
    ("offsets-string", one(entry(offsets="01"), b""), ("offsets-invalid",)),
    ("shape-negative", one(entry(shape=(-1,))), ("number-invalid",)),
    ("shape-float", one(entry(shape=(1.0,))), ("number-invalid",)),
    ("shape-exponent", one('{"dtype":"U8","shape":[1e0],"data_offsets":[0,1]}'),
     ("number-invalid",)),
    ("shape-2-64", one(entry(shape=(2**64,))), ("number-invalid",)),
    ("offsets-negative-zero", one('{"dtype":"U8","shape":[1],"data_offsets":[-0,1]}', b""),
     ("number-invalid",)),
    ("huge-float-in-ignored-field", with_field("1e400"), ("number-invalid",)),
    ("huge-int-in-ignored-field", with_field("1" + "0" * 400), ("number-invalid",)),
    ("numel-overflow", one(entry("U8", (2**32, 2**32), (0, 0)), b""), ("size-overflow",)),
    ("bits-overflow", one(entry("U64", (2**61,), (0, 0)), b""), ("size-overflow",)),
    ("offset-past-u64", one(entry("U8", (0,), (2**64 - 4, 2**64 - 4)), b""), ("offsets-invalid",)),
    ("f4-odd", one(entry("F4", (3,), (0, 2)), b"xy"), ("not-byte-aligned",)),
    ("f6-one", one(entry("F6_E2M3", (1,), (0, 1))), ("not-byte-aligned",)),
    ("f6-2x1", one(entry("F6_E3M2", (2, 1), (0, 2)), b"xy"), ("not-byte-aligned",)),
    ("size-mismatch", one(entry("F32", (2,), (0, 4)), b"wxyz"), ("size-mismatch",)),
    ("scalar-too-small", one(entry("BF16", (), (0, 1))), ("size-mismatch",)),
    ("gap-first", one(U8_AT_1, b"xy"), ("data-gap",)),
    ("gap-between", raw(hdr(("a", E), ("b", entry(offsets=(2, 3)))), b"xyz"), ("data-gap",)),
    ("overlap", raw(hdr(("a", U8_2), ("b", U8_AT_1)), b"xy"), ("data-overlap",)),
    ("same-range-two-names", raw(hdr(("a", E), ("b", E)), b"x"), ("data-overlap",)),
    ("empty-inside-another", raw(hdr(("a", U8_2), ("b", entry(shape=(0,), offsets=(1, 1)))), b"xy"),
     ("data-overlap",)),
    ("truncated", one(entry(shape=(4,), offsets=(0, 4)), b"xy"), ("truncated",)),
    ("truncated-no-data", one(E, b""), ("truncated",)),
    ("trailing-bytes", one(E, b"xyz"), ("trailing-bytes",)),
    ("trailing-after-empty", raw("{}", b"\0"), ("trailing-bytes",)),
    ("name-too-long", raw(hdr(("a" * 4097, E)), b"x"), ("name-too-long",)),
    ("name-too-long-escaped", raw(hdr(("\\u00e9" * 2048 + "a", E)), b"x"), ("name-too-long",)),
    # At most 16 problems of a code are kept, the rest counted.
    ("capped-metadata-duplicates",
     raw(hdr(("__metadata__", "{" + ",".join(['"k":"v"'] * 20) + "}"))), ("duplicate-key",) * 16),
    # Valid, if unusual: the reference accepts all of these.
    ("ok-whitespace", raw(" \t\r\n" + hdr(("a", E)) + " \n\t\r", b"x"), ()),
    ("ok-metadata-null", raw(hdr(("__metadata__", "null"))), ()),
    ("ok-metadata-empty", raw(hdr(("__metadata__", "{}"))), ()),
    ("ok-metadata-escapes", raw(hdr(("__metadata__", r'{"\u00e9\n":"\ud83d\ude00\"\\\/"}'))), ()),
    ("ok-unknown-fields", one(entry(x={"y": [1, -2.5e-3, True, None, "z"]})), ()),
    ("ok-nested-60", with_field("[" * 60 + "]" * 60), ()),
    ("ok-big-float-in-ignored", with_field("-1.7976931348623157e308"), ()),
    ("ok-tiny-float-in-ignored", with_field("1e-400"), ()),
    ("ok-escaped-names", raw(hdr((r"\u0041\ud83d\ude00", E), (r"\u0000", U8_AT_1)), b"xy"), ()),
    ("ok-escaped-keys", one(r'{"\u0064type":"U\u0038","shape":[1],"data_offsets":[0,1]}'), ()),
    ("ok-empty-name", raw(hdr(("", E)), b"x"), ()),
    ("ok-name-at-limit", raw(hdr(("1." * 2047 + "w.", E)), b"x"), ()),
    ("ok-zero-size-shared", raw(hdr(("a", EMPTY_AT_0), ("b", EMPTY_AT_0), ("c", E)), b"x"), ()),
    ("ok-zero-size-last", raw(hdr(("a", E), ("b", entry(shape=(0, 5), offsets=(1, 1)))), b"x"), ()),
    ("ok-scalar", one(entry("F64", (), (0, 8)), b"12345678"), ()),
    ("ok-f4-even", one(entry("F4", (2, 3), (0, 3)), b"xyz"), ()),
    ("ok-f6-four", one(entry("F6_E2M3", (4,), (0, 3)), b"xyz"), ()),
    ("ok-all-8-bit", raw(hdr(*((d, entry(d, (1,), (i, i + 1))) for i, d in enumerate(BYTE_DTYPES))),
                         b"x" * len(BYTE_DTYPES)), ()),
    ("ok-u64-max-dim-zero", one(entry("U8", (2**64 - 1, 0), (0, 0)), b""), ()),
    ("ok-literal-slot-names",
     raw(hdr(("{}.0", E), ("0.{}", U8_AT_1), ("a.{}.1", entry(offsets=(2, 3))),
             ("{}", entry(offsets=(3, 4)))), b"wxyz"), ()),
]

ALL_CODES = [
    "io-error", "header-too-small", "header-too-large", "header-length-invalid", "lfs-pointer",
    "header-not-utf8", "json-syntax", "json-too-deep", "header-padding", "not-an-object",
    "duplicate-key", "metadata-invalid", "missing-field", "unknown-dtype", "shape-invalid",
    "offsets-invalid", "number-invalid", "size-overflow", "not-byte-aligned", "size-mismatch",
    "data-gap", "data-overlap", "truncated", "trailing-bytes", "name-too-long",
]


def test_hand_made_table_covers_every_code() -> None:
    errors_h = (CSRC / "errors.h").read_text()
    for code in ALL_CODES:
        assert f'"{code}"' in errors_h, code
    assert errors_h.count('",') + 1 >= len(ALL_CODES)
    covered = {c for _, _, codes in HAND_MADE for c in codes} | {"io-error"}
    assert covered == set(ALL_CODES)
    ids = [case_id for case_id, _, _ in HAND_MADE]
    assert len(ids) == len(set(ids))


def write_cases(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for case_id, data, _ in HAND_MADE:
        p = directory / case_id
        p.write_bytes(data)
        paths.append(p)
    return paths


def safetensors_files(directory: Path) -> Iterator[tuple[Path, int]]:
    """Valid files written by the real library: (path, tensor count)."""
    np = pytest.importorskip("numpy")
    st = pytest.importorskip("safetensors.numpy")
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    dtypes = [np.bool_, np.uint8, np.int8, np.int16, np.uint16, np.float16, np.int32, np.uint32,
              np.float32, np.float64, np.int64, np.uint64, np.complex64]
    sets: dict[str, dict[str, object]] = {
        "empty": {},
        "scalars": {f"s.{np.dtype(d).name}": np.array(1, dtype=d) for d in dtypes},
        "zero_size": {"a": np.zeros((0,), np.float32), "b": np.zeros((3, 0, 2), np.int64),
                      "c": np.ones((2,), np.uint8), "d": np.zeros((0, 0), np.float16)},
        "every_dtype": {f"t.{i}.{np.dtype(d).name}": (rng.standard_normal((2, 3)) * 9).astype(d)
                        for i, d in enumerate(dtypes)},
        "layers": {f"model.layers.{i}.mlp.experts.{e}.w1.weight": np.zeros((3, 2), np.float16)
                   for i in range(3) for e in range(4)},
        "unicode": {"\u00e9": np.zeros(2, np.int8), "\U0001f600.0": np.zeros(1, np.int8),
                    'we"ird\\na\nme': np.zeros(1, np.int8), "{}.7": np.zeros(1, np.int8)},
        "bigger": {"w": rng.standard_normal((64, 48)).astype(np.float32)},
    }
    for name, tensors in sets.items():
        p = directory / f"st_{name}.safetensors"
        st.save_file(tensors, str(p))
        yield p, len(tensors)
    p = directory / "st_metadata.safetensors"
    st.save_file({"x": np.arange(5, dtype=np.int32)}, str(p),
                 metadata={"format": "np", "k\u00e9y": "v\u2603\n\"q\"", "empty": ""})
    yield p, 1


# ---- tests ---------------------------------------------------------------------------


def sorted_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []


def test_regressions_and_corpus(driver: Path, leak_detection: bool) -> None:
    paths = sorted_files(REGRESSIONS) + sorted_files(CORPUS)
    assert sorted_files(REGRESSIONS), f"no fuzz regressions in {REGRESSIONS}"
    assert sorted_files(CORPUS), f"no seed corpus in {CORPUS}"
    verdicts = run_driver(driver, leak_detection, paths)
    check_against_reference(verdicts, paths)


def test_hand_made(driver: Path, leak_detection: bool, tmp_path: Path) -> None:
    paths = write_cases(tmp_path)
    verdicts = run_driver(driver, leak_detection, paths)
    wrong = []
    for (case_id, _, expected), p in zip(HAND_MADE, paths, strict=True):
        got = verdicts[str(p)].codes
        if got != expected:
            want = ",".join(expected) or "ok"
            wrong.append(f"{case_id}: expected {want}, got {','.join(got) or 'ok'}")
    assert not wrong, "\n".join(wrong)
    check_against_reference(verdicts, paths)


def test_safetensors_written_files(driver: Path, leak_detection: bool, tmp_path: Path) -> None:
    files = list(safetensors_files(tmp_path))
    verdicts = run_driver(driver, leak_detection, [p for p, _ in files])
    for p, n in files:
        assert verdicts[str(p)] == Verdict(n, ()), p.name


def test_io_error(driver: Path, leak_detection: bool, tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist.safetensors"
    verdicts = run_driver(driver, leak_detection, [missing])
    assert verdicts[str(missing)] == Verdict(0, ("io-error",))
