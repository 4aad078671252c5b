"""What reaches a terminal: control characters from files escaped, colour only
when asked for."""

from __future__ import annotations

import os
import re
from typing import TextIO

# C0 controls (tab and newline too: a name never spans lines), DEL, C1 controls,
# and the Unicode bidi controls that reorder what a terminal shows.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


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


def wants_color(stream: TextIO) -> bool:
    """A terminal, NO_COLOR unset, TERM not dumb (FORCE_COLOR forces it)."""
    if os.environ.get("FORCE_COLOR"):
        return True
    return (stream.isatty() and not os.environ.get("NO_COLOR")
            and os.environ.get("TERM") != "dumb")
