"""Every tensor of a checkpoint as numpy columns, classified by the taxonomy.

The per-shard columns from the C++ core are concatenated once; templates are
merged across shards and classified once each, so that a 96k-tensor
checkpoint is resolved with a handful of numpy operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from .checkpoint import Checkpoint
from .shard import DTYPE_NAMES, Shard
from .taxonomy import ROLES, Taxonomy, TemplateTable

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


@dataclass(eq=False)
class Frame:
    shards: list[Shard]
    shard_of: npt.NDArray[np.int32]  # index into shards
    row_of: I64                      # row within its shard
    dtype: npt.NDArray[np.uint8]     # code into DTYPE_NAMES
    numel: U64
    nbytes: U64
    template: npt.NDArray[np.int64]  # index into templates
    templates: list[str]
    int_starts: I64                  # CSR of each name's integers
    ints: I64
    shape_starts: I64                # CSR of each tensor's shape
    dims: I64
    table: TemplateTable
    taxonomy: Taxonomy

    def __len__(self) -> int:
        return len(self.dtype)

    @cached_property
    def names(self) -> list[str]:
        out: list[str] = []
        for s in self.shards:
            out.extend(s.names)
        return out

    def name(self, i: int) -> str:
        """One tensor's name, without building the list of all of them."""
        return self.shards[int(self.shard_of[i])].core.name(int(self.row_of[i]))  # type: ignore[no-any-return]

    @cached_property
    def rows_by_template(self) -> list[I64]:
        """Row indices of each template (index = template id)."""
        order = np.argsort(self.template, kind="stable")
        counts = np.bincount(self.template, minlength=len(self.templates))
        return np.split(order, np.cumsum(counts)[:-1])

    def int_matrix(self, rows: I64) -> I64:
        """The integers of `rows` (all of one template) as a (len(rows), k) matrix."""
        if not len(rows):
            return np.zeros((0, 0), np.int64)
        starts = self.int_starts[rows]
        k = int(self.int_starts[rows[0] + 1] - starts[0])
        return np.asarray(self.ints[starts[:, None] + np.arange(k)], dtype=np.int64)

    @cached_property
    def layer(self) -> I64:
        return self.table.layer_index(self.template, self.ints, self.int_starts)

    @cached_property
    def expert(self) -> I64:
        return self.table.expert_index(self.template, self.ints, self.int_starts)

    @cached_property
    def role(self) -> npt.NDArray[np.uint8]:
        return self.table.roles(self.template, self.layer)

    @cached_property
    def component(self) -> npt.NDArray[np.uint8]:
        """Component code per tensor (into taxonomy.COMPONENTS; 0 = decoder)."""
        return self.table.components(self.template, self.layer)

    @cached_property
    def part(self) -> npt.NDArray[np.uint8]:
        """Role code within its component per tensor (into ROLES)."""
        return self.table.part[self.template]

    @cached_property
    def kind(self) -> npt.NDArray[np.uint8]:
        return self.table.kind[self.template]

    @cached_property
    def linear(self) -> npt.NDArray[np.bool_]:
        return self.table.linear[self.template]

    @cached_property
    def ndim(self) -> I64:
        return np.diff(self.shape_starts)

    def shape(self, i: int) -> tuple[int, ...]:
        return tuple(int(d) for d in self.dims[self.shape_starts[i]:self.shape_starts[i + 1]])

    def dtype_name(self, i: int) -> str:
        return DTYPE_NAMES[int(self.dtype[i])]

    def role_name(self, i: int) -> str:
        return ROLES[int(self.role[i])]

    def file(self, i: int) -> str:
        return self.shards[int(self.shard_of[i])].path

    def rows_2d(self) -> tuple[I64, I64]:
        """(rows, cols) per tensor for 2-D tensors, -1 elsewhere."""
        two = self.ndim == 2
        r = np.full(len(self), -1, dtype=np.int64)
        c = np.full(len(self), -1, dtype=np.int64)
        start = self.shape_starts[:-1][two]
        r[two] = self.dims[start]
        c[two] = self.dims[start + 1]
        return r, c


def match_rows(frame: Frame, a_rows: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
    """For each row of template A, the row of template B with the same integers
    (-1 if none): pairs X.weight_scale_inv with X.weight without touching names."""
    out = np.full(len(a_rows), -1, dtype=np.int64)
    if not len(a_rows) or not len(b_rows):
        return out
    am, bm = frame.int_matrix(a_rows), frame.int_matrix(b_rows)
    if am.shape[1] != bm.shape[1]:
        return out
    if am.shape[1] == 0:
        out[:] = b_rows[0]
        return out
    ak = np.ascontiguousarray(am).view(np.dtype((np.void, 8 * am.shape[1]))).ravel()
    bk = np.ascontiguousarray(bm).view(np.dtype((np.void, 8 * bm.shape[1]))).ravel()
    order = np.argsort(bk, kind="stable")
    sorted_b = bk[order]
    pos = np.clip(np.searchsorted(sorted_b, ak), 0, len(bk) - 1)
    hit = sorted_b[pos] == ak
    out[hit] = b_rows[order[pos[hit]]]
    return out


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def _csr(starts: list[np.ndarray], values: list[np.ndarray]) -> tuple[I64, I64]:
    """Concatenates per-shard CSR arrays (starts of size n + 1) into one."""
    out_starts = [np.zeros(1, np.int64)]
    base = 0
    for s in starts:
        out_starts.append(s[1:].astype(np.int64) + base)
        base += int(s[-1])
    return np.concatenate(out_starts), _concat(values, np.int64)


def build_frame(ckpt: Checkpoint, taxonomy: Taxonomy | None = None, *,
                shards: list[Shard] | None = None) -> Frame:
    """The frame of `shards` (default: every open shard of `ckpt`)."""
    taxonomy = taxonomy or Taxonomy.from_config(ckpt.config)
    shards = [s for s in (ckpt.shards if shards is None else shards) if s._core is not None]
    cores = [s.core for s in shards]
    template_ids: dict[str, int] = {}
    tmpl_parts = []
    for core in cores:
        local = np.array([template_ids.setdefault(t, len(template_ids)) for t in core.templates],
                         dtype=np.int64)
        tmpl_parts.append(local[core.template_ids] if len(core) else np.zeros(0, np.int64))
    templates = list(template_ids)
    counts = [len(c) for c in cores]
    int_starts, ints = _csr([c.int_starts for c in cores], [c.ints for c in cores])
    shape_starts, dims = _csr([c.shape_starts for c in cores], [c.dims for c in cores])
    begins = _concat([c.begins for c in cores], np.uint64)
    ends = _concat([c.ends for c in cores], np.uint64)
    return Frame(
        shards=shards,
        shard_of=np.repeat(np.arange(len(cores), dtype=np.int32), counts),
        row_of=_concat([np.arange(n, dtype=np.int64) for n in counts], np.int64),
        dtype=_concat([c.dtype_codes for c in cores], np.uint8),
        numel=_concat([c.numels for c in cores], np.uint64),
        nbytes=ends - begins,
        template=_concat(tmpl_parts, np.int64),
        templates=templates,
        int_starts=int_starts,
        ints=ints,
        shape_starts=shape_starts,
        dims=dims,
        table=taxonomy.table(templates),
        taxonomy=taxonomy,
    )
