"""config.json: read within limits, and its values read with their types checked.

A value of the wrong type or an impossible one (layers <= 0, a block of zero,
a list where a number belongs) is a `ConfigValue` problem naming the key; the
checks then go on without that value (they are never silenced by it). The
quantization settings are read by the scheme that declares them (`ckptscan.schemes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Limits derived from real checkpoints, far above what any real file needs.
#: config.json: real ones are < 100 KB (MLX per-module quantization: a few 100 KB).
MAX_CONFIG_BYTES = 16 << 20
#: layers in a decoder stack (the deepest public models have < 200).
MAX_LAYERS = 100_000
#: experts of one MoE layer (the largest public models have 384).
MAX_EXPERTS = 1 << 20
#: a quantization block: dims up to 2^20, and at least 16 elements (NVFP4's
#: group); one scale per element is no block quantization.
MAX_BLOCK_DIM = 1 << 20
MIN_BLOCK_ELEMENTS = 16
#: entries of one module list of a quantization config (ignore, targets,
#: modules_to_not_convert ...): real ones name a few hundred modules at most.
MAX_MODULE_ENTRIES = 4096


@dataclass(frozen=True)
class ConfigValue:
    """One config.json value that cannot be used: `key` is its dotted path."""

    key: str
    message: str


def sections(config: Mapping[str, Any] | None) -> list[tuple[str, Mapping[str, Any]]]:
    """The places a decoder's settings live: the top level, then `text_config`."""
    if not isinstance(config, Mapping):
        return []
    out: list[tuple[str, Mapping[str, Any]]] = [("", config)]
    tc = config.get("text_config")
    if isinstance(tc, Mapping):
        out.append(("text_config.", tc))
    return out


def config_int(config: Mapping[str, Any] | None, *keys: str, minimum: int = 0,
               maximum: int | None = None,
               problems: list[ConfigValue] | None = None) -> int | None:
    """The first of `keys` present (top level, then text_config) as an int in
    [minimum, maximum]; a present value that is not one is a problem."""
    for prefix, source in sections(config):
        for k in keys:
            if k not in source or source[k] is None:
                continue
            v = source[k]
            if not isinstance(v, int) or isinstance(v, bool):
                _note(problems, prefix + k, f"{prefix + k} is {_show(v)}, not an integer")
                continue
            if v < minimum or (maximum is not None and v > maximum):
                bound = f"at least {minimum}" if maximum is None else \
                    f"between {minimum} and {maximum:,}"
                _note(problems, prefix + k, f"{prefix + k} is {v:,}; it must be {bound}")
                continue
            return v
    return None


def _note(problems: list[ConfigValue] | None, key: str, message: str) -> None:
    if problems is not None and not any(p.key == key for p in problems):
        problems.append(ConfigValue(key, message))


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
