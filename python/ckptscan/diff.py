"""``ckptscan diff A B``: what changed between two checkpoints.

Tensors are paired in three steps, on name templates and their integers (the
core splits ``model.layers.7.mlp.up_proj.weight`` into the template
``model.layers.{}.mlp.up_proj.weight`` and ``(7,)``), so that a renamed
prefix or a renumbered layer is one rename of many tensors, not as many
removals and additions:

1. **Same name.**
2. **Prefix renames**: where unpaired names of A and B share a dotted suffix,
   the differing prefixes (``model.language_model.`` -> ``model.``, also with
   integers inside: ``model.layers.{}.mlp.`` -> ``model.layers.{}.moe.``) are
   candidate rewrites; the one that pairs the most tensors by name (template
   and integers) is applied to every name of A it fits, and so on while one
   pairs anything.
3. **Stacks**: names whose first integer is a layer number form a stack per
   template prefix (``model.layers.{}``). When A's and B's layer numbers
   differ, the two stacks are aligned as sequences of layers, each layer
   described by its tensors (rest of the name, integers, shape, and with
   ``--deep`` a digest of their bytes): the alignment keeps the most layers
   that look alike, then (``--deep``) the most with equal bytes, then the most
   at the same number. A renumbered stack (0..N-1 -> 1..N) is a rename; a layer
   inserted in the middle is found as one (with ``--deep``: without reading
   bytes, identical layers cannot be told apart, and a layer appended at the
   end is the reading kept).

Paired tensors are compared for dtype, shape and scheme (FP8 or not, with a
scale or without); changes are listed per tensor and summarised per role.
config.json is compared as JSON (dotted keys: ``text_config.num_hidden_layers``,
``architectures[0]``), quantization_config on its own. With ``deep``, the bytes
of every pair of equal dtype and shape are digested and pairs whose digests
differ are listed: each tensor is read with ``pread`` in pieces of `_PIECE`
bytes into a buffer per thread (memory stays at threads x piece whatever the
model's size; a file cut short is an error for that tensor, never a crash),
each piece through the core's 128-bit digest (csrc/digest.cc, ~9 GB/s a
thread, GIL released), and the pieces' digests through it again, on a pool of
`jobs` threads.

`allow` rules (``--allow``) say which differences are expected; see
`parse_rules`. `compare(a, b)` (also `ckptscan.compare`) returns a plain `Diff`
dataclass tree with `to_dict()`
(schema ``ckptscan.diff/1``); renderers are in `ckptscan.render.diff`.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

SCHEMA = "ckptscan.diff/1"
HASH = "ckptscan-digest128/16MiB"  # csrc/digest.cc over 16 MiB pieces, then their digests
_PIECE = 16 << 20            # bytes read and digested per call (the GIL is released)
_MAX_ROUNDS = 32             # prefix rewrites tried at most
_MAX_ALIGN_CELLS = 400_000   # layers(A) x layers(B) aligned exactly; beyond: offsets only
_MIN_SUFFIX = 2              # dotted components a prefix rewrite must leave in common
_PER_TAIL = 64               # B templates a template of A is compared with (same tail)
_CANDIDATES = 16             # prefix rewrites counted exactly per round


# ---------------------------------------------------------------- result


@dataclass
class Side:
    """One checkpoint of the comparison."""

    path: str
    tensors: int = 0
    bytes: int = 0
    shards: int = 0
    model_type: str | None = None
    problems: list[str] = field(default_factory=list)  # files not compared, and why

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TensorRef:
    name: str
    role: str
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "dtype": self.dtype,
                "shape": list(self.shape)}


@dataclass
class Rename:
    a: str
    b: str
    role: str
    why: str  # the RenameGroup's `rule`

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RenameGroup:
    """Renames that one rule explains: ``prefix`` (A's prefix -> B's), or
    ``layers`` (a stack's layer numbers: ``from_`` and ``to`` are A's and B's
    numbers, in runs like ``0-9``)."""

    kind: str
    rule: str
    tensors: int
    from_: str
    to: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rule": self.rule, "tensors": self.tensors,
                "from": self.from_, "to": self.to}


@dataclass
class Change:
    """A paired tensor whose `what` (dtype, shape, scheme or bytes) differs."""

    a: str
    b: str
    role: str
    what: str
    before: str
    after: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RoleDiff:
    """Per role (B's role; A's for removed tensors): counts of each kind of change."""

    tensors_a: int = 0
    tensors_b: int = 0
    added: int = 0
    removed: int = 0
    renamed: int = 0
    dtype: dict[str, int] = field(default_factory=dict)   # "BF16->F8_E4M3" -> tensors
    shape: int = 0
    scheme: dict[str, int] = field(default_factory=dict)  # "none->fp8+scale" -> tensors
    bytes: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.renamed or self.dtype or self.shape
                    or self.scheme or self.bytes)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ValueChange:
    """A JSON value that differs: `kind` added, removed or changed (dotted `key`)."""

    key: str
    kind: str
    a: Any = None
    b: Any = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DeepDiff:
    """What --deep hashed: pairs compared, their bytes, the pairs that differ."""

    compared: int = 0
    bytes: int = 0
    seconds: float = 0.0
    equal: int = 0
    unreadable: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "hash": HASH}


@dataclass
class Diff:
    a: Side
    b: Side
    same_name: int = 0
    added: list[TensorRef] = field(default_factory=list)
    removed: list[TensorRef] = field(default_factory=list)
    renamed: list[Rename] = field(default_factory=list)
    rename_groups: list[RenameGroup] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    roles: dict[str, RoleDiff] = field(default_factory=dict)
    config: list[ValueChange] = field(default_factory=list)
    quantization: list[ValueChange] = field(default_factory=list)
    deep: DeepDiff | None = None

    def of(self, what: str) -> list[Change]:
        return [c for c in self.changes if c.what == what]

    @property
    def differs(self) -> bool:
        return bool(self.added or self.removed or self.renamed or self.changes or self.config
                    or self.quantization)

    def violations(self, rules: Sequence[Rule] = ()) -> list[str]:
        """The differences no rule allows, one line per kind (empty: none)."""
        out = []

        def check(kind: str, items: Iterable[Any], key: Callable[[Any], Sequence[str]],
                  one: str, many: str) -> None:
            left = [x for x in items if not any(r.allows(kind, key(x)) for r in rules)]
            if left:
                out.append(f"{len(left):,} {one if len(left) == 1 else many}")

        check("removed", self.removed, lambda t: (t.name,), "tensor removed", "tensors removed")
        check("added", self.added, lambda t: (t.name,), "tensor added", "tensors added")
        check("renamed", self.renamed, lambda r: (r.a, r.b), "tensor renamed",
              "tensors renamed")
        check("dtype", self.of("dtype"), lambda c: (f"{c.before}->{c.after}", c.b),
              "dtype change", "dtype changes")
        check("shape", self.of("shape"), lambda c: (c.b,), "shape change", "shape changes")
        check("scheme", self.of("scheme"), lambda c: (f"{c.before}->{c.after}", c.b),
              "scheme change", "scheme changes")
        check("bytes", self.of("bytes"), lambda c: (c.b,), "tensor with other bytes",
              "tensors with other bytes")
        check("config", self.config, lambda v: (v.key,), "config.json difference",
              "config.json differences")
        check("quantization", self.quantization, lambda v: (v.key,),
              "quantization_config difference", "quantization_config differences")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "a": self.a.to_dict(), "b": self.b.to_dict(),
            "differs": self.differs,
            "same_name": self.same_name,
            "added": [t.to_dict() for t in self.added],
            "removed": [t.to_dict() for t in self.removed],
            "renamed": [r.to_dict() for r in self.renamed],
            "rename_groups": [g.to_dict() for g in self.rename_groups],
            "changes": [c.to_dict() for c in self.changes],
            "roles": {k: v.to_dict() for k, v in self.roles.items()},
            "config": [v.to_dict() for v in self.config],
            "quantization": [v.to_dict() for v in self.quantization],
            "deep": None if self.deep is None else self.deep.to_dict(),
        }


# ---------------------------------------------------------------- --allow rules

RULE_KINDS = ("added", "removed", "renamed", "dtype", "shape", "scheme", "bytes", "config",
              "quantization")
_ALIASES = {"renames": "renamed", "rename": "renamed", "add": "added", "remove": "removed",
            "dtypes": "dtype", "shapes": "shape", "schemes": "scheme", "quantization_config":
            "quantization", "quant": "quantization"}


@dataclass(frozen=True)
class Rule:
    """One ``--allow`` rule: ``KIND`` or ``KIND:PATTERN`` (see `parse_rules`)."""

    kind: str
    pattern: str | None = None

    def allows(self, kind: str, keys: Sequence[str]) -> bool:
        if kind != self.kind:
            return False
        if self.pattern is None:
            return True
        p = self.pattern
        if kind in ("dtype", "scheme") and "->" in p:
            src, _, dst = p.partition("->")
            before, _, after = keys[0].partition("->")
            return fnmatch.fnmatchcase(before, src or "*") and fnmatch.fnmatchcase(
                after, dst or "*")
        if kind in ("config", "quantization"):
            key = keys[0]
            return fnmatch.fnmatchcase(key, p) or any(
                fnmatch.fnmatchcase(key[:i], p) for i, ch in enumerate(key) if ch in ".[")
        names = keys[1:] if kind in ("dtype", "scheme") else keys
        return any(fnmatch.fnmatchcase(n, p) for n in names)

    def __str__(self) -> str:
        return self.kind if self.pattern is None else f"{self.kind}:{self.pattern}"


def parse_rules(values: Iterable[str]) -> list[Rule]:
    """``--allow`` values (comma-separated, repeatable) as rules.

    ``KIND`` allows every difference of that kind; ``KIND:PATTERN`` only some:

    - ``added``, ``removed``, ``renamed``, ``shape``, ``bytes``: PATTERN is a glob
      on tensor names (B's name; A's for removed; either for renamed):
      ``added:*.weight_scale_inv``;
    - ``dtype`` and ``scheme``: ``FROM->TO`` with globs (``dtype:F32->BF16``,
      ``dtype:*->F8_E4M3``, ``scheme:none->fp8+scale``), or a glob on tensor names;
    - ``config`` and ``quantization`` (quantization_config): a dotted key glob,
      which also allows everything under the key (``config:_name_or_path``,
      ``config:text_config``, ``config:*_version``).

    ``renames`` is accepted for ``renamed`` (and other plurals for their kind).
    """
    rules = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            kind, sep, pattern = item.partition(":")
            kind = _ALIASES.get(kind.strip().lower(), kind.strip().lower())
            if kind not in RULE_KINDS:
                raise ValueError(f"--allow {item!r}: unknown kind {kind!r} (one of "
                                 f"{', '.join(RULE_KINDS)})")
            if sep and not pattern.strip():
                raise ValueError(f"--allow {item!r}: empty pattern after ':'")
            rules.append(Rule(kind, pattern.strip() if sep else None))
    return rules


# ---------------------------------------------------------------- JSON


def json_diff(a: Any, b: Any, prefix: str = "",
              skip: Callable[[str], bool] = lambda _key: False) -> list[ValueChange]:
    """Structural differences of two JSON values, keys dotted (lists by index)."""
    out: list[ValueChange] = []

    def walk(x: Any, y: Any, key: str) -> None:
        if key and skip(key):
            return
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y), key=str):
                sub = f"{key}.{k}" if key else str(k)
                if skip(sub):
                    continue
                if k not in y:
                    out.append(ValueChange(sub, "removed", x[k], None))
                elif k not in x:
                    out.append(ValueChange(sub, "added", None, y[k]))
                else:
                    walk(x[k], y[k], sub)
            return
        if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for i, (u, v) in enumerate(zip(x, y, strict=True)):
                walk(u, v, f"{key}[{i}]")
            return
        if not _same(x, y):
            out.append(ValueChange(key or "(root)", "changed", x, y))

    walk(a, b, prefix)
    return out


def _same(x: Any, y: Any) -> bool:
    """JSON equality: 1 == 1.0, but True != 1 and lists of other lengths differ."""
    if isinstance(x, bool) or isinstance(y, bool):
        return type(x) is type(y) and x == y
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        return x == y
    return type(x) is type(y) and bool(x == y)


# ---------------------------------------------------------------- the sides


@dataclass(eq=False)
class _Tensors:
    """One side as columns: what the pairing and the comparison read."""

    path: str
    names: list[str]
    templates: list[str]      # per template id
    template: np.ndarray      # per row
    ints: list[tuple[int, ...]]
    dtype: list[str]
    shape: list[tuple[int, ...]]
    role: list[str]
    scheme: list[str | None]  # per row: None where it means nothing (not a weight)
    nbytes: np.ndarray
    where: Callable[[int], tuple[str, int, int]]  # a row's file, begin and end offsets
    file_order: np.ndarray    # rows sorted by (shard, offset)
    first_int: np.ndarray     # per row: the name's first integer, -1 when it has none


def _load(path: str, revision: str | None, follow_symlinks: bool,
          io_jobs: int | None) -> tuple[_Tensors, Side, dict[str, Any] | None, Any]:
    from .context import FP8_DTYPES, ScanContext
    from .errors import CkptScanError
    from .frame import build_frame
    from .layout import LayoutError, resolve
    from .pipeline import file_problem
    from .table import open_spec
    from .taxonomy import KIND_CODE, ROLES

    try:
        specs = resolve(path, revision=revision, follow_symlinks=follow_symlinks)
    except LayoutError as exc:
        raise CkptScanError(str(exc)) from None
    if len(specs) != 1:
        names = ", ".join(os.path.relpath(s.path, os.path.abspath(path)) for s in specs[:6])
        raise CkptScanError(f"{path} holds {len(specs)} checkpoints ({names}"
                            f"{' ...' if len(specs) > 6 else ''}): diff compares one with one")
    spec = specs[0]
    if spec.format != "safetensors":
        raise CkptScanError(f"{path}: a {spec.format} checkpoint; diff reads safetensors only")
    ckpt = open_spec(spec, io_jobs)
    problems = [f"{fs.name}: {p.message}" for fs in spec.shards
                if (p := file_problem(fs)) is not None]
    healthy = []
    for s in ckpt.shards:
        if s.problems:
            problems.append(f"{os.path.basename(s.path)}: {s.problems[0].message}")
        else:
            healthy.append(s)
    problems += [f"{name}: listed in the index but not on disk" for name in ckpt.missing]
    frame = build_frame(ckpt, shards=healthy)
    ctx = ScanContext(ckpt, frame)
    fp8 = set(FP8_DTYPES)
    scale_of = ctx.quant_map.scale_rows()
    dtypes = [frame.dtype_name(i) for i in range(len(frame))] if len(frame) else []
    kinds = frame.kind
    weight = KIND_CODE["weight"]
    schemes: list[str | None] = []
    for i, d in enumerate(dtypes):
        if kinds[i] != weight:
            schemes.append(None)
        elif d in fp8:
            schemes.append("fp8+scale" if scale_of[i] >= 0 else "fp8 (no scale)")
        else:
            schemes.append("none")
    starts, dims = frame.shape_starts.tolist(), frame.dims.tolist()
    istarts, ints = frame.int_starts.tolist(), frame.ints.tolist()
    roles = frame.role.tolist()
    shards = frame.shards

    begins = np.concatenate([s.core.begins for s in shards]) if shards else np.zeros(0)

    def where(i: int) -> tuple[str, int, int]:
        b = int(begins[i])
        return shards[int(frame.shard_of[i])].path, b, b + int(frame.nbytes[i])

    t = _Tensors(
        path=spec.path, names=frame.names, templates=frame.templates, template=frame.template,
        ints=[tuple(ints[istarts[i]:istarts[i + 1]]) for i in range(len(frame))],
        dtype=dtypes, shape=[tuple(dims[starts[i]:starts[i + 1]]) for i in range(len(frame))],
        role=[ROLES[r] for r in roles], scheme=schemes, nbytes=frame.nbytes, where=where,
        file_order=np.lexsort((frame.row_of, frame.shard_of)),
        first_int=_first_ints(frame.int_starts, frame.ints))
    model_type = (ckpt.config or {}).get("model_type")
    side = Side(spec.path, len(frame), int(frame.nbytes.sum()), len(spec.shards),
                model_type if isinstance(model_type, str) else None, problems)
    return t, side, ckpt.config, ckpt


def _first_ints(starts: np.ndarray, ints: np.ndarray) -> np.ndarray:
    has = np.diff(starts) > 0
    out = np.full(len(starts) - 1, -1, dtype=np.int64)
    out[has] = ints[starts[:-1][has]]
    return out


# ---------------------------------------------------------------- pairing


def _fill(template: str, ints: Sequence[int]) -> str:
    parts = template.split("{}")
    return "".join(p + (str(ints[i]) if i < len(ints) else "") for i, p in enumerate(parts))


def _rewrites(ta: str, ends: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(A's prefix, B's prefix) for the B templates sharing `ta`'s longest dotted
    suffix (of at least `_MIN_SUFFIX` components), the prefixes holding as many
    integer slots (so that integers carry over)."""
    parts = ta.split(".")
    for k in range(len(parts), _MIN_SUFFIX - 1, -1):
        tail = ".".join(parts[-k:])
        found = ends.get(tail)
        if not found:
            continue
        pa = ta[:len(ta) - len(tail)]
        return [(pa, pb) for tb in found if tb != ta
                and (pb := tb[:len(tb) - len(tail)]).count("{}") == pa.count("{}")]
    return []


class NameColumns(Protocol):
    """What pairing reads of a side: per row its name, template id and integers."""

    names: list[str]
    templates: list[str]
    template: np.ndarray
    ints: list[tuple[int, ...]]


def pair_names(a: NameColumns, b: NameColumns
               ) -> tuple[dict[int, int], list[tuple[str, str] | None]]:
    """A's rows paired with B's by name, then by prefix rewrites of A's name
    templates (steps 1 and 2 of the module's docstring): (A row -> B row, per A
    template the rewrite that renamed it, (A's template prefix, B's), or None)."""
    p = _Pairing(a, b)
    p.find_prefix_rules()
    return p.exact(), list(p.rule)


class _Pairing:
    """A's rows mapped into B's names (prefix rewrites), then paired."""

    def __init__(self, a: NameColumns, b: NameColumns) -> None:
        self.a, self.b = a, b
        # Per A template: its template in B's naming and the rule that made it.
        self.mapped = list(a.templates)
        self.rule: list[tuple[str, str] | None] = [None] * len(a.templates)
        self.b_templates = set(b.templates)
        self.b_key = {(b.templates[int(t)], ints): i
                      for i, (t, ints) in enumerate(zip(b.template.tolist(), b.ints,
                                                        strict=True))}

    def a_key(self, i: int) -> tuple[str, tuple[int, ...]]:
        return self.mapped[int(self.a.template[i])], self.a.ints[i]

    def exact(self) -> dict[int, int]:
        out = {}
        for i in range(len(self.a.names)):
            j = self.b_key.get(self.a_key(i))
            if j is not None:
                out[i] = j
        return out

    def find_prefix_rules(self) -> None:
        """Prefix rewrites of A's templates, best first (see the module's docstring).
        A rewrite applies to the templates none of whose tensors is paired yet and
        whose rewritten form B has (with any integers: a renumbered stack too)."""
        a = self.a
        for _ in range(_MAX_ROUNDS):
            pairs = self.exact()
            paired = np.zeros(len(a.names), dtype=bool)
            paired[list(pairs)] = True
            busy = np.bincount(a.template[paired], minlength=len(a.templates)) > 0
            a_rows: dict[int, list[int]] = defaultdict(list)  # free template -> its rows
            for i, t in enumerate(a.template.tolist()):
                if not busy[t]:
                    a_rows[t].append(i)
            taken = set(pairs.values())
            b_left: dict[str, set[tuple[int, ...]]] = defaultdict(set)
            for (tb, ints), j in self.b_key.items():
                if j not in taken:
                    b_left[tb].add(ints)
            if not a_rows or not b_left:
                return
            # Each free template of A proposes the rewrites to the B templates that
            # share its longest dotted suffix (a bounded number of them); the most
            # voted are then counted exactly.
            ends: dict[str, list[str]] = defaultdict(list)  # dotted suffix -> B templates
            for tb in b_left:
                parts = tb.split(".")
                for k in range(_MIN_SUFFIX, len(parts) + 1):
                    tail = ends[".".join(parts[-k:])]
                    if len(tail) < _PER_TAIL:
                        tail.append(tb)
            votes: Counter[tuple[str, str]] = Counter()
            for t, rows in a_rows.items():
                for pair in _rewrites(self.mapped[t], ends):
                    votes[pair] += len(rows)
            best, best_hits = None, 0
            for (pa, pb), _ in votes.most_common(_CANDIDATES):
                hits = 0
                for t, rows in a_rows.items():
                    ta = self.mapped[t]
                    if ta.startswith(pa):
                        have = b_left.get(pb + ta[len(pa):])
                        if have:
                            hits += sum(1 for i in rows if a.ints[i] in have)
                if hits > best_hits:
                    best, best_hits = (pa, pb), hits
            if best is None:
                return
            pa, pb = best
            for t in a_rows:  # where B has the rewritten template (any integers)
                ta = self.mapped[t]
                if ta.startswith(pa) and pb + ta[len(pa):] in self.b_templates:
                    self.mapped[t] = pb + ta[len(pa):]
                    self.rule[t] = (pa, pb)


def _stack_of(template: str) -> tuple[str, str] | None:
    """('model.layers.{}', '.mlp.up_proj.weight') for a template with integers."""
    cut = template.find("{}")
    if cut < 0:
        return None
    return template[:cut + 2], template[cut + 2:]


@dataclass
class _Layer:
    rows: dict[tuple[str, tuple[int, ...]], int]  # (rest template, rest ints) -> row
    header: int = 0      # id of the header signature
    digest: bytes = b""  # of all its tensors' bytes (--deep), b"" when unknown


def _stack_templates(templates: Sequence[str]) -> dict[str, list[int]]:
    """Stack prefix -> ids of the templates in it."""
    out: dict[str, list[int]] = defaultdict(list)
    for k, template in enumerate(templates):
        st = _stack_of(template)
        if st is not None:
            out[st[0]].append(k)
    return out


def _stack_numbers(t: _Tensors, stacks: dict[str, list[int]]) -> dict[str, frozenset[int]]:
    return {s: frozenset(np.unique(t.first_int[np.isin(t.template, ids)]).tolist())
            for s, ids in stacks.items()}


def _rows_of(t: _Tensors, stacks: dict[str, list[int]], chosen: Iterable[str]) -> list[int]:
    ids = [k for s in chosen for k in stacks.get(s, ())]
    return np.flatnonzero(np.isin(t.template, ids)).tolist() if ids else []


def _layers(t: _Tensors, rows: Iterable[int], mapped: Callable[[int], str]
            ) -> dict[str, dict[int, _Layer]]:
    out: dict[str, dict[int, _Layer]] = defaultdict(dict)
    for i in rows:
        st = _stack_of(mapped(i))
        if st is None:
            continue
        stack, rest = st
        ints = t.ints[i]
        out[stack].setdefault(ints[0], _Layer({})).rows[(rest, ints[1:])] = i
    return out


def _align(a: list[_Layer], b: list[_Layer], a_num: list[int], b_num: list[int]
           ) -> list[tuple[int, int]]:
    """Pairs (index into a, index into b), in order, maximising (layers alike,
    layers with equal bytes, layers kept at their number). Layers that do not
    look alike pair only at the same number, as their names would."""
    n, m = len(a), len(b)

    def weight(i: int, j: int) -> int:
        alike = a[i].header == b[j].header
        same_number = a_num[i] == b_num[j]
        if not alike:  # layers that differ pair only by their number (as by name)
            return int(same_number)
        same_bytes = bool(a[i].digest) and a[i].digest == b[j].digest
        return (1 << 64) + (int(same_bytes) << 32) + int(same_number)

    if n * m > _MAX_ALIGN_CELLS:  # constant offsets only: numbers shifted as a block
        offsets = Counter(bn - an for an in a_num[:64] for bn in b_num[:64])
        best_pairs: list[tuple[int, int]] = []
        best_score = -1
        pos = {v: j for j, v in enumerate(b_num)}
        for d in sorted(offsets, key=lambda d: (abs(d), d))[:64]:
            shifted = [(i, pos[v + d]) for i, v in enumerate(a_num) if v + d in pos]
            total = sum(weight(i, j) for i, j in shifted)
            if total > best_score:
                best_score, best_pairs = total, [(i, j) for i, j in shifted if weight(i, j)]
        return best_pairs
    score = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        row, below = score[i], score[i + 1]
        for j in range(m - 1, -1, -1):
            w = weight(i, j)
            best = max(below[j], row[j + 1])
            if w:
                best = max(best, below[j + 1] + w)
            row[j] = best
    pairs = []
    i = j = 0
    while i < n and j < m:
        w = weight(i, j)
        if w and score[i][j] == score[i + 1][j + 1] + w:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif score[i][j] == score[i + 1][j]:
            i += 1
        else:
            j += 1
    return pairs


def _runs(values: list[int]) -> str:
    from .context import ranges

    return ranges(sorted(values), groups_max=6)


# ---------------------------------------------------------------- hashing


_buffers = threading.local()


def _digest(where: tuple[str, int, int]) -> bytes:
    """The digest of bytes [begin, end) of a file (see the module's docstring)."""
    from . import _core

    path, begin, end = where
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = memoryview(bytearray(_PIECE))
    parts = []
    fd = os.open(path, os.O_RDONLY)
    try:
        for start in range(begin, end, _PIECE):
            n = min(_PIECE, end - start)
            got = 0
            while got < n:
                k = os.preadv(fd, [buf[got:n]], start + got)
                if k == 0:
                    raise OSError(f"{path}: ends at byte {start + got:,}, before the tensor's "
                                  f"end at {end:,} (changed while being read?)")
                got += k
            parts.append(_core.digest128(buf[:n]))
    finally:
        os.close(fd)
    return _core.digest128(b"".join(parts) + (end - begin).to_bytes(8, "little"))


def _hash_rows(work: list[tuple[_Tensors, int]], jobs: int | None,
               progress: Callable[[Any], None] | None, cancel: threading.Event
               ) -> tuple[dict[tuple[int, int], bytes], list[str]]:
    """Digests of (side, row) on a thread pool, a bounded window in flight."""
    from .deep import Cancelled, DeepProgress
    from .errors import CkptScanError

    digests: dict[tuple[int, int], bytes] = {}
    failed: list[str] = []
    total = sum(int(t.nbytes[i]) for t, i in work)
    workers = max(1, jobs or os.cpu_count() or 1)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="ckptscan-diff")
    pending: list[tuple[_Tensors, int, Future[bytes]]] = []
    queue = iter(work)
    done = done_bytes = 0

    def submit() -> None:
        item = next(queue, None)
        if item is not None:
            t, i = item
            pending.append((t, i, pool.submit(_digest, t.where(i))))

    try:
        for _ in range(4 * workers):
            submit()
        while pending:
            t, i, fut = pending.pop(0)
            try:
                digests[(id(t), i)] = fut.result()
            except (CkptScanError, OSError, ValueError, RuntimeError) as exc:
                failed.append(f"{t.names[i]}: {exc}")
            done += 1
            done_bytes += int(t.nbytes[i])
            if progress is not None:
                progress(DeepProgress(done, len(work), done_bytes, total))
            if cancel.is_set():
                raise Cancelled("diff --deep interrupted")
            submit()
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return digests, failed


# ---------------------------------------------------------------- diff


def compare(a: str | os.PathLike[str], b: str | os.PathLike[str], *, deep: bool = False,
               jobs: int | None = None, progress: Callable[[Any], None] | None = None,
            revision_a: str | None = None, revision_b: str | None = None,
            follow_symlinks: bool = False, cancel: threading.Event | None = None) -> Diff:
    """Compares checkpoint `a` with checkpoint `b` (any path ``ckptscan report``
    takes that holds one checkpoint). `deep` hashes the bytes of paired tensors
    of equal dtype and shape (`jobs` threads; `progress` gets a
    `ckptscan.deep.DeepProgress`). `revision_a` / `revision_b`: for Hugging Face
    cache repositories. Raises `CkptScanError` for a path that is no checkpoint."""
    from .schemes import Sources

    ta, side_a, config_a, ckpt_a = _load(os.fspath(a), revision_a, follow_symlinks, None)
    try:
        tb, side_b, config_b, ckpt_b = _load(os.fspath(b), revision_b, follow_symlinks, None)
    except BaseException:
        ckpt_a.close()
        raise
    try:
        result = Diff(side_a, side_b)
        c = _Comparison(ta, tb)
        c.pair(deep, jobs, progress, cancel or threading.Event())
        c.tensors(result)
        if deep:
            result.deep = c.bytes(result)
        qa = next(Sources(config_a).quantization_configs(), None)
        qb = next(Sources(config_b).quantization_configs(), None)
        quant_keys = {q[0] for q in (qa, qb) if q is not None}
        result.config = json_diff(config_a or {}, config_b or {},
                                  skip=lambda k: k in quant_keys)
        result.quantization = json_diff(dict(qa[1]) if qa else {}, dict(qb[1]) if qb else {})
        return result
    finally:
        ckpt_a.close()
        ckpt_b.close()


class _Comparison:
    """The pairing of A's rows with B's, then what differs in each pair."""

    def __init__(self, a: _Tensors, b: _Tensors) -> None:
        self.a, self.b = a, b
        self.naming = _Pairing(a, b)
        self.pairs: dict[int, int] = {}  # A row -> B row
        self.moved: dict[str, tuple[list[int], list[int]]] = {}  # stack -> layers A, B
        self.digests: dict[tuple[int, int], bytes] = {}
        self.failed: list[str] = []
        self.started = 0.0

    def mapped(self, i: int) -> str:
        """A's row `i`'s template in B's naming."""
        return self.naming.mapped[int(self.a.template[i])]

    def digest(self, t: _Tensors, i: int) -> bytes:
        return self.digests.get((id(t), i), b"")

    def pair(self, deep: bool, jobs: int | None, progress: Callable[[Any], None] | None,
             cancel: threading.Event) -> None:
        import time

        a, b = self.a, self.b
        self.naming.find_prefix_rules()
        self.pairs = self.naming.exact()
        # Stacks whose layer numbers differ (sets of first integers, per template).
        ta_of, tb_of = _stack_templates(self.naming.mapped), _stack_templates(b.templates)
        numbers_a, numbers_b = _stack_numbers(a, ta_of), _stack_numbers(b, tb_of)
        misaligned = sorted(s for s in numbers_a
                            if s in numbers_b and numbers_a[s] != numbers_b[s])
        stacks_a = _layers(a, _rows_of(a, ta_of, misaligned), self.mapped)
        stacks_b = _layers(b, _rows_of(b, tb_of, misaligned),
                           lambda j: b.templates[int(b.template[j])])
        self.started = time.perf_counter()
        if deep:
            want_a = {i for i, j in self.pairs.items() if _comparable(a, i, b, j)}
            want_b = {j for i, j in self.pairs.items() if _comparable(a, i, b, j)}
            for s in misaligned:
                want_a.update(r for layer in stacks_a[s].values() for r in layer.rows.values())
                want_b.update(r for layer in stacks_b[s].values() for r in layer.rows.values())
            work = ([(a, i) for i in a.file_order.tolist() if i in want_a]
                    + [(b, j) for j in b.file_order.tolist() if j in want_b])
            self.digests, self.failed = _hash_rows(work, jobs, progress, cancel)
        for s in misaligned:
            self._align_stack(s, stacks_a[s], stacks_b[s], deep)
        taken: set[int] = set()  # a B row is paired once
        for i in sorted(self.pairs):
            if self.pairs[i] in taken:
                del self.pairs[i]
            else:
                taken.add(self.pairs[i])

    def _align_stack(self, stack: str, la: dict[int, _Layer], lb: dict[int, _Layer],
                     deep: bool) -> None:
        from . import _core

        na, nb = sorted(la), sorted(lb)
        sig_ids: dict[tuple[Any, ...], int] = {}
        for t, layers in ((self.a, la), (self.b, lb)):
            for layer in layers.values():
                keys = sorted(layer.rows)
                sig = tuple((k, t.shape[layer.rows[k]]) for k in keys)
                layer.header = sig_ids.setdefault(sig, len(sig_ids))
                if deep:
                    ds = [self.digest(t, layer.rows[k]) for k in keys]
                    layer.digest = _core.digest128(b"".join(ds)) if all(ds) else b""
        aligned = [(na[x], nb[y]) for x, y in _align([la[v] for v in na], [lb[v] for v in nb],
                                                     na, nb)]
        for layer in la.values():
            for r in layer.rows.values():
                self.pairs.pop(r, None)
        for x, y in aligned:
            for key, r in la[x].rows.items():
                other = lb[y].rows.get(key)
                if other is not None:
                    self.pairs[r] = other
        moved = [(x, y) for x, y in aligned if x != y]
        if moved:
            self.moved[stack] = ([x for x, _ in moved], [y for _, y in moved])

    def _why(self, i: int, j: int) -> list[tuple[str, str, str, str]]:
        """Why A's row i is named otherwise in B: (kind, rule, from, to) per cause."""
        why = []
        rule = self.naming.rule[int(self.a.template[i])]
        if rule is not None:
            pa, pb = rule
            why.append(("prefix", f"{pa or '(no prefix)'} -> {pb or '(no prefix)'}", pa, pb))
        st = _stack_of(self.mapped(i))
        if st is not None and self.a.ints[i][:1] != self.b.ints[j][:1]:
            xs, ys = self.moved.get(st[0], ([], []))
            why.append(("layers", f"{st[0]}: layers {_runs(xs)} -> {_runs(ys)}", _runs(xs),
                        _runs(ys)))
        return why

    def tensors(self, result: Diff) -> None:
        from .taxonomy import ROLES

        a, b = self.a, self.b
        roles: dict[str, RoleDiff] = defaultdict(RoleDiff)
        for r in a.role:
            roles[r].tensors_a += 1
        for r in b.role:
            roles[r].tensors_b += 1
        paired_b = set(self.pairs.values())
        for i in range(len(a.names)):
            if i not in self.pairs:
                result.removed.append(TensorRef(a.names[i], a.role[i], a.dtype[i], a.shape[i]))
                roles[a.role[i]].removed += 1
        for j in range(len(b.names)):
            if j not in paired_b:
                result.added.append(TensorRef(b.names[j], b.role[j], b.dtype[j], b.shape[j]))
                roles[b.role[j]].added += 1
        groups: Counter[tuple[str, str, str, str]] = Counter()
        for i, j in sorted(self.pairs.items(), key=lambda p: p[1]):
            an, bn, role = a.names[i], b.names[j], b.role[j]
            rd = roles[role]
            if an == bn:
                result.same_name += 1
            else:
                why = self._why(i, j)
                groups.update(why)
                result.renamed.append(Rename(an, bn, role, "; ".join(w[1] for w in why)))
                rd.renamed += 1
            if a.dtype[i] != b.dtype[j]:
                result.changes.append(Change(an, bn, role, "dtype", a.dtype[i], b.dtype[j]))
                _bump(rd.dtype, f"{a.dtype[i]}->{b.dtype[j]}")
            if a.shape[i] != b.shape[j]:
                result.changes.append(Change(an, bn, role, "shape", str(list(a.shape[i])),
                                             str(list(b.shape[j]))))
                rd.shape += 1
            sa, sb = a.scheme[i], b.scheme[j]
            if sa != sb and sa is not None and sb is not None:
                result.changes.append(Change(an, bn, role, "scheme", sa, sb))
                _bump(rd.scheme, f"{sa}->{sb}")
        result.rename_groups = [RenameGroup(kind, rule, n, f, t)
                                for (kind, rule, f, t), n in groups.most_common()]
        result.roles = {r: roles[r] for r in sorted(roles, key=lambda r: (
            ROLES.index(r) if r in ROLES else len(ROLES), r))}

    def bytes(self, result: Diff) -> DeepDiff:
        import time

        a, b = self.a, self.b
        dd = DeepDiff(unreadable=self.failed)
        for i, j in sorted(self.pairs.items(), key=lambda p: p[1]):
            da, db = self.digest(a, i), self.digest(b, j)
            if not (_comparable(a, i, b, j) and da and db):
                continue
            dd.compared += 1
            dd.bytes += int(a.nbytes[i])
            if da == db:
                dd.equal += 1
            else:
                role = b.role[j]
                result.changes.append(Change(a.names[i], b.names[j], role, "bytes",
                                             da.hex()[:16], db.hex()[:16]))
                result.roles[role].bytes += 1
        dd.seconds = time.perf_counter() - self.started
        return dd


def _comparable(a: _Tensors, i: int, b: _Tensors, j: int) -> bool:
    return a.dtype[i] == b.dtype[j] and a.shape[i] == b.shape[j]


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


__all__ = ["SCHEMA", "Change", "DeepDiff", "Diff", "NameColumns", "Rename", "RenameGroup",
           "RoleDiff", "Rule", "Side", "TensorRef", "ValueChange", "compare", "json_diff",
           "pair_names", "parse_rules"]
