"""fp8_block_stats (one pass: whole-tensor statistics and per-block absmax / NaN /
Inf / saturated counts) against numpy + ml_dtypes on every SIMD path: 128 x 128,
per-channel and group blocks, [E, rows, cols] batches whose rows the blocks do
and do not tile, blocks larger than the tensor, lengths 0..300 at unaligned
starts, counter-overflow runs, and the equality with the two kernels it replaces."""

from __future__ import annotations

import numpy as np
import pytest
from ckptscan import _core
from ckptscan import kernels as K

ml_dtypes = pytest.importorskip("ml_dtypes")

FP8 = {
    "F8_E4M3": ml_dtypes.float8_e4m3fn,
    "F8_E5M2": ml_dtypes.float8_e5m2,
    "F8_E4M3FNUZ": ml_dtypes.float8_e4m3fnuz,
    "F8_E5M2FNUZ": ml_dtypes.float8_e5m2fnuz,
}
PATHS = K.available_simd()
SPECIAL = np.array([0x00, 0x80, 0x7F, 0xFF, 0x7E, 0xFE, 0x7C, 0xFC, 0x7D, 0xFD, 0x01, 0x81,
                    0x07, 0x87, 0x08, 0x7B, 0xFB], np.uint8)
COUNTS = ("nan", "inf", "zero", "neg_zero", "subnormal", "saturated", "negative")


def planted(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, n, dtype=np.uint8)
    k = rng.random(n) < 0.3
    a[k] = rng.choice(SPECIAL, int(k.sum()))
    return a


def code_table(fmt: str) -> dict[str, np.ndarray]:
    """Per-code facts from ml_dtypes values only."""
    v = np.arange(256, dtype=np.uint8).view(FP8[fmt]).astype(np.float64)
    fi = ml_dtypes.finfo(FP8[fmt])
    fin = np.isfinite(v)
    a = np.abs(np.where(fin, v, 0))
    return {
        "nan": np.isnan(v), "inf": np.isinf(v), "zero": fin & (v == 0),
        "neg_zero": fin & (v == 0) & np.signbit(v),
        "subnormal": fin & (v != 0) & (a < float(fi.smallest_normal)),
        "saturated": fin & (a == float(fi.max)), "negative": ~np.isnan(v) & (v < 0),
        "key": np.where(fin, np.arange(256) & 0x7F, 0),
    }


def truth(q: np.ndarray, fmt: str, br: int, bc: int) -> dict[str, np.ndarray | int]:
    """Whole-tensor counts and per-block arrays of a [E, R, C] or [R, C] array of
    codes: each matrix padded with +0 codes (key 0, no NaN / Inf / saturated) to
    whole blocks, then reduced over the block axes."""
    t = code_table(fmt)
    q3 = q.reshape((1, *q.shape)) if q.ndim == 2 else q
    e, r, c = q3.shape
    br, bc = min(br, max(r, 1)), min(bc, max(c, 1))  # a larger block is the whole tensor
    nbr, nbc = -(-r // br), -(-c // bc)
    pad = np.zeros((e, nbr * br, nbc * bc), np.uint8)
    pad[:, :r, :c] = q3
    out: dict[str, np.ndarray | int] = {k: int(t[k][q3].sum()) for k in COUNTS}
    out["absmax_code"] = int(t["key"][q3].max()) if q3.size else 0
    for name, table in (("absmax", "key"), ("nan_b", "nan"), ("inf_b", "inf"),
                        ("sat_b", "saturated")):
        v = t[table][pad].astype(np.int64).reshape(e, nbr, br, nbc, bc)
        res = v.max(axis=(2, 4), initial=0) if name == "absmax" else v.sum(axis=(2, 4))
        out[name] = res if q.ndim == 3 else res[0]
    return out


def width_dtype(block_elems: int) -> type:
    for dt in (np.uint8, np.uint16, np.uint32):
        if block_elems <= np.iinfo(dt).max:
            return dt
    return np.uint64


def check(q: np.ndarray, fmt: str, block: tuple[int, int], path: str) -> K.Fp8BlockStats:
    br, bc = block
    with K.using_simd(path):
        got = K.fp8_block_stats(q, block=block, dtype=fmt)
    want = truth(q, fmt, br, bc)
    where = (path, fmt, q.shape, block)
    assert got.dtype == fmt and got.shape == q.shape and got.block == block
    assert got.stats.count == q.size, where
    for k in COUNTS:
        assert getattr(got.stats, k) == want[k], (where, k)
    assert got.stats.absmax_code == want["absmax_code"], where
    r, c = q.shape[-2:]
    cdt = width_dtype(min(br, r) * min(bc, c))
    for arr, key in ((got.absmax_codes, "absmax"), (got.nan, "nan_b"), (got.inf, "inf_b"),
                     (got.saturated, "sat_b")):
        ref = np.asarray(want[key])
        assert arr.shape == ref.shape, (where, key, arr.shape, ref.shape)
        assert arr.dtype == (np.uint8 if key == "absmax" else cdt), (where, key, arr.dtype)
        assert np.array_equal(arr, ref), (where, key)
    return got


SHAPES = [
    ((256, 384), (128, 128)), ((130, 257), (128, 128)), ((300, 1), (128, 128)),
    ((1, 300), (128, 128)), ((40, 700), (1, 700)), ((7, 33), (3, 5)), ((17, 200), (1, 17)),
    ((300, 64), (1, 32)), ((97, 48), (1, 16)), ((41, 192), (1, 64)), ((600, 32), (1, 32)),
    ((9, 48), (1, 32)), ((5, 96), (1, 64)), ((3, 7168), (1, 7168)), ((64, 64), (64, 64)),
    ((33, 1000), (7, 999)), ((2, 700), (2, 65)), ((5, 9), (64, 1000)), ((1, 1), (1, 1)),
    ((0, 5), (2, 2)), ((4, 0), (2, 2)), ((257, 128), (1, 64)),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape,block", SHAPES)
def test_block_stats_truth(path: str, shape: tuple[int, int], block: tuple[int, int]) -> None:
    q = planted(int(np.prod(shape)), shape[0] * 1000 + shape[1]).reshape(shape)
    for fmt in FP8:
        check(q, fmt, block, path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape,block", [
    ((3, 20, 96), (1, 32)),       # group blocks across a batch (folded into rows)
    ((4, 7, 33), (3, 5)),         # 7 % 3 != 0: blocks must not straddle two experts
    ((5, 256, 64), (128, 32)),    # tiled: one pass over all experts
    ((2, 130, 257), (128, 128)),  # partial blocks in every expert
    ((1, 9, 31), (4, 8)),         # a batch of one stays 3-D
    ((6, 1, 40), (2, 16)),        # one row per expert, block taller than it
])
def test_block_stats_batch(path: str, shape: tuple[int, int, int],
                           block: tuple[int, int]) -> None:
    q = planted(int(np.prod(shape)), sum(shape)).reshape(shape)
    for fmt in FP8:
        got = check(q, fmt, block, path)
        assert got.nan.shape[0] == shape[0]
        # each expert alone gives its slice
        for e in range(shape[0]):
            one = K.fp8_block_stats(q[e], block=block, dtype=fmt)
            assert np.array_equal(one.absmax_codes, got.absmax_codes[e])
            assert np.array_equal(one.saturated, got.saturated[e])


@pytest.mark.parametrize("path", PATHS)
def test_huge_blocks(path: str) -> None:
    """Blocks of 2**64 - 1 (whose count used to wrap to 0) are one partial block."""
    q = planted(8 * 8, 5).reshape(8, 8)
    for block in ((2**64 - 1, 1), (1, 2**64 - 1), (2**64 - 1, 2**64 - 1), (2**63, 3),
                  (2**64 - 2, 2**63 + 1)):
        for fmt in FP8:
            got = check(q, fmt, block, path)
            assert got.nan.size == (1 if block[1] >= 8 else -(-8 // block[1])) * \
                (1 if block[0] >= 8 else -(-8 // block[0]))
    q3 = planted(3 * 5 * 9, 6).reshape(3, 5, 9)
    check(q3, "F8_E5M2", (2**64 - 1, 2), path)


@pytest.mark.parametrize("path", PATHS)
def test_counter_overflow_runs(path: str) -> None:
    """Long runs of one code: byte counters flushed before they wrap, per block and
    whole-tensor, with blocks of 16384 and 65536 elements (uint16 / uint32 counts)."""
    for code in (0x00, 0x80, 0x7F, 0xFE, 0x7C, 0x7B, 0x03):
        for shape, block in (((256, 256), (128, 128)), ((256, 256), (256, 256)),
                             ((3, 40000), (1, 40000)), ((2, 16384), (1, 32))):
            q = np.full(shape, code, np.uint8)
            for fmt in FP8:
                check(q, fmt, block, path)


SIMD_PATHS = [p for p in PATHS if p != "scalar"]
BUF = planted(300 + 64, 99)


@pytest.mark.skipif(not SIMD_PATHS, reason="no SIMD path on this CPU")
@pytest.mark.parametrize("path", SIMD_PATHS)
def test_paths_equal_scalar_lengths_offsets(path: str) -> None:
    """One-row tensors of every length 0..300 at unaligned starts, with the block
    widths each path special-cases (16, 32, 64 packed; 128; a whole row)."""
    cases = [(off, n) for off in (0, 1, 7, 31, 33, 63) for n in range(0, 301)]
    cases += [(off, n) for off in range(64) for n in (16, 32, 64, 96, 128, 160, 192, 300)]
    for fmt in FP8:
        for bc in (16, 32, 64, 128, 300, 1, 5):
            views = [BUF[off:off + n] for off, n in cases]
            with K.using_simd("scalar"):
                ref = [_core.fp8_block_stats(v, 1, v.size, 1, bc, fmt) for v in views]
            with K.using_simd(path):
                got = [_core.fp8_block_stats(v, 1, v.size, 1, bc, fmt) for v in views]
            for (off, n), x, y in zip(cases, ref, got, strict=True):
                assert x[0] == y[0], (path, fmt, bc, off, n)
                for a, b in zip(x[1:], y[1:], strict=True):
                    assert a.dtype == b.dtype and np.array_equal(a, b), (path, fmt, bc, off, n)


def test_equals_the_two_pass_path() -> None:
    """The fused pass gives what block_absmax + fp8_stats gave, on a real shard."""
    q = planted(300 * 517, 3).reshape(300, 517)
    for fmt in FP8:
        fused = K.fp8_block_stats(q, block=(128, 128), dtype=fmt)
        old = K.block_absmax(q, block=(128, 128), dtype=fmt)
        whole = K.fp8_stats(q, dtype=fmt)
        assert fused.stats == whole
        assert np.array_equal(fused.absmax_codes, old.codes)
        assert np.array_equal(fused.nan, old.nan)
        assert np.array_equal(fused.absmax, old.values)


def test_from_shard(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ckptscan
    from safetensors.numpy import save_file

    q = planted(4 * 130 * 96, 8).reshape(4, 130, 96)
    path = tmp_path / "experts.safetensors"
    save_file({"experts.w": q.view(ml_dtypes.float8_e4m3fn)}, str(path))
    with ckptscan.open_shard(path) as shard:
        got = K.fp8_block_stats(shard, "experts.w", block=(128, 32))
    want = truth(q, "F8_E4M3", 128, 32)
    assert got.shape == (4, 130, 96) and got.nan.shape == (4, 2, 3)
    assert np.array_equal(got.absmax_codes, want["absmax"])
    assert np.array_equal(got.saturated, want["sat_b"])


def test_elements_and_saturated_share() -> None:
    q = np.full((5, 130, 70), 0x7E, np.uint8)  # e4m3fn +448: all saturated
    q[:, :, 0] = 0x38
    got = K.fp8_block_stats(q, block=(128, 32), dtype="F8_E4M3")
    rows = np.array([128, 2])[:, None]
    cols = np.array([32, 32, 6])[None, :]
    elements = np.broadcast_to(rows * cols, (5, 2, 3))
    assert np.array_equal(got.elements, elements)
    sat = elements - np.array([[rows[0, 0], 0, 0], [rows[1, 0], 0, 0]])[None]
    assert np.array_equal(got.saturated, sat)
    assert np.allclose(got.saturated_share, sat / elements)
    assert np.array_equal(got.absmax, np.full((5, 2, 3), 448.0))
    huge = K.fp8_block_stats(q[0], block=(2**64 - 1, 2**64 - 1), dtype="F8_E4M3")
    assert huge.elements.tolist() == [[130 * 70]]


def test_decode_table_cached() -> None:
    for fmt, t in FP8.items():
        a, b = K.fp8_decode_table(fmt), K.fp8_decode_table(fmt)
        assert a is b and not a.flags.writeable
        want = np.arange(256, dtype=np.uint8).view(t).astype(np.float64)
        assert np.array_equal(a, want, equal_nan=True)
        with pytest.raises(ValueError):
            a[0] = 1.0
