"""A checkpoint: a directory of shards (plus index.json and config.json), or one file."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

from .errors import Problem, ShardIOError
from .shard import Shard, load_shard

INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"

# Header reads on network storage cost a round trip each, not bandwidth: keep
# many in flight. (Data scans use their own, smaller pool: one per core.)
DEFAULT_HEADER_JOBS = 16


@dataclass
class Checkpoint:
    """What was found on disk, what was parsed, and what went wrong doing it.

    `shards` holds every safetensors file found (broken ones too: their
    `problems` say why, and the tensors that could be parsed are there);
    `problems` gathers those and the checkpoint-level ones (missing shard,
    unreadable index.json ...).
    """

    path: Path
    shards: list[Shard]
    index: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    index_path: Path | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        """Shard file names found, sorted."""
        return [os.path.basename(s.path) for s in self.shards]

    @cached_property
    def weight_map(self) -> dict[str, str]:
        wm = (self.index or {}).get("weight_map")
        return wm if isinstance(wm, dict) else {}

    @cached_property
    def referenced(self) -> list[str]:
        """Shard file names that index.json refers to, sorted."""
        return sorted(v for v in set(self.weight_map.values()) if isinstance(v, str))

    @property
    def missing(self) -> list[str]:
        """Shards the index refers to that are not on disk."""
        found = set(self.files)
        return [name for name in self.referenced if name not in found]

    @property
    def num_tensors(self) -> int:
        return sum(len(s) for s in self.shards)

    def close(self) -> None:
        for s in self.shards:
            s.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_json(path: Path, code: str, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block the read
            problems.append(Problem(code, "not a regular file", str(path)))
            return None
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        problems.append(Problem(code, f"cannot read: {exc.strerror or exc}", str(path)))
        return None
    except orjson.JSONDecodeError as exc:
        problems.append(Problem(code, f"not valid JSON: {exc}", str(path)))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(code, "top level is not a JSON object", str(path)))
        return None
    return data


def _find_index(directory: Path) -> Path | None:
    default = directory / INDEX_NAME
    if default.exists():
        return default
    others = sorted(directory.glob("*.safetensors.index.json"))
    return others[0] if others else None


def open_checkpoint(path: str | os.PathLike[str], jobs: int | None = None) -> Checkpoint:
    """Opens every shard of a checkpoint directory (or a single .safetensors file).

    Nothing stops at a broken shard: its problems are recorded and the other
    shards are read. Raises `ShardIOError` only when `path` itself is unusable.
    """
    root = Path(path)
    problems: list[Problem] = []
    index = config = None
    index_path = None
    if root.is_dir():
        files = sorted(p for p in root.glob("*.safetensors") if not p.is_dir())
        index_path = _find_index(root)
        if index_path is not None:
            index = _read_json(index_path, "index-invalid", problems)
            if index is not None and not isinstance(index.get("weight_map"), dict):
                problems.append(Problem("index-invalid", "has no \"weight_map\" object",
                                        str(index_path)))
        if (root / CONFIG_NAME).exists():
            config = _read_json(root / CONFIG_NAME, "config-invalid", problems)
    elif root.exists():
        files = [root]
    else:
        raise ShardIOError(str(root), "no such file or directory")

    workers = min(jobs or DEFAULT_HEADER_JOBS, max(1, len(files)))
    if workers <= 1:
        shards = [load_shard(f) for f in files]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="ckptscan-header") as pool:
            shards = list(pool.map(load_shard, files))

    ckpt = Checkpoint(root, shards, index, config, index_path, problems)
    for s in shards:
        problems.extend(s.problems)
    for name in ckpt.missing:
        problems.append(Problem("shard-missing", "listed in the index but not on disk",
                                str(root / name)))
    if not shards and not ckpt.missing:
        problems.append(Problem("no-shards", "no .safetensors file found", str(root)))
    return ckpt
