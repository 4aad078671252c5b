"""Renderers of a `Report` (and of a farm's rows): text for a terminal, JSON,
Markdown. They only format what the Report holds; every string taken from a
file goes through `safe` (terminal) or `markdown.cell` (Markdown) first."""

from __future__ import annotations

from .json import to_json
from .markdown import to_markdown
from .text import to_text

__all__ = ["to_json", "to_markdown", "to_text"]
