"""One safetensors file: its parsed header as columns, and zero-copy views of its data.

The C++ core keeps the tensor table as columns (numpy views here); a `TensorInfo`
is built only when someone asks for one, so opening a 96k-tensor checkpoint does
not create 96k Python objects.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import TracebackType
from typing import Any, overload

import numpy as np

from . import _core
from .errors import HeaderError, Problem, ShardIOError

DTYPE_NAMES: tuple[str, ...] = tuple(name for name, _bits in _core.DTYPES)
DTYPE_BITS: dict[str, int] = dict(_core.DTYPES)

# safetensors dtype -> numpy dtype name; the ml_dtypes ones are resolved lazily.
_NUMPY_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
    "F16": "float16", "I32": "int32", "U32": "uint32", "F32": "float32", "I64": "int64",
    "U64": "uint64", "F64": "float64", "C64": "complex64",
}
_ML_DTYPES = {
    "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",
}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor's header entry. `offsets` are absolute byte offsets in the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offsets: tuple[int, int]
    nbytes: int
    numel: int


class TensorList(Sequence[TensorInfo]):
    """The shard's tensors in data-offset order, built one at a time on access:
    by position (``tensors[0]``, slices) or by name (``tensors["lm_head.weight"]``)."""

    def __init__(self, core: Any) -> None:
        self._core = core

    def __len__(self) -> int:
        return len(self._core)

    @overload
    def __getitem__(self, i: int | str) -> TensorInfo: ...
    @overload
    def __getitem__(self, i: slice) -> list[TensorInfo]: ...
    def __getitem__(self, i: int | str | slice) -> TensorInfo | list[TensorInfo]:
        if isinstance(i, str):
            row = self._core.index(i)
            if row < 0:
                raise KeyError(i)
            return _tensor_info(self._core, row)
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"tensor index {i} out of range ({n} tensors)")
        if i < 0:
            i += n
        return _tensor_info(self._core, i)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return bool(self._core.index(item) >= 0)
        if not isinstance(item, TensorInfo):
            return False
        row = self._core.index(item.name)
        return bool(row >= 0) and _tensor_info(self._core, row) == item

    def __repr__(self) -> str:
        n = len(self)
        shown = ", ".join(self._core.name(i) for i in range(min(n, 2)))
        more = f", ... {n - 2:,} more" if n > 2 else ""
        return f"<TensorList {n:,} tensors: {shown}{more}>"

    def __iter__(self) -> Iterator[TensorInfo]:
        core = self._core
        names = core.names()
        codes, begins, ends, numels = core.dtype_codes, core.begins, core.ends, core.numels
        starts, dims = core.shape_starts.tolist(), core.dims.tolist()
        for i, name in enumerate(names):
            b, e = int(begins[i]), int(ends[i])
            yield TensorInfo(name, DTYPE_NAMES[codes[i]], tuple(dims[starts[i]:starts[i + 1]]),
                             (b, e), e - b, int(numels[i]))


def _tensor_info(core: Any, i: int) -> TensorInfo:
    b, e = int(core.begins[i]), int(core.ends[i])
    return TensorInfo(core.name(i), DTYPE_NAMES[core.dtype_codes[i]], core.shape(i), (b, e), e - b,
                      int(core.numels[i]))


class Shard:
    """An open safetensors file. Use `open_shard()`; close it, or use `with`.

    Views returned by `raw()` and `array()` keep the file mapped after `close()`
    for as long as they live (their numpy `base` owns the mapping).
    """

    remote = False  # read through a source (`ckptscan.remote.shard.RemoteShard`)

    def __init__(self, core: Any, path: str | None = None) -> None:
        self._core: Any = core
        # The caller's path (a str that may hold undecodable bytes, escaped as
        # surrogates); the same parsed file may be reached under several names.
        self.path: str = core.path if path is None else path

    # ---- header --------------------------------------------------------------
    @property
    def core(self) -> Any:
        """The C++ shard (columns as numpy views); raises after close()."""
        if self._core is None:
            raise ValueError(f"{self.path}: shard is closed")
        return self._core

    @property
    def file_size(self) -> int:
        return int(self.core.file_size)

    @property
    def header_size(self) -> int:
        """N, the JSON header's length in bytes (the data starts at 8 + N)."""
        return int(self.core.header_len)

    @property
    def metadata(self) -> dict[str, str] | None:
        return self.core.metadata  # type: ignore[no-any-return]

    @cached_property
    def problems(self) -> list[Problem]:
        return [Problem(code, msg, self.path, offset, tensor)
                for code, offset, tensor, msg in self.core.problems]

    @property
    def suppressed(self) -> dict[str, int]:
        """Per problem code, how many problems the parser counted beyond the ones
        kept in `problems` (a hostile header cannot make the list unbounded)."""
        return dict(self.core.suppressed)

    @property
    def tensors(self) -> TensorList:
        return TensorList(self.core)

    @cached_property
    def names(self) -> list[str]:
        return self.core.names()  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self.core)

    def __iter__(self) -> Iterator[TensorInfo]:
        """The tensors (`TensorInfo`), in data-offset order."""
        return iter(self.tensors)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.core.index(name) >= 0

    def _row(self, name: str) -> int:
        row: int = self.core.index(name)
        if row < 0:
            raise KeyError(f"{self.path}: no tensor named {name!r}")
        return row

    def __getitem__(self, name: str) -> TensorInfo:
        return _tensor_info(self.core, self._row(name))

    tensor = __getitem__

    # ---- data ----------------------------------------------------------------
    def raw(self, name: str, populate: bool = False) -> np.ndarray:
        """The tensor's bytes: a read-only zero-copy uint8 view of the mapping.

        `populate=True` maps all of its pages in one call (MADV_POPULATE_READ)
        first. The kernels do not ask for it: reading through page faults (each
        maps 16 pages, or a whole large folio, of page-cached data) measured
        faster for a whole-tensor pass (bench/bench_deep.py).
        """
        try:
            return self.core.raw(self._row(name), populate)  # type: ignore[no-any-return]
        except RuntimeError as exc:
            raise ShardIOError(self.path, f"{name}: {exc}") from None

    def populate(self, name: str, start: int = 0, stop: int | None = None) -> None:
        """Maps the pages of bytes [start, stop) of a tensor's data in one call
        (a scan is about to read them)."""
        self.core.pages(self._row(name), start, self[name].nbytes if stop is None else stop,
                        True)

    def release(self, name: str, start: int = 0, stop: int | None = None) -> None:
        """Drops this process's mapped pages of bytes [start, stop) of a tensor's
        data once read: a scan streaming through a large file keeps its resident
        memory bounded (mapped file pages count in RSS). The page cache keeps them;
        a later read maps them again."""
        self.core.pages(self._row(name), start, self[name].nbytes if stop is None else stop,
                        False)

    def array(self, name: str) -> np.ndarray:
        """A typed zero-copy view with the tensor's shape.

        BF16 and the FP8 types need ml_dtypes (``pip install ckptscan[fp8]``);
        F4 and F6 have no numpy type: use `raw()`.
        """
        info = self[name]
        return self.raw(name).view(numpy_dtype(info.dtype)).reshape(info.shape)

    # ---- lifetime ------------------------------------------------------------
    def close(self) -> None:
        self._core = None

    def __enter__(self) -> Shard:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._core is None:
            return f"<Shard {self.path!r} closed>"
        core = self._core
        state = f"{len(core):,} tensors, {int(core.file_size):,} bytes"
        n = len(core.problems)
        if n:
            state += f", {n} problem{'s' * (n != 1)}"
        return f"<Shard {self.path!r}: {state}>"


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    """The numpy dtype for a safetensors dtype string (ml_dtypes for BF16/FP8)."""
    if dtype in _NUMPY_DTYPES:
        return np.dtype(_NUMPY_DTYPES[dtype])
    if dtype in _ML_DTYPES:
        try:
            import ml_dtypes
        except ImportError:
            raise TypeError(f"{dtype} needs ml_dtypes: pip install 'ckptscan[fp8]'") from None
        return np.dtype(getattr(ml_dtypes, _ML_DTYPES[dtype]))  # type: ignore[no-any-return]
    raise TypeError(f"{dtype} has no numpy dtype; use Shard.raw() for its bytes")


def load_shard(path: str | os.PathLike[str]) -> Shard:
    """Opens a shard and keeps whatever could be parsed, problems included (no raise).
    Any file name works, bytes that are not UTF-8 included."""
    text = os.fspath(path)
    return Shard(_core.open_shard(os.fsencode(text)), str(text))


def open_shard(path: str | os.PathLike[str]) -> Shard:
    """Opens one safetensors file, strictly.

    Raises `ShardIOError` when the OS refuses the file and `HeaderError` (with every
    problem found) when its header breaks the format.
    """
    shard = load_shard(path)
    problems = shard.problems
    if problems:
        if not shard.core.opened:
            raise ShardIOError(shard.path, problems[0].message)
        raise HeaderError(shard.path, problems, sum(shard.suppressed.values()))
    return shard
