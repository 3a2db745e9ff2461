"""The precision x compile table: per backend and machine, what each (--precision, --compile)
cell gives against float32 eager on the same machine.

Rows come from :func:`harness.report.compare.group_runs` (repeats already folded). Cells
that differ only in precision and compile form one block; its baseline is the block's
``fp32``/``none`` row (no baseline in the folders: speed-up and Δacc stay empty rather than
being measured against something else). Energy columns are filled where the runs measured
energy (``energy_j``/``images_per_j``), and left out of the table when no row has them.
"""
from __future__ import annotations

from typing import Any

from harness.precision import COMPILE_MODES, PRECISION_NAMES
from harness.report.table import num, render_cells

BASE = ("fp32", "none")
NOTE = ("img/s: steady-state training images/s (epochs after the first, and never an epoch in which "
        "the compiler ran); speed-up: over fp32 eager (--precision fp32 --compile none) of the same "
        "backend, machine and configuration; Δacc pp: best test accuracy minus fp32 eager's, in "
        "percentage points; compile s: compile time of the run (first epoch and any recompiles), "
        "included in its elapsed time (time-to-accuracy); cache: whether inductor's cache held entries "
        "before the run (warm) or not (cold); * : every timed epoch compiled, so the speed includes compile time.")


def _block_key(g: dict[str, Any]) -> tuple:
    config = {k: v for k, v in (g.get("_config") or {}).items() if k not in ("precision", "compile")}
    return (g["machine"], g["backend"], tuple(sorted((k, str(v)) for k, v in config.items())))


def _order(g: dict[str, Any]) -> tuple[int, int]:
    p, c = str(g.get("precision") or "fp32"), str(g.get("compile") or "none")
    return (PRECISION_NAMES.index(p) if p in PRECISION_NAMES else 99, COMPILE_MODES.index(c) if c in COMPILE_MODES else 99)


def precision_rows(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per group with ``speedup`` and ``acc_diff`` against its block's fp32 eager
    row; [] when no block holds more than one (precision, compile) cell."""
    blocks: dict[tuple, list[dict[str, Any]]] = {}
    for g in groups:
        blocks.setdefault(_block_key(g), []).append(g)
    out: list[dict[str, Any]] = []
    for members in blocks.values():
        if len({(g.get("precision"), g.get("compile")) for g in members}) < 2:
            continue
        base = next((g for g in members if (g.get("precision") or "fp32", g.get("compile") or "none") == BASE), None)
        for g in sorted(members, key=_order):
            ips, acc = g.get("train_images_per_s"), g.get("best_test_acc")
            out.append({
                "machine": g["machine"], "backend": g["backend"], "model": g.get("model"), "device": g.get("device"),
                "precision": g.get("precision") or "fp32", "compile": g.get("compile") or "none",
                "train_images_per_s": ips,
                "speedup": ips / base["train_images_per_s"] if base and ips and base.get("train_images_per_s") else None,
                "best_test_acc": acc,
                "acc_diff": acc - base["best_test_acc"] if base and acc is not None
                and base.get("best_test_acc") is not None else None,
                "compile_s": g.get("compile_s"), "compile_cache": g.get("compile_cache"),
                "steady_compiled": bool(g.get("steady_compiled")),
                "energy_j": g.get("energy_j"), "images_per_j": g.get("images_per_j"),
                "peak_pct": g.get("peak_pct"), "runs": g.get("runs", 1),
            })
    return out


def precision_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[bool]]:
    """(headers, cells, right-aligned) of :func:`precision_rows`; energy and % peak columns only
    where some row has them."""
    energy = any(r["images_per_j"] is not None or r["energy_j"] is not None for r in rows)
    peak = any(r["peak_pct"] is not None for r in rows)
    headers = ["machine", "backend", "model", "device", "precision", "compile", "runs", "img/s", "speed-up",
               "best acc %", "Δacc pp", "compile s", "cache"]
    if energy:
        headers += ["J/epoch", "img/J"]
    if peak:
        headers += ["% peak"]
    cells = []
    for r in rows:
        cache = (r["compile_cache"] or "").split(" ")[0] if r["compile"] != "none" else ""
        row = [r["machine"], r["backend"], str(r["model"]), str(r["device"]), r["precision"], r["compile"],
               str(r["runs"]), num(r["train_images_per_s"]) + ("*" if r["steady_compiled"] else ""),
               "" if r["speedup"] is None else f"{r['speedup']:.2f}x",
               "" if r["best_test_acc"] is None else f"{100 * r['best_test_acc']:.1f}",
               "" if r["acc_diff"] is None else f"{100 * r['acc_diff']:+.1f}",
               num(r["compile_s"]), cache]
        if energy:
            row += [num(r["energy_j"]), num(r["images_per_j"])]
        if peak:
            row += [num(r["peak_pct"])]
        cells.append(row)
    right = [h not in ("machine", "backend", "model", "device", "precision", "compile", "cache") for h in headers]
    return headers, cells, right


def format_precision_table(groups: list[dict[str, Any]], fmt: str = "text") -> str:
    """The table as text or Markdown ('' when the groups hold no precision/compile comparison)."""
    rows = precision_rows(groups)
    if not rows:
        return ""
    headers, cells, right = precision_table(rows)
    return render_cells(headers, cells, right, fmt, NOTE)
