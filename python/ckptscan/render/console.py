"""What reaches a terminal, in one place: control characters from files
escaped, colour only when asked for, the width to fit, long names elided, and
the one-line progress bars of ``--deep`` and the farm.

Colour (`wants_color`): ``--color always|never`` wins; with ``auto`` (the
default) a non-empty ``FORCE_COLOR`` turns it on, a non-empty ``NO_COLOR``
turns it off, and otherwise only a terminal whose ``TERM`` is not ``dumb`` gets
it. Width (`width_of`): ``COLUMNS`` when set, else the terminal's width, else 80
(a pipe, a file, a CI log).
"""

from __future__ import annotations

import os
import re
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import TextIO

# C0 controls (tab and newline too: a name never spans lines), DEL, C1 controls,
# and the Unicode bidi controls that reorder what a terminal shows.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

COLOR_MODES = ("auto", "always", "never")
DEFAULT_WIDTH = 80
MIN_WIDTH = 40


def printable(text: str) -> str:
    """`text` with bytes that were not UTF-8 (file names: surrogate escapes) shown
    as \\xNN, so that it can be printed, stored and serialised."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def safe(text: str) -> str:
    """`printable`, and every control character escaped (\\x1b ...): a hostile
    tensor or file name cannot move the cursor, clear the screen or hide lines."""
    text = printable(text)
    return _UNSAFE.sub(lambda m: _escape(m.group()), text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def wants_color(stream: TextIO, mode: str = "auto") -> bool:
    """Whether to colour what goes to `stream` (see the module's docstring)."""
    if mode not in COLOR_MODES:
        raise ValueError(f"unknown colour mode {mode!r} (auto, always or never)")
    if mode != "auto":
        return mode == "always"
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("NO_COLOR"):
        return False
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        tty = False
    return tty and os.environ.get("TERM") != "dumb"


def width_of(stream: TextIO | None = None) -> int:
    """Columns to fit: COLUMNS, else the terminal's width, else 80."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return max(MIN_WIDTH, int(env))
    try:
        if stream is not None and stream.isatty():
            columns = os.get_terminal_size(stream.fileno()).columns
            if columns > 0:  # a terminal that does not say its size reports 0
                return max(MIN_WIDTH, columns)
    except (AttributeError, ValueError, OSError):
        pass
    return DEFAULT_WIDTH


def elide(text: str, width: int) -> str:
    """`text` cut in the middle to `width` characters (``model.layers.0....w2.weight``):
    both ends of a tensor name say the most."""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    head = (width - 3 + 1) // 2
    tail = width - 3 - head
    return text[:head] + "..." + (text[-tail:] if tail else "")


def wrap(text: str, width: int, indent: str, first: str | None = None) -> list[str]:
    """`text` wrapped to `width`, words kept whole where they fit (a long name
    that does not is broken), `first` (default `indent`) before the first line."""
    lead = indent if first is None else first
    return textwrap.wrap(text, width=max(len(lead) + 10, width), initial_indent=lead,
                         subsequent_indent=indent, break_on_hyphens=False) or [lead.rstrip()]


class Style:
    """ANSI styles for severities and headings; plain text when colour is off."""

    SEVERITY = {"error": "31;1", "warning": "33", "info": "36"}

    def __init__(self, color: bool) -> None:
        self.color = color

    def paint(self, sgr: str, text: str) -> str:
        return f"\x1b[{sgr}m{text}\x1b[0m" if self.color and text else text

    def sev(self, severity: object, text: str) -> str:
        return self.paint(self.SEVERITY.get(str(severity), "0"), text)

    def bold(self, text: str) -> str:
        return self.paint("1", text)

    def dim(self, text: str) -> str:
        return self.paint("2", text)

    def added(self, text: str) -> str:
        return self.paint("32", text)

    def removed(self, text: str) -> str:
        return self.paint("31", text)


def table(rows: list[list[str]], width: int, *, right: frozenset[int] = frozenset(),
          shrink: int = 0, indent: str = "  ") -> Iterator[str]:
    """Rows of cells as aligned columns within `width`. Column `shrink` (the
    name-like one) gives up characters, elided in the middle, when the table is
    too wide; columns in `right` are right-aligned (numbers)."""
    if not rows:
        return
    n = max(len(r) for r in rows)
    rows = [r + [""] * (n - len(r)) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    total = len(indent) + sum(widths) + 2 * (n - 1)
    if total > width:
        widths[shrink] = max(8, widths[shrink] - (total - width))
    for r in rows:
        cells = []
        for i, cell in enumerate(r):
            cell = elide(cell, widths[i])
            last = i == n - 1
            cells.append(cell.rjust(widths[i]) if i in right else
                         cell if last else cell.ljust(widths[i]))
        yield (indent + "  ".join(cells)).rstrip()


class ProgressLine:
    """One line on a terminal redrawn in place (`\\r`): a bar, a percentage and
    a text. Callable from several threads; redraws at most ten times a second,
    and always on completion (which ends the line)."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.width = width_of(stream)
        self.last = ""
        self.drawn_at = 0.0
        self.lock = threading.Lock()

    def update(self, done: float, total: float, text: str, final: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            if not final and now - self.drawn_at < 0.1:
                return
            pct = int(100 * done // total) if total else 100
            line = f"  {self.label} [{'#' * (pct // 4):<25}] {pct:3d}% {text}"
            line = elide(line, self.width - 1)
            if line == self.last and not final:
                return
            self.last, self.drawn_at = line, now
            self.stream.write("\r" + line + ("\n" if final else "\x1b[K"))
            self.stream.flush()


class DeepProgressBar:
    """``--deep``'s bar: tensors and bytes read (a `deep.DeepProgress` callback)."""

    def __init__(self, stream: TextIO, label: str = "deep scan") -> None:
        self.line = ProgressLine(stream, label)

    def __call__(self, p: object) -> None:
        from .text import human_bytes

        done, total = getattr(p, "tensors_done", 0), getattr(p, "tensors_total", 0)
        bdone, btotal = getattr(p, "bytes_done", 0), getattr(p, "bytes_total", 0)
        self.line.update(bdone if btotal else done, btotal or total,
                         f"{done:,}/{total:,} tensors, {human_bytes(bdone)}/"
                         f"{human_bytes(btotal)}", final=done >= total)
