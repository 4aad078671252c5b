"""Tensor name -> component, role, layer, expert, projection and kind.

A 96k-tensor MoE checkpoint has only a few dozen *templates*: names with every
numeric dotted component replaced by ``{}``
(``model.layers.{}.block_sparse_moe.experts.{}.w1.weight``). The C++ core hands
Python each tensor's template id and its integers, so this package classifies
templates once (memoised) and resolves every tensor with numpy gathers.

Modules: ``rules`` (the data: roles, kinds, components, rule tables, families,
config keys), ``components`` (stacks, towers and config sections), ``classify``
(the code that walks the tables).

API
---
``template_of(name) -> (template, integers)``
    Pure-Python equivalent of the core's template split.
``Taxonomy.from_config(config: Mapping | None) -> Taxonomy``
    Picks the family from config.json's ``model_type`` / ``architectures``
    (then a wrapper's text config). ``.family`` is its name: a known family's,
    else the config's own ``model_type``, else ``"generic"`` (no config).
``Taxonomy.classify(template) -> TensorClass`` / ``Taxonomy.resolve(name) -> Resolved``
    One template / one name, from name markers alone (memoised).
``Taxonomy.table(templates) -> TemplateTable``
    Per-template numpy columns (component, role, part, kind, slots, linear,
    MTP-by-layer) for every template of a checkpoint, with the stack rule.
``TemplateTable.layer_index(template_ids, ints, int_starts)`` / ``.expert_index``
    The core's columns (tensor i's integers are ``ints[int_starts[i]:int_starts[i+1]]``);
    int64 per tensor, -1 where the template has no such slot.
``TemplateTable.roles(template_ids, layer_index)`` / ``.components(template_ids, layer_index)``
    Role codes (into ``ROLES``) / component codes (into ``COMPONENTS``) per tensor.
``TemplateTable.unknown_templates()`` / ``Taxonomy.unknown_templates(templates)``
    Templates no rule knows (role ``other``), for the report.
``Taxonomy.component_config(component) -> Mapping | None``
    config.json's section for a component: the decoder's is ``text_config`` (or
    ``language_config``, ``llm_config``, ``thinker_config.text_config``) in a
    wrapper and the top level otherwise; ``vision_config`` / ``audio_config`` /
    ``projector_config`` for towers; None where the config has none.
``Taxonomy.component_spec(component) -> ComponentSpec``
    ``.layers`` / ``.hidden`` / ``.vocab`` / ``.experts`` the config gives for it.
``is_linear(tensor_class) -> bool``
    Whether the tensor is the weight of a linear layer, i.e. could be FP8.

Components (``COMPONENTS``; code = position): ``decoder`` (0: the language
model), ``vision`` (a vision tower and what hangs under it), ``audio``,
``projector`` (projector / resampler between a tower and the decoder), ``mtp``
(multi-token-prediction modules), ``encoder`` (the encoder of an
encoder-decoder), ``aux`` (any other tower: a stack the decoder's config does
not describe, or a speech generator).

Roles (``ROLES``; code = position): ``other`` (0, never dropped), ``embedding``,
``attention``, ``moe_expert``, ``shared_expert``, ``router``, ``mlp``,
``norm``, ``lm_head``, ``mtp``, ``vision``, ``audio``, ``projector``,
``encoder``, ``aux``, ``head`` (a task head: score, classifier, reward),
``position`` (a learned position table: wpe, embed_positions). A tensor's
``part`` is its role within its component; its ``role`` is ``part`` in the
decoder and the component's name elsewhere (so a role summary keeps towers
apart from the decoder). Kinds (``KINDS``): ``other``, ``weight``, ``scale``,
``bias``.

MTP: a template that names an MTP module (``mtp.*``, ``model.mtp_layers.*``,
DeepSeek's ``eh_proj`` / ``enorm`` / ``hnorm`` / ``shared_head``) is in the
``mtp`` component. DeepSeek-V3 and GLM-4.5 also put a full decoder layer at
``model.layers.{num_hidden_layers}``: when the config declares MTP modules,
any decoder-layer tensor whose layer index is >= ``num_hidden_layers`` becomes
``mtp`` too. ``part`` keeps the role the tensor has inside the MTP module
(attention, moe_expert, norm, ...; ``mtp`` for its own projections).
"""

from __future__ import annotations

from .classify import (
    Resolved,
    Taxonomy,
    TemplateTable,
    TensorClass,
    compile_pattern,
    is_linear,
    select_family,
    template_of,
)
from .components import ComponentSpec, config_section
from .rules import (
    ATTENTION,
    AUDIO,
    AUX,
    BIAS,
    COMMON_RULES,
    COMPONENT_CODE,
    COMPONENT_MARKERS,
    COMPONENTS,
    DECODER,
    EMBEDDING,
    ENCODER,
    FAMILIES,
    GENERIC,
    GENERIC_RULES,
    HEAD,
    KIND_CODE,
    KINDS,
    LM_HEAD,
    MLP,
    MOE_EXPERT,
    MTP,
    MTP_MARKERS,
    NORM,
    OTHER,
    POSITION,
    PROJECTOR,
    ROLE_CODE,
    ROLES,
    ROUTER,
    SCALE,
    SHARED_EXPERT,
    VISION,
    WEIGHT,
    Family,
)

__all__ = [
    "ATTENTION", "AUDIO", "AUX", "BIAS", "COMMON_RULES", "COMPONENTS", "COMPONENT_CODE",
    "COMPONENT_MARKERS", "ComponentSpec", "DECODER", "EMBEDDING", "ENCODER", "FAMILIES",
    "Family", "GENERIC", "GENERIC_RULES", "HEAD", "KINDS", "KIND_CODE", "LM_HEAD", "MLP",
    "MOE_EXPERT", "MTP", "MTP_MARKERS", "NORM", "OTHER", "POSITION", "PROJECTOR", "ROLES",
    "ROLE_CODE",
    "ROUTER", "Resolved", "SCALE", "SHARED_EXPERT", "Taxonomy", "TemplateTable", "TensorClass",
    "VISION", "WEIGHT", "compile_pattern", "config_section", "is_linear", "select_family",
    "template_of",
]
