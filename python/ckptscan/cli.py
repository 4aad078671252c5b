"""Command line: thin over the API. Imports are lazy so that --help is instant."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .result import Report

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


def _color(stream: TextIO) -> bool:
    from .render.console import wants_color

    return wants_color(stream)


class _ProgressBar:
    """A one-line bar on stderr, only on a terminal: tensors and bytes read."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = -1

    def __call__(self, p: Any) -> None:
        from .render.text import human_bytes

        pct = 100 * p.bytes_done // p.bytes_total if p.bytes_total else 100
        if pct == self.last and p.tensors_done < p.tensors_total:
            return
        self.last = pct
        bar = "#" * (pct // 4)
        self.stream.write(f"\r  deep scan [{bar:<25}] {pct:3d}% {p.tensors_done:,}/"
                          f"{p.tensors_total:,} tensors, {human_bytes(p.bytes_done)}/"
                          f"{human_bytes(p.bytes_total)}")
        if p.tensors_done >= p.tensors_total:
            self.stream.write("\n")
        self.stream.flush()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ckptscan",
        description="What is inside a safetensors checkpoint: precision, FP8 quantization, "
                    "block scales, damaged or missing shards, NaN/Inf -- without loading it.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def remote_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--max-requests", type=int, default=None, metavar="N",
                        help="remote sources: requests in flight at once (default 64)")

    def report_options(sp: argparse.ArgumentParser, fail_on: str) -> None:
        sp.add_argument("--format", choices=("text", "json", "md"), default="text")
        sp.add_argument("--deep", action="store_true",
                        help="read every tensor's data: NaN/Inf, FP8 codes, block scales")
        sp.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="threads for --deep (default: one per core)")
        sp.add_argument("--fail-on", choices=("error", "warning", "info", "never"),
                        default=fail_on,
                        help="exit 1 when a finding at this level or above exists "
                             f"(default: {fail_on})")
        sp.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")

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
    sub.add_parser("doctor", help="versions, CPU features and the active SIMD kernels")
    sub.add_parser("codes", help="list every finding code with its severity")
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
    f.add_argument("--format", choices=("table", "json", "jsonl", "csv"), default="table",
                   help="json: one document; jsonl: JSON Lines, one row per line")
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
    return p


def _emit(reports: list[Report], args: argparse.Namespace) -> int:
    from .findings import Severity
    from .render import to_json, to_markdown, to_text

    out: TextIO = sys.stdout
    one: Report | list[Report] = reports[0] if len(reports) == 1 else reports
    if args.format == "json":
        data = to_json(one).decode() + "\n"
    elif args.format == "md":
        data = to_markdown(one)
    else:
        data = to_text(one, color=args.output is None and _color(out))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(data)
    else:
        out.write(data)
    worst = max((w for r in reports if (w := r.worst()) is not None), default=None)
    if args.fail_on == "never" or worst is None:
        return EXIT_OK
    return EXIT_FINDINGS if worst >= Severity.parse(args.fail_on) else EXIT_OK


def _scan(paths: list[str], args: argparse.Namespace) -> list[Report]:
    from .errors import CkptScanError
    from .layout import LayoutError, is_url, resolve

    progress = _ProgressBar(sys.stderr) if args.deep and sys.stderr.isatty() else None
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


def _doctor() -> int:
    import platform

    import numpy

    from . import __version__
    from .kernels import simd_info

    print(f"ckptscan {__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"numpy {numpy.__version__}")
    try:
        import ml_dtypes

        print(f"ml_dtypes {ml_dtypes.__version__}")
    except ImportError:
        print("ml_dtypes not installed (optional: typed BF16/FP8 views)")
    info = simd_info()
    for key, value in info.items():
        print(f"{key}: {value}")
    if info.get("error"):
        print(f"problem: CKPTSCAN_SIMD={os.environ.get('CKPTSCAN_SIMD', '')!r}: "
              f"{info['error']}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _farm(args: argparse.Namespace) -> int:
    from .farm import scan_farm
    from .farm.store import Store
    from .farm.table import FarmProgressBar, format_rows, summary_lines
    from .layout import is_url

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
        with Store(db, create=bool(roots)) as store:
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
        return 130
    data = format_rows(rows, args.format, findings=args.findings,
                       color=args.output is None and _color(sys.stdout))
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


def _codes() -> int:
    from .codes import iter_codes

    for c in iter_codes():
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
        if args.command == "doctor":
            return _doctor()
        if args.command == "farm":
            return _farm(args)
        return _codes()
    except BrokenPipeError:
        # The reader went away (`ckptscan codes | head -1`): stop quietly, and keep
        # Python from complaining about the flush at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except CkptScanError as exc:
        print(f"ckptscan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"ckptscan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _stopping()
        print("ckptscan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
