"""results/reference/: the quick suite measured on this project's CI-class machine, small enough to ship.

A newcomer's first ``bench report results/reference <their folder>`` compares their machine
with it, lined up by key (harness/report/lineup.py). ``scripts/make-reference.sh`` runs the
suite into a temporary folder and calls :func:`copy_reference`, which keeps only what reports
read, as CSV and JSON: each run's run.json, epochs.csv and infer.csv whole, util.csv thinned
to at most :data:`UTIL_ROWS` evenly spaced samples per rank (the utilisation figures bin to
a few hundred points anyway), and the suite's suite.json. Checkpoints, ONNX files and logs
stay behind. The copy is built beside the destination and swapped in only when it is complete
and under the size limit, so a failed regeneration leaves the shipped reference as it was.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

from harness.errors import BenchError
from harness.experiments.runner import SUITE_JSON  # the suite's own summary (statuses of every cell), kept
from harness.schema import EPOCHS_CSV, INFER_CSV, REFERENCE_JSON, RUN_JSON, UTIL_CSV, find_runs, move_aside, write_json

LIMIT_BYTES = 900_000  # issue 14: "well under 1 MB"
UTIL_ROWS = 150  # samples kept per rank: 5 min at 2 s resolution
KEEP_WHOLE = (RUN_JSON, EPOCHS_CSV, INFER_CSV)


def thin_util(text: str, rows_per_rank: int = UTIL_ROWS) -> str:
    """util.csv with at most ``rows_per_rank`` samples per rank, evenly spaced, first and last
    kept; the header and every column unchanged (so it reads as any util.csv)."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return text
    rank_col = header.index("rank") if "rank" in header else None
    by_rank: dict[str, list[list[str]]] = {}
    for row in reader:
        if len(row) == len(header):  # a torn last line is dropped, as the reader does
            by_rank.setdefault(row[rank_col] if rank_col is not None else "0", []).append(row)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for rows in by_rank.values():
        if len(rows) > rows_per_rank:
            step = (len(rows) - 1) / (rows_per_rank - 1)
            rows = [rows[round(i * step)] for i in range(rows_per_rank)]
        writer.writerows(rows)
    return out.getvalue()


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def write_mark(dest: Path, source: Path | None = None) -> None:
    """REFERENCE_JSON beside the runs: reports read them as a machine of their own, even beside
    runs of the same hardware (harness/schema/read.py reference_view)."""
    suite = None
    if source is not None and (source / SUITE_JSON).is_file():
        try:
            suite = json.loads((source / SUITE_JSON).read_text()).get("suite")
        except (OSError, ValueError, AttributeError):
            suite = None
    write_json(dest / REFERENCE_JSON, {
        "reference": True, "suite": suite, "regenerate": "scripts/make-reference.sh",
        "why": "the published figures a newcomer's first `bench report results/reference <folder>` lines up with; "
               "reports show these runs as their own machine, labelled 'reference'"})


def copy_reference(source: Path, dest: Path, *, limit_bytes: int = LIMIT_BYTES,
                   util_rows: int = UTIL_ROWS) -> tuple[int, int]:
    """Copy the small files of every run under ``source`` to ``dest`` (replacing it whole);
    (number of runs, bytes written). BenchError, with ``dest`` untouched, when there are no
    runs or the copy would exceed ``limit_bytes``."""
    source, dest = Path(source), Path(dest)
    runs = find_runs([str(source)])
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for run in runs:
            target = staging / run.name
            target.mkdir()
            for name in KEEP_WHOLE:
                if (run / name).is_file():
                    shutil.copyfile(run / name, target / name)
            if (run / UTIL_CSV).is_file():
                (target / UTIL_CSV).write_text(thin_util((run / UTIL_CSV).read_text(), util_rows))
        if (source / SUITE_JSON).is_file():
            shutil.copyfile(source / SUITE_JSON, staging / SUITE_JSON)
        write_mark(staging, source)
        size = folder_size(staging)
        if size > limit_bytes:
            raise BenchError(f"the reference would take {size / 1000:.0f} kB, over the {limit_bytes / 1000:.0f} kB "
                             f"limit: keep fewer util.csv rows (--util-rows) or fewer cells in the suite")
        old = dest.with_name(f".{dest.name}-old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():  # the swap: schema.move_aside renames (never over a file) and fsyncs the folder
            move_aside(dest, old)
        move_aside(staging, dest)
        shutil.rmtree(old, ignore_errors=True)
        return len(runs), size
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.report.reference",
                                description="Copy the small files of a suite's run folders into results/reference/.")
    p.add_argument("source", type=Path, help="the suite's --out folder (or any folder of run folders)")
    p.add_argument("dest", type=Path, help="where the reference goes (replaced whole), e.g. results/reference")
    p.add_argument("--limit-kb", type=int, default=LIMIT_BYTES // 1000, help="refuse a copy larger than this")
    p.add_argument("--util-rows", type=int, default=UTIL_ROWS, help="util.csv samples kept per rank")
    args = p.parse_args(argv)
    try:
        if args.util_rows < 2:
            raise BenchError(f"--util-rows {args.util_rows}: keep at least 2 (the first and the last sample)")
        n, size = copy_reference(args.source, args.dest, limit_bytes=args.limit_kb * 1000, util_rows=args.util_rows)
    except BenchError as exc:
        print(f"make-reference: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.dest}: {n} runs, {size / 1000:.0f} kB (limit {args.limit_kb} kB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
