"""Remote checkpoints in the one pipeline: what a URL holds (`layout`), how its
shards are read (`scan`: headers through `ckptscan.sources.fetch_headers`,
parsed by the same core as local files; `deep`: tensor bytes in large
coalesced ranges), a local copy checked against the Hub (`against`), and the
farm's Ray engine with one request budget for all its workers (`ray`).

Local checkpoints never pass through here: they stay memory-mapped.
"""

from __future__ import annotations

from .refs import RemoteOptions, RemotePath, RemoteRef, close_sources

__all__ = ["RemoteOptions", "RemotePath", "RemoteRef", "close_sources"]
