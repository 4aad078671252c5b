"""Tensor name -> role, layer, expert, projection and kind.

A 96k-tensor MoE checkpoint has only a few dozen *templates*: names with every
numeric dotted component replaced by ``{}``
(``model.layers.{}.block_sparse_moe.experts.{}.w1.weight``). The C++ core hands
Python each tensor's template id and its integers, so this module classifies
templates once (memoised) and resolves every tensor with numpy gathers.

API
---
``template_of(name) -> (template, integers)``
    Pure-Python equivalent of the core's template split.
``Taxonomy.from_config(config: Mapping | None) -> Taxonomy``
    Picks the family from config.json's ``model_type`` / ``architectures``
    (then ``text_config``'s), else ``"generic"``. ``.family`` is its name.
``Taxonomy.classify(template) -> TensorClass``
    Memoised; ``.cache_size`` is the number of templates classified so far.
``Taxonomy.resolve(name) -> Resolved``
    One name, including the layer-dependent MTP rule (tests, small inputs).
``Taxonomy.table(templates) -> TemplateTable``
    Per-template numpy columns (role, part, kind, slots, linear, MTP-by-layer).
``TemplateTable.layer_index(template_ids, ints, int_starts)`` / ``.expert_index``
    The core's columns (``Shard.template_ids``, ``.ints``, ``.int_starts``:
    tensor i's integers are ``ints[int_starts[i]:int_starts[i + 1]]``); returns
    int64 per tensor, -1 where the template has no such slot.
``TemplateTable.roles(template_ids, layer_index)`` /
``Taxonomy.roles_for(templates, template_ids, layer_index)``
    Role codes (uint8, index into ``ROLES``) per tensor, no per-tensor Python.
``is_linear(tensor_class) -> bool``
    Whether the tensor is the weight of a linear layer, i.e. could be FP8.

Roles (``ROLES``; code = position): ``other`` (0, never dropped), ``embedding``,
``attention``, ``moe_expert``, ``shared_expert``, ``router``, ``mlp``,
``norm``, ``lm_head``, ``mtp``, ``vision``. Kinds (``KINDS``): ``other``,
``weight``, ``scale``, ``bias``.

MTP: a template that names an MTP module (``mtp.*``, ``model.mtp_layers.*``,
DeepSeek's ``eh_proj`` / ``enorm`` / ``hnorm`` / ``shared_head``) has role
``mtp``. DeepSeek-V3 and GLM-4.5 also put a full decoder layer at
``model.layers.{num_hidden_layers}``: when the config declares MTP modules,
any decoder-layer tensor whose layer index is >= ``num_hidden_layers`` becomes
``mtp`` too. ``TensorClass.part`` keeps the role the tensor has inside the MTP
module (attention, moe_expert, norm, ...; ``mtp`` for its own projections).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

# ---- roles and kinds --------------------------------------------------------

OTHER: Final = "other"
EMBEDDING: Final = "embedding"
ATTENTION: Final = "attention"
MOE_EXPERT: Final = "moe_expert"
SHARED_EXPERT: Final = "shared_expert"
ROUTER: Final = "router"
MLP: Final = "mlp"
NORM: Final = "norm"
LM_HEAD: Final = "lm_head"
MTP: Final = "mtp"
VISION: Final = "vision"

# OTHER first so that code 0 (numpy's zero fill) means "unknown".
ROLES: Final[tuple[str, ...]] = (
    OTHER,
    EMBEDDING,
    ATTENTION,
    MOE_EXPERT,
    SHARED_EXPERT,
    ROUTER,
    MLP,
    NORM,
    LM_HEAD,
    MTP,
    VISION,
)
ROLE_CODE: Final[Mapping[str, int]] = {role: code for code, role in enumerate(ROLES)}

WEIGHT: Final = "weight"
SCALE: Final = "scale"
BIAS: Final = "bias"
KINDS: Final[tuple[str, ...]] = (OTHER, WEIGHT, SCALE, BIAS)
KIND_CODE: Final[Mapping[str, int]] = {kind: code for code, kind in enumerate(KINDS)}

SLOT: Final = "{}"
_NUMERIC: Final = re.compile(r"0|[1-9][0-9]{0,17}")

# ---- rule tables --------------------------------------------------------------
# A pattern is dotted components matched as whole components, contiguously,
# anywhere in the template ("mlp.gate" matches "model.layers.{}.mlp.gate.weight"
# but not "...mlp.gate_proj.weight"). "*" inside a component matches any run of
# characters except "."; a leading "^" anchors the pattern at the start.
# Rules are ordered: the first match wins.
Rule = tuple[str, str]

# Checked before any family rule: a vision tower holds names (self_attn, mlp,
# layers) that would otherwise pass for the language model's.
VISION_RULES: Final[tuple[Rule, ...]] = (
    ("visual", VISION),  # Qwen2-VL / Qwen2.5-VL
    ("vision_tower", VISION),  # Llava, Gemma 3
    ("vision_model", VISION),  # Mllama, Idefics, Llama 4
    ("multi_modal_projector", VISION),
    ("mm_projector", VISION),
    ("image_newline", VISION),  # Llava-NeXT
)

# Components that mark a template as belonging to an MTP module by name alone.
MTP_MARKERS: Final[tuple[str, ...]] = (
    "mtp",  # Qwen3-Next: mtp.layers.{}.*, mtp.fc
    "mtp_*",  # MiMo: model.mtp_layers.{}.*
    "eh_proj",  # DeepSeek-V3 / GLM-4.5: model.layers.{N}.eh_proj
    "enorm",
    "hnorm",
    "shared_head",
)

# The tail every decoder-only family shares.
_DECODER_TAIL: Final[tuple[Rule, ...]] = (
    ("self_attn", ATTENTION),  # q/k/v/o, q_norm/k_norm, MLA, sinks
    ("embed_tokens", EMBEDDING),
    ("*norm", NORM),  # input/post_attention/pre_feedforward/final, enorm
    ("mlp", MLP),  # dense gate/up/down
    ("lm_head", LM_HEAD),
    ("shared_head.head", LM_HEAD),  # DeepSeek MTP's own output head
)

_DEEPSEEK_RULES: Final[tuple[Rule, ...]] = (
    ("mlp.gate", ROUTER),  # gate.weight and gate.e_score_correction_bias
    ("mlp.shared_experts", SHARED_EXPERT),
    ("mlp.experts", MOE_EXPERT),
    *_DECODER_TAIL,
)

_BLOCK_SPARSE_MOE_RULES: Final[tuple[Rule, ...]] = (
    ("block_sparse_moe.gate", ROUTER),  # the router; a dense MLP's is gate_proj
    ("block_sparse_moe.e_score_correction_bias", ROUTER),
    ("block_sparse_moe.experts", MOE_EXPERT),
    *_DECODER_TAIL,
)

_QWEN_MOE_RULES: Final[tuple[Rule, ...]] = (
    ("mlp.shared_expert_gate", ROUTER),
    ("mlp.shared_expert", SHARED_EXPERT),
    ("mlp.gate", ROUTER),
    ("mlp.experts", MOE_EXPERT),
    ("linear_attn", ATTENTION),  # Qwen3-Next gated DeltaNet layers
    *_DECODER_TAIL,
)

_GPT_OSS_RULES: Final[tuple[Rule, ...]] = (
    ("mlp.router", ROUTER),
    ("mlp.experts", MOE_EXPERT),  # fused: experts.gate_up_proj_blocks, no expert index
    *_DECODER_TAIL,
)

# Heuristics for names no family table covers (and the whole table of the
# generic family): the conventions of GPT-2, GPT-NeoX, Mistral's consolidated
# files, DBRX, Llama 4, Jamba and the like.
GENERIC_RULES: Final[tuple[Rule, ...]] = (
    # A bare "gate" is a router only as the direct child of an MoE block.
    ("block_sparse_moe.gate", ROUTER),
    ("mlp.gate", ROUTER),
    ("moe.gate", ROUTER),
    ("router", ROUTER),
    ("shared_expert_gate", ROUTER),
    ("e_score_correction_bias", ROUTER),
    ("shared_experts", SHARED_EXPERT),
    ("shared_expert", SHARED_EXPERT),
    ("experts", MOE_EXPERT),
    ("block_sparse_moe", MOE_EXPERT),
    ("self_attn", ATTENTION),
    ("self_attention", ATTENTION),
    ("attn", ATTENTION),
    ("attention", ATTENTION),
    ("linear_attn", ATTENTION),
    # Before embeddings: pre_fc_norm_embedding, layernorm_embedding are norms.
    ("*norm*", NORM),
    ("ln", NORM),
    ("ln_*", NORM),
    ("lm_head", LM_HEAD),
    ("shared_head.head", LM_HEAD),
    ("embed_out", LM_HEAD),
    ("^output", LM_HEAD),
    ("embed_tokens", EMBEDDING),
    ("embed_in", EMBEDDING),
    ("tok_embeddings", EMBEDDING),
    ("wte", EMBEDDING),
    ("wpe", EMBEDDING),
    ("*embeddings", EMBEDDING),
    ("*embedding", EMBEDDING),
    ("mlp", MLP),
    ("feed_forward", MLP),
    ("ffn", MLP),
    ("fc1", MLP),
    ("fc2", MLP),
)

# Parameter (last component) -> kind; first match wins, no match is OTHER.
PARAM_KINDS: Final[tuple[tuple[str, str], ...]] = (
    ("weight", WEIGHT),
    ("bias", BIAS),
    ("*_scale", SCALE),  # weight_scale, input_scale, k_scale, v_scale
    ("*_scale_inv", SCALE),  # DeepSeek / MiniMax block scales
    ("*_scale_2", SCALE),  # NVFP4
    ("*_scales", SCALE),  # GPT-OSS MXFP4 exponents
    ("scales", SCALE),
    ("scale_weight", SCALE),
    ("*_blocks", WEIGHT),  # GPT-OSS MXFP4 payload
    ("*_proj", WEIGHT),  # fused expert parameters named after the projection
    ("qweight", WEIGHT),
    ("weight_packed", WEIGHT),
    ("*_bias", BIAS),  # e_score_correction_bias, gate_up_proj_bias
)

# A parameter named after its projection: gate_up_proj, gate_up_proj_blocks, ...
_PROJ_PARAM: Final = re.compile(r"(.+_proj)(?:_blocks|_scales|_bias)?")

# Modules that own loose parameters (sinks, e_score_correction_bias, A_log) but
# are not themselves a projection.
CONTAINERS: Final[frozenset[str]] = frozenset(
    {
        "model",
        "self_attn",
        "attn",
        "attention",
        "linear_attn",
        "mlp",
        "block_sparse_moe",
        "moe",
        "experts",
        "feed_forward",
        "ffn",
    }
)
# The integer after one of these is the layer / expert index.
LAYER_CONTAINERS: Final[frozenset[str]] = frozenset(
    {"layers", "layer", "h", "blocks", "block", "mtp_layers"}
)
EXPERT_CONTAINERS: Final[frozenset[str]] = frozenset({"experts"})

# Roles whose weights can be linear layers, and module names that never are.
LINEAR_PARTS: Final[frozenset[str]] = frozenset(
    {ATTENTION, MOE_EXPERT, SHARED_EXPERT, ROUTER, MLP, LM_HEAD, MTP, VISION}
)
NON_LINEAR_MODULES: Final[tuple[str, ...]] = ("*norm*", "ln", "ln_*", "*embed*", "*conv*")


@dataclass(frozen=True)
class Family:
    """A model family: how to recognise its config, and its rule table."""

    name: str
    model_types: frozenset[str]
    architectures: frozenset[str]
    rules: tuple[Rule, ...]


FAMILIES: Final[tuple[Family, ...]] = (
    Family(
        "deepseek_v3",
        frozenset({"deepseek_v3", "deepseek_v2", "kimi_k2"}),
        frozenset({"DeepseekV3ForCausalLM", "DeepseekV2ForCausalLM"}),
        _DEEPSEEK_RULES,
    ),
    Family("glm4_moe", frozenset({"glm4_moe"}), frozenset({"Glm4MoeForCausalLM"}), _DEEPSEEK_RULES),
    Family(
        "minimax_m2",
        frozenset({"minimax_m2"}),
        frozenset({"MiniMaxM2ForCausalLM"}),
        _BLOCK_SPARSE_MOE_RULES,
    ),
    Family(
        "mixtral",
        frozenset({"mixtral"}),
        frozenset({"MixtralForCausalLM"}),
        _BLOCK_SPARSE_MOE_RULES,
    ),
    Family(
        "qwen_moe",
        frozenset({"qwen2_moe", "qwen3_moe", "qwen3_next"}),
        frozenset({"Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "Qwen3NextForCausalLM"}),
        _QWEN_MOE_RULES,
    ),
    Family("gpt_oss", frozenset({"gpt_oss"}), frozenset({"GptOssForCausalLM"}), _GPT_OSS_RULES),
    Family(
        "qwen",
        frozenset({"qwen2", "qwen3"}),
        frozenset({"Qwen2ForCausalLM", "Qwen3ForCausalLM"}),
        _DECODER_TAIL,
    ),
    Family(
        "llama",
        frozenset({"llama", "mistral"}),
        frozenset({"LlamaForCausalLM", "MistralForCausalLM"}),
        _DECODER_TAIL,
    ),
    Family(
        "qwen2_vl",
        frozenset({"qwen2_vl", "qwen2_5_vl"}),
        frozenset({"Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration"}),
        _DECODER_TAIL,
    ),
    Family(
        "llava",
        frozenset({"llava", "llava_next"}),
        frozenset({"LlavaForConditionalGeneration", "LlavaNextForConditionalGeneration"}),
        _DECODER_TAIL,
    ),
)
GENERIC: Final = Family("generic", frozenset(), frozenset(), ())

_BY_MODEL_TYPE: Final = {t: f for f in FAMILIES for t in f.model_types}
_BY_ARCHITECTURE: Final = {a: f for f in FAMILIES for a in f.architectures}

# Config keys that count MTP modules (DeepSeek/GLM/MiMo, MiniMax-M2, Qwen3-Next).
MTP_COUNT_KEYS: Final[tuple[str, ...]] = (
    "num_nextn_predict_layers",
    "num_mtp_modules",
    "mtp_num_hidden_layers",
)


def _component_regex(component: str) -> str:
    return re.escape(component).replace(r"\*", r"[^.]*")


def _compile_pattern(pattern: str) -> re.Pattern[str]:
    anchored = pattern.startswith("^")
    body = r"\.".join(_component_regex(c) for c in pattern.removeprefix("^").split("."))
    return re.compile(("^" if anchored else r"(?:^|\.)") + body + r"(?:\.|$)")


def _compile_glob(glob: str) -> re.Pattern[str]:
    return re.compile(_component_regex(glob))


_MTP_MARKER_RES: Final = tuple((_compile_pattern(m), m) for m in MTP_MARKERS)
_PARAM_KIND_RES: Final = tuple((_compile_glob(g), kind) for g, kind in PARAM_KINDS)
_NON_LINEAR_RES: Final = tuple(_compile_glob(g) for g in NON_LINEAR_MODULES)


# ---- templates ----------------------------------------------------------------


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


# ---- classification -------------------------------------------------------------


@dataclass(frozen=True)
class TensorClass:
    """What a template is.

    ``role`` is the template's role; a decoder-layer template can still become
    ``mtp`` for layer indices past ``num_hidden_layers`` (see ``Taxonomy``).
    ``part`` is the role within an MTP module (equal to ``role`` elsewhere).
    ``layer_slot`` / ``expert_slot`` index the template's integers.
    ``rule`` is the pattern that decided the role (None: nothing matched).
    """

    template: str
    role: str
    part: str
    kind: str
    projection: str | None
    layer_slot: int | None
    expert_slot: int | None
    rule: str | None

    @property
    def mtp_by_layer(self) -> bool:
        """Whether a layer index past the decoder stack makes this an MTP tensor."""
        return self.layer_slot is not None and self.role not in (VISION, MTP)


def is_linear(tensor_class: TensorClass) -> bool:
    """Whether the tensor is a linear layer's weight, i.e. a candidate for FP8.

    Yes: attention / MLA / expert / shared / dense MLP projections, routers,
    lm_head, MTP projections, vision linears. No: embeddings, norms, convs,
    biases, scales, loose parameters (sinks) and unknown tensors.
    """
    if tensor_class.kind != WEIGHT or tensor_class.part not in LINEAR_PARTS:
        return False
    modules = tensor_class.template.split(".")[:-1]
    return not any(r.fullmatch(m) for m in modules for r in _NON_LINEAR_RES)


def _kind_and_projection(components: list[str]) -> tuple[str, str | None]:
    param = components[-1]
    kind = next((k for r, k in _PARAM_KIND_RES if r.fullmatch(param)), OTHER)
    if m := _PROJ_PARAM.fullmatch(param):
        return kind, m.group(1)
    module = components[-2] if len(components) > 1 else None
    if module is None or module == SLOT or module in CONTAINERS:
        return kind, None
    return kind, module


def _slots(components: list[str]) -> tuple[int | None, int | None]:
    layer_slot: int | None = None
    expert_slot: int | None = None
    slot = 0
    for prev, comp in zip(["", *components[:-1]], components, strict=True):
        if comp != SLOT:
            continue
        if layer_slot is None and prev in LAYER_CONTAINERS:
            layer_slot = slot
        elif expert_slot is None and prev in EXPERT_CONTAINERS:
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


Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class TemplateTable:
    """Per-template columns for numpy resolution of many tensors at once.

    Index every column with a tensor's template id. Slots are -1 where absent.
    """

    classes: tuple[TensorClass, ...]
    role: npt.NDArray[np.uint8]
    part: npt.NDArray[np.uint8]
    kind: npt.NDArray[np.uint8]
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

    def roles(
        self, template_ids: npt.ArrayLike, layer_index: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.uint8]:
        """Role code per tensor; ``layer_index`` (-1 = none) enables the MTP-by-layer rule."""
        ids = np.asarray(template_ids, dtype=np.intp)
        roles = self.role[ids]
        if self.mtp_first_layer is not None and layer_index is not None:
            layers = np.asarray(layer_index, dtype=np.int64)
            roles[self.mtp_by_layer[ids] & (layers >= self.mtp_first_layer)] = ROLE_CODE[MTP]
        return roles


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


def _config_int(config: Mapping[str, Any], key: str) -> int | None:
    """An integer from config.json, or from its text_config (multimodal wrappers)."""
    for source in (config, config.get("text_config")):
        if isinstance(source, Mapping):
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def _select_family(config: Mapping[str, Any]) -> Family:
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type in _BY_MODEL_TYPE:
        return _BY_MODEL_TYPE[model_type]
    architectures = config.get("architectures")
    if isinstance(architectures, list):
        for arch in architectures:
            if isinstance(arch, str) and arch in _BY_ARCHITECTURE:
                return _BY_ARCHITECTURE[arch]
    text_config = config.get("text_config")
    return _select_family(text_config) if isinstance(text_config, Mapping) else GENERIC


class Taxonomy:
    """Classifies templates for one model family.

    Safe to share between threads: a race on the memo only classifies a template twice.
    """

    def __init__(self, family: Family = GENERIC, mtp_first_layer: int | None = None) -> None:
        self.family: str = family.name
        self.mtp_first_layer = mtp_first_layer
        rules = (*VISION_RULES, *family.rules, *GENERIC_RULES)
        self._rules = tuple((_compile_pattern(p), p, role) for p, role in rules)
        self._memo: dict[str, TensorClass] = {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Taxonomy:
        """Family from config.json (unknown or missing -> generic), plus its MTP layout."""
        if not isinstance(config, Mapping):
            return cls()
        n_layers = _config_int(config, "num_hidden_layers")
        declares_mtp = any((_config_int(config, k) or 0) > 0 for k in MTP_COUNT_KEYS)
        return cls(_select_family(config), n_layers if declares_mtp else None)

    @property
    def cache_size(self) -> int:
        return len(self._memo)

    def classify(self, template: str) -> TensorClass:
        cached = self._memo.get(template)
        if cached is None:
            cached = self._memo[template] = self._classify(template)
        return cached

    def _classify(self, template: str) -> TensorClass:
        components = template.split(".")
        part, rule = next(
            ((role, p) for regex, p, role in self._rules if regex.search(template)),
            (OTHER, None),
        )
        marker = next((m for r, m in _MTP_MARKER_RES if r.search(template)), None)
        if marker is not None and part == OTHER:
            part, rule = MTP, marker  # the module's own parts: eh_proj, mtp.fc
        kind, projection = _kind_and_projection(components)
        layer_slot, expert_slot = _slots(components)
        return TensorClass(
            template=template,
            role=part if marker is None else MTP,
            part=part,
            kind=kind,
            projection=projection,
            layer_slot=layer_slot,
            expert_slot=expert_slot,
            rule=rule,
        )

    def resolve(self, name: str) -> Resolved:
        template, numbers = template_of(name)
        tc = self.classify(template)
        layer = None if tc.layer_slot is None else numbers[tc.layer_slot]
        expert = None if tc.expert_slot is None else numbers[tc.expert_slot]
        past_stack = (
            self.mtp_first_layer is not None and layer is not None and layer >= self.mtp_first_layer
        )
        role = MTP if past_stack and tc.mtp_by_layer else tc.role
        return Resolved(name=name, role=role, layer=layer, expert=expert, tensor_class=tc)

    def table(self, templates: Sequence[str]) -> TemplateTable:
        classes = tuple(self.classify(t) for t in templates)
        return TemplateTable(
            classes=classes,
            role=np.array([ROLE_CODE[c.role] for c in classes], dtype=np.uint8),
            part=np.array([ROLE_CODE[c.part] for c in classes], dtype=np.uint8),
            kind=np.array([KIND_CODE[c.kind] for c in classes], dtype=np.uint8),
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
