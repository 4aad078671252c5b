"""How producers match module names against their config lists.

Every producer reads its ``ignore`` / ``modules_to_not_convert`` /
``exclude_modules`` / ``targets`` entries its own way. A :class:`Style` is one
such way; :class:`Rules` applies a config list with its producer's style and
says which entry matched, by which rule, and whether the match needed a wrapper
prefix to be added or removed (``model.language_model.`` and the like: the
entry was written for another spelling of the model than the checkpoint's).

Templates: checks work on name *templates* (``model.layers.{}.mlp.gate``), not
on 96k names. :meth:`Rules.match_template` decides a template once by probing
it with the numbers written in the entries and a standard set of numbers; when
the probes disagree (an entry names ``model.layers.3`` or a regex like
``layers\\.1[0-5]``) it answers "varies" and the caller matches that template's
names one by one.
"""

from __future__ import annotations

import fnmatch
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

SLOT: Final = "{}"

#: prefixes multimodal wrappers put before the language model's names
WRAPPERS: Final[tuple[str, ...]] = (
    "model.language_model.", "language_model.model.", "language_model.",
    "model.text_model.", "text_model.model.", "text_model.", "thinker.model.", "model.",
)


@dataclass(frozen=True)
class Hit:
    """An entry that matched a name.

    ``rule`` says how (``exact``, ``regex``, ``glob``, ``substring``,
    ``components``, ``prefix``, ``suffix``, ``class``, ``default``);
    ``via_prefix`` is set when the entry matched only after a wrapper prefix
    was added to or removed from the name (the producer's own loader would not
    have matched it); ``implicit`` when the entry is the producer's default
    rather than a config entry (transformers always keeps ``lm_head``)."""

    entry: str
    rule: str
    via_prefix: str | None = None
    implicit: bool = False


@dataclass(frozen=True)
class Decision:
    """What a name template gets: ``uniform`` means every name of the template
    gets ``hit``; otherwise match the template's names one by one."""

    uniform: bool
    hit: Hit | None = None


class Style(ABC):
    """One producer's way of matching a list entry against a module name."""

    name: str = ""
    description: str = ""

    @abstractmethod
    def rule(self, entry: str, name: str) -> str | None:
        """The rule by which ``entry`` matches ``name``, or None."""

    def problem(self, entry: str) -> str | None:
        """What is wrong with an entry (an invalid regex), or None."""
        return None

    def screen(self, entries: tuple[str, ...]) -> Callable[[str], bool] | None:
        """A fast test that no entry can match a name (False: none can), built once
        per list, or None: try every entry."""
        return None

    def first(self, entries: tuple[str, ...], name: str) -> tuple[str, str] | None:
        """(entry, rule) of the first entry matching ``name``."""
        test = _screen(self, entries)
        if test is not None and not test(name):
            return None
        for e in entries:
            if (r := self.rule(e, name)) is not None:
                return e, r
        return None


@lru_cache(maxsize=64)
def _screen(style: Style, entries: tuple[str, ...]) -> Callable[[str], bool] | None:
    return style.screen(entries) if len(entries) > 1 else None


def _alternation(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One regex for many (None when one of them does not combine: a backreference)."""
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns))
    except (re.error, RecursionError, OverflowError):
        return None


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return None


def _regex_problem(pattern: str) -> str | None:
    if _regex(pattern) is not None:
        return None
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as e:
        return f"{pattern!r} is not a valid regular expression ({e})"
    return None  # pragma: no cover - compiled the second time


@lru_cache(maxsize=256)
def _entry_set(entries: tuple[str, ...]) -> frozenset[str]:
    return frozenset(entries)


class Exact(Style):
    name = "exact"
    description = "the whole module name, character for character"

    def rule(self, entry: str, name: str) -> str | None:
        return "exact" if entry == name else None

    def first(self, entries: tuple[str, ...], name: str) -> tuple[str, str] | None:
        return (name, "exact") if name in _entry_set(entries) else None


class Dotted(Style):
    """Whole dotted components, contiguous, anywhere in the name; ``*`` inside a
    component matches any characters but a dot. ``gate`` is MiniMax's
    ``block_sparse_moe.gate``, never a ``gate_proj``."""

    name = "dotted"
    description = "whole dotted components anywhere in the name (* within a component)"

    def rule(self, entry: str, name: str) -> str | None:
        rx = _dotted_regex(entry)
        return "components" if rx is not None and rx.search(name) else None

    def first(self, entries: tuple[str, ...], name: str) -> tuple[str, str] | None:
        index, lengths, wild = _dotted_index(entries)
        parts = tuple(name.split("."))
        best = len(entries)
        for k in lengths:
            for i in range(len(parts) - k + 1):
                best = min(best, index.get(parts[i:i + k], best))
        for pos, rx in wild:
            if pos < best and rx.search(name):
                best = pos
        return (entries[best], "components") if best < len(entries) else None


_DottedIndex = tuple[dict[tuple[str, ...], int], list[int], list[tuple[int, re.Pattern[str]]]]


@lru_cache(maxsize=64)
def _dotted_index(entries: tuple[str, ...]) -> _DottedIndex:
    """Entries without wildcards by their component tuple (first position), the
    tuple lengths, and the wildcard entries' regexes: a name's windows are looked
    up instead of every entry tried."""
    index: dict[tuple[str, ...], int] = {}
    wild: list[tuple[int, re.Pattern[str]]] = []
    for pos, e in enumerate(entries):
        rx = _dotted_regex(e)
        if rx is None:
            continue
        if "*" in e:
            wild.append((pos, rx))
        else:
            index.setdefault(tuple(e.strip(".").split(".")), pos)
    return index, sorted({len(t) for t in index}), wild


@lru_cache(maxsize=4096)
def _dotted_regex(entry: str) -> re.Pattern[str] | None:
    parts = [p for p in entry.strip(".").split(".")]
    if not parts or any(p == "" for p in parts):
        return None
    body = r"\.".join(re.escape(p).replace(r"\*", r"[^.]*") for p in parts)
    return re.compile(r"(?:^|\.)" + body + r"(?:\.|$)")


class Transformers(Style):
    """transformers' ``should_convert_module``: the entry is a regex matched at
    the start of the name (``re.match``), or a plain suffix of it."""

    name = "transformers"
    description = "re.match of the entry at the start of the name, or the name ends with it"

    def rule(self, entry: str, name: str) -> str | None:
        rx = _regex(entry)
        if rx is not None and rx.match(name):
            return "prefix"
        return "suffix" if name.endswith(entry) else None

    def problem(self, entry: str) -> str | None:
        return _regex_problem(entry)

    def screen(self, entries: tuple[str, ...]) -> Callable[[str], bool] | None:
        rx = _alternation(e for e in entries if _regex(e) is not None)
        if rx is None:
            return None
        return lambda name: rx.match(name) is not None or name.endswith(entries)


class CompressedTensors(Style):
    """compressed-tensors' ``match_name``: ``re:`` entries are regexes matched at
    the start of the name (``re.match``), anything else the exact name."""

    name = "compressed-tensors"
    description = "'re:' entries are re.match regexes, others the exact module name"

    def rule(self, entry: str, name: str) -> str | None:
        if entry.startswith("re:"):
            rx = _regex(entry[3:])
            return "regex" if rx is not None and rx.match(name) else None
        return "exact" if entry == name else None

    def problem(self, entry: str) -> str | None:
        return _regex_problem(entry[3:]) if entry.startswith("re:") else None

    def screen(self, entries: tuple[str, ...]) -> Callable[[str], bool] | None:
        exact = _entry_set(tuple(e for e in entries if not e.startswith("re:")))
        rx = _alternation(e[3:] for e in entries
                          if e.startswith("re:") and _regex(e[3:]) is not None)
        if rx is None:
            return None
        return lambda name: name in exact or rx.match(name) is not None


class Glob(Style):
    name = "glob"
    description = "fnmatch glob over the whole name (* also crosses dots)"

    def rule(self, entry: str, name: str) -> str | None:
        return "glob" if fnmatch.fnmatchcase(name, entry) else None

    def screen(self, entries: tuple[str, ...]) -> Callable[[str], bool] | None:
        rx = _alternation(fnmatch.translate(e) for e in entries)
        return None if rx is None else (lambda name: rx.match(name) is not None)


class Substring(Style):
    name = "substring"
    description = "the entry appears anywhere in the name"

    def rule(self, entry: str, name: str) -> str | None:
        return "substring" if entry and entry in name else None

    def screen(self, entries: tuple[str, ...]) -> Callable[[str], bool] | None:
        rx = _alternation(re.escape(e) for e in entries if e)
        return None if rx is None else (lambda name: rx.search(name) is not None)


class ModelOpt(Style):
    """vLLM's reading of ModelOpt ``exclude_modules``: the exact name, then a
    substring (what exports before ModelOpt 0.39 relied on, also after dropping
    a ``language_model.`` prefix), then an fnmatch glob."""

    name = "modelopt"
    description = "exact name, substring (exports before ModelOpt 0.39), or fnmatch glob"

    def rule(self, entry: str, name: str) -> str | None:
        if entry == name:
            return "exact"
        if entry and (entry in name or (name.startswith("language_model.")
                                        and entry in name.removeprefix("language_model."))):
            return "substring"
        return "glob" if fnmatch.fnmatchcase(name, entry) else None

    def screen(self, entries: tuple[str, ...]) -> Callable[[str], bool] | None:
        sub = _alternation(re.escape(e) for e in entries if e)
        glob = _alternation(fnmatch.translate(e) for e in entries)
        if sub is None or glob is None:
            return None
        return lambda name: (sub.search(name) is not None or glob.match(name) is not None)


EXACT: Final = Exact()
DOTTED: Final = Dotted()
TRANSFORMERS: Final = Transformers()
COMPRESSED_TENSORS: Final = CompressedTensors()
GLOB: Final = Glob()
SUBSTRING: Final = Substring()
MODELOPT: Final = ModelOpt()


def _core_name(name: str) -> tuple[str, str]:
    """(wrapper prefix, the rest): the first wrapper of WRAPPERS the name starts with."""
    for w in WRAPPERS:
        if name.startswith(w) and len(name) > len(w):
            return w, name[len(w):]
    return "", name


def respellings(name: str) -> Iterator[tuple[str, str]]:
    """Other spellings of ``name`` under multimodal wrappers, with the wrapper
    that differs: ``model.layers.0.mlp`` -> ``layers.0.mlp`` (``model.``),
    ``model.language_model.layers.0.mlp`` (``model.language_model.``), ..."""
    prefix, core = _core_name(name)
    seen = {name}
    for alt, via in [(core, prefix)] + [(w + core, w) for w in WRAPPERS]:
        if alt not in seen and via:
            seen.add(alt)
            yield alt, via


# Probes for deciding a template at once: the numbers in the entries, their
# neighbours, and numbers of 1-4 digits.
_STANDARD_PROBES: Final = ("0", "1", "2", "3", "7", "9", "10", "11", "12", "19", "20", "31",
                           "61", "99", "100", "127", "255", "1000")
_DIGITS: Final = re.compile(r"\d+")
#: entries whose own numbers are probed together (layers.1 ... experts.2)
_MAX_COMBINATIONS: Final = 4096


def _probe_values(entries: Sequence[str], numbers: Collection[str] | None = None
                  ) -> tuple[str, ...]:
    values = set(_STANDARD_PROBES)
    for e in entries:
        for run in _DIGITS.findall(e)[:16]:
            n = int(run[:6])
            values.update({run, str(n), str(n + 1), str(max(n - 1, 0)), run + "0"})
    if numbers is not None:  # a number no name holds cannot tell names apart
        values = {v for v in values if v in numbers} | set(_STANDARD_PROBES)
    return tuple(sorted(values, key=lambda v: (len(v), v)))


_WORDS: Final = re.compile(r"[A-Za-z_]+")
_WRAPPER_WORDS: Final = frozenset(w for p in WRAPPERS for w in p.split(".") if w)
_LITERAL_STYLES: Final = frozenset({"exact", "dotted", "glob", "substring", "modelopt"})


def literal_words(style: Style, entry: str) -> frozenset[str]:
    """Words every name an entry matches contains (entries that are no regexes),
    wrapper words aside; empty when the entry is a regex."""
    literal = style.name in _LITERAL_STYLES or (
        style.name == "compressed-tensors" and not entry.startswith("re:"))
    if not literal:
        return frozenset()
    return frozenset(w for w in _WORDS.findall(entry) if w not in _WRAPPER_WORDS)


def relevant(style: Style, entries: Sequence[str], template: str) -> list[str]:
    """The entries that may match some name of a template (the others' numbers
    need not be probed)."""
    return [e for e in entries if all(w in template for w in literal_words(style, e))]


def probe_names(template: str, entries: Sequence[str],
                numbers: Collection[str] | None = None) -> list[str]:
    """Names of ``template`` with its ``{}`` slots filled by probe numbers: every
    slot with the same value, each slot alone with the others at 0, and the
    numbers each entry writes, slot by slot (``layers.1 ... experts.2``).
    ``numbers``: the integers the checkpoint's names hold (when known, entries'
    other numbers are not probed)."""
    parts = template.split(".")
    slots = [i for i, p in enumerate(parts) if p == SLOT]
    if not slots:
        return [template]
    values = _probe_values(entries, numbers)
    fills: list[tuple[str, ...]] = [(v,) * len(slots) for v in values]
    if len(slots) > 1:
        for k in range(len(slots)):
            fills += [tuple(v if j == k else "0" for j in range(len(slots))) for v in values]
        for e in entries[:_MAX_COMBINATIONS]:  # an entry's own numbers, slot by slot
            nums = [str(int(run[:6])) for run in _DIGITS.findall(e)[:len(slots)]]
            if len(nums) > 1 and (numbers is None or all(v in numbers for v in nums)):
                fills.append(tuple(nums) + ("0",) * (len(slots) - len(nums)))
    out = []
    for fill in fills:
        filled = list(parts)
        for i, v in zip(slots, fill, strict=True):
            filled[i] = v
        out.append(".".join(filled))
    return out


@dataclass(frozen=True)
class Rules:
    """A config list of modules (an exclusion list, say) with its producer's style.

    ``key`` is where the list is in the config (``quantization_config.ignore``);
    ``defaults`` are entries the producer applies without writing them (matched
    after the config's own, reported with ``implicit=True``, never "unmatched")."""

    key: str
    entries: tuple[str, ...] = ()
    style: Style = DOTTED
    defaults: tuple[str, ...] = ()
    _memo: dict[str, Decision] = field(default_factory=dict, compare=False, repr=False)

    def __bool__(self) -> bool:
        return bool(self.entries or self.defaults)

    def problems(self) -> list[str]:
        """One message per entry the producer could not have used (invalid regex)."""
        return [f"{self.key}: {p}" for e in self.entries if (p := self.style.problem(e))]

    def _direct(self, name: str) -> Hit | None:
        if (got := self.style.first(self.entries, name)) is not None:
            return Hit(*got)
        if (got := self.style.first(self.defaults, name)) is not None:
            return Hit(*got, implicit=True)
        return None

    def match(self, name: str) -> Hit | None:
        """The first entry matching the module name (config entries before
        defaults; the name as written before its wrapper respellings)."""
        hit = self._direct(name)
        if hit is not None or not self.entries:
            return hit
        for alt, via in respellings(name):
            if (got := self.style.first(self.entries, alt)) is not None:
                return Hit(*got, via_prefix=via)
        return None

    def match_template(self, template: str, numbers: Collection[str] | None = None
                       ) -> Decision:
        """The hit shared by every name of ``template`` (``{}`` slots), or
        ``Decision(uniform=False)`` when it depends on the numbers (``numbers``:
        the integers the names hold, see :func:`probe_names`)."""
        key = template if numbers is None else f"{template}\0{len(numbers)}"
        memo = self._memo.get(key)
        if memo is None:
            entries = relevant(self.style, self.entries + self.defaults, template)
            hits = {self.match(n) for n in probe_names(template, entries, numbers)}
            memo = Decision(True, hits.pop()) if len(hits) == 1 else Decision(False)
            self._memo[key] = memo
        return memo

    def entry_matches(self, entry: str, name: str) -> bool:
        """Whether one entry matches the name, directly or under a wrapper respelling."""
        if self.style.rule(entry, name) is not None:
            return True
        return any(self.style.rule(entry, alt) is not None for alt, _ in respellings(name))

    def entry_template(self, entry: str, template: str) -> bool | None:
        """True if ``entry`` matches every name of ``template``, False if none,
        None if some (then ask :meth:`entry_matches` for the real names)."""
        got = {self.entry_matches(entry, n) for n in probe_names(template, (entry,))}
        return got.pop() if len(got) == 1 else None


#: class names that compressed-tensors / ModelOpt targets use, and the module kind they mean
CLASS_KINDS: Final[dict[str, str]] = {
    "Linear": "linear", "LinearBase": "linear", "Embedding": "embedding",
}

_RULE_RANK: Final = {"exact": 0, "regex": 1, "components": 1, "glob": 1, "prefix": 1,
                     "suffix": 1, "substring": 1, "class": 2, "default": 3}


def hit_rank(hit: Hit) -> int:
    """How specific a target hit is (compressed-tensors: exact name, then regex,
    then class name; a producer default last)."""
    return _RULE_RANK.get(hit.rule, 1)


def is_class_entry(entry: str) -> bool:
    """A ``targets`` entry naming a module class (``Linear``), not a module."""
    return (not entry.startswith("re:") and "." not in entry and entry[:1].isupper()
            and entry.isidentifier())


@lru_cache(maxsize=256)
def _split_targets(entries: tuple[str, ...]
                   ) -> tuple[frozenset[str], tuple[str, ...], tuple[str, ...]]:
    """(exact names, ``re:`` entries, class names) of a targets list."""
    classes = tuple(e for e in entries if is_class_entry(e))
    regexes = tuple(e for e in entries if e.startswith("re:"))
    names = frozenset(e for e in entries if e not in classes and e not in regexes)
    return names, regexes, classes


@dataclass(frozen=True)
class Targets:
    """Which modules a quantization group applies to.

    ``entries`` use compressed-tensors' target syntax (exact module names,
    ``re:`` regexes matched with ``re.match``, class names); the most specific
    kind of entry wins (exact, then regex, then class). Class names resolve
    through ``CLASS_KINDS`` against the module kind the caller gives (``linear``,
    ``embedding``, ...). ``default(name, kind)`` is the producer's rule when no
    entry matches (``every linear layer``); ``style`` names the syntax."""

    entries: tuple[str, ...] = ()
    style: Style = COMPRESSED_TENSORS
    default: Callable[[str, str], bool] | None = None
    default_label: str = ""

    def unresolvable(self) -> list[str]:
        """Class-name entries that cannot be told from tensor names."""
        return [e for e in self.entries if is_class_entry(e) and e not in CLASS_KINDS]

    def match(self, name: str, kind: str) -> Hit | None:
        names, regexes, classes = _split_targets(self.entries)
        for spelled, via in [(name, None), *respellings(name)]:
            if spelled in names:
                return Hit(spelled, "exact", via_prefix=via)
            got = COMPRESSED_TENSORS.first(regexes, spelled)
            if got is not None:
                return Hit(*got, via_prefix=via)
            if via is None:
                for e in classes:
                    if CLASS_KINDS.get(e) == kind:
                        return Hit(e, "class")
            if not self.entries:
                break
        if self.default is not None and self.default(name, kind):
            return Hit(self.default_label, "default", implicit=True)
        return None
