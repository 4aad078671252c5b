"""Block dequantization against numpy + ml_dtypes, bit for bit, on every SIMD path:
float32 = decode(q) * scale_inv[i // br, j // bc] computed in float32, bfloat16 =
the ml_dtypes round-to-nearest-even cast of that float32 product."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ckptscan import kernels as K

ml_dtypes = pytest.importorskip("ml_dtypes")

FP8 = {
    "F8_E4M3": ml_dtypes.float8_e4m3fn,
    "F8_E5M2": ml_dtypes.float8_e5m2,
    "F8_E4M3FNUZ": ml_dtypes.float8_e4m3fnuz,
    "F8_E5M2FNUZ": ml_dtypes.float8_e5m2fnuz,
}
PATHS = K.available_simd()


def reference(q: np.ndarray, scale: np.ndarray, fmt: str, br: int, bc: int) -> np.ndarray:
    r, c = q.shape
    full = np.repeat(np.repeat(scale, br, axis=0), bc, axis=1)[:r, :c]
    with np.errstate(invalid="ignore", over="ignore"):
        return q.view(FP8[fmt]).astype(np.float32) * full


def bf16_bits(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return x.astype(ml_dtypes.bfloat16).view(np.uint16)


def random_scales(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Mantissas all over, exponents from float32-subnormal products to overflow."""
    m = rng.uniform(1.0, 2.0, shape)
    e = rng.integers(-140, 100, shape)
    s = np.ldexp(m, e).astype(np.float32)
    s.flat[:: 7] = rng.choice(np.array([1.0, 2.0**-8, 1 / 448, 3.0e-5], np.float32),
                              len(s.flat[:: 7]))
    return s


SHAPES = [(1, 1, 128, 128), (130, 257, 128, 128), (7, 33, 3, 5), (300, 1, 128, 128),
          (1, 300, 128, 128), (64, 64, 16, 16), (5, 129, 5, 33), (17, 200, 1, 17),
          (256, 256, 128, 128), (3, 1000, 2, 999), (9, 31, 9, 31)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("fmt", FP8)
@pytest.mark.parametrize("shape", SHAPES)
def test_dequant_equals_numpy(path: str, fmt: str, shape: tuple[int, int, int, int]) -> None:
    r, c, br, bc = shape
    rng = np.random.default_rng(r * 7919 + c)
    q = rng.integers(0, 256, (r, c), dtype=np.uint8)
    scale = random_scales((-(-r // br), -(-c // bc)), rng)
    ref = reference(q, scale, fmt, br, bc)
    with K.using_simd(path):
        f32 = K.dequantize_array(q, scale, (br, bc), "float32", fp8_dtype=fmt)
        bf = K.dequantize_array(q, scale, (br, bc), "bfloat16", fp8_dtype=fmt)
    assert f32.dtype == np.float32 and f32.shape == (r, c)
    assert np.array_equal(f32.view(np.uint32), ref.view(np.uint32)), (path, fmt, shape)
    assert bf.dtype == ml_dtypes.bfloat16 and bf.shape == (r, c)
    assert np.array_equal(bf.view(np.uint16), bf16_bits(ref)), (path, fmt, shape)


@pytest.mark.parametrize("path", PATHS)
def test_bf16_rounding_ties_and_overflow(path: str) -> None:
    """Products exactly halfway between bfloat16 neighbours, and past the bf16 max."""
    q = np.full((1, 6), 0x38, np.uint8)  # e4m3fn 0x38 = 1.0
    halfway = np.array([[1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, 3.3895314e38,
                         3.4e38, -(1 + 2**-8)]], np.float32)
    for j in range(6):
        s = halfway[:, j:j + 1]
        with K.using_simd(path):
            got = K.dequantize_array(q[:, j:j + 1], s, (1, 1), "bfloat16", fp8_dtype="F8_E4M3")
        assert np.array_equal(got.view(np.uint16), bf16_bits(reference(q[:, j:j + 1], s,
                                                                       "F8_E4M3", 1, 1)))


def test_unaligned_input_and_out_param() -> None:
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, 50 * 70 + 13, dtype=np.uint8)
    scale = random_scales((2, 3), rng)
    for off in (1, 5, 13):
        q = big[off:off + 50 * 70].reshape(50, 70)
        ref = reference(q, scale, "F8_E4M3", 32, 32)
        for path in PATHS:
            out = np.full((50, 70), 7, np.float32)
            with K.using_simd(path):
                got = K.dequantize_array(q, scale, (32, 32), "float32", fp8_dtype="F8_E4M3",
                                         out=out)
            assert got is out
            assert np.array_equal(out.view(np.uint32), ref.view(np.uint32)), (path, off)
            outb = np.zeros((50, 70), ml_dtypes.bfloat16)
            with K.using_simd(path):
                K.dequantize_array(q, scale, (32, 32), "bfloat16", fp8_dtype="F8_E4M3", out=outb)
            assert np.array_equal(outb.view(np.uint16), bf16_bits(ref))


def test_typed_inputs_and_errors() -> None:
    w = np.array([[0.5, -2.0], [448.0, np.nan]], dtype=ml_dtypes.float8_e4m3fn)
    s = np.array([[2.0]], np.float32)
    got = K.dequantize_array(w, s, (2, 2), "float32")
    assert np.array_equal(got, np.array([[1.0, -4.0], [896.0, np.nan]], np.float32),
                          equal_nan=True)
    with pytest.raises(ValueError, match="bad_scale_shape"):
        K.dequantize_array(w, np.ones((2, 2), np.float32), (2, 2), "float32")
    with pytest.raises(ValueError):
        K.dequantize_array(w, s, (2, 2), "float16")
    with pytest.raises(ValueError):
        K.dequantize_array(w, s, (2, 2), "float32", out=np.zeros((2, 3), np.float32))
    # E8M0 scales decode to powers of two
    e8 = np.array([[128]], np.uint8)  # 2^1
    got = K.dequantize_array(w, K.RawTensor(e8.reshape(-1), "F8_E8M0", (1, 1)), (2, 2),
                             "float32")
    assert got[0, 0] == 1.0 and got[1, 0] == 896.0


def test_dequantize_from_shard(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ckptscan
    from safetensors.numpy import save_file

    rng = np.random.default_rng(3)
    q = rng.integers(0, 256, (130, 257), dtype=np.uint8)
    q[q & 0x7F == 0x7F] = 0x01  # no NaN, so the typed comparison below is plain
    scale = random_scales((2, 3), rng)
    path = tmp_path / "m.safetensors"
    save_file({"x.weight": q.view(ml_dtypes.float8_e4m3fn),
               "x.weight_scale_inv": scale}, str(path))
    ref = reference(q, scale, "F8_E4M3", 128, 128)
    with ckptscan.open_shard(path) as shard:
        got = K.dequantize(shard, "x.weight", "x.weight_scale_inv", (128, 128), "float32")
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
        bf = K.dequantize(shard, "x.weight", "x.weight_scale_inv")
        assert np.array_equal(bf.view(np.uint16), bf16_bits(ref))
    # the same from a mapping of arrays
    got = K.dequantize({"w": q.view(ml_dtypes.float8_e4m3fn), "s": scale}, "w", "s",
                       dtype="float32")
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


# ---- issue #13: every valid file dequantizes --------------------------------------
SCALE_TYPES = {"F32": np.float32, "BF16": ml_dtypes.bfloat16, "F16": np.float16,
               "F8_E8M0": ml_dtypes.float8_e8m0fnu}


def scale_values(shape: tuple[int, ...], sdtype: str, rng: np.random.Generator) -> np.ndarray:
    """Scales of a dtype, as that dtype (codes all over the E8M0 range, 0xFF = NaN)."""
    if sdtype == "F8_E8M0":
        codes = rng.integers(0, 256, shape, dtype=np.uint8)
        codes.flat[:3] = [0, 0xFF, 254][: codes.size]
        return codes.view(ml_dtypes.float8_e8m0fnu)
    lo, hi = {"F32": (-140, 100), "BF16": (-133, 100), "F16": (-24, 15)}[sdtype]
    s = np.ldexp(rng.uniform(1.0, 2.0, shape), rng.integers(lo, hi, shape))
    return s.astype(np.float32).astype(SCALE_TYPES[sdtype])


def reference_any(q: np.ndarray, scale: np.ndarray, fmt: str, br: int, bc: int) -> np.ndarray:
    """float32 decode(q) * float32(scale) per block (ml_dtypes converts the scale); a
    NaN code stays its own NaN whatever the scale. q is [R, C] or [E, R, C]."""
    s = scale.astype(np.float32)
    full = np.repeat(np.repeat(s, br, axis=-2), bc, axis=-1)[..., :q.shape[-2], :q.shape[-1]]
    with np.errstate(invalid="ignore", over="ignore"):
        x = q.view(FP8[fmt]).astype(np.float32)
        return np.where(np.isnan(x), x, x * full).astype(np.float32)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("sdtype", SCALE_TYPES)
def test_scale_dtypes(path: str, sdtype: str) -> None:
    rng = np.random.default_rng(len(sdtype))
    for fmt in FP8:
        q = rng.integers(0, 256, (130, 257), dtype=np.uint8)
        scale = scale_values((2, 3), sdtype, rng)
        ref = reference_any(q, scale, fmt, 128, 128)
        with K.using_simd(path):
            got = K.dequantize_array(q, scale, (128, 128), "float32", fp8_dtype=fmt)
            bf = K.dequantize_array(q, scale, (128, 128), "bfloat16", fp8_dtype=fmt)
        assert same_bits(got, ref), (path, sdtype, fmt)
        assert np.array_equal(bf.view(np.uint16), bf16_bits(ref)), (path, sdtype, fmt)


def hand_file(path: Path, tensors: list[tuple[str, str, tuple[int, ...], bytes]]) -> None:
    """A safetensors file laid out in the given order, no padding between tensors
    (legal: offsets need no alignment), header padded with spaces like the writers."""
    import json
    import struct

    header: dict[str, object] = {}
    off = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors))


@pytest.mark.parametrize("sdtype", SCALE_TYPES)
def test_scale_at_unaligned_offset(tmp_path: Path, sdtype: str) -> None:
    """A scale placed right after a weight of odd size sits at an offset no multiple
    of its element size: the file is valid (the safetensors library reads it), and
    dequantize used to refuse it ("scale_inv and out must be aligned")."""
    import ckptscan
    from safetensors import safe_open

    rng = np.random.default_rng(13)
    q = rng.integers(0, 256, (3, 5, 131), dtype=np.uint8)  # 1965 bytes: odd
    scale = scale_values((3, 1, 2), sdtype, rng)
    path = tmp_path / "odd.safetensors"
    hand_file(path, [("e.weight", "F8_E4M3", q.shape, q.tobytes()),
                     ("e.weight_scale_inv", sdtype, scale.shape, scale.tobytes())])
    with safe_open(str(path), framework="np") as f:  # the reference accepts the file
        assert f.get_slice("e.weight_scale_inv").get_shape() == list(scale.shape)
        if sdtype != "F8_E8M0":  # (its numpy loader has no E8M0 type)
            assert np.array_equal(f.get_tensor("e.weight_scale_inv").view(np.uint8),
                                  scale.view(np.uint8))
    ref = reference_any(q, scale, "F8_E4M3", 128, 128)
    with ckptscan.open_shard(path) as shard:
        begin = shard["e.weight_scale_inv"].offsets[0]
        assert begin % 8 == 1965 % 8  # data starts 8-aligned, the scale 1965 bytes later
        for p in PATHS:
            with K.using_simd(p):
                got = K.dequantize(shard, "e.weight", "e.weight_scale_inv", (128, 128), "float32")
            assert got.shape == (3, 5, 131) and same_bits(got, ref), (p, sdtype)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape,block", [((4, 7, 33), (3, 5)), ((3, 256, 96), (128, 32)),
                                         ((2, 130, 257), (128, 128)), ((5, 1, 40), (2, 16)),
                                         ((1, 9, 31), (4, 8))])
def test_batched_experts(path: str, shape: tuple[int, int, int], block: tuple[int, int]) -> None:
    """[E, rows, cols] with scale [E, nbr, nbc]: every expert as on its own."""
    rng = np.random.default_rng(sum(shape))
    e, r, c = shape
    br, bc = block
    q = rng.integers(0, 256, shape, dtype=np.uint8)
    scale = random_scales((e * -(-r // br), -(-c // bc)), rng).reshape(e, -(-r // br), -1)
    ref = reference_any(q, scale, "F8_E5M2", br, bc)
    with K.using_simd(path):
        got = K.dequantize_array(q, scale, block, "float32", fp8_dtype="F8_E5M2")
        bf = K.dequantize_array(q, scale, block, "bfloat16", fp8_dtype="F8_E5M2")
    assert got.shape == shape and same_bits(got, ref)
    assert np.array_equal(bf.view(np.uint16), bf16_bits(ref))
    for i in range(e):
        one = K.dequantize_array(q[i], scale[i], block, "float32", fp8_dtype="F8_E5M2")
        assert same_bits(one, got[i])
    if e > 1:
        with pytest.raises(ValueError, match="bad_scale_shape"):  # one expert's scale for all
            K.dequantize_array(q, scale[0], block, "float32", fp8_dtype="F8_E5M2")


@pytest.mark.parametrize("path", PATHS)
def test_nan_code_times_nan_scale(path: str) -> None:
    """A NaN code keeps its own NaN (sign included) even when its scale is NaN, on
    every path: the hardware returns the first NaN operand of a product, and the
    compiler may put either first."""
    q = np.array([[0x7F, 0xFF, 0x38, 0xB8]], np.uint8)  # +NaN, -NaN, 1, -1 (e4m3fn)
    s = np.array([[np.nan]], np.float32)
    s_neg = (s.view(np.uint32) | np.uint32(0x80000000)).view(np.float32)
    for scale in (s, s_neg):
        with K.using_simd(path):
            got = K.dequantize_array(q, scale, (1, 4), "float32", fp8_dtype="F8_E4M3")
            bf = K.dequantize_array(q, scale, (1, 4), "bfloat16", fp8_dtype="F8_E4M3")
        bits = got.view(np.uint32)[0]
        assert bits[0] == 0x7FC00000 and bits[1] == 0xFFC00000, (path, hex(bits[0]), hex(bits[1]))
        assert np.isnan(got[0, 2:]).all()
        assert bf.view(np.uint16)[0, :2].tolist() == [0x7FC0, 0xFFC0]


# ---- packed FP4 E2M1 (stretch: NVFP4 / MXFP4 weights) -----------------------------
F4 = ml_dtypes.float4_e2m1fn


def unpack_fp4(packed: np.ndarray) -> np.ndarray:
    """Codes, low nibble first, as ml_dtypes float4_e2m1fn values in float32."""
    codes = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(*packed.shape[:-1], -1)
    return codes.astype(np.uint8).view(F4).astype(np.float32)


def fp4_reference(packed: np.ndarray, scale: np.ndarray, br: int, bc: int,
                  global_scale: float | None = None) -> np.ndarray:
    s = scale.astype(np.float32)
    if global_scale is not None:
        s = (s * np.float32(global_scale)).astype(np.float32)
    x = unpack_fp4(packed)
    r, c = x.shape[-2:]
    full = np.repeat(np.repeat(s, br, axis=-2), bc, axis=-1)[..., :r, :c]
    with np.errstate(invalid="ignore", over="ignore"):
        return (x * full).astype(np.float32)


@pytest.mark.parametrize("path", PATHS)
def test_fp4_every_byte(path: str) -> None:
    """All 256 bytes (every pair of codes) with scale 1, float32 and bfloat16."""
    q = np.arange(256, dtype=np.uint8).reshape(4, 64)
    one = np.ones((4, 4), np.float32)
    ref = fp4_reference(q, one, 1, 32)
    assert ref.shape == (4, 128)
    with K.using_simd(path):
        got = K.dequantize_fp4(q, one, (1, 32))
        bf = K.dequantize_fp4(q, one, (1, 32), "bfloat16")
    assert same_bits(got, ref)
    assert np.array_equal(bf.view(np.uint16), bf16_bits(ref))
    assert np.array_equal(K.FP4_CODES, np.arange(16, dtype=np.uint8).view(F4).astype(np.float32))


FP4_SHAPES = [((1, 2), (1, 16)), ((3, 14), (1, 16)), ((5, 18), (1, 16)), ((7, 34), (1, 32)),
              ((130, 256), (1, 16)), ((9, 100), (1, 32)), ((64, 64), (16, 16)),
              ((11, 30), (3, 10)), ((4, 96), (2, 48)), ((6, 40), (2**64 - 1, 2**64 - 1)),
              ((2, 2048), (1, 32))]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape,block", FP4_SHAPES)
@pytest.mark.parametrize("sdtype", ["F8_E4M3", "F8_E8M0", "F32"])
def test_fp4_shapes_and_scales(path: str, shape: tuple[int, int], block: tuple[int, int],
                               sdtype: str) -> None:
    """Row tails shorter than a vector, block widths the SIMD path takes and the
    ones it leaves to scalar, NVFP4 (E4M3 scales and a global F32 multiplier),
    MXFP4 (E8M0 scales) and F32 scales; NaN / huge scales included."""
    rows, cols = shape
    br, bc = min(block[0], rows), min(block[1], cols)
    rng = np.random.default_rng(rows * 1000 + cols)
    q = rng.integers(0, 256, (rows, cols // 2), dtype=np.uint8)
    sshape = (-(-rows // br), -(-cols // bc))
    if sdtype == "F8_E4M3":
        scale = rng.integers(0, 256, sshape, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn)
        glob: float | None = 1 / (6 * 448)
    elif sdtype == "F8_E8M0":
        scale = rng.integers(100, 256, sshape, dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu)
        glob = None
    else:
        scale = random_scales(sshape, rng)
        glob = 3.0
    ref = fp4_reference(q, scale, br, bc, glob)
    with K.using_simd(path):
        got = K.dequantize_fp4(q, scale, block, global_scale=glob)
        bf = K.dequantize_fp4(q, scale, block, "bfloat16", global_scale=glob)
    assert got.shape == (rows, cols) and same_bits(got, ref), (path, shape, block, sdtype)
    assert np.array_equal(bf.view(np.uint16), bf16_bits(ref)), (path, shape, block, sdtype)


@pytest.mark.parametrize("path", PATHS)
def test_fp4_batch_and_sources(path: str) -> None:
    """[E, rows, cols / 2] experts with scales [E, ...] (gpt-oss MXFP4 layout), and
    the same bytes as a RawTensor of dtype F4 with the logical shape."""
    rng = np.random.default_rng(4)
    q = rng.integers(0, 256, (3, 5, 48), dtype=np.uint8)  # 96 values per row
    scale = rng.integers(110, 140, (3, 5, 3), dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu)
    ref = fp4_reference(q, scale, 1, 32)
    with K.using_simd(path):
        got = K.dequantize_fp4(q, scale, (1, 32))
        f4 = K.dequantize_fp4(K.RawTensor(q.reshape(-1), "F4", (3, 5, 96)), scale, (1, 32))
    assert got.shape == (3, 5, 96) and same_bits(got, ref) and same_bits(f4, ref)


def test_fp4_errors() -> None:
    q = np.zeros((4, 8), np.uint8)
    with pytest.raises(ValueError, match="even number of columns"):
        K.dequantize_fp4(K.RawTensor(q.reshape(-1)[:28], "F4", (4, 7)),
                         np.ones((4, 1), np.float32), (1, 32))
    with pytest.raises(ValueError, match="bad_scale_shape"):
        K.dequantize_fp4(q, np.ones((4, 2), np.float32), (1, 32))
    with pytest.raises(ValueError, match="bad_block"):
        K.dequantize_fp4(q, np.ones((4, 1), np.float32), (1, 0))
    with pytest.raises(ValueError, match="not packed FP4"):
        K.dequantize_fp4(np.zeros((4, 8), np.float32), np.ones((4, 1), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        K.dequantize_fp4(q, np.ones((4, 1), np.float32), (1, 16), out=np.zeros((4, 8), np.float32))
