"""Templates -> component, role, kind, slots; numpy columns for many tensors at once."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from . import rules as R
from .components import (
    ComponentSpec,
    component_spec,
    config_int,
    config_section,
    decoder_stack,
    stack_prefix,
    tower_root,
)
from .rules import (
    AUX,
    COMPONENT_CODE,
    DECODER,
    EMBEDDING,
    ENCODER,
    GENERIC,
    KIND_CODE,
    LM_HEAD,
    MTP,
    OTHER,
    ROLE_CODE,
    WEIGHT,
    Family,
    Rule,
)

_NUMERIC = re.compile(r"0|[1-9][0-9]{0,17}")
SLOT = "{}"


def _component_regex(component: str) -> str:
    return re.escape(component).replace(r"\*", r"[^.]*")


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A rule pattern as a regex over a template (see ``rules``)."""
    anchored = pattern.startswith("^")
    body = r"\.".join(_component_regex(c) for c in pattern.removeprefix("^").split("."))
    return re.compile(("^" if anchored else r"(?:^|\.)") + body + r"(?:\.|$)")


def _compile_glob(glob: str) -> re.Pattern[str]:
    return re.compile(_component_regex(glob))


_MTP_MARKER_RES = tuple((compile_pattern(m), m) for m in R.MTP_MARKERS)
_PARAM_KIND_RES = tuple((_compile_glob(g), kind) for g, kind in R.PARAM_KINDS)
_NON_LINEAR_RES = tuple(_compile_glob(g) for g in R.NON_LINEAR_MODULES)
_GENERIC_RES = tuple((compile_pattern(p), p, role) for p, role in (*R.COMMON_RULES,
                                                                   *R.GENERIC_RULES))
_TOWER_RES = tuple((compile_pattern(p), p, role) for p, role in R.TOWER_RULES) + _GENERIC_RES
# A parameter named after its projection: gate_up_proj, gate_up_proj_blocks, ...
_PROJ_PARAM = re.compile(r"(.+_proj)(?:_blocks|_scales|_bias)?")


# ---- templates -----------------------------------------------------------------------


def template_of(name: str) -> tuple[str, tuple[int, ...]]:
    """Split a name into its template and integers, exactly as the C++ core does.

    A component is taken out when it is 1-18 ASCII digits without a leading zero
    (so the name can be rebuilt and the value fits int64): ``w1``, ``fc1``,
    ``layer0`` and ``007`` stay as they are. A name with a literal ``{}``
    component is its own template, with no integers (it could not be rebuilt).
    """
    parts = name.split(".")
    if SLOT in parts:
        return name, ()
    numbers: list[int] = []
    for i, part in enumerate(parts):
        if _NUMERIC.fullmatch(part):
            numbers.append(int(part))
            parts[i] = SLOT
    return ".".join(parts), tuple(numbers)


# ---- one template ----------------------------------------------------------------------


@dataclass(frozen=True)
class TensorClass:
    """What a template is.

    ``component`` is one of ``COMPONENTS`` (decoder, vision, audio, projector,
    mtp, encoder, aux). ``part`` is the role within the component (attention,
    mlp, norm, embedding, ...; ``mtp`` for an MTP module's own projections,
    ``projector`` for a tower's patch merger). ``role`` is the flat role the
    report and the checks group by: ``part`` in the decoder, the component's
    name elsewhere. A decoder-layer template can still become ``mtp`` for layer
    indices past ``num_hidden_layers`` (see ``Taxonomy``).
    ``layer_slot`` / ``expert_slot`` index the template's integers.
    ``rule`` is the pattern that decided the part (None: nothing matched).
    ``scope`` is the prefix down to a tower's marker (``model.embed_tokens_extend.
    image_embed.``): the part rules and ``is_linear`` read only what follows it,
    so a wrapper's name (Phi-4-multimodal's ``*_embed``) decides no part.
    """

    template: str
    role: str
    part: str
    kind: str
    projection: str | None
    layer_slot: int | None
    expert_slot: int | None
    rule: str | None
    component: str = DECODER
    scope: str = ""

    @property
    def mtp_by_layer(self) -> bool:
        """Whether a layer index past the decoder stack makes this an MTP tensor."""
        return self.layer_slot is not None and self.component == DECODER


def is_linear(tensor_class: TensorClass) -> bool:
    """Whether the tensor is a linear layer's weight, i.e. a candidate for FP8.

    Yes: attention / MLA / expert / shared / dense MLP projections, routers,
    lm_head, MTP projections, tower and projector linears. No: embeddings, norms,
    convs, biases, scales, loose parameters (sinks) and unknown tensors.
    """
    if tensor_class.kind != WEIGHT or tensor_class.part not in R.LINEAR_PARTS:
        return False
    modules = tensor_class.template[len(tensor_class.scope):].split(".")[:-1]
    return not any(r.fullmatch(m) for m in modules for r in _NON_LINEAR_RES)


def _kind_and_projection(components: list[str]) -> tuple[str, str | None]:
    param = components[-1]
    kind = next((k for r, k in _PARAM_KIND_RES if r.fullmatch(param)), OTHER)
    if m := _PROJ_PARAM.fullmatch(param):
        return kind, m.group(1)
    # bitsandbytes hangs its state under the weight: att_proj.weight.absmax
    modules = [c for c in components[:-1] if c not in R.QUANT_STATE_MODULES]
    module = modules[-1] if modules else None
    if module is None or module == SLOT or module in R.CONTAINERS:
        return kind, None
    return kind, module


def _slots(components: list[str]) -> tuple[int | None, int | None]:
    layer_slot: int | None = None
    expert_slot: int | None = None
    slot = 0
    for prev, comp in zip(["", *components[:-1]], components, strict=True):
        if comp != SLOT:
            continue
        if layer_slot is None and prev in R.LAYER_CONTAINERS:
            layer_slot = slot
        elif expert_slot is None and prev in R.EXPERT_CONTAINERS:
            expert_slot = slot
        slot += 1
    return layer_slot, expert_slot


@dataclass(frozen=True)
class Resolved:
    """One tensor name, fully resolved (``role`` includes the MTP-by-layer rule)."""

    name: str
    role: str
    layer: int | None
    expert: int | None
    tensor_class: TensorClass
    component: str = DECODER


# ---- numpy columns ------------------------------------------------------------------------

Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class TemplateTable:
    """Per-template columns for numpy resolution of many tensors at once.

    Index every column with a tensor's template id. Slots are -1 where absent.
    ``component`` holds codes into ``COMPONENTS`` (0 = decoder); ``role`` and
    ``part`` codes into ``ROLES``.
    """

    classes: tuple[TensorClass, ...]
    role: npt.NDArray[np.uint8]
    part: npt.NDArray[np.uint8]
    kind: npt.NDArray[np.uint8]
    component: npt.NDArray[np.uint8]
    layer_slot: Int64Array
    expert_slot: Int64Array
    linear: npt.NDArray[np.bool_]
    mtp_by_layer: npt.NDArray[np.bool_]
    mtp_first_layer: int | None

    def layer_index(
        self, template_ids: npt.ArrayLike, ints: npt.ArrayLike, int_starts: npt.ArrayLike
    ) -> Int64Array:
        return _pick(self.layer_slot, template_ids, ints, int_starts)

    def expert_index(
        self, template_ids: npt.ArrayLike, ints: npt.ArrayLike, int_starts: npt.ArrayLike
    ) -> Int64Array:
        return _pick(self.expert_slot, template_ids, ints, int_starts)

    def _past_stack(self, ids: npt.NDArray[np.intp],
                    layer_index: npt.ArrayLike | None) -> npt.NDArray[np.bool_] | None:
        if self.mtp_first_layer is None or layer_index is None:
            return None
        layers = np.asarray(layer_index, dtype=np.int64)
        past: npt.NDArray[np.bool_] = self.mtp_by_layer[ids] & (layers >= self.mtp_first_layer)
        return past

    def roles(
        self, template_ids: npt.ArrayLike, layer_index: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.uint8]:
        """Role code per tensor; ``layer_index`` (-1 = none) enables the MTP-by-layer rule."""
        return self._per_tensor(self.role, ROLE_CODE[MTP], template_ids, layer_index)

    def components(
        self, template_ids: npt.ArrayLike, layer_index: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.uint8]:
        """Component code per tensor (into ``COMPONENTS``), with the MTP-by-layer rule."""
        return self._per_tensor(self.component, COMPONENT_CODE[MTP], template_ids, layer_index)

    def _per_tensor(self, column: npt.NDArray[np.uint8], mtp: int, template_ids: npt.ArrayLike,
                    layer_index: npt.ArrayLike | None) -> npt.NDArray[np.uint8]:
        """A per-template column per tensor, ``mtp`` where a layer lies past the stack."""
        ids = np.asarray(template_ids, dtype=np.intp)
        out = column[ids]
        past = self._past_stack(ids, layer_index)
        if past is not None:
            out[past] = mtp
        return out

    def unknown_templates(self) -> list[str]:
        """Templates no rule knows (role ``other``): what a report should list."""
        return [c.template for c in self.classes if c.role == OTHER]

    def with_kinds(self, kinds: Mapping[int, str]) -> TemplateTable:
        """This table with the kind of some templates (id -> kind) decided by
        someone who knows more than the names: a quantization scheme says which
        tensors are its weights and which its companions (``linear`` follows)."""
        if not kinds:
            return self
        classes = list(self.classes)
        kind, linear = self.kind.copy(), self.linear.copy()
        for t, k in kinds.items():
            classes[t] = replace(classes[t], kind=k)
            kind[t] = KIND_CODE[k]
            linear[t] = is_linear(classes[t])
        return replace(self, classes=tuple(classes), kind=kind, linear=linear)


def _or_minus_one(slot: int | None) -> int:
    return -1 if slot is None else slot


def _pick(
    slots: Int64Array, template_ids: npt.ArrayLike, ints: npt.ArrayLike, int_starts: npt.ArrayLike
) -> Int64Array:
    ids = np.asarray(template_ids, dtype=np.intp)
    slot = slots[ids]
    starts_all = np.asarray(int_starts, dtype=np.intp)
    starts = starts_all[: len(ids)]
    # A name with a literal "{}" has a slot in its template but no integer.
    has = (slot >= 0) & (slot < starts_all[1 : len(ids) + 1] - starts)
    out = np.full(len(ids), -1, dtype=np.int64)
    out[has] = np.asarray(ints, dtype=np.int64)[starts[has] + slot[has]]
    return out


# ---- family selection -----------------------------------------------------------------------

_BY_MODEL_TYPE = {t: f for f in R.FAMILIES for t in f.model_types}
_BY_ARCHITECTURE = {a: f for f in R.FAMILIES for a in f.architectures}
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _unnamed_tower(root: str, templates: Sequence[str]) -> str:
    """A tower no marker names: vision if a module under ``root`` embeds image
    patches, else ``aux``."""
    under = (t for t in templates if t.startswith(root + "."))
    return R.VISION if any(not R.PATCH_EMBEDDINGS.isdisjoint(t.split(".")) for t in under) else AUX


def _known_family(config: Mapping[str, Any]) -> Family | None:
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type in _BY_MODEL_TYPE:
        return _BY_MODEL_TYPE[model_type]
    architectures = config.get("architectures")
    if isinstance(architectures, list):
        for arch in architectures:
            if isinstance(arch, str) and arch in _BY_ARCHITECTURE:
                return _BY_ARCHITECTURE[arch]
    for key in ("text_config", "language_config", "llm_config"):
        sub = config.get(key)
        if isinstance(sub, Mapping) and (found := _known_family(sub)) is not None:
            return found
    return None


def select_family(config: Mapping[str, Any] | None) -> Family:
    """The family of a config.json.

    Known ``model_type`` / ``architectures`` (then a wrapper's text config) give
    their family. An unknown one keeps its ``model_type`` as the family name with
    the generic rules (so a farm can still group by it); no usable model_type is
    ``generic``.
    """
    if not isinstance(config, Mapping):
        return GENERIC
    known = _known_family(config)
    if known is not None:
        return known
    model_type = config.get("model_type")
    if isinstance(model_type, str) and _SAFE_NAME.fullmatch(model_type):
        return replace(GENERIC, name=model_type)
    return GENERIC


# ---- the taxonomy ----------------------------------------------------------------------------


class Taxonomy:
    """Classifies templates for one model family (and one config).

    ``classify`` / ``resolve`` look at one name: components come from name
    markers only. ``table`` sees every template of a checkpoint and adds the
    stack rule (a stack the decoder's config does not describe is a tower).

    Safe to share between threads: a race on the memo only classifies a template twice.
    """

    def __init__(self, family: Family = GENERIC, mtp_first_layer: int | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        self.family: str = family.name
        self.mtp_first_layer = mtp_first_layer
        self.config = config if isinstance(config, Mapping) else None
        self.encoder_decoder = family.encoder_decoder or bool(
            self.config is not None and self.config.get("is_encoder_decoder") is True)
        rules: tuple[Rule, ...] = (*R.COMMON_RULES, *family.rules, *R.GENERIC_RULES)
        self._rules = tuple((compile_pattern(p), p, role) for p, role in rules)
        markers = (*family.components, *R.COMPONENT_MARKERS)
        if self.encoder_decoder:
            markers += tuple((m, ENCODER) for m in R.ENCODER_MARKERS)
        self._markers = tuple((compile_pattern(p), p.startswith("^"), comp)
                              for p, comp in markers)
        self._memo: dict[str, TensorClass] = {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Taxonomy:
        """Family from config.json (missing -> generic), plus its MTP layout."""
        if not isinstance(config, Mapping):
            return cls()
        sections = (config_section(config, DECODER), config)
        n_layers = next((n for s in sections
                         if (n := config_int(s, R.LAYER_KEYS[DECODER])) is not None), None)
        declares_mtp = any((config_int(s, R.MTP_COUNT_KEYS) or 0) > 0 for s in sections)
        return cls(select_family(config), n_layers if declares_mtp else None, config)

    # ---- config sections ----

    def component_config(self, component: str) -> Mapping[str, Any] | None:
        """config.json's section for ``component`` (see ``components.config_section``)."""
        return config_section(self.config, component, self.encoder_decoder)

    def component_spec(self, component: str) -> ComponentSpec:
        """What config.json says of ``component``: layers, hidden size, vocabulary, experts."""
        return component_spec(self.config, component, self.encoder_decoder)

    # ---- one template ----

    @property
    def cache_size(self) -> int:
        return len(self._memo)

    def classify(self, template: str) -> TensorClass:
        cached = self._memo.get(template)
        if cached is None:
            cached = self._memo[template] = self._classify(template, None)
        return cached

    def _marker_component(self, template: str) -> tuple[str, str]:
        """The component a template's leftmost marker names, and the prefix down to
        the end of that marker (the scope, see ``TensorClass``)."""
        best: tuple[int, int, str] | None = None
        for regex, anchored, comp in self._markers:
            m = regex.search(template)
            if m is not None and (best is None or m.start() < best[0]):
                # A top-level marker (^pooler, ^mlp1) or one that directly owns the
                # parameter (visual.proj) stays in view: it is the module, not a wrapper.
                wraps = not anchored and "." in template[m.end():]
                best = (m.start(), m.end() if wraps else m.start(), comp)
        if best is not None:
            return best[2], template[:best[1]]
        if any(r.search(template) for r, _ in _MTP_MARKER_RES):
            return MTP, ""
        return DECODER, ""

    def _classify(self, template: str, component: str | None) -> TensorClass:
        components = template.split(".")
        comp, scope = (self._marker_component(template) if component is None
                       else (component, ""))
        if comp in (DECODER, MTP, ENCODER):
            table, scope = self._rules, ""
        else:
            table = _GENERIC_RES if comp == R.PROJECTOR else _TOWER_RES
        # Anchored rules (^head, ^score) speak of the checkpoint's top level.
        local = template[len(scope):]
        part, rule = next(((role, p) for regex, p, role in table
                           if regex.search(template if p.startswith("^") else local)),
                          (OTHER, None))
        if part == OTHER and comp == MTP:
            part, rule = MTP, next((m for r, m in _MTP_MARKER_RES if r.search(template)), None)
        if part == OTHER and comp in R.DEFAULT_PARTS:
            part = R.DEFAULT_PARTS[comp]
        kind, projection = _kind_and_projection(components)
        layer_slot, expert_slot = _slots(components)
        return TensorClass(
            template=template,
            role=part if comp == DECODER else comp,
            part=part,
            kind=kind,
            projection=projection,
            layer_slot=layer_slot,
            expert_slot=expert_slot,
            rule=rule,
            component=comp,
            scope=scope,
        )

    def resolve(self, name: str) -> Resolved:
        """One name (name markers only: the stack rule needs every template, see ``table``)."""
        template, numbers = template_of(name)
        tc = self.classify(template)
        layer = None if tc.layer_slot is None else numbers[tc.layer_slot]
        expert = None if tc.expert_slot is None else numbers[tc.expert_slot]
        past_stack = (
            self.mtp_first_layer is not None and layer is not None and layer >= self.mtp_first_layer
        )
        mtp = past_stack and tc.mtp_by_layer
        return Resolved(name=name, role=MTP if mtp else tc.role, layer=layer, expert=expert,
                        tensor_class=tc, component=MTP if mtp else tc.component)

    # ---- every template of a checkpoint ----

    def classes(self, templates: Sequence[str]) -> tuple[TensorClass, ...]:
        """Each template's class, with the stack rule applied over all of them.

        The decoder's stack is chosen among the stacks no marker claims; every
        other stack's root (see ``components.tower_root``) takes the decoder-side
        templates under it: into that stack's component when a marker named it
        (Phi-3-vision's img_projection beside its vision_model), else into ``aux``.
        """
        classes = [self.classify(t) for t in templates]
        stacks: Counter[str] = Counter()
        towers: dict[str, str] = {}
        embedding_parents: set[str] = set()
        for c in classes:
            prefix = stack_prefix(c.template)
            if c.component == DECODER:
                if prefix is not None:
                    stacks[prefix] += 1
                elif c.part in (EMBEDDING, LM_HEAD):
                    embedding_parents.add(c.template.rpartition(".")[0].rpartition(".")[0])
            elif prefix is not None and c.component != MTP:
                towers.setdefault(prefix, c.component)
        main = decoder_stack(stacks, embedding_parents)
        if main is None:
            return tuple(classes)
        towers.update((s, _unnamed_tower(tower_root(s, main), templates))
                      for s in stacks if s != main)
        roots = sorted(((tower_root(s, main) + ".", comp) for s, comp in towers.items()),
                       key=lambda rc: -len(rc[0]))  # the deepest root wins
        if not roots:
            return tuple(classes)
        out = []
        for c in classes:
            comp = None
            if c.component == DECODER:
                comp = next((comp for root, comp in roots if c.template.startswith(root)), None)
            out.append(c if comp is None else self._classify(c.template, comp))
        return tuple(out)

    def table(self, templates: Sequence[str]) -> TemplateTable:
        classes = self.classes(templates)
        return TemplateTable(
            classes=classes,
            role=np.array([ROLE_CODE[c.role] for c in classes], dtype=np.uint8),
            part=np.array([ROLE_CODE[c.part] for c in classes], dtype=np.uint8),
            kind=np.array([KIND_CODE[c.kind] for c in classes], dtype=np.uint8),
            component=np.array([COMPONENT_CODE[c.component] for c in classes], dtype=np.uint8),
            layer_slot=np.array([_or_minus_one(c.layer_slot) for c in classes], dtype=np.int64),
            expert_slot=np.array([_or_minus_one(c.expert_slot) for c in classes], dtype=np.int64),
            linear=np.array([is_linear(c) for c in classes], dtype=np.bool_),
            mtp_by_layer=np.array([c.mtp_by_layer for c in classes], dtype=np.bool_),
            mtp_first_layer=self.mtp_first_layer,
        )

    def roles_for(
        self,
        templates: Sequence[str],
        template_ids: npt.ArrayLike,
        layer_index: npt.ArrayLike | None = None,
    ) -> npt.NDArray[np.uint8]:
        """Role code per tensor (see ``TemplateTable.roles``)."""
        return self.table(templates).roles(template_ids, layer_index)

    def unknown_templates(self, templates: Sequence[str]) -> list[str]:
        """The templates of a checkpoint that no rule knows (role ``other``)."""
        return self.table(templates).unknown_templates()


__all__ = ["Resolved", "TemplateTable", "TensorClass", "Taxonomy", "compile_pattern",
           "is_linear", "select_family", "template_of"]
