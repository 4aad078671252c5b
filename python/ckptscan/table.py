"""The per-tensor table of a checkpoint (`Checkpoint.table()`, ``ckptscan tensors``).

One row per tensor of the readable shards, in file order (shard by shard, data
offsets ascending):

========== ============ =========================================================
column     numpy dtype  meaning
========== ============ =========================================================
name       object (str) the tensor's name
dtype      category     safetensors dtype (BF16, F8_E4M3 ...)
shape      object       the shape as a tuple (Arrow: list<int64>)
role       category     role (`ckptscan.taxonomy.ROLES`: attention, moe_expert ...)
component  category     component (decoder, vision, audio, projector, mtp ...)
layer      int64        layer index, -1 where the name has none
expert     int64        expert index, -1 where the name has none
shard      category     shard file name
begin      uint64       absolute byte offset of the data in the shard file
end        uint64       end of the data (exclusive)
numel      uint64       elements
nbytes     uint64       bytes (end - begin)
scheme     object       quantization scheme: not filled yet (None, Arrow: null)
========== ============ =========================================================

Category columns are held as small integer codes plus their categories
(`TensorTable.codes`, `.categories`): Arrow gets dictionary arrays, pandas
`Categorical`, polars `Categorical` / `Enum` columns, and none of them copies
the numeric columns where the library can wrap numpy memory (pyarrow and
pandas do; polars may copy). pandas, polars and pyarrow are optional
(``pip install 'ckptscan[table]'``) and imported only by the method that needs
one. CSV and JSON Lines write ``layer`` / ``expert`` -1 as empty / null.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .shard import DTYPE_NAMES

if TYPE_CHECKING:
    from .checkpoint import Checkpoint
    from .frame import Frame
    from .layout import CheckpointSpec

COLUMNS = ("name", "dtype", "shape", "role", "component", "layer", "expert", "shard",
           "begin", "end", "numel", "nbytes", "scheme")
CATEGORICAL = ("dtype", "role", "component", "shard")
NUMERIC = ("layer", "expert", "begin", "end", "numel", "nbytes")
SCHEMA = "ckptscan.tensors/1"


class TensorTable:
    """Columns of one row per tensor (see the module's docstring)."""

    def __init__(self, names: list[str], codes: dict[str, np.ndarray],
                 categories: dict[str, list[str]], numeric: dict[str, np.ndarray],
                 shape_starts: np.ndarray, dims: np.ndarray, source: str = "") -> None:
        self.names = names
        self.codes = codes              # category column -> integer codes
        self.categories = categories    # category column -> names, index = code
        self.numeric = numeric          # numeric column -> numpy array
        self.shape_starts = shape_starts  # CSR: shape of row i is dims[starts[i]:starts[i+1]]
        self.dims = dims
        self.source = source

    # ---- numpy -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    @property
    def columns(self) -> tuple[str, ...]:
        return COLUMNS

    def __getitem__(self, column: str) -> np.ndarray:
        """A column as numpy: numbers as they are held, categories decoded to str."""
        if column in self.numeric:
            return np.asarray(self.numeric[column])
        if column in self.codes:
            names: np.ndarray = np.asarray(self.categories[column], dtype=object)
            return np.asarray(names[self.codes[column]])
        if column == "name":
            return np.asarray(self.names, dtype=object)
        if column == "shape":
            out = np.empty(len(self), dtype=object)
            out[:] = list(self._shapes())
            return out
        if column == "scheme":
            return np.full(len(self), None, dtype=object)
        raise KeyError(f"no column {column!r} (columns: {', '.join(COLUMNS)})")

    def _shapes(self) -> Iterator[tuple[int, ...]]:
        starts, dims = self.shape_starts.tolist(), self.dims.tolist()
        for i in range(len(self)):
            yield tuple(dims[starts[i]:starts[i + 1]])

    def __repr__(self) -> str:
        n = len(self)
        head = ", ".join(self.names[:2]) + (", ..." if n > 2 else "")
        return f"<TensorTable {n:,} tensors x {len(COLUMNS)} columns: {head}>"

    # ---- dataframes ------------------------------------------------------------
    def to_arrow(self) -> Any:
        """A `pyarrow.Table` (numeric columns and category codes wrap numpy memory)."""
        pa = _need("pyarrow", "to_arrow")
        arrays = []
        for col in COLUMNS:
            if col in self.numeric:
                arrays.append(pa.array(self.numeric[col]))
            elif col in self.codes:
                arrays.append(pa.DictionaryArray.from_arrays(
                    pa.array(self.codes[col]), pa.array(self.categories[col], pa.string())))
            elif col == "name":
                arrays.append(pa.array(self.names, pa.string()))
            elif col == "shape":
                arrays.append(pa.LargeListArray.from_arrays(
                    pa.array(self.shape_starts.astype(np.int64, copy=False)),
                    pa.array(self.dims.astype(np.int64, copy=False))))
            else:
                arrays.append(pa.nulls(len(self), pa.string()))
        return pa.Table.from_arrays(arrays, names=list(COLUMNS))

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """The Arrow PyCapsule stream interface (polars, duckdb ... read it)."""
        return self.to_arrow().__arrow_c_stream__(requested_schema)

    def to_pandas(self) -> Any:
        """A `pandas.DataFrame` (categories as `Categorical`; numbers not copied)."""
        pd = _need("pandas", "to_pandas")
        data: dict[str, Any] = {}
        for col in COLUMNS:
            if col in self.numeric:
                data[col] = self.numeric[col]
            elif col in self.codes:
                data[col] = pd.Categorical.from_codes(self.codes[col].astype(np.int32),
                                                      categories=self.categories[col])
            else:
                data[col] = self[col]
        return pd.DataFrame(data, copy=False)

    def to_polars(self) -> Any:
        """A `polars.DataFrame`: through Arrow when pyarrow is installed, else
        from the numpy columns (categories as `Enum`)."""
        pl = _need("polars", "to_polars")
        try:
            return pl.from_arrow(self.to_arrow())
        except ImportError:
            pass
        data: dict[str, Any] = {}
        for col in COLUMNS:
            if col in self.numeric:
                data[col] = self.numeric[col]
            elif col in self.codes:
                data[col] = pl.Series(col, self[col].tolist(), dtype=pl.Enum(self.categories[col]))
            elif col == "shape":
                data[col] = pl.Series(col, [list(s) for s in self._shapes()],
                                      dtype=pl.List(pl.Int64))
            elif col == "scheme":
                data[col] = pl.Series(col, [None] * len(self), dtype=pl.String)
            else:
                data[col] = self.names
        return pl.DataFrame(data)

    # ---- files -----------------------------------------------------------------
    def _records(self) -> Iterator[dict[str, Any]]:
        cats = {c: [self.categories[c][k] for k in self.codes[c].tolist()] for c in CATEGORICAL}
        nums = {c: self.numeric[c].tolist() for c in NUMERIC}
        for i, shape in enumerate(self._shapes()):
            row: dict[str, Any] = {}
            for col in COLUMNS:
                if col == "name":
                    row[col] = self.names[i]
                elif col == "shape":
                    row[col] = list(shape)
                elif col in cats:
                    row[col] = cats[col][i]
                elif col in nums:
                    v = nums[col][i]
                    row[col] = None if col in ("layer", "expert") and v < 0 else v
                else:
                    row[col] = None
            yield row

    def write_csv(self, out: io.TextIOBase | Any) -> None:
        from .render.console import printable

        w = csv.writer(out, lineterminator="\n")
        w.writerow(COLUMNS)
        for row in self._records():
            w.writerow(["" if v is None else
                        "[" + ",".join(map(str, v)) + "]" if isinstance(v, list) else
                        printable(v) if isinstance(v, str) else v for v in row.values()])

    def write_jsonl(self, out: Any) -> None:
        """JSON Lines to a binary stream."""
        import orjson

        from .render.json import jsonable

        for row in self._records():
            out.write(orjson.dumps(jsonable(row)) + b"\n")

    def write_parquet(self, where: str | os.PathLike[str] | Any) -> None:
        _need("pyarrow", "write_parquet (--format parquet)")
        pq = _need("pyarrow.parquet", "write_parquet (--format parquet)")
        pq.write_table(self.to_arrow(), where)


def _need(module: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs {module}: pip install {module} (or "
                          "'ckptscan[table]' for pandas, polars and pyarrow)") from None


def tensor_table(frame: Frame, source: str = "") -> TensorTable:
    """The table of a frame's tensors."""
    from .taxonomy import COMPONENTS, ROLES

    names = frame.names
    shard_names = [os.path.basename(s.path) for s in frame.shards]
    return TensorTable(
        names,
        codes={"dtype": frame.dtype, "role": frame.role, "component": frame.component,
               "shard": frame.shard_of},
        categories={"dtype": list(DTYPE_NAMES), "role": list(ROLES),
                    "component": list(COMPONENTS), "shard": shard_names},
        numeric={"layer": frame.layer, "expert": frame.expert,
                 "begin": _begins(frame), "end": _begins(frame) + frame.nbytes,
                 "numel": frame.numel, "nbytes": frame.nbytes},
        shape_starts=frame.shape_starts, dims=frame.dims, source=source)


def _begins(frame: Frame) -> np.ndarray:
    parts = [s.core.begins for s in frame.shards]
    return np.concatenate(parts).astype(np.uint64, copy=False) if parts else np.zeros(
        0, np.uint64)


def checkpoint_table(ckpt: Checkpoint) -> TensorTable:
    """`Checkpoint.table()`: the readable shards' tensors (a shard whose header
    has problems is left out, as in a report)."""
    from .frame import build_frame

    healthy = [s for s in ckpt.shards if s._core is not None and not s.problems]
    return tensor_table(build_frame(ckpt, shards=healthy), str(ckpt.path))


def open_spec(spec: CheckpointSpec, io_jobs: int | None = None) -> Checkpoint:
    """The Checkpoint a layout spec names: its readable files parsed, index.json
    and config.json read within their limits, problems recorded (never raises for
    a broken file)."""
    from pathlib import Path

    from .checkpoint import Checkpoint, load_shards, read_index
    from .config import MAX_CONFIG_BYTES
    from .errors import Problem
    from .pipeline import file_problem, readable_shards

    readable, problems = readable_shards(spec.shards)
    shards = load_shards([fs.path for fs in readable], io_jobs) if spec.format == \
        "safetensors" else []
    index = config = None
    if spec.index is not None and file_problem(spec.index) is None:
        index = read_index(Path(spec.index.path), "index-invalid", problems)
    if spec.config is not None and file_problem(spec.config) is None:
        if (spec.config.size or 0) > MAX_CONFIG_BYTES:
            problems.append(Problem("limit-exceeded", f"config.json is beyond the "
                                    f"{MAX_CONFIG_BYTES:,}-byte limit: not read",
                                    spec.config.path))
        else:
            from .checkpoint import read_json

            config = read_json(Path(spec.config.path), "config-invalid", problems)
    return Checkpoint(Path(spec.path), shards, config, problems, index=index,
                      found=[fs.name for fs in spec.shards], partial=spec.kind == "shard")


__all__ = ["COLUMNS", "TensorTable", "checkpoint_table", "open_spec", "tensor_table"]
