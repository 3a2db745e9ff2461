"""`bench compare`: one table of speed, accuracy and utilisation across run folders.

The work is in harness/report/ (compare.py for training runs, inference.py for `bench infer`
folders); this module parses the flags and writes the table where asked.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from harness.errors import BenchError
from harness.report.compare import BASELINE_KEYS
from harness.report.table import FORMATS

NAME = "compare"
PATHS_HELP = ("run folders (results/<run_id>) of `bench run` or `bench infer`, globs, or results folders "
              "holding runs; from any machine")
TARGET_HELP = "test accuracy to time, as a fraction (0.6) or percent (60): adds the time to reach it"
BASELINE_HELP = (f"MACHINE (a machine's label or hostname, or a folder of its runs): the machine the line-up by "
                 f"key divides by (default: the first folder's); or KEY=VALUE, KEY one of {', '.join(BASELINE_KEYS)} "
                 "(e.g. backend=torch, machine=laptop): adds speed-up and accuracy difference against that row of "
                 "each configuration")

HEADINGS = {"lineup": "Machines lined up by comparison key"}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME, help="one table of speed, accuracy and utilisation across runs",
        description="Validate run folders (from any machines) and print one table: repeats of a configuration "
                    "grouped, speeds as medians over the epochs after the first.")
    p.add_argument("paths", nargs="+", metavar="RUN_DIR|GLOB", help=PATHS_HELP)
    p.add_argument("--target-acc", type=float, metavar="ACC", help=TARGET_HELP)
    p.add_argument("--baseline", metavar="MACHINE|KEY=VALUE", help=BASELINE_HELP)
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text: aligned table for the terminal (default); csv/json: every field, unrounded (csv: "
                        "without the line-up by key of several machines)")
    p.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE instead of standard output")


def run(args: argparse.Namespace) -> int:
    from harness.report.compare import compare_runs, load_all
    from harness.report.inference import check_any, infer_records, infer_table
    from harness.report.lineup import check_machine_baseline, format_lineup, line_up, machine_count, split_baseline
    from harness.report.table import format_table
    from harness.schema import atomic_write_bytes

    runs, infers = load_all(args.paths, with_util=False)  # the table needs epochs.csv only
    check_any(runs, infers)
    if runs and infers and args.format == "csv":
        raise BenchError("--format csv holds one table: pass the `bench run` folders and the `bench infer` "
                         "folders in two separate calls")
    table_baseline, machine_baseline = split_baseline(args.baseline)
    parts: list[tuple[str, str, Sequence[Any]]] = []  # (kind, text, its rows: only counted)
    if runs:
        _, groups = compare_runs(runs, target_acc=args.target_acc, baseline=table_baseline)
        parts.append(("training", format_table(groups, args.format), groups))
        if args.format in ("text", "markdown"):  # a precision x compile comparison, when the runs hold one
            from harness.report.precision import format_precision_table
            table = format_precision_table(groups, args.format)
            if table:
                head = "### " if args.format == "markdown" else ""
                parts[-1] = ("training", parts[-1][1] + f"\n{head}Precision x compile\n\n{table}", groups)
    if infers:
        records = infer_records(infers)
        parts.append(("inference", infer_table(records, args.format), records))
    if machine_count(runs, infers) > 1 and args.format != "csv":
        lineup = line_up(runs, infers, baseline=machine_baseline)
        body = (json.dumps(lineup.as_dict(), indent=2) + "\n" if args.format == "json"
                else format_lineup(lineup, args.format))
        parts.append(("lineup", body, lineup.keys))
    else:
        check_machine_baseline(args.baseline)
    if len(parts) == 1:
        text = parts[0][1]
    elif args.format == "json":  # one JSON document holding both lists
        text = json.dumps({kind: json.loads(body) for kind, body, _ in parts}, indent=2) + "\n"
    else:
        head = "## " if args.format == "markdown" else ""
        text = "\n".join(f"{head}{HEADINGS.get(kind, kind.capitalize())}\n\n{body}" for kind, body, _ in parts)
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
