"""ckptscan's C++ core: mapping, strict safetensors header parser, SIMD kernels."""

import numpy as np
import numpy.typing as npt

__version__: str

# ---- reader ----
DTYPES: tuple[tuple[str, int], ...]
"""The 22 safetensors dtype strings with their widths in bits, in dtype-code order."""
ERROR_CODES: tuple[str, ...]
"""Every problem code the parser can report."""
ERROR_DESCRIPTIONS: dict[str, str]
"""One sentence per code in ERROR_CODES: what the problem means."""
MAX_HEADER_LEN: int
MAX_NAME_BYTES: int
"""The longest tensor name read; a longer one is a name-too-long problem."""
MAX_PROBLEMS_PER_CODE: int
"""Problems kept per code in one shard or index; the rest are only counted (`suppressed`)."""

# (code, byte offset in the file or None, tensor or None, message)
ProblemTuple = tuple[str, int | None, str | None, str]

class Shard:
    """A parsed shard: the tensor table as read-only numpy columns, rows in data-offset order."""

    @property
    def path(self) -> str: ...
    @property
    def opened(self) -> bool: ...
    @property
    def file_size(self) -> int: ...
    @property
    def header_len(self) -> int: ...
    @property
    def data_start(self) -> int: ...
    @property
    def data_end(self) -> int: ...
    @property
    def problems(self) -> list[ProblemTuple]: ...
    @property
    def suppressed(self) -> dict[str, int]:
        """Per code, the problems beyond the MAX_PROBLEMS_PER_CODE kept in `problems`."""
    @property
    def metadata(self) -> dict[str, str] | None: ...
    def __len__(self) -> int: ...
    @property
    def dtype_codes(self) -> npt.NDArray[np.uint8]: ...
    @property
    def begins(self) -> npt.NDArray[np.uint64]: ...
    @property
    def ends(self) -> npt.NDArray[np.uint64]: ...
    @property
    def numels(self) -> npt.NDArray[np.uint64]: ...
    # The name templates (template_ids, int_starts, ints, templates) are
    # computed on the first use of any of them.
    @property
    def template_ids(self) -> npt.NDArray[np.uint32]: ...
    @property
    def shape_starts(self) -> npt.NDArray[np.uint64]: ...
    @property
    def dims(self) -> npt.NDArray[np.uint64]: ...
    @property
    def int_starts(self) -> npt.NDArray[np.uint64]: ...
    @property
    def ints(self) -> npt.NDArray[np.int64]: ...
    @property
    def templates(self) -> list[str]: ...
    def names(self) -> list[str]: ...
    def name(self, i: int) -> str: ...
    def shape(self, i: int) -> tuple[int, ...]: ...
    def index(self, name: str) -> int: ...
    def raw(self, row: int, populate: bool = False) -> npt.NDArray[np.uint8]: ...
    def pages(self, row: int, start: int, stop: int, populate: bool) -> None:
        """Maps (populate) or drops (not populate) the pages of bytes [start, stop) of a row."""

class Index:
    """A parsed model.safetensors.index.json.

    Entry i maps names()[i] to shard_names[shard_ids[i]].
    """

    def __len__(self) -> int: ...
    def names(self) -> list[str]: ...
    @property
    def shard_ids(self) -> npt.NDArray[np.uint32]: ...
    @property
    def offsets(self) -> npt.NDArray[np.uint64]: ...
    @property
    def shard_names(self) -> list[str]: ...
    @property
    def total_size(self) -> int | None: ...
    @property
    def problems(self) -> list[ProblemTuple]: ...
    @property
    def suppressed(self) -> dict[str, int]:
        """Per code, the problems beyond the MAX_PROBLEMS_PER_CODE kept in `problems`."""

def open_shard(path: str | bytes) -> Shard: ...
def open_shards(paths: list[str] | list[bytes]) -> list[Shard]:
    """open_shard for each path on this thread, with the GIL released once."""
def parse_index(data: bytes | bytearray | memoryview) -> Index: ...
def read_index(path: str | bytes) -> Index:
    """Reads and parses an index.json; an unreadable file gives one io-error problem."""
def match_names(
    index: Index | None, shards: list[Shard], shard_pos: list[int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Joins names across an index and the shards: (entry_row, row_entry, dup_of)."""
def parse_bytes(data: bytes | bytearray | memoryview, file_size: int | None = None) -> Shard: ...
def name_template(name: str) -> tuple[str, tuple[int, ...]]: ...

# ---- kernels ----
# Buffers: any C-contiguous buffer (numpy array, bytes, memoryview); the GIL is
# released during every kernel. FP8 dtypes: "F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ",
# "F8_E5M2FNUZ"; float dtypes: "BF16", "F16", "F32". Argument errors raise
# ValueError (sizes: any Python or numpy integer in 0 .. 2**64 - 1; a zero
# block, a shape whose counts overflow or a buffer of the wrong length is
# refused before any byte is read); a file that shrinks under a mapping being
# read raises OSError; a CKPTSCAN_SIMD naming an unknown/unsupported path raises
# RuntimeError on every kernel call until set_simd() succeeds.
from collections.abc import Sequence as _Sequence  # noqa: E402
from typing import Any as _Any  # noqa: E402

_Buffer = _Any  # collections.abc.Buffer from Python 3.12

def simd_info() -> dict[str, _Any]:
    """{"features": [...], "compiled": [...], "available": [...], "active": str, "error": str}"""
def set_simd(name: str) -> str: ...
_Size = int | np.integer[_Any]

def fp8_decode(code: _Size, dtype: str) -> float: ...
def fp8_traits(dtype: str) -> dict[str, _Any]: ...
def fp8_stats(data: _Buffer, dtype: str) -> dict[str, _Any]:
    """count nan inf zero neg_zero subnormal saturated negative absmax_code (int), absmax (float)"""
def histogram(data: _Buffer,
              spans: _Sequence[tuple[_Size, _Size]] | None = None) -> npt.NDArray[np.uint64]:
    """Counts of the 256 byte values of data, or of its byte ranges spans together."""
def fp8_block_absmax(
    data: _Buffer, rows: _Size, cols: _Size, block_rows: _Size, block_cols: _Size, dtype: str
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint64]]: ...
def fp8_block_stats(
    data: _Buffer, rows: _Size, cols: _Size, block_rows: _Size, block_cols: _Size, dtype: str,
    batch: _Size = 1, sample: _Sequence[tuple[_Size, _Size]] = (),
) -> tuple[dict[str, _Any], npt.NDArray[np.uint8], npt.NDArray[np.unsignedinteger[_Any]],
           npt.NDArray[np.unsignedinteger[_Any]], npt.NDArray[np.unsignedinteger[_Any]],
           npt.NDArray[np.uint64]]:
    """One pass over [batch, rows, cols]: (stats as fp8_stats, absmax codes, nan, inf,
    saturated) per block, [batch, nbr, nbc] ([nbr, nbc] when batch is 1); counts in the
    smallest unsigned dtype holding a block's element count; then the byte histogram of
    the ranges in sample (zeros without any), in the same call."""
def fp8_dequantize(
    data: _Buffer, rows: _Size, cols: _Size, dtype: str, scale_inv: _Buffer,
    scale_rows: _Size, scale_cols: _Size, block_rows: _Size, block_cols: _Size, out: _Buffer,
    out_dtype: str, batch: _Size = 1,
) -> None: ...
def fp4_dequantize(
    data: _Buffer, rows: _Size, cols: _Size, scale: _Buffer, scale_rows: _Size,
    scale_cols: _Size, block_rows: _Size, block_cols: _Size, out: _Buffer, out_dtype: str,
    batch: _Size = 1,
) -> None:
    """Packed FP4 E2M1 (two per byte, low nibble first) [batch, rows, cols] times a
    float32 block scale [batch, scale_rows, scale_cols]."""
def fp8_compare(
    data: _Buffer, rows: _Size, cols: _Size, dtype: str, scale: _Buffer, scale_rows: _Size,
    scale_cols: _Size, block_rows: _Size, block_cols: _Size, ref: _Buffer, ref_dtype: str,
    clip: float, bound: tuple[float, float, float, float] | None = None, batch: _Size = 1,
) -> dict[str, npt.NDArray[_Any]]:
    """FP8 [batch, rows, cols] dequantized against ref (BF16 / F16 / F32) in one pass:
    per block bound_sq, ref_sq, code_sq, dot, err_sq (float64), max_err (float32),
    clipped, bad, ref_bad (uint64), shaped [batch,] nbr, nbc."""
def fp4_compare(
    data: _Buffer, rows: _Size, cols: _Size, scale: _Buffer, scale_rows: _Size,
    scale_cols: _Size, block_rows: _Size, block_cols: _Size, ref: _Buffer, ref_dtype: str,
    clip: float, bound: tuple[float, float, float, float] | None = None, batch: _Size = 1,
) -> dict[str, npt.NDArray[_Any]]:
    """fp8_compare for packed FP4 E2M1 (two per byte, low nibble first)."""
def copy_guarded(data: _Buffer) -> npt.NDArray[np.uint8]:
    """A fresh copy read under the fault guard (OSError if the file shrank)."""
def float_stats(data: _Buffer, dtype: str) -> dict[str, _Any]:
    """count nan pos_inf neg_inf zero subnormal finite (int), absmax min max (float)"""
def e8m0_stats(data: _Buffer) -> dict[str, int]: ...
def read_probe(data: _Buffer) -> int: ...
def digest128(data: _Buffer) -> bytes:
    """Fast non-cryptographic 128-bit digest (csrc/digest.cc): 16 bytes, lo word then hi."""
