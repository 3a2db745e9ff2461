"""`bench report`: report.md with figures (or one HTML file) from run folders (the work: harness/report/)."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from harness.commands.compare import BASELINE_HELP, PATHS_HELP, TARGET_HELP
from harness.errors import BenchError

NAME = "report"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME, help="write report.md with figures (or one HTML file) from run folders",
        description="Write a report readable on GitHub: environment per machine, the commands that made the runs, "
                    "the compare table, figures and observations.")
    p.add_argument("paths", nargs="+", metavar="RUN_DIR|GLOB", help=PATHS_HELP)
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for report.md and its PNGs "
                   "(created if missing; files of the same names are replaced)")
    p.add_argument("--format", choices=("md", "html"), default="md",
                   help="md: report.md + PNGs (default); html: one self-contained report.html")
    p.add_argument("--target-acc", type=float, metavar="ACC", help=TARGET_HELP)
    p.add_argument("--baseline", metavar="MACHINE|KEY=VALUE", help=BASELINE_HELP)
    p.add_argument("--title", help="report title (default: the models and backends compared)")
    p.add_argument("--layers", action="store_true",
                   help="add an appendix with each trained model's per-layer table in both frameworks (`bench "
                        "summary`; builds each model once per framework in a child process: seconds to a minute "
                        "per model)")


def run(args: argparse.Namespace) -> int:
    from harness.report.compare import load_all
    from harness.report.inference import check_any
    from harness.report.markdown import build_report, write_report

    out = Path(args.out)
    _check_writable(out)  # fail before minutes of plotting, not after
    runs, infers = load_all(args.paths)
    check_any(runs, infers)
    command = shlex.join(["bench", "report", *args.paths, "--out", str(out)]
                         + (["--format", args.format] if args.format != "md" else [])
                         + (["--target-acc", f"{args.target_acc:g}"] if args.target_acc is not None else [])
                         + (["--baseline", args.baseline] if args.baseline else [])
                         + (["--layers"] if args.layers else []))
    files = build_report(runs, infers, fmt=args.format, target_acc=args.target_acc, baseline=args.baseline,
                         title=args.title, command=command, layers=args.layers)
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
