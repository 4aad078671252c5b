"""The declarations every scheme module fills in: layouts, companions, packing,
granularity, groups, detections. See the package docstring for how checks use them."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final, TypeGuard

from ..config import MAX_BLOCK_DIM, MAX_MODULE_ENTRIES, MIN_BLOCK_ELEMENTS
from ._formats import DTYPE_BITS, SCALE_ONLY_DTYPES
from ._match import SLOT, Decision, Hit, Rules, Targets, hit_rank, probe_names, relevant

Shape = tuple[int, ...]

# Companion kinds
SCALE: Final = "scale"
GLOBAL_SCALE: Final = "global_scale"
ZERO_POINT: Final = "zero_point"
OFFSET: Final = "offset"  # MLX affine biases: w = scale * q + bias
G_IDX: Final = "g_idx"
SHAPE: Final = "shape"
INPUT_SCALE: Final = "input_scale"
KV_SCALE: Final = "kv_scale"
AUX: Final = "aux"  # bitsandbytes quant_map / quant_state, weight_format
COMPANION_KINDS: Final = (SCALE, GLOBAL_SCALE, ZERO_POINT, OFFSET, G_IDX, SHAPE, INPUT_SCALE,
                          KV_SCALE, AUX)

#: last name components that are quantization bookkeeping in every scheme that
#: writes them, so never parameters (the Hub's counter agrees)
AUXILIARY_PARAMS: Final = frozenset({
    "weight_scale", "weight_scale_inv", "weight_scale_2", "weight_global_scale",
    "weight_zero_point", "input_scale", "input_global_scale", "input_zero_point",
    "output_scale", "output_zero_point", "weight_shape", "weight_g_idx", "k_scale", "v_scale",
    "q_scale", "activation_scale",
})

#: scale names and whose convention they are: a checkpoint whose FP8 weights use
#: more than one of them mixes conventions (loaders look for one name only)
SCALE_CONVENTIONS: Final[dict[str, str]] = {
    ".weight_scale_inv": "DeepSeek / HF fine-grained FP8 (transformers FP8Linear, SGLang)",
    ".weight_scale": "compressed-tensors / ModelOpt / vLLM",
    ".scale": "DeepSeek-V4 reference inference",
    ".scale_weight": "older FP8 exporters",
}

#: module names fused into one kernel at load time (vLLM's packed_modules_mapping):
#: their per-tensor / global scales must agree or loaders take the max
FUSED_SIBLINGS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("qkv_proj", ("q_proj", "k_proj", "v_proj")),
    ("gate_up_proj", ("gate_proj", "up_proj")),
    ("w13", ("w1", "w3")),
)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def fused_sibling(module: str) -> tuple[str, str] | None:
    """(fused module name, member) when ``module`` is fused with siblings at load
    time: ``model.layers.{}.self_attn.k_proj`` -> (``...self_attn.qkv_proj``, ``k_proj``)."""
    head, _, last = module.rpartition(".")
    for fused, members in FUSED_SIBLINGS:
        if last in members:
            return (f"{head}.{fused}" if head else fused), last
    return None


@dataclass(frozen=True)
class Problem:
    """A config value the producer's loaders could not use. ``key`` is its dotted
    path (``quantization_config.weight_block_size``), ``source`` the file."""

    source: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.key}: {self.message}"


@dataclass(frozen=True)
class Granularity:
    """What one scale covers: ``block`` (rows x cols), ``group`` (``size`` inputs),
    ``channel`` (one output row), ``tensor`` (the whole weight); ``two_level``
    adds a per-tensor global scale on top (NVFP4)."""

    kind: str
    size: int | None = None
    block: tuple[int, int] | None = None
    two_level: bool = False

    def __str__(self) -> str:
        if self.kind == "block" and self.block is not None:
            text = f"{self.block[0]}x{self.block[1]} block"
        elif self.kind == "group":
            text = f"group of {self.size}"
        elif self.kind == "channel":
            text = "per channel"
        elif self.kind == "tensor":
            text = "per tensor"
        else:
            text = self.kind
        return text + (" + per-tensor global" if self.two_level else "")


@dataclass(frozen=True)
class Packing:
    """How logical values sit in the stored container.

    ``per_element`` logical values per stored element along ``axis`` (8 int4 in
    an I32, 2 FP4 in a U8); ``order`` how they are laid out (``low-nibble-first``,
    ``lsb-first`` dense bit packing, ``awq-interleaved`` [0,2,4,6,1,3,5,7]);
    ``transposed`` when the stored matrix is [in, out] (GPTQ, AWQ);
    ``blocks`` when the last two stored dims are (groups, bytes per group)
    (gpt-oss ``*_blocks``); ``flat`` when the stored shape says nothing about the
    logical one (bitsandbytes 4-bit [n/2, 1])."""

    per_element: Fraction = Fraction(1)
    axis: int = -1
    order: str = "none"
    transposed: bool = False
    blocks: bool = False
    flat: bool = False

    def logical_shape(self, stored: Shape) -> Shape | None:
        """The logical weight shape for a stored shape (None if it cannot be one).

        Packed widths are capacities: a row of ``ceil(in * bits / 32)`` words
        holds ``floor(words * 32 / bits)`` values, at most ``32 / bits - 1`` more
        than ``in`` (compressed-tensors records the exact width in ``weight_shape``)."""
        if self.flat:
            return (int(math.prod(stored) * self.per_element),)
        if self.blocks:
            if len(stored) < 3:
                return None
            return (*stored[:-2], int(stored[-2] * stored[-1] * self.per_element))
        if not stored or not -len(stored) <= self.axis < len(stored):
            return None
        out = list(stored)
        out[self.axis] = int(stored[self.axis] * self.per_element)
        if self.transposed:
            if len(out) < 2:
                return None
            out[-1], out[-2] = out[-2], out[-1]
        return tuple(out)


UNPACKED: Final = Packing()


# ---- companion shape rules: logical weight shape -> accepted companion shapes -------------

ShapeRule = Callable[[Shape], tuple[Shape, ...]]


@dataclass(frozen=True)
class PerTensor:
    """One value (``shapes``: ``[]`` or ``[1]``); with ``per_lead`` one per leading
    index of an [E, out, in] expert stack (``[E]``, ``[E, 1]``, ``[E, 1, 1]``), and
    with ``single`` too a single value for the whole stack."""

    per_lead: bool = False
    shapes: tuple[Shape, ...] = ((), (1,))
    single: bool = False

    def __call__(self, logical: Shape) -> tuple[Shape, ...]:
        lead = logical[:-2]
        if self.per_lead and lead:
            per = (lead, (*lead, 1), (*lead, 1, 1))
            return per + self.shapes if self.single else per
        return self.shapes


@dataclass(frozen=True)
class PerChannel:
    """One value per output row: ``[out, 1]`` (compressed-tensors) and/or ``[out]``."""

    shapes: tuple[str, ...] = ("col", "flat")

    def __call__(self, logical: Shape) -> tuple[Shape, ...]:
        if len(logical) < 2:
            return ()
        *lead, out, _ = logical
        forms = {"col": (*lead, out, 1), "flat": (*lead, out)}
        return tuple(forms[s] for s in self.shapes)


@dataclass(frozen=True)
class PerGroup:
    """One value per ``size`` inputs of each row: ``[out, ceil(in / size)]``;
    ``transposed`` gives ``[ceil(in / size), out]`` (GPTQ / AWQ scales)."""

    size: int
    transposed: bool = False
    rows_per_element: Fraction = Fraction(1)  # packed zero points: 8 rows per I32

    def __call__(self, logical: Shape) -> tuple[Shape, ...]:
        if len(logical) < 2:
            return ()
        *lead, out, inp = logical
        groups = cdiv(inp, self.size) if self.size > 0 else 1
        rows = math.ceil(out / self.rows_per_element)
        return (((*lead, groups, rows),) if self.transposed else ((*lead, rows, groups),))


@dataclass(frozen=True)
class PerBlock:
    """One value per ``rows x cols`` tile: ``[ceil(out / rows), ceil(in / cols)]``;
    ``rank4`` gives ModelOpt's ``[out_blk, 1, in_blk, 1]``."""

    rows: int
    cols: int
    rank4: bool = False

    def __call__(self, logical: Shape) -> tuple[Shape, ...]:
        if len(logical) < 2:
            return ()
        *lead, out, inp = logical
        ob, ib = cdiv(out, self.rows), cdiv(inp, self.cols)
        return ((*lead, ob, 1, ib, 1),) if self.rank4 else ((*lead, ob, ib),)


@dataclass(frozen=True)
class PerInput:
    """One value per input column (``g_idx``)."""

    def __call__(self, logical: Shape) -> tuple[Shape, ...]:
        return ((logical[-1],),) if logical else ()


@dataclass(frozen=True)
class ShapeOfShape:
    """The logical shape written as a tensor: ``[rank]`` (compressed-tensors ``weight_shape``)."""

    def __call__(self, logical: Shape) -> tuple[Shape, ...]:
        return ((len(logical),),)


@dataclass(frozen=True)
class Fixed:
    """Shapes that do not depend on the weight (a 16-entry lookup table)."""

    shapes: tuple[Shape, ...]

    def __call__(self, logical: Shape) -> tuple[Shape, ...]:
        return self.shapes


@dataclass(frozen=True)
class AnyOf:
    """The union of several rules (a current and a legacy layout)."""

    rules: tuple[ShapeRule, ...]

    def __call__(self, logical: Shape) -> tuple[Shape, ...]:
        out: list[Shape] = []
        for r in self.rules:
            out += [s for s in r(logical) if s not in out]
        return tuple(out)


@dataclass(frozen=True)
class Companion:
    """A tensor stored next to a quantized weight: its name is the weight's stem
    + ``suffix``. ``dtypes`` are accepted (the first is what the producer writes);
    ``shapes`` maps the LOGICAL weight shape to the accepted shapes (None: any).
    ``fused_equal``: siblings fused at load time (q/k/v, gate/up, w1/w3) must hold
    the same value, or loaders take the max. ``divides``: a scale the weight is
    divided by (compressed-tensors' ``weight_global_scale``: w = q * scale /
    global_scale); scales multiply otherwise. No companion is a parameter."""

    suffix: str
    kind: str
    dtypes: tuple[str, ...]
    shapes: ShapeRule | None = None
    required: bool = True
    fused_equal: bool = False
    note: str = ""
    divides: bool = False

    @property
    def is_parameter(self) -> bool:
        """Companions are bookkeeping, never model parameters."""
        return False

    def expected_shapes(self, logical: Shape) -> tuple[Shape, ...]:
        """Accepted shapes for a weight of this logical shape (empty: none fits)."""
        return () if self.shapes is None else self.shapes(logical)

    def shape_ok(self, shape: Sequence[int], logical: Shape) -> bool:
        return self.shapes is None or tuple(shape) in self.shapes(logical)

    def dtype_ok(self, dtype: str) -> bool:
        return dtype in self.dtypes


@dataclass(frozen=True)
class Layout:
    """How one kind of quantized weight is stored.

    Names: a weight is ``stem + weight_suffix`` and each companion ``stem +
    companion.suffix``: ``X`` + ``.weight`` / ``.weight_scale_inv``; gpt-oss
    ``...experts.gate_up_proj`` + ``_blocks`` / ``_scales``. With ``param_style``
    the stem ends with the parameter's own name (fused experts, gpt-oss,
    torchao) and the module is the stem without its last component;
    ``param_pattern`` (a regex) must then fullmatch that last component.
    ``ranks`` are the accepted logical ranks (2: a linear, 3: an expert stack).
    ``source_transposed``: the unquantized parameter the weight stands for is
    stored [.., in, out] (transformers' ``GptOssExperts``), the transpose of the
    logical [.., out, in] (what ``ckptscan verify`` compares it with)."""

    name: str
    title: str
    family: str
    weight_suffix: str
    weight_dtypes: tuple[str, ...]
    weight_format: str
    scale_format: str | None
    granularity: Granularity
    packing: Packing = UNPACKED
    companions: tuple[Companion, ...] = ()
    param_style: bool = False
    param_pattern: str | None = None
    ranks: tuple[int, ...] = (2, 3)
    convention: str = ""
    source: str = ""
    source_transposed: bool = False

    def __repr__(self) -> str:
        return f"Layout({self.name!r})"

    # ---- names (templates or names alike) ----------------------------------------------

    def _stem_ok(self, stem: str) -> bool:
        if not stem or stem.endswith("."):
            return False
        if self.param_pattern is None:
            return True
        return re.fullmatch(self.param_pattern, stem.rpartition(".")[2]) is not None

    def weight_stem(self, name: str) -> str | None:
        """The stem if ``name`` is this layout's weight name, else None."""
        if not name.endswith(self.weight_suffix):
            return None
        stem = name[: len(name) - len(self.weight_suffix)] if self.weight_suffix else name
        return stem if self._stem_ok(stem) else None

    def companion_of(self, name: str) -> tuple[Companion, str] | None:
        """(companion, stem) if ``name`` is one of this layout's companion names."""
        for c in sorted(self.companions, key=lambda c: -len(c.suffix)):
            if name.endswith(c.suffix):
                stem = name[: len(name) - len(c.suffix)]
                if self._stem_ok(stem):
                    return c, stem
        return None

    def weight_name(self, stem: str) -> str:
        return stem + self.weight_suffix

    def companion_name(self, stem: str, companion: Companion) -> str:
        return stem + companion.suffix

    def module_of(self, stem: str) -> str:
        """The module a stem belongs to (what exclusion lists name)."""
        return stem.rpartition(".")[0] if self.param_style else stem

    # ---- shapes and counts ---------------------------------------------------------------

    def logical_shape(self, stored: Sequence[int]) -> Shape | None:
        """The logical weight shape of a stored shape (None if not a valid one)."""
        logical = self.packing.logical_shape(tuple(int(d) for d in stored))
        if logical is None or (not self.packing.flat and len(logical) not in self.ranks):
            return None
        return logical

    def parameters(self, stored: Sequence[int]) -> int:
        """Logical weights in a stored tensor (packed containers count their values)."""
        logical = self.logical_shape(stored)
        if logical is None:
            return int(math.prod(stored) * self.packing.per_element)
        return int(math.prod(logical))

    def bits_per_weight(self, logical: Shape | None = None) -> float:
        """Stored bits per logical weight, required companions included, for a
        weight of ``logical`` shape (default: a 4096 x 4096 weight, where
        per-tensor and per-channel terms are negligible)."""
        if logical is None:
            logical = (4096 * 4096,) if self.packing.flat else (4096, 4096)
        n = math.prod(logical)
        bits = Fraction(DTYPE_BITS[self.weight_dtypes[0]]) / self.packing.per_element * n
        for c in self.companions:
            shapes = c.expected_shapes(logical) if c.required else ()
            if shapes:
                bits += DTYPE_BITS[c.dtypes[0]] * math.prod(shapes[0])
        return float(bits / n)

    def statement(self) -> dict[str, Any]:
        """What a report says about a clean weight of this layout."""
        return {"scheme": self.name, "weight_format": self.weight_format,
                "scale_format": self.scale_format, "granularity": str(self.granularity),
                "bits_per_weight": round(self.bits_per_weight(), 3)}


@dataclass(frozen=True)
class Group:
    """A set of modules quantized one way (a compressed-tensors config group,
    DeepSeek-V4's routed experts). ``layouts`` are the stored forms a weight of
    the group may take: namings (a ``.weight`` and a fused ``gate_up_proj``) or
    conventions (FP8_PB_WO's rank-4 ``weight_scale`` or rank-2 ``weight_scale_inv``);
    the first is the producer's own."""

    name: str
    layouts: tuple[Layout, ...]
    targets: Targets

    def __repr__(self) -> str:
        return f"Group({self.name!r}, {[lay.name for lay in self.layouts]})"

    def layout_for(self, weight: str, dtype: str | None = None,
                   have: Callable[[str], bool] | None = None) -> Layout | None:
        """The layout of a weight name (template): by naming, then dtype, then
        (``have(name) -> bool``) the one whose required companions exist."""
        found = [lay for lay in self.layouts if lay.weight_stem(weight) is not None
                 and (dtype is None or dtype in lay.weight_dtypes)]
        if have is not None and len(found) > 1:
            for lay in found:
                stem = lay.weight_stem(weight)
                assert stem is not None
                if all(have(lay.companion_name(stem, c)) for c in lay.companions if c.required):
                    return lay
        return found[0] if found else None


@dataclass(frozen=True)
class Extra:
    """A quantization tensor owned by a module rather than by a weight: KV-cache
    scales (``self_attn.k_scale``). ``owner`` is a regex the owning module's
    name must fullmatch."""

    suffix: str
    kind: str
    dtypes: tuple[str, ...]
    owner: str
    shapes: tuple[Shape, ...] | None = None
    required: bool = True
    note: str = ""

    def owner_of(self, name: str) -> str | None:
        if not name.endswith(self.suffix):
            return None
        owner = name[: len(name) - len(self.suffix)]
        return owner if owner and re.fullmatch(self.owner, owner) else None


@dataclass(frozen=True)
class Target:
    """What the config says about one module.

    ``group``: the group that would quantize it (None: nothing targets it);
    ``target``: the entry that selected it; ``excluded_by``: the exclusion entry
    matching it (set whether or not anything targets it). ``quantized`` =
    targeted and not excluded."""

    group: Group | None = None
    target: Hit | None = None
    excluded_by: Hit | None = None

    @property
    def quantized(self) -> bool:
        return self.group is not None and self.excluded_by is None


@dataclass(frozen=True)
class WeightRole:
    """A name that is a layout's weight: its layout, group and stem."""

    layout: Layout
    group: Group
    stem: str


@dataclass(frozen=True)
class CompanionRole:
    """A name that is a layout's companion: its layout, companion and stem."""

    layout: Layout
    companion: Companion
    stem: str


@dataclass(frozen=True)
class Detection:
    """A scheme found in a checkpoint's config: the family, where it was found,
    its groups (each with targets and layouts), the exclusion list with its
    producer's matching rules, module-level extras (KV-cache scales), and the
    problems of the config itself."""

    family: str
    method: str
    source: str
    config: Mapping[str, Any]
    groups: tuple[Group, ...]
    exclusions: Rules = field(default_factory=lambda: Rules(key=""))
    extras: tuple[Extra, ...] = ()
    problems: tuple[Problem, ...] = ()
    depth: str = "deep"
    _memo: dict[tuple[str, str], Target] = field(default_factory=dict, compare=False,
                                                   repr=False)

    @property
    def layouts(self) -> tuple[Layout, ...]:
        out: list[Layout] = []
        for g in self.groups:
            out += [lay for lay in g.layouts if lay not in out]
        return tuple(out)

    # ---- names ---------------------------------------------------------------------------

    def weight_roles(self, name: str) -> list[WeightRole]:
        """Every (layout, group, stem) whose weight naming ``name`` fits."""
        out = []
        for g in self.groups:
            for lay in g.layouts:
                stem = lay.weight_stem(name)
                if stem is not None:
                    out.append(WeightRole(lay, g, stem))
        return out

    def companion_roles(self, name: str) -> list[CompanionRole]:
        """Every (layout, companion, stem) whose companion naming ``name`` fits."""
        out: list[CompanionRole] = []
        for lay in self.layouts:
            hit = lay.companion_of(name)
            if hit is not None and all(
                    (r.layout.name, r.stem) != (lay.name, hit[1]) for r in out):
                out.append(CompanionRole(lay, hit[0], hit[1]))
        return out

    def extra_of(self, name: str) -> tuple[Extra, str] | None:
        """(extra, owning module) if ``name`` is a module-level quantization tensor."""
        for e in self.extras:
            owner = e.owner_of(name)
            if owner is not None:
                return e, owner
        return None

    def layout_for(self, weight: str, dtype: str | None = None,
                   have: Callable[[str], bool] | None = None, kind: str = "linear"
                   ) -> Layout | None:
        """The layout a stored weight (name or template) follows: the group that
        targets its module first, then any group whose naming and dtype fit."""
        roles = self.weight_roles(weight)
        if not roles:
            return None
        target = self.target(roles[0].layout.module_of(roles[0].stem), kind)
        order = sorted(self.groups, key=lambda g: g is not target.group)
        for g in order:
            lay = g.layout_for(weight, dtype, have)
            if lay is not None:
                return lay
        return None

    def parameters(self, name: str, dtype: str, shape: Sequence[int]) -> int:
        """Logical parameters of one stored tensor (name or template): a packed
        weight counts its values, companions / extras / E8M0 tensors count 0."""
        if dtype in SCALE_ONLY_DTYPES:
            return 0
        lay = self.layout_for(name, dtype)
        if lay is not None:
            return lay.parameters(shape)
        if self.companion_roles(name) or self.extra_of(name) is not None:
            return 0
        if name.rpartition(".")[2] in AUXILIARY_PARAMS:
            return 0
        return int(math.prod(shape))

    # ---- targeting -----------------------------------------------------------------------

    def target(self, module: str, kind: str = "linear") -> Target:
        """Whether the config quantizes ``module`` (a name or a template), with
        which group and entry, and which exclusion entry keeps it out. ``kind``
        is the module's kind (``linear``, ``embedding``, ``other``): class-name
        targets (``Linear``) and producers' defaults depend on it."""
        key = (module, kind)
        if key in self._memo:
            return self._memo[key]
        best: tuple[Group, Hit] | None = None
        for g in self.groups:
            hit = g.targets.match(module, kind)
            if hit is not None and (best is None or hit_rank(hit) < hit_rank(best[1])):
                best = g, hit
        excluded = self.exclusions.match(module) if self.exclusions else None
        out = Target(excluded_by=excluded) if best is None else Target(best[0], best[1], excluded)
        self._memo[key] = out
        return out

    def target_template(self, template: str, kind: str = "linear",
                        numbers: Collection[str] | None = None) -> Target | None:
        """:meth:`target` for every name of a module template at once, or None
        when the answer depends on the layer / expert numbers (then call
        :meth:`target` for the template's names). ``numbers``: the integers the
        checkpoint's names hold, when known (fewer probes, see ``probe_names``)."""
        if SLOT not in template.split("."):
            return self.target(template, kind)
        entries = [e for g in self.groups for e in g.targets.entries]
        entries += relevant(self.exclusions.style, self.exclusions.entries
                            + self.exclusions.defaults, template)
        seen = {self.target(n, kind) for n in probe_names(template, entries, numbers)}
        return seen.pop() if len(seen) == 1 else None

    def exclusion_template(self, template: str, numbers: Collection[str] | None = None
                           ) -> Decision:
        """The exclusion entry shared by every name of a template (see :class:`Rules`)."""
        return (self.exclusions.match_template(template, numbers) if self.exclusions
                else Decision(True))

    def other_convention(self, name: str) -> tuple[str, str] | None:
        """(stem, suffix) when ``name`` is a scale in another convention than any
        this scheme declares (a ``.weight_scale`` in a ``weight_scale_inv``
        checkpoint): the mixed-conventions case."""
        declared = {c.suffix for lay in self.layouts for c in lay.companions}
        for suffix in sorted(SCALE_CONVENTIONS, key=len, reverse=True):
            if name.endswith(suffix) and suffix not in declared:
                stem = name[: len(name) - len(suffix)]
                return (stem, suffix) if stem else None
        return None

    def fused_companions(self) -> tuple[str, ...]:
        """Companion suffixes whose values fused siblings (``fused_sibling``) must share."""
        out: list[str] = []
        for lay in self.layouts:
            out += [c.suffix for c in lay.companions if c.fused_equal and c.suffix not in out]
        return tuple(out)


# ---- where schemes are declared ----------------------------------------------------------

CONFIG: Final = "config.json"
HF_QUANT_CONFIG: Final = "hf_quant_config.json"
METADATA: Final = "safetensors __metadata__"


@dataclass(frozen=True)
class Sources:
    """The inputs detection reads: config.json, hf_quant_config.json (ModelOpt),
    and the safetensors ``__metadata__`` maps (torchao)."""

    config: Mapping[str, Any] | None = None
    hf_quant_config: Mapping[str, Any] | None = None
    metadata: Mapping[str, str] | None = None

    def quantization_configs(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """(key path, mapping) of ``quantization_config`` and
        ``text_config.quantization_config`` in config.json, in that order."""
        cfg = self.config
        if not isinstance(cfg, Mapping):
            return
        q = cfg.get("quantization_config")
        if isinstance(q, Mapping):
            yield "quantization_config", q
        text = cfg.get("text_config")
        if isinstance(text, Mapping):
            tq = text.get("quantization_config")
            if isinstance(tq, Mapping):
                yield "text_config.quantization_config", tq

    def top(self, key: str) -> Any:
        """A top-level config.json value, or text_config's."""
        cfg = self.config
        if not isinstance(cfg, Mapping):
            return None
        if key in cfg:
            return cfg[key]
        text = cfg.get("text_config")
        return text.get(key) if isinstance(text, Mapping) else None

    def quant_method(self) -> tuple[str, Mapping[str, Any], str] | None:
        """(lower-cased quant_method, its quantization_config, key path) of the
        first quantization_config that names one."""
        for key, q in self.quantization_configs():
            m = q.get("quant_method")
            if isinstance(m, str):
                return m.strip().lower(), q, key
        return None


@dataclass(frozen=True)
class Family:
    """A scheme family: ``detect(sources)`` returns its Detection or None.
    ``priority``: lower is tried first (DeepSeek-V4 before the generic fp8)."""

    name: str
    title: str
    depth: str
    priority: int
    detect: Callable[[Sources], Detection | None]


# ---- helpers shared by the family modules ------------------------------------------------


def is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def positive_int(q: Mapping[str, Any], key: str, where: str, problems: list[Problem],
                 source: str = CONFIG, default: int | None = None) -> int | None:
    """``q[key]`` as a positive integer; a problem naming the key otherwise."""
    v = q.get(key, default)
    if v is None:
        return None
    if is_int(v) and v > 0:
        return int(v)
    what = ("a list" if isinstance(v, list) else "zero" if v == 0 and is_int(v)
            else "negative" if is_int(v) and v < 0 else f"a {type(v).__name__}")
    problems.append(Problem(source, f"{where}.{key}",
                            f"{v!r} is {what}; expected a positive integer"))
    return None


def block_pair(v: object, key: str, problems: list[Problem], source: str = CONFIG,
               text: bool = False) -> tuple[int, int] | None:
    """A ``[rows, cols]`` block size within the limits; a problem naming the key
    otherwise. ``text`` accepts compressed-tensors' older ``"128x128"`` spelling."""
    if text and isinstance(v, str) and re.fullmatch(r"\d{1,7}x\d{1,7}", v):
        a, b = v.split("x")
        v = [int(a), int(b)]
    if not isinstance(v, list | tuple) or len(v) != 2 or not all(is_int(x) for x in v):
        problems.append(Problem(source, key, f"{v!r} is not two integers [rows, cols]"))
        return None
    r, c = int(v[0]), int(v[1])
    if r <= 0 or c <= 0:
        which = "zero" if 0 in (r, c) else "negative"
        problems.append(Problem(source, key, f"{list(v)!r} has a block of {which} size"))
        return None
    if r > MAX_BLOCK_DIM or c > MAX_BLOCK_DIM:
        problems.append(Problem(source, key, f"{list(v)!r}: each size must be between 1 and "
                                f"{MAX_BLOCK_DIM:,}"))
        return None
    if r * c < MIN_BLOCK_ELEMENTS:
        problems.append(Problem(source, key, f"{list(v)!r}: a block of fewer than "
                                f"{MIN_BLOCK_ELEMENTS} elements is no block quantization"))
        return None
    return r, c


def string_list(v: object, key: str, problems: list[Problem], source: str = CONFIG
                ) -> tuple[str, ...]:
    """A list of strings (None -> empty); a problem naming the key otherwise."""
    if v is None:
        return ()
    if isinstance(v, str):
        problems.append(Problem(source, key, f"{v!r} is a string; expected a list of names"))
        return (v,)
    if not isinstance(v, list | tuple):
        problems.append(Problem(source, key, f"{v!r} is not a list"))
        return ()
    bad = [x for x in v[:MAX_MODULE_ENTRIES] if not isinstance(x, str)]
    if bad:
        problems.append(Problem(source, key, f"non-string entries {bad[:5]!r}"))
    if len(v) > MAX_MODULE_ENTRIES:
        problems.append(Problem(source, key, f"{len(v):,} entries, beyond the limit of "
                                f"{MAX_MODULE_ENTRIES:,}: the first {MAX_MODULE_ENTRIES:,} "
                                "are read"))
    return tuple(x for x in v[:MAX_MODULE_ENTRIES] if isinstance(x, str))


def linear_modules(name: str, kind: str) -> bool:
    """The default target of most producers: every linear layer."""
    return kind == "linear"
