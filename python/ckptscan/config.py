"""config.json: read within limits, and its values read with their types checked.

A value of the wrong type or an impossible one (layers <= 0, a block of zero,
a list where a number belongs) is a `ConfigValue` problem naming the key; the
checks then go on without that value (they are never silenced by it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass
class QuantConfig:
    """quantization_config (or text_config.quantization_config), as far as usable."""

    method: str | None
    fmt: str | None
    block: tuple[int, int] | None
    scale_fmt: str | None
    not_convert: list[str] | None
    raw: dict[str, Any]
    where: str = "quantization_config"
    problems: list[ConfigValue] = field(default_factory=list)

    @property
    def ue8m0(self) -> bool:
        return (self.scale_fmt or "").lower() == "ue8m0"


def quant_config(config: Mapping[str, Any] | None) -> QuantConfig | None:
    where = "quantization_config"
    q = (config or {}).get("quantization_config")
    if not isinstance(q, dict):
        tc = (config or {}).get("text_config")
        q = tc.get("quantization_config") if isinstance(tc, dict) else None
        where = "text_config.quantization_config"
    if not isinstance(q, dict):
        return None
    problems: list[ConfigValue] = []

    def text(key: str) -> str | None:
        v = q.get(key)
        if v is not None and not isinstance(v, str):
            problems.append(ConfigValue(f"{where}.{key}", f"{where}.{key} is {_show(v)}, "
                                                          "not a string"))
            return None
        return v

    block = _block(q.get("weight_block_size"), f"{where}.weight_block_size", problems)
    ntc_key = "modules_to_not_convert" if "modules_to_not_convert" in q else "ignored_layers"
    ntc = q.get(ntc_key)
    not_convert = None
    if isinstance(ntc, list):
        not_convert = [m for m in ntc if isinstance(m, str)]
        if len(not_convert) < len(ntc):
            problems.append(ConfigValue(f"{where}.{ntc_key}", f"{where}.{ntc_key} holds "
                                        "entries that are not strings (ignored)"))
    elif ntc is not None:
        problems.append(ConfigValue(f"{where}.{ntc_key}",
                                    f"{where}.{ntc_key} is {_show(ntc)}, not a list"))
    return QuantConfig(text("quant_method"), text("fmt"), block, text("scale_fmt"), not_convert,
                       q, where, problems)


def _block(value: Any, key: str, problems: list[ConfigValue]) -> tuple[int, int] | None:
    if value is None:
        return None
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(b, int) and not isinstance(b, bool) for b in value))
    if not ok:
        problems.append(ConfigValue(key, f"{key} is {_show(value)}, not two integers"))
        return None
    br, bc = value
    if not (0 < br <= MAX_BLOCK_DIM and 0 < bc <= MAX_BLOCK_DIM):
        problems.append(ConfigValue(key, f"{key} is {_show(value)}: each size must be between "
                                         f"1 and {MAX_BLOCK_DIM:,}"))
        return None
    if br * bc < MIN_BLOCK_ELEMENTS:
        problems.append(ConfigValue(key, f"{key} is {_show(value)}: a block of fewer than "
                                         f"{MIN_BLOCK_ELEMENTS} elements is no block "
                                         "quantization"))
        return None
    return int(br), int(bc)


def not_convert_match(name: str, entries: list[str]) -> str | None:
    """The entry of modules_to_not_convert that covers `name`, matching whole dotted
    components (`gate` is MiniMax's block_sparse_moe.gate, not a gate_proj)."""
    parts = name.split(".")
    for entry in entries:
        want = entry.strip(".").split(".")
        k = len(want)
        if any(parts[i:i + k] == want for i in range(len(parts) - k + 1)):
            return entry
    return None
