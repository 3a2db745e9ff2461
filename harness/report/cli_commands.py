"""``bench compare`` and ``bench report`` as argparse sub-commands, for ``harness.cli``.

``harness.cli`` calls :func:`add_compare_parser` / :func:`add_report_parser` on its
sub-parsers; each sets ``func`` to :func:`run_compare` / :func:`run_report`, which return
the exit status and raise :class:`~harness.errors.BenchError` for the user's mistakes (the
CLI prints those as one line and exits 2). ``python -m harness.report`` runs the two on
their own.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from harness.errors import BenchError
from harness.report.compare import BASELINE_KEYS, compare_runs, load_all
from harness.report.inference import check_any, infer_records, infer_table
from harness.report.table import FORMATS, format_table
from harness.results import atomic_write_bytes

_PATHS_HELP = ("run folders (results/<run_id>) of `bench run` or `bench infer`, globs, or results folders "
               "holding runs; from any machine")
_TARGET_HELP = "test accuracy to time, as a fraction (0.6) or percent (60): adds the time to reach it"
_BASELINE_HELP = (f"KEY=VALUE, KEY one of {', '.join(BASELINE_KEYS)} (e.g. backend=torch, machine=laptop): "
                  "adds speed-up and accuracy difference against that row of each configuration")


def add_compare_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare", help="one table of speed, accuracy and utilisation across runs",
        description="Validate run folders (from any machines) and print one table: repeats of a configuration "
                    "grouped, speeds as medians over the epochs after the first.")
    p.add_argument("paths", nargs="+", metavar="RUN_DIR|GLOB", help=_PATHS_HELP)
    p.add_argument("--target-acc", type=float, metavar="ACC", help=_TARGET_HELP)
    p.add_argument("--baseline", metavar="KEY=VALUE", help=_BASELINE_HELP)
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text: aligned table for the terminal (default); csv/json: every field, unrounded")
    p.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE instead of standard output")
    p.set_defaults(func=run_compare)
    return p


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="write report.md with figures (or one HTML file) from run folders",
        description="Write a report readable on GitHub: environment per machine, the commands that made the runs, "
                    "the compare table, figures and observations.")
    p.add_argument("paths", nargs="+", metavar="RUN_DIR|GLOB", help=_PATHS_HELP)
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for report.md and its PNGs "
                   "(created if missing; files of the same names are replaced)")
    p.add_argument("--format", choices=("md", "html"), default="md",
                   help="md: report.md + PNGs (default); html: one self-contained report.html")
    p.add_argument("--target-acc", type=float, metavar="ACC", help=_TARGET_HELP)
    p.add_argument("--baseline", metavar="KEY=VALUE", help=_BASELINE_HELP)
    p.add_argument("--title", help="report title (default: the models and backends compared)")
    p.set_defaults(func=run_report)
    return p


def run_compare(args: argparse.Namespace) -> int:
    runs, infers = load_all(args.paths, with_util=False)  # the table needs epochs.csv only
    check_any(runs, infers)
    if runs and infers and args.format == "csv":
        raise BenchError("--format csv holds one table: pass the `bench run` folders and the `bench infer` "
                         "folders in two separate calls")
    parts = []
    if runs:
        _, groups = compare_runs(runs, target_acc=args.target_acc, baseline=args.baseline)
        parts.append(("training", format_table(groups, args.format), groups))
    if infers:
        records = infer_records(infers)
        parts.append(("inference", infer_table(records, args.format), records))
    if len(parts) == 1:
        text = parts[0][1]
    elif args.format == "json":  # one JSON document holding both lists
        text = json.dumps({kind: json.loads(body) for kind, body, _ in parts}, indent=2) + "\n"
    else:
        head = "## " if args.format == "markdown" else ""
        text = "\n".join(f"{head}{kind.capitalize()}\n\n{body}" for kind, body, _ in parts)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        atomic_write_bytes(Path(args.output), text.encode())
    except OSError as exc:
        raise BenchError(f"cannot write {args.output} ({exc.strerror or exc}): check that its folder exists "
                         f"and is writable") from None
    rows = sum(len(p[2]) for p in parts)
    print(f"wrote {args.output} ({rows} row{'s' if rows != 1 else ''})", file=sys.stderr)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from harness.report.markdown import build_report, write_report

    out = Path(args.out)
    _check_writable(out)  # fail before minutes of plotting, not after
    runs, infers = load_all(args.paths)
    check_any(runs, infers)
    command = shlex.join(["bench", "report", *args.paths, "--out", str(out)]
                         + (["--format", args.format] if args.format != "md" else [])
                         + (["--target-acc", f"{args.target_acc:g}"] if args.target_acc is not None else [])
                         + (["--baseline", args.baseline] if args.baseline else []))
    files = build_report(runs, infers, fmt=args.format, target_acc=args.target_acc, baseline=args.baseline,
                         title=args.title, command=command)
    written = write_report(out, files)
    figures = len(files) - 1 if args.format == "md" else 0
    print(f"wrote {written[-1]}" + (f" and {figures} figures" if figures else ""), file=sys.stderr)
    return 0


def _check_writable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file: give a folder for report.md and its figures")
    parent = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BenchError(f"--out {out}: {parent} is not writable; choose a folder you can write to")


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.report compare|report ...``: the two commands without the rest of bench."""
    parser = argparse.ArgumentParser(prog="python -m harness.report")
    sub = parser.add_subparsers(dest="command", required=True)
    add_compare_parser(sub)
    add_report_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
