"""Render the compare rows as an aligned terminal table, Markdown, CSV or JSON.

Text and Markdown are for people: percent, rounded, "median (min–max)" in one cell, and
columns that are empty for every row (GPU on a CPU-only comparison) left out. CSV and JSON
are for programs: every public field, in the schema's units (accuracy as a fraction),
unrounded, min and max in their own fields.
"""
from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from dataclasses import dataclass
from typing import Any, Callable

FORMATS = ("text", "csv", "markdown", "json")

NOTE = ("Speeds are medians over the epochs after the first (warm-up); the range in brackets is "
        "min–max over those epochs for one run, or across the runs' medians for several. "
        "Accuracy: top-1 on the test set. CPU/GPU %: mean utilisation while training; "
        "RSS/GPU MiB: peak memory. GFLOP/s: training FLOPs per second (3 x forward per image).")
PEAK_NOTE = (" % peak: of this machine's float32 matmul peak for the run's backend and device, measured by "
             "`bench sysinfo --peak`.")
ENERGY_NOTE = (" J/epoch: energy the machine's meters measured over an epoch (training + evaluation, the "
               "whole machine including its idle draw; run.json 'energy' names the meters); img/J: training "
               "images per joule of the training pass.")
BASELINE_NOTE = ("speed-up: training images/s over the {base} row of the same configuration; "
                 "Δacc pp: best test accuracy minus its, in percentage points (same epochs only).")
# Text tables move these into a caption line when every row has the same value.
_COLLAPSIBLE = ("model", "dataset", "device", "batch", "procs", "nodes x procs", "transport", "threads", "epochs",
                "runs")


def num(x: float | None) -> str:
    """Three significant figures or more, at most two decimals: 4,188, 312, 31.8, 3.18."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    a = abs(x)
    return f"{x:,.0f}" if a >= 100 else f"{x:.1f}" if a >= 10 else f"{x:.2f}"


def pct(fraction: float | None) -> str:
    return "" if fraction is None else f"{100 * fraction:.1f}"


def _with_range(g: dict[str, Any], key: str, show: Callable[[Any], str] = num) -> str:
    value, lo, hi = g.get(key), g.get(f"{key}_min"), g.get(f"{key}_max")
    if value is None:
        return ""
    if lo is None or hi is None or show(lo) == show(hi):
        return show(value)
    return f"{show(value)} ({show(lo)}–{show(hi)})"


def _epochs(g: dict[str, Any]) -> str:
    done, planned = g.get("epochs"), g.get("epochs_planned")
    return f"{done}/{planned}" if planned and done is not None and done < planned else str(done)


def _target(g: dict[str, Any]) -> str:
    if g.get("target_acc") is None:
        return ""
    runs = g.get("runs", 1)  # per-run records (the end of `bench run`) have no runs/target_reached
    reached = g.get("target_reached", int(g.get("time_to_target_s") is not None))
    if not reached:
        return "not reached"
    cell = num(g["time_to_target_s"])
    return cell if reached == runs else f"{cell} ({reached}/{runs} runs)"


def _acc(key: str) -> Callable[[dict[str, Any]], str]:
    def cell(g: dict[str, Any]) -> str:
        return _with_range(g, key, pct) if g.get("runs", 1) > 1 else pct(g.get(key))
    return cell


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[dict[str, Any]], str]
    numeric: bool = True
    always: bool = False  # shown even when empty for every row


def _columns(rows: list[dict[str, Any]]) -> list[Column]:
    target = next((g["target_acc"] for g in rows if g.get("target_acc") is not None), None)
    cols = [
        Column("machine", lambda g: str(g["machine"]), False, True),
        Column("backend", lambda g: str(g["backend"]), False, True),
        Column("model", lambda g: str(g["model"]), False, True),
        Column("dataset", lambda g: str(g["dataset"]), False, True),
        Column("device", lambda g: str(g["device"]), False, True),
        Column("batch", lambda g: str(g["batch_size"] or ""), always=True),
        Column("procs", lambda g: str(g["world_size"] or 1), always=True),
        # shown only when some row ran distributed: where the processes ran and what joined them
        Column("nodes x procs", lambda g: str(g.get("layout") or ""), False),
        Column("transport", lambda g: str(g.get("transport") or ""), False),
    ]
    if any((g.get("_config") or {}).get("threads") is not None for g in rows):
        # --threads decides CPU speed; rows that differ only in it would look like repeats
        cols.append(Column("threads", lambda g: str((g.get("_config") or {}).get("threads") or "default"),
                           always=True))
    cols += [
        Column("epochs", _epochs, always=True),
        Column("runs", lambda g: str(g.get("runs", 1)), always=True),
    ]
    if any(g.get("status") != "completed" for g in rows):
        cols.append(Column("status", lambda g: str(g.get("stopped_at") or g.get("status")), False))
    cols += [
        Column("epoch s", lambda g: _with_range(g, "epoch_time_s")),
        Column("train img/s", lambda g: _with_range(g, "train_images_per_s")),
        Column("eval img/s", lambda g: num(g.get("eval_images_per_s"))),
        Column("GFLOP/s", lambda g: num(g.get("train_gflops_per_s"))),
        Column("% peak", lambda g: "" if g.get("peak_pct") is None else f"{g['peak_pct']:.0f}"),
        Column("best acc %", _acc("best_test_acc")),
        Column("final acc %", _acc("final_test_acc")),
    ]
    if target is not None:
        cols.append(Column(f"s to {100 * target:g} %", _target, always=True))
    cols += [
        Column("CPU %", lambda g: num(g.get("cpu_util_mean_pct"))),
        Column("GPU %", lambda g: num(g.get("gpu_util_mean_pct"))),
        Column("RSS MiB", lambda g: num(g.get("rss_peak_mb"))),
        Column("GPU MiB", lambda g: num(g.get("gpu_mem_peak_mb"))),
        Column("J/epoch", lambda g: num(g.get("energy_j"))),
        Column("img/J", lambda g: num(g.get("images_per_j"))),
    ]
    if any("speedup" in g for g in rows):
        cols += [Column("speed-up", lambda g: "" if g.get("speedup") is None else f"{g['speedup']:.2f}x", always=True),
                 Column("Δacc pp", lambda g: "" if g.get("acc_diff_pp") is None else f"{g['acc_diff_pp']:+.1f}",
                        always=True)]
    return cols


def display_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[bool]]:
    """(headers, cells, right-aligned?) with all-empty optional columns removed."""
    cols = _columns(rows)
    cells = [[c.cell(g) for c in cols] for g in rows]
    keep = [i for i, c in enumerate(cols) if c.always or any(r[i] for r in cells)]
    return ([cols[i].header for i in keep], [[r[i] for i in keep] for r in cells], [cols[i].numeric for i in keep])


def public_fields(g: dict[str, Any]) -> dict[str, Any]:
    """The record without internal (``_``) keys, NaN as None."""
    out = {}
    for k, v in g.items():
        if k.startswith("_"):
            continue
        out[k] = None if isinstance(v, float) and math.isnan(v) else v
    return out


def notes(rows: list[dict[str, Any]]) -> str:
    base = next((g["baseline"] for g in rows if g.get("baseline")), None)
    peak = PEAK_NOTE if any(g.get("peak_pct") is not None for g in rows) else ""
    peak += ENERGY_NOTE if any(g.get("energy_j") is not None for g in rows) else ""
    return NOTE + peak + ("\n" + BASELINE_NOTE.format(base=base) if base else "")


def _collapse(headers: list[str], cells: list[list[str]], right: list[bool]):
    """Drop columns with one value for every row (terminals are narrow); say it once above."""
    same = [i for i, h in enumerate(headers)
            if h in _COLLAPSIBLE and len(cells) > 1 and len({r[i] for r in cells}) == 1]
    caption = ", ".join(f"{headers[i]} {cells[0][i]}" for i in same)
    keep = [i for i in range(len(headers)) if i not in same]
    return ([headers[i] for i in keep], [[r[i] for i in keep] for r in cells], [right[i] for i in keep],
            f"All rows: {caption}.\n" if caption else "")


def format_table(rows: list[dict[str, Any]], fmt: str = "text") -> str:
    """``rows`` from :func:`~harness.report.compare.group_runs` (or per-run records)."""
    if fmt == "json":
        return json.dumps([public_fields(g) for g in rows], indent=2) + "\n"
    if fmt == "csv":
        records = [public_fields(g) for g in rows]
        fields = list(dict.fromkeys(k for r in records for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fields, lineterminator="\n")
        writer.writeheader()
        for r in records:
            writer.writerow({k: ";".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v)
                             for k, v in r.items()})
        return buf.getvalue()
    headers, cells, right = display_table(rows)
    caption = ""
    if fmt == "text":
        headers, cells, right, caption = _collapse(headers, cells, right)
    return caption + render_cells(headers, cells, right, fmt, notes(rows))


def render_cells(headers: list[str], cells: list[list[str]], right: list[bool], fmt: str, note: str) -> str:
    """Cells already formatted for people, as a Markdown table or an aligned terminal table,
    with ``note`` below (wrapped at 100 columns for the terminal)."""
    if fmt == "markdown":
        def line(values: list[str]) -> str:
            return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"
        rule = ["---:" if r else ":---" for r in right]
        return "\n".join([line(headers), line(rule)] + [line(r) for r in cells]) + f"\n\n{note}\n"
    if fmt == "text":
        widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

        def row(values: list[str]) -> str:
            return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()
        lines = [row(headers), "  ".join("-" * w for w in widths)] + [row(r) for r in cells]
        wrapped = "\n".join(textwrap.fill(p, 100) for p in note.split("\n"))
        return "\n".join(lines) + f"\n\n{wrapped}\n"
    raise ValueError(f"unknown table format {fmt!r}; one of {', '.join(FORMATS)}")
