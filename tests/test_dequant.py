"""Block dequantization against numpy + ml_dtypes, bit for bit, on every SIMD path:
float32 = decode(q) * scale_inv[i // br, j // bc] computed in float32, bfloat16 =
the ml_dtypes round-to-nearest-even cast of that float32 product."""

from __future__ import annotations

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
