"""Issue #10: every size the kernels derive from a shape and a block is checked
before a loop sees it. Regressions for blocks of 2**64 - 1 (their block count
wrapped to 0: block_absmax wrote past its output, dequantize read and returned
heap garbage) on every SIMD path; zero blocks, overflowing products, mismatched
buffers and Python integers outside 0..2**64-1 are ValueError, never a crash or a
TypeError; and a file that shrinks under a mapping gives OSError, not SIGBUS."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from ckptscan import _core
from ckptscan import kernels as K

ml_dtypes = pytest.importorskip("ml_dtypes")

PATHS = K.available_simd()
HUGE = 2**64 - 1
Q = np.arange(64, dtype=np.uint8).reshape(8, 8)  # e4m3fn: 0x00..0x3F, no NaN


def decoded(q: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return q.view(ml_dtypes.float8_e4m3fn).astype(np.float32)


@pytest.mark.parametrize("path", PATHS)
def test_block_absmax_huge_blocks(path: str) -> None:
    """(2**64 - 1, 1): one block row holding all 8 rows, each column its own block."""
    with K.using_simd(path):
        rows = K.block_absmax(Q, block=(HUGE, 1), dtype="F8_E4M3")
        cols = K.block_absmax(Q, block=(1, HUGE), dtype="F8_E4M3")
        both = K.block_absmax(Q, block=(HUGE, HUGE), dtype="F8_E4M3")
    assert rows.codes.tolist() == [list(range(56, 64))]       # max of each column
    assert cols.codes.tolist() == [[8 * i + 7] for i in range(8)]  # max of each row
    assert both.codes.tolist() == [[63]]
    assert rows.nan.shape == (1, 8) and not rows.nan.any()
    assert rows.block == (HUGE, 1)


@pytest.mark.parametrize("path", PATHS)
def test_dequantize_huge_blocks(path: str) -> None:
    """The scale of a block of 2**64 - 1 rows is one row; the old wrapped shape (0
    rows, which the kernels used to accept and read past) is refused."""
    scale = np.array([[2.0, 0.5, 4.0, 1.0, 8.0, 0.25, 3.0, 1.5]], np.float32)
    want = decoded(Q) * scale
    with K.using_simd(path):
        got = K.dequantize_array(Q, scale, (HUGE, 1), "float32", fp8_dtype="F8_E4M3")
        assert np.array_equal(got, want)
        one = K.dequantize_array(Q, np.array([[2.0]], np.float32), (HUGE, HUGE), "float32",
                                 fp8_dtype="F8_E4M3")
        assert np.array_equal(one, decoded(Q) * 2)
        with pytest.raises(ValueError, match="bad_scale_shape"):
            _core.fp8_dequantize(Q, 8, 8, "F8_E4M3", np.zeros((0, 8), np.float32), 0, 8,
                                 HUGE, 1, np.zeros((8, 8), np.float32), "F32")


def test_invalid_blocks_and_shapes() -> None:
    with pytest.raises(ValueError, match="bad_block"):
        K.block_absmax(Q, block=(0, 4), dtype="F8_E4M3")
    with pytest.raises(ValueError, match="bad_block"):
        K.fp8_block_stats(Q, block=(4, 0), dtype="F8_E4M3")
    with pytest.raises(ValueError, match="bad_block"):
        K.dequantize_array(Q, np.ones((1, 1), np.float32), (0, 0), "float32",
                           fp8_dtype="F8_E4M3")
    with pytest.raises(ValueError, match="too_large"):  # rows * cols overflows
        _core.fp8_block_stats(Q, 2**33, 2**33, 1, 1, "F8_E4M3")
    with pytest.raises(ValueError, match="too_large"):  # batch * rows * cols overflows
        _core.fp8_block_stats(Q, 2**32, 2**32, 1, 1, "F8_E4M3", batch=2)
    with pytest.raises(ValueError, match="too_large"):  # counts past ptrdiff_t
        _core.fp8_block_stats(Q, 1, 2**63, 1, 1, "F8_E4M3")
    with pytest.raises(ValueError, match="holds 64 bytes"):
        _core.fp8_block_stats(Q, 8, 9, 2, 2, "F8_E4M3")
    with pytest.raises(ValueError, match="holds 64 bytes"):
        _core.fp8_block_absmax(Q, 7, 8, 2, 2, "F8_E4M3")
    with pytest.raises(ValueError, match="bad_buffer"):  # out one element short
        _core.fp8_dequantize(Q, 8, 8, "F8_E4M3", np.ones((4, 4), np.float32), 4, 4, 2, 2,
                             np.zeros(63, np.float32), "F32")
    with pytest.raises(ValueError, match="bad_scale_shape"):  # one expert's scale for two
        _core.fp8_dequantize(Q, 4, 8, "F8_E4M3", np.ones((2, 4), np.float32), 2, 4, 2, 2,
                             np.zeros(64, np.float32), "F32", batch=2)
    with pytest.raises(ValueError, match="block must be"):
        K.block_absmax(Q, block=(1, 2, 3), dtype="F8_E4M3")  # type: ignore[arg-type]
    # empty tensors are fine: no blocks
    assert K.fp8_block_stats(np.zeros((0, 5), np.uint8), block=(2, 2),
                             dtype="F8_E4M3").nan.shape == (0, 3)


BAD_INTS = [-1, 2**64, 2**70, -(2**63), 1.5, "3", None]


@pytest.mark.parametrize("bad", BAD_INTS, ids=repr)
def test_python_ints_outside_uint64(bad: object) -> None:
    """Every size argument of every kernel binding: ValueError naming it."""
    s = np.ones((4, 4), np.float32)
    o = np.zeros((8, 8), np.float32)
    calls = {
        "rows": lambda v: _core.fp8_block_absmax(Q, v, 8, 2, 2, "F8_E4M3"),
        "cols": lambda v: _core.fp8_block_absmax(Q, 8, v, 2, 2, "F8_E4M3"),
        "block_rows": lambda v: _core.fp8_block_stats(Q, 8, 8, v, 2, "F8_E4M3"),
        "block_cols": lambda v: _core.fp8_block_stats(Q, 8, 8, 2, v, "F8_E4M3"),
        "batch": lambda v: _core.fp8_block_stats(Q, 8, 8, 2, 2, "F8_E4M3", v),
        "scale_rows": lambda v: _core.fp8_dequantize(Q, 8, 8, "F8_E4M3", s, v, 4, 2, 2, o, "F32"),
        "scale_cols": lambda v: _core.fp8_dequantize(Q, 8, 8, "F8_E4M3", s, 4, v, 2, 2, o, "F32"),
        "code": lambda v: _core.fp8_decode(v, "F8_E4M3"),
    }
    for arg, call in calls.items():
        with pytest.raises(ValueError, match=arg):
            call(bad)
    with pytest.raises(ValueError):
        K.block_absmax(Q, block=(bad, 2), dtype="F8_E4M3")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        K.fp8_block_stats(Q, block=(2, bad), dtype="F8_E4M3")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        K.dequantize_array(Q, s, (bad, 2), "float32",  # type: ignore[arg-type]
                           fp8_dtype="F8_E4M3")


def test_numpy_integers_accepted() -> None:
    a = _core.fp8_block_absmax(Q, np.int64(8), np.uint16(8), np.uint64(2**64 - 1),
                               np.int8(2), "F8_E4M3")
    assert a[0].shape == (1, 4)
    assert _core.fp8_decode(np.uint8(0x38), "F8_E4M3") == 1.0
    with pytest.raises(ValueError, match="0..255"):
        _core.fp8_decode(256, "F8_E4M3")


def test_copy_guarded() -> None:
    src = np.arange(1000, dtype=np.uint16).view(np.uint8)[3:1003]
    src.flags.writeable = False
    got = _core.copy_guarded(src)
    assert got.dtype == np.uint8 and got.shape == (1000,) and got.flags.writeable
    assert np.array_equal(got, src) and not np.shares_memory(got, src)
    assert _core.copy_guarded(b"").shape == (0,)
    assert bytes(_core.copy_guarded(memoryview(b"abc"))) == b"abc"
    with pytest.raises(TypeError):
        _core.copy_guarded(np.zeros((4, 4), np.uint8)[:, ::2])
    t = K.copy_tensor(np.array([1.5, -2.0], np.float32))
    assert t.dtype == "F32" and t.shape == (2,) and t.data.view(np.float32).tolist() == [1.5, -2]


SHRINK = textwrap.dedent("""
    import os, sys
    import numpy as np, ml_dtypes
    import ckptscan
    from ckptscan import _core, kernels as K
    from safetensors.numpy import save_file

    path = sys.argv[1]
    q = np.random.default_rng(0).integers(0, 0x70, (256, 512), dtype=np.uint8)
    save_file({"w": q.view(ml_dtypes.float8_e4m3fn),
               "w_scale_inv": np.full((2, 4), 0.5, np.float32)}, path)
    shard = ckptscan.open_shard(path)
    w = K.raw_tensor(shard, "w")             # live mappings of both tensors
    s = K.raw_tensor(shard, "w_scale_inv")
    os.truncate(path, 0)                     # every mapped page now past the end
    for what, call in [
        ("copy_guarded", lambda: _core.copy_guarded(s.data)),
        ("copy_tensor", lambda: K.copy_tensor(s)),
        ("dequantize", lambda: K.dequantize_array(w, s, (128, 128), "float32")),
        ("fp8_block_stats", lambda: K.fp8_block_stats(w)),
    ]:
        try:
            call()
            print(what, "no error")
        except OSError as e:
            print(what, "OSError", "SIGBUS" in str(e))
""")


def test_truncated_file_under_live_mapping(tmp_path: Path) -> None:
    """A shard truncated while its tensors are mapped: reading the scale (or the
    weight) raises OSError in this process; nothing dies of SIGBUS."""
    env = {**os.environ, "PYTHONFAULTHANDLER": ""}
    run = subprocess.run([sys.executable, "-c", SHRINK, str(tmp_path / "m.safetensors")],
                         capture_output=True, text=True, timeout=120, env=env,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    lines = run.stdout.split("\n")
    assert lines[:4] == ["copy_guarded OSError True", "copy_tensor OSError True",
                         "dequantize OSError True", "fp8_block_stats OSError True"], run.stdout
