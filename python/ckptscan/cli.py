"""Command line: thin over the API. Imports are lazy so that --help is instant."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .result import Report

# Exit codes, in one place.
EXIT_OK = 0
EXIT_FINDINGS = 1      # findings at the --fail-on level; for diff: differences not allowed
EXIT_USAGE = 2         # usage or I/O error
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141        # the reader of stdout went away


def _color(stream: TextIO, args: argparse.Namespace | None = None) -> bool:
    from .render.console import wants_color

    return wants_color(stream, getattr(args, "color", None) or "auto")


def _width(args: argparse.Namespace) -> int:
    from .render.console import DEFAULT_WIDTH, width_of

    return DEFAULT_WIDTH if getattr(args, "output", None) else width_of(sys.stdout)


def _deep_bar(deep: bool) -> Any:
    if not (deep and sys.stderr.isatty()):
        return None
    from .render.console import DeepProgressBar

    return DeepProgressBar(sys.stderr)


def _write(data: str | bytes, args: argparse.Namespace) -> None:
    """To --output FILE, else stdout."""
    if args.output:
        if isinstance(data, bytes):
            with open(args.output, "wb") as fb:
                fb.write(data)
        else:
            with open(args.output, "w", encoding="utf-8") as ft:
                ft.write(data)
    elif isinstance(data, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        sys.stdout.write(data)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ckptscan",
        description="What is inside a safetensors checkpoint: precision, FP8 quantization, "
                    "block scales, damaged or missing shards, NaN/Inf -- without loading it.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def terminal_options(sp: argparse.ArgumentParser, quiet: str) -> None:
        sp.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour the text output (default auto: on a terminal, unless "
                             "NO_COLOR is set; FORCE_COLOR forces it)")
        sp.add_argument("-q", "--quiet", action="count", default=0, help=quiet)

    def remote_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--max-requests", type=int, default=None, metavar="N",
                        help="remote sources: requests in flight at once (default 64)")

    def report_options(sp: argparse.ArgumentParser, fail_on: str) -> None:
        sp.add_argument("--format", choices=("text", "json", "md", "html", "github"),
                        default="text",
                        help="html: one self-contained page (charts, precision map, findings "
                             "filters); github: GitHub Actions annotations (::error "
                             "file=...::), one per finding")
        sp.add_argument("--deep", action="store_true",
                        help="read every tensor's data: NaN/Inf, FP8 codes, block scales")
        sp.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="threads for --deep (default: one per core)")
        sp.add_argument("--fail-on", choices=("error", "warning", "info", "never"),
                        default=fail_on,
                        help="exit 1 when a finding at this level or above exists "
                             f"(default: {fail_on})")
        sp.add_argument("--select", action="append", metavar="CODE,...",
                        help="only these finding codes; a prefix selects a family "
                             "(--select scale- or --select fp8)")
        sp.add_argument("--ignore", action="append", metavar="CODE,...",
                        help="leave out these finding codes (or prefixes)")
        sp.add_argument("--baseline", metavar="FILE",
                        help="findings accepted as they are: a file --write-baseline wrote, "
                             "or a --format json report; matched by code, file and tensor")
        sp.add_argument("--write-baseline", metavar="FILE",
                        help="write the findings (after --select/--ignore) to FILE as a "
                             "baseline, then report as if it were given with --baseline")
        sp.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
        terminal_options(sp, "-q: only the findings, one line each (text format); -qq: "
                             "nothing, only the exit code")

    r = sub.add_parser(
        "report", help="report on checkpoints (a directory, a .safetensors file, a Hugging "
                       "Face cache repository or ORG/NAME repo id, or a URL: "
                       "hf://ORG/NAME[@REV][/SUBDIR], https://..., s3://, gs://, az://)")
    r.add_argument("paths", nargs="+", metavar="PATH")
    r.add_argument("--revision", metavar="REV",
                   help="for a Hugging Face cache repository or an hf:// URL: the branch, tag "
                        "or commit (default: main)")
    r.add_argument("--follow-symlinks", action="store_true",
                   help="read files that symlinks lead to outside the checkpoint")
    remote_options(r)
    r.add_argument("--max-bytes", type=_byte_count, default=None, metavar="N",
                   help="with --deep: refuse, before reading, to read more than N bytes of "
                        "tensor data (suffixes K, M, G, T: powers of 1024)")
    r.add_argument("--against", metavar="URL",
                   help="compare every local file's size with the Hub's (hf://ORG/NAME[@REV]"
                        "[/SUBDIR]): corrupt, truncated, missing and extra files are findings")
    r.add_argument("--hash", action="store_true",
                   help="with --against: also compare SHA-256 (LFS files) and git blob ids "
                        "(reads every byte of the local copy)")
    report_options(r, "error")
    d = sub.add_parser("demo", help="write a small FP8 MiniMax-M2-shaped checkpoint with planted "
                                    "defects and report on it with --deep")
    d.add_argument("--dir", metavar="DIR",
                   help="write the demo checkpoint here and keep it (default: a temp dir)")
    report_options(d, "never")  # the demo's defects are planted: finding them is success
    df = sub.add_parser(
        "diff", help="compare two checkpoints: tensors added, removed, renamed, re-typed; "
                     "config; with --deep, bytes",
        description="Compares checkpoint A with checkpoint B (any path `report` takes that "
                    "holds one checkpoint). Renames are found on name templates: a changed "
                    "prefix or renumbered layers count as one rename of many tensors. Exit 0 "
                    "when they do not differ (or only as --allow allows), 1 when they do.",
        epilog="--allow rules, comma-separated or repeated: KIND or KIND:PATTERN, KIND one of "
               "added, removed, renamed (renames), dtype, shape, scheme, bytes, config, "
               "quantization. PATTERN: a glob on tensor names (added:*.bias); for dtype and "
               "scheme also FROM->TO (dtype:F32->BF16, dtype:*->F8_E4M3); for config and "
               "quantization a dotted key glob that also covers what is under it "
               "(config:_name_or_path, config:text_config.rope_scaling). Example: "
               "--allow renames,config:_name_or_path,dtype:F32->BF16")
    df.add_argument("a", metavar="A")
    df.add_argument("b", metavar="B")
    df.add_argument("--deep", action="store_true",
                    help="also compare the bytes of paired tensors of equal dtype and shape "
                         "(a 128-bit digest of each, read in pieces)")
    df.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="threads for --deep (default: one per core)")
    df.add_argument("--allow", action="append", metavar="RULE,...",
                    help="differences that are expected (see below)")
    df.add_argument("--format", choices=("text", "json", "md", "html"), default="text",
                    help="html: one self-contained page")
    df.add_argument("--revision-a", metavar="REV", help="A's revision (Hugging Face cache)")
    df.add_argument("--revision-b", metavar="REV", help="B's revision (Hugging Face cache)")
    df.add_argument("--follow-symlinks", action="store_true",
                    help="read files that symlinks lead to outside the checkpoints")
    df.add_argument("--output", "-o", metavar="FILE", help="write the comparison to FILE")
    terminal_options(df, "-q: only the result line; -qq: nothing, only the exit code")
    v = sub.add_parser(
        "verify", help="compare a quantized checkpoint with the high-precision checkpoint it "
                       "was made from: error per tensor, block, role and layer; scale defects",
        description="Dequantizes every quantized weight of CANDIDATE (FP8 block / channel / "
                    "tensor / group scales, MXFP8, NVFP4, MXFP4, gpt-oss, DeepSeek-V4 FP4) and "
                    "compares it with its tensor in SOURCE (BF16 / F16 / F32): relative error, "
                    "SQNR, cosine, max abs error, clipped values, per tensor and per block. "
                    "Names scales applied the wrong way, transposed or shifted block scales, "
                    "clipping, errors above the format's bound, weights left unquantized and "
                    "tensors missing on either side. Exit 1 on findings at --fail-on.",
        epilog="Bounds (relative error) default to the largest error round to nearest gives "
               "in the format: E4M3 0.0625 (0.125 under E8M0 scales), E5M2 0.125, E2M1 0.25; "
               "--threshold E4M3=0.05 overrides one.")
    v.add_argument("candidate", metavar="CANDIDATE")
    v.add_argument("--against", required=True, metavar="SOURCE",
                   help="the high-precision checkpoint CANDIDATE was made from")
    v.add_argument("--format", choices=("text", "json", "md", "html"), default="text",
                   help="json: schema ckptscan.verify/1; html: one self-contained page")
    v.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="threads (default: one per core)")
    v.add_argument("--threshold", action="append", metavar="FORMAT=VALUE",
                   help="relative-error bound for a format (e4m3, e5m2, e2m1 ...), repeatable")
    v.add_argument("--fail-on", choices=("error", "warning", "info", "never"), default="error",
                   help="exit 1 when a finding at this level or above exists (default: error)")
    v.add_argument("--select", action="append", metavar="CODE,...",
                   help="only these finding codes (or prefixes)")
    v.add_argument("--ignore", action="append", metavar="CODE,...",
                   help="leave out these finding codes (or prefixes)")
    v.add_argument("--revision", metavar="REV", help="CANDIDATE's revision (Hugging Face cache "
                                                     "or hf://)")
    v.add_argument("--against-revision", metavar="REV", help="SOURCE's revision")
    v.add_argument("--follow-symlinks", action="store_true",
                   help="read files that symlinks lead to outside the checkpoints")
    remote_options(v)
    v.add_argument("--output", "-o", metavar="FILE", help="write the result to FILE")
    terminal_options(v, "-q: only the findings, one line each; -qq: nothing, only the exit "
                        "code")
    t = sub.add_parser(
        "tensors", help="one row per tensor (name, dtype, shape, role, layer, expert, shard, "
                        "offsets ...) as CSV, JSON Lines or Parquet")
    t.add_argument("path", metavar="PATH")
    t.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv",
                   help="parquet needs pyarrow (pip install 'ckptscan[table]')")
    t.add_argument("--revision", metavar="REV", help="for a Hugging Face cache repository")
    t.add_argument("--follow-symlinks", action="store_true",
                   help="read files that symlinks lead to outside the checkpoint")
    t.add_argument("--output", "-o", metavar="FILE", help="write the table to FILE")
    doc = sub.add_parser("doctor", help="versions, CPU features and the active SIMD kernels")
    doc.add_argument("--format", choices=("text", "json"), default="text")
    c = sub.add_parser("codes", help="list every finding code, or explain some",
                       description="Every finding code with its severity; with CODE, what "
                                   "it means (a prefix such as scale- names a family).")
    c.add_argument("codes", nargs="*", metavar="CODE")
    c.add_argument("--format", choices=("text", "json"), default="text")
    f = sub.add_parser(
        "farm", help="scan every checkpoint under ROOTs into a SQLite store, or query the store",
        description="Finds every checkpoint under the ROOTs (directories, Hugging Face cache "
                    "snapshots, single .safetensors files), scans the new and changed ones in "
                    "parallel into a SQLite store and prints one row per checkpoint. Without "
                    "ROOT, queries the store only.")
    f.add_argument("roots", nargs="*", metavar="ROOT",
                   help="directories, files, or URLs: an s3:// gs:// az:// prefix, hf://ORG "
                        "(its models), hf://ORG/NAME, a checkpoint's http(s):// URL")
    f.add_argument("--from-file", metavar="FILE",
                   help="also the roots listed in FILE, one path or URL per line ('-': stdin)")
    f.add_argument("--db", metavar="PATH",
                   help="the store (default: $XDG_CACHE_HOME/ckptscan/farm.db, "
                        "~/.cache/ckptscan/farm.db)")
    f.add_argument("--where", metavar="SQL",
                   help="only rows matching this SQL condition on the store's columns, "
                        "e.g. \"errors > 0\" or \"quant_method = 'fp8' AND shards > 100\"")
    f.add_argument("--findings", action="store_true",
                   help="one row per finding instead of one per checkpoint")
    f.add_argument("--format", choices=("table", "json", "jsonl", "csv", "html"),
                   default="table",
                   help="json: one document; jsonl: JSON Lines, one row per line; html (with "
                        "-o FILE): a sortable page, and each checkpoint's report in FILE.d/")
    f.add_argument("--output", "-o", metavar="FILE", help="write the rows to FILE")
    f.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="checkpoints scanned at once (default: one per core)")
    f.add_argument("--io-jobs", type=int, default=16, metavar="N",
                   help="header reads in flight per checkpoint (default 16; more on network "
                        "storage)")
    f.add_argument("--deep", action="store_true",
                   help="read every tensor's data (NaN/Inf, FP8 codes, block scales)")
    f.add_argument("--rescan", action="store_true",
                   help="scan every checkpoint again, changed or not")
    f.add_argument("--prune", action="store_true",
                   help="also forget stored checkpoints under roots that are empty or "
                        "unreadable now (an unmounted mount point keeps its history without)")
    f.add_argument("--follow-symlinks", action="store_true",
                   help="follow symlinks that leave a root or a checkpoint")
    f.add_argument("--processes", action="store_true",
                   help="scan in worker processes instead of threads")
    f.add_argument("--dask", metavar="ADDRESS",
                   help="run the scans on this Dask scheduler (pip install 'ckptscan[dask]'); "
                        "its workers must see the same paths")
    f.add_argument("--ray", metavar="ADDRESS",
                   help="run the scans on this Ray cluster ('auto': the one this machine "
                        "belongs to, 'local': start one here; pip install 'ckptscan[ray]'), "
                        "with one request budget (--max-requests) shared by all its workers")
    remote_options(f)
    f.add_argument("--fail-on", choices=("error", "warning", "info", "never"), default="error",
                   help="exit 1 when a listed checkpoint has a finding at this level "
                        "(default: error)")
    f.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour the table (default auto: on a terminal, unless NO_COLOR)")
    return p


def _selection(args: argparse.Namespace) -> tuple[list[str], list[str], Any]:
    """--select / --ignore (checked against the registry) and the --baseline."""
    from .errors import CkptScanError
    from .selection import Baseline, check_selectors, split_codes

    select, ignore = split_codes(args.select), split_codes(args.ignore)
    try:
        check_selectors(select + ignore)
        baseline = Baseline.load(args.baseline) if args.baseline else None
    except ValueError as exc:
        raise CkptScanError(str(exc)) from None
    return select, ignore, baseline


def _emit(reports: list[Report], args: argparse.Namespace) -> int:
    """Renders the reports as asked and returns the exit code."""
    from .render import to_json, to_markdown, to_text
    from .selection import Baseline

    select, ignore, baseline = _selection(args)
    shown = [r.filtered(select, ignore) for r in reports]
    if args.write_baseline:
        baseline = Baseline.from_reports(shown)
        baseline.path = args.write_baseline
        with open(args.write_baseline, "wb") as fh:
            import orjson

            fh.write(orjson.dumps(baseline.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
        if args.quiet < 2:
            print(f"ckptscan: wrote {len(baseline):,} accepted findings to "
                  f"{args.write_baseline}", file=sys.stderr)
    if baseline is not None:
        shown = [r.filtered(baseline=baseline) for r in shown]
    left_out = sum(len(r.findings) for r in reports) - sum(len(r.findings) for r in shown)
    one: Report | list[Report] = shown[0] if len(shown) == 1 else shown
    if args.quiet < 2:
        if args.format == "json":
            data = to_json(one).decode() + "\n"
        elif args.format == "md":
            data = to_markdown(one)
        elif args.format == "github":
            from .render.github import to_github

            data = to_github(one)
        elif args.format == "html":
            from .render.html import to_html

            data = to_html(one)
        else:
            data = to_text(one, color=args.output is None and _color(sys.stdout, args),
                           width=_width(args), quiet=args.quiet > 0)
        _write(data, args)
        if left_out and not args.quiet:
            why = [w for w, on in (("--select/--ignore", select or ignore),
                                   (f"the baseline {baseline.path}" if baseline is not None
                                    and baseline.path else "the baseline", baseline))
                   if on]
            print(f"ckptscan: {left_out:,} finding{'s' * (left_out != 1)} left out by "
                  f"{' and '.join(why)}", file=sys.stderr)
    failed = any(r.fails(args.fail_on) for r in shown)
    return EXIT_FINDINGS if failed else EXIT_OK


def _scan(paths: list[str], args: argparse.Namespace) -> list[Report]:
    from .errors import CkptScanError
    from .layout import LayoutError, is_url, resolve

    progress = _deep_bar(args.deep)
    against = getattr(args, "against", None)
    if getattr(args, "hash", False) and against is None:
        raise CkptScanError("--hash goes with --against URL")
    if against is not None:  # listed once, before anything is scanned
        from .remote.against import reference

        against = reference(against, args.hash)
    remote = None
    if any(is_url(p) for p in paths):  # local paths never import the remote code
        from .remote import RemoteOptions

        remote = RemoteOptions(max_requests=getattr(args, "max_requests", None))
    reports = []
    for path in paths:
        try:
            specs = resolve(path, revision=getattr(args, "revision", None),
                            follow_symlinks=getattr(args, "follow_symlinks", False),
                            remote=remote)
        except LayoutError as exc:
            raise CkptScanError(str(exc)) from None
        # Imported once a URL's reads are under way: the imports overlap them.
        from .pipeline import ScanOptions, scan_spec

        options = ScanOptions(deep=args.deep, jobs=args.jobs, progress=progress,
                              max_bytes=getattr(args, "max_bytes", None), against=against,
                              hash=getattr(args, "hash", False))
        try:
            if against is not None and (len(specs) != 1 or specs[0].remote is not None):
                raise CkptScanError(f"{path}: --against compares one local checkpoint "
                                    f"(this is {len(specs)} checkpoints"
                                    f"{', remote' if specs and specs[0].remote else ''})")
            reports += [scan_spec(spec, options).report for spec in specs]
        finally:
            if any(s.remote is not None for s in specs):
                from .remote import close_sources

                close_sources(specs)
    return reports


def _byte_count(text: str) -> int:
    """'500000', '64M', '10G' (powers of 1024) -> bytes."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in units and t[-1:] else ""
    try:
        value = float(t[:-1] if unit else t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r}")
    return int(value * units[unit])


def _demo(args: argparse.Namespace) -> int:
    import tempfile

    from .synth import PLANTS, write_small_minimax

    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
        path, _ = write_small_minimax(args.dir, plant=list(PLANTS))
        args.deep = True
        return _emit(_scan([str(path)], args), args)
    with tempfile.TemporaryDirectory(prefix="ckptscan-demo-") as tmp:
        path, _ = write_small_minimax(tmp, plant=list(PLANTS))
        args.deep = True
        return _emit(_scan([str(path)], args), args)


def _doctor(args: argparse.Namespace) -> int:
    import platform
    from importlib import metadata

    import numpy

    from . import __version__
    from .kernels import simd_info

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    info = simd_info()
    optional = {name: version(name) for name in ("ml_dtypes", "pyarrow", "pandas", "polars",
                                                 "distributed", "urllib3", "obstore")}
    if args.format == "json":
        import orjson

        doc = {"schema": "ckptscan.doctor/1", "ckptscan": __version__,
               "python": platform.python_version(), "executable": sys.executable,
               "platform": platform.platform(), "numpy": numpy.__version__,
               "optional": optional, "simd": info,
               "simd_env": os.environ.get("CKPTSCAN_SIMD")}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(f"ckptscan {__version__}")
        print(f"python {platform.python_version()} ({sys.executable})")
        print(f"numpy {numpy.__version__}")
        for name, v in optional.items():
            print(f"{name} {v}" if v else f"{name} not installed (optional)")
        for key, value in info.items():
            print(f"{key}: {value}")
    if info.get("error"):
        print(f"problem: CKPTSCAN_SIMD={os.environ.get('CKPTSCAN_SIMD', '')!r}: "
              f"{info['error']}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    from .diff import compare, parse_rules
    from .errors import CkptScanError
    from .render import diff as render

    try:
        rules = parse_rules(args.allow or ())
    except ValueError as exc:
        raise CkptScanError(str(exc)) from None
    d = compare(args.a, args.b, deep=args.deep, jobs=args.jobs, progress=_deep_bar(args.deep),
             revision_a=args.revision_a, revision_b=args.revision_b,
             follow_symlinks=args.follow_symlinks)
    violations = d.violations(rules)
    if args.quiet >= 2:
        pass
    elif args.quiet:
        _write(f"ckptscan diff: {render.verdict(d, rules)}\n", args)
    elif args.format == "json":
        _write(render.to_json(d, rules), args)
    elif args.format == "md":
        _write(render.to_markdown(d, rules), args)
    elif args.format == "html":
        _write(render.to_html(d, rules), args)
    else:
        _write(render.to_text(d, rules, color=args.output is None and _color(sys.stdout, args),
                              width=_width(args)), args)
    return EXIT_FINDINGS if violations else EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .errors import CkptScanError
    from .render import verify as render
    from .selection import check_selectors, selected, split_codes
    from .verify import parse_thresholds, verify

    select, ignore = split_codes(args.select), split_codes(args.ignore)
    try:
        thresholds = parse_thresholds(args.threshold or ())
        check_selectors(select + ignore)
    except ValueError as exc:
        raise CkptScanError(str(exc)) from None
    bar = None
    if sys.stderr.isatty():
        from .render.console import DeepProgressBar

        bar = DeepProgressBar(sys.stderr, "verify")
    result = verify(args.candidate, args.against, jobs=args.jobs, thresholds=thresholds,
                    progress=bar, revision=args.revision,
                    against_revision=args.against_revision,
                    follow_symlinks=args.follow_symlinks, max_requests=args.max_requests)
    shown = replace(result, findings=[f for f in result.findings
                                      if selected(f.code, select, ignore)])
    if args.quiet < 2:
        if args.format == "json":
            data: str | bytes = render.to_json(shown)
        elif args.format == "md":
            data = render.to_markdown(shown)
        elif args.format == "html":
            data = render.to_html(shown)
        else:
            data = render.to_text(shown, color=args.output is None and _color(sys.stdout, args),
                                  width=_width(args), quiet=args.quiet > 0)
        _write(data, args)
    return EXIT_FINDINGS if shown.fails(args.fail_on) else EXIT_OK


def _tensors(args: argparse.Namespace) -> int:
    import io

    from .errors import CkptScanError
    from .layout import LayoutError, resolve
    from .table import open_spec, tensor_table

    try:
        specs = resolve(args.path, revision=args.revision,
                        follow_symlinks=args.follow_symlinks)
    except LayoutError as exc:
        raise CkptScanError(str(exc)) from None
    if len(specs) != 1:
        raise CkptScanError(f"{args.path} holds {len(specs)} checkpoints: name one of them "
                            f"({', '.join(s.path for s in specs[:4])} ...)")
    if args.format == "parquet" and not args.output and sys.stdout.isatty():
        raise CkptScanError("--format parquet writes binary data: give --output FILE (or "
                            "redirect stdout)")
    from .frame import build_frame

    ckpt = open_spec(specs[0])
    try:
        for s in ckpt.shards:
            if s.problems:
                print(f"ckptscan: {s.path}: {s.problems[0].message} (left out; ckptscan "
                      "report says more)", file=sys.stderr)
        healthy = [s for s in ckpt.shards if not s.problems]
        table = tensor_table(build_frame(ckpt, shards=healthy), specs[0].path)
        if args.format == "parquet":
            try:
                table.to_arrow()
            except ImportError as exc:
                raise CkptScanError(f"--format parquet: {exc}") from None
            buf = io.BytesIO()
            table.write_parquet(buf)
            _write(buf.getvalue(), args)
        elif args.format == "jsonl":
            out = io.BytesIO()
            table.write_jsonl(out)
            _write(out.getvalue(), args)
        else:
            text = io.StringIO()
            table.write_csv(text)
            _write(text.getvalue(), args)
    finally:
        ckpt.close()
    return EXIT_OK


def _farm(args: argparse.Namespace) -> int:
    from .errors import CkptScanError
    from .farm import scan_farm
    from .farm.store import Store
    from .farm.table import FarmProgressBar, format_rows, summary_lines
    from .layout import is_url

    if args.format == "html" and args.findings:
        raise CkptScanError("farm --format html shows checkpoints (each links to its "
                            "findings); --findings lists rows as table, json, jsonl or csv")
    if args.format == "html" and not args.output:
        raise CkptScanError("farm --format html writes a page and a folder of per-checkpoint "
                            "pages: give -o FILE")
    roots = list(args.roots) + (_listed_roots(args.from_file) if args.from_file else [])
    remote = None
    if any(is_url(r) for r in roots):  # local roots never import the remote code
        from .remote import RemoteOptions

        remote = RemoteOptions(args.max_requests)
    try:
        if roots:
            bar = FarmProgressBar(sys.stderr) if sys.stderr.isatty() else None
            result = scan_farm(roots, db=args.db, jobs=args.jobs, deep=args.deep,
                               io_jobs=args.io_jobs, dask=args.dask, processes=args.processes,
                               rescan=args.rescan, prune=args.prune,
                               follow_symlinks=args.follow_symlinks, progress=bar,
                               ray=args.ray, remote=remote)
            paths: list[str] | None = [r["path"] for r in result.rows]
            db = result.db
        else:
            result, paths, db = None, None, args.db
        with Store(db, create=False, readonly=True) as store:
            rows = store.query(args.where, paths, "findings" if args.findings else "checkpoints")
            if args.findings:
                listed = {r["checkpoint"] for r in rows}
                counts = store.query(None, listed)
            else:
                counts = rows
    except KeyboardInterrupt:
        _stopping()
        print("ckptscan: interrupted; every checkpoint finished so far is stored, run again "
              "to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.format == "html":
        from .render.html import write_farm

        with Store(db, create=False, readonly=True) as store:
            write_farm(rows, store.load_report, args.output)
    else:
        data = format_rows(rows, args.format, findings=args.findings,
                           color=args.output is None and _color(sys.stdout, args))
        if args.output:
            with open(args.output, "w", encoding="utf-8", newline="") as fh:
                fh.write(data)
        else:
            sys.stdout.write(data)
    if result is not None:
        for line in summary_lines(result):
            print(line, file=sys.stderr)
    if args.fail_on == "never":
        return EXIT_OK
    keys = {"error": ("errors",), "warning": ("errors", "warnings"),
            "info": ("errors", "warnings", "infos")}[args.fail_on]
    return EXIT_FINDINGS if any(r[k] for r in counts for k in keys) else EXIT_OK


def _listed_roots(name: str) -> list[str]:
    """--from-file: one path or URL per line; blank lines and # comments skipped."""
    from .errors import CkptScanError

    try:
        if name == "-":
            text = sys.stdin.read()
        else:
            with open(name, encoding="utf-8") as fh:
                text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise CkptScanError(f"--from-file {name}: {exc}") from None
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _codes(args: argparse.Namespace) -> int:
    from .codes import CODES, iter_codes
    from .errors import CkptScanError
    from .selection import check_selectors, matches

    if args.codes:
        try:
            check_selectors(args.codes)
        except ValueError as exc:
            raise CkptScanError(str(exc)) from None
    chosen = [c for c in iter_codes() if not args.codes or any(matches(c.code, s)
                                                               for s in args.codes)]
    if args.format == "json":
        import orjson

        doc = [{"code": c.code, "severity": str(c.severity), "subject": c.subject,
                "description": c.description, "root_cause": c.root} for c in chosen]
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.codes:
        from .render.console import width_of, wrap

        width = width_of(sys.stdout)
        for c in chosen:
            print(f"{c.code}: {c.severity}, about the {c.subject}"
                  + (", a root cause" if c.root else ""))
            for line in wrap(c.description, width, "  "):
                print(line)
            if c.root:
                for line in wrap("A root cause: the findings that follow from it (the tensors "
                                 "a broken file took along ...) are listed under it instead "
                                 "of on their own.", width, "  "):
                    print(line)
            print(f"  --select {c.code} / --ignore {c.code}; "
                  f"{sum(1 for k in CODES if k.split('-')[0] == c.code.split('-')[0])} codes "
                  f"share the prefix {c.code.split('-')[0]}-")
    else:
        for c in chosen:
            print(f"{c.code:<26} {str(c.severity):<8} {c.description}")
    return EXIT_OK


def _stopping() -> None:
    """After the first Ctrl-C the process is on its way out: further ones are
    ignored, so that it always exits in order (no abort mid-cleanup)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"ckptscan {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from .errors import CkptScanError

    try:
        if args.command == "report":
            return _emit(_scan(args.paths, args), args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "diff":
            return _diff(args)
        if args.command == "verify":
            return _verify(args)
        if args.command == "tensors":
            return _tensors(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "farm":
            return _farm(args)
        return _codes(args)
    except BrokenPipeError:
        # The reader went away (`ckptscan codes | head -1`): stop quietly, and keep
        # Python from complaining about the flush at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    except CkptScanError as exc:
        print(f"ckptscan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"ckptscan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _stopping()
        print("ckptscan: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
