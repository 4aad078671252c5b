"""Components of a checkpoint: which tensors are the decoder's, which a tower's.

Two sources, both data-driven:

* Name markers (``rules.COMPONENT_MARKERS`` and a family's own): the leftmost
  marker in a template names its component (``vpm.*`` vision,
  ``thinker.audio_tower.*`` audio, ``resampler.*`` projector, ``mtp.*`` MTP).
* Stacks: a *stack* is a prefix followed by a layer grid (``model.layers.{}``,
  ``gene_qformer.blocks.{}``). Of the stacks left to the decoder by the markers,
  one is the decoder's: the one beside the token embedding, else the shallowest,
  else the largest. Every other stack is a tower the decoder's config does not
  describe: its *root* (its prefix down to where it leaves the decoder's path,
  ``model.qwen2_model`` beside ``model.layers``) and everything under that root
  become an ``aux`` component.

Config sections: ``config_section(config, component)`` walks
``rules.CONFIG_SECTIONS``; ``ComponentSpec`` holds what a section says of its
component (layers, hidden size, vocabulary, experts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .rules import (
    AUDIO,
    CONFIG_SECTIONS,
    DECODER,
    ENC_DEC_DECODER_LAYER_KEYS,
    ENCODER,
    EXPERT_KEYS,
    HIDDEN_KEYS,
    LAYER_CONTAINERS,
    LAYER_KEYS,
    VISION,
    VOCAB_KEYS,
)

SLOT = "{}"


def stack_prefix(template: str) -> str | None:
    """``a.b.layers`` for ``a.b.layers.{}.x.weight``: the path down to the first layer grid."""
    parts = template.split(".")
    for i in range(len(parts) - 1):
        if parts[i] in LAYER_CONTAINERS and parts[i + 1] == SLOT:
            return ".".join(parts[: i + 1])
    return None


def _depth(prefix: str) -> int:
    return prefix.count(".") + 1


def decoder_stack(stacks: Mapping[str, int], embedding_parents: set[str]) -> str | None:
    """The decoder's stack among ``stacks`` (prefix -> number of templates under it).

    Preferred: a stack whose parent also holds a token embedding or head (the
    decoder's ``model.layers`` beside ``model.embed_tokens``), then the shallowest,
    then the one with the most templates, then the first by name.
    """
    if not stacks:
        return None

    def key(prefix: str) -> tuple[bool, int, int, str]:
        parent = prefix.rpartition(".")[0]
        return (parent not in embedding_parents, _depth(prefix), -stacks[prefix], prefix)

    return min(stacks, key=key)


def tower_root(stack: str, decoder: str) -> str:
    """The prefix of ``stack`` down to the first component where it leaves ``decoder``'s path."""
    mine, theirs = stack.split("."), decoder.split(".")
    k = 0
    while k < min(len(mine), len(theirs)) and mine[k] == theirs[k]:
        k += 1
    return ".".join(mine[: k + 1])


# ---- config sections ---------------------------------------------------------------


def config_section(config: Mapping[str, Any] | None, component: str,
                   encoder_decoder: bool = False) -> Mapping[str, Any] | None:
    """The part of config.json that describes ``component``.

    The decoder's is a wrapper's text config (``text_config``, ``language_config``,
    ``llm_config``, ``thinker_config.text_config``), else the top level; towers have
    ``vision_config`` / ``audio_config`` / ... or nothing. An encoder-decoder's
    encoder is described by its top level too. MTP modules share the decoder's.
    """
    if not isinstance(config, Mapping):
        return None
    if component == "mtp":
        component = DECODER
    for path in CONFIG_SECTIONS.get(component, ()):
        node: Any = config
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping):
            return node
    if component == DECODER or (component == ENCODER and encoder_decoder):
        return config
    return None


def config_int(section: Mapping[str, Any] | None, keys: Sequence[str]) -> int | None:
    """The first of ``keys`` that ``section`` holds as a positive integer (not a
    bool): a count of zero or less is no count (the checks name such values)."""
    if not isinstance(section, Mapping):
        return None
    for key in keys:
        value = section.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


@dataclass(frozen=True)
class ComponentSpec:
    """What config.json says of one component (None: it does not say).

    ``layers`` is the depth of the component's own stack, ``hidden`` /
    ``vocab`` / ``experts`` are given for the decoder only (a tower's
    ``hidden_size`` is often the decoder's, e.g. Qwen2-VL's vision_config).
    """

    component: str
    section: Mapping[str, Any] | None
    layers: int | None
    hidden: int | None
    vocab: int | None
    experts: int | None


def component_spec(config: Mapping[str, Any] | None, component: str,
                   encoder_decoder: bool = False) -> ComponentSpec:
    section = config_section(config, component, encoder_decoder)
    if component == DECODER:
        layer_keys = ENC_DEC_DECODER_LAYER_KEYS if encoder_decoder else LAYER_KEYS[DECODER]
        return ComponentSpec(
            component, section,
            layers=config_int(section, layer_keys),
            hidden=config_int(section, HIDDEN_KEYS),
            vocab=config_int(section, VOCAB_KEYS),
            experts=config_int(section, EXPERT_KEYS),
        )
    keys = LAYER_KEYS.get(component, ())
    if component in (VISION, AUDIO, ENCODER) and section is not None:
        return ComponentSpec(component, section, config_int(section, keys), None, None, None)
    return ComponentSpec(component, section, None, None, None, None)
