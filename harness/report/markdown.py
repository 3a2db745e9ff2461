"""``bench report``: report.md with its PNGs beside it, or one self-contained report.html.

The report is built once as a list of blocks (heading, paragraph, table, code, figure,
list) and rendered to either format, so the two never drift apart. Everything is rendered
in memory first and written at the end, each file atomically: a failure part-way (a
damaged run, a full disk) leaves the output folder as it was, never half a report.
"""
from __future__ import annotations

import base64
import html
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from harness import __version__
from harness.errors import BenchError
from harness.report.compare import compare_runs, machine_label, scaling_rows
from harness.report.environment import environment_tables, package_lists, reproduce_commands
from harness.report.figures import FigureFile, make_figures
from harness.report.inference import (INFERENCE_CAPTION, inference_figure, infer_cells, infer_note,
                                      infer_observations, infer_records)
from harness.report.learning import learning_figures
from harness.report.lineup import check_machine_baseline, line_up, lineup_blocks, machine_count, split_baseline
from harness.report.observations import observe
from harness.report.precision import NOTE as PRECISION_NOTE, precision_rows, precision_table
from harness.report.samples import SAMPLES_PREFIX, SampleGrid, sample_grids
from harness.report.table import display_table, notes as table_notes, num
from harness.schema import InferFolder, RunFolder, atomic_write_bytes

CAPTIONS = {
    "accuracy_epoch.png": "Top-1 accuracy on the test set after each epoch, one line per run. Colour is the "
                          "backend, line style the machine.",
    "accuracy_time.png": "The same against wall-clock time since the run started (setup included): it folds "
                         "speed and accuracy into one picture.",
    "loss.png": "Loss after each epoch: training (solid; the mean over the epoch's steps, with augmentation) and "
                "evaluation (dashed; validation when the run has a valid split, else the test set). One panel per "
                "configuration (its first run).",
    "train_eval_acc.png": "Top-1 accuracy on the training batches (solid; measured while the weights moved, with "
                          "augmentation) against evaluation (dashed): a gap that widens is over-fitting.",
    "throughput.png": "Training images per second, median of the epochs after the first (warm-up). Whiskers: "
                      "min–max over the epochs of one run, or across the runs' medians for repeats.",
    "scaling.png": "Training throughput and scaling efficiency, throughput(N) / (N × throughput(1)), against "
                   "the number of data-parallel processes.",
    "epoch_time.png": "Left: seconds per epoch (training, evaluation and bookkeeping). Right: each run relative "
                      "to its own median after warm-up, so warm-up and drift compare across backends. The grey "
                      "band marks the warm-up epoch.",
    "epoch_breakdown.png": "Share of a typical epoch spent waiting for the next batch, computing the training "
                           "steps, evaluating, and in the rest (checkpoint, logging).",
    "cpu_util.png": "System-wide CPU utilisation sampled during the run (util.csv), one panel per configuration "
                    "(its first run). Grey bands are evaluation passes.",
    "cpu_cores.png": "Utilisation of each logical core over time: a dark row is an idle core, a dark column a "
                     "pause (evaluation, checkpoint).",
    "gpu_util.png": "Utilisation and memory of the GPU each run trained on, sampled during the run (util.csv).",
}


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


# --- building ---------------------------------------------------------------------------------

def build_blocks(runs: list[RunFolder], infers: Sequence[InferFolder] = (), *, target_acc: float | None = None,
                 baseline: str | None = None, title: str | None = None,
                 command: str | None = None, layers: bool = False) -> tuple[list[tuple], list[FigureFile]]:
    """The report as blocks, and its figures: training runs (``runs``) and `bench infer`
    folders (``infers``), either of which may be empty but not both."""
    if not runs and not infers:
        raise BenchError("no runs to report on: pass run folders made by `bench run` or `bench infer`")
    table_baseline, machine_baseline = split_baseline(baseline)
    records, groups = compare_runs(runs, target_acc=target_acc, baseline=table_baseline) if runs else ([], [])
    several = machine_count(runs, infers) > 1
    lineup = line_up(runs, infers, baseline=machine_baseline) if several else None
    if not several:
        check_machine_baseline(baseline)
    order = sorted(range(len(runs)), key=lambda i: tuple(str(records[i][k]) for k in
                                                         ("model", "dataset", "hostname", "device", "backend", "seed")))
    runs, records = [runs[i] for i in order], [records[i] for i in order]
    scaling = scaling_rows(groups)
    inferred = infer_records(list(infers))
    figures = make_figures(runs, records, groups, scaling) if runs else []
    after = next((i + 1 for i, f in enumerate(figures) if f.name == "accuracy_time.png"), 0)
    figures[after:after] = learning_figures(runs, records) if runs else []
    grids = sample_grids(runs) if runs else []
    figures += [FigureFile(g.name, f"Sample images: {g.dataset}", g.png) for g in grids if g.png is not None]
    infer_png = inference_figure(inferred) if inferred else None
    if infer_png is not None:
        figures.append(FigureFile("inference.png", "Inference throughput and latency by batch size", infer_png))
    numbers = {f.name: i + 1 for i, f in enumerate(figures)}
    anchors = {f.name: slug(f"Figure {numbers[f.name]}: {f.title}") for f in figures}

    everything: list[RunFolder | InferFolder] = [*runs, *infers]
    blocks: list[tuple] = [("h", 1, title or _default_title(groups, inferred)), ("p", _intro(records, inferred))]
    found = observe(groups, scaling) if groups else []
    said_infer = infer_observations(inferred)
    if found or said_infer:
        items = [o.text + (f" ([Figure {numbers[o.figure]}](#{anchors[o.figure]}))" if o.figure in numbers else "")
                 for o in found if o.headline or o.figure not in numbers]
        blocks += [("h", 2, "Summary"), ("list", items + said_infer[:2])]
        if runs:
            blocks.append(("p", "More observations follow each figure under Results."))
    if lineup is not None:
        blocks += lineup_blocks(lineup)
    blocks.append(("h", 2, "Environment"))
    for heading, rows in environment_tables(everything):
        blocks += [("h", 3, heading), ("table", ["Field", "Value"], rows, [False, False])]
    blocks += [("h", 2, "How to reproduce"),
               ("p", "Each command below made one run folder (the exact command line recorded in its run.json). "
                     "Run them on a machine like the one named, then build this report from the folders:"),
               ("code", reproduce_commands(everything, command))]
    if runs:
        blocks += _training_blocks(runs, records, groups, scaling, figures, found, numbers)
        blocks += _sample_blocks(grids, numbers)
    if inferred:
        headers, cells, right = infer_cells(inferred)
        blocks += [("h", 2, "Inference"), ("table", headers, cells, right), ("p", infer_note(inferred))]
        if infer_png is not None:
            blocks += [("h", 3, f"Figure {numbers['inference.png']}: {figures[-1].title}"),
                       ("img", "inference.png", figures[-1].title), ("p", INFERENCE_CAPTION)]
        if said_infer:
            blocks.append(("list", said_infer))
        blocks += [("h", 3, "Inference runs"),
                   ("table", ["run", "machine", "backend", "from run", "trained with", "status", "folder"],
                    [[f.run_id, machine_label(f.meta.get("machine") or {}), str((f.meta.get("settings") or {}).get("backend")),
                      str((f.meta.get("source") or {}).get("run_id")), str((f.meta.get("source") or {}).get("trained_with")),
                      str(f.meta.get("status")), f"`{f.path}`"] for f in infers],
                    [False] * 7)]
    if layers:  # `bench report --layers`: per-layer tables, computed in child processes
        from harness.report.layers import layer_appendix

        blocks += layer_appendix(runs)
    packages = package_lists(everything)
    if packages:
        blocks += [("h", 2, "Appendix: Python packages"),
                   ("p", "Every package of the Python environment the runs used (`name==version`, as `pip freeze` "
                         "lists them), per machine.")]
        for label, text in packages:
            blocks += [("h", 3, label), ("code", text)]
    return blocks, figures


def _training_blocks(runs: list[RunFolder], records: list[dict[str, Any]], groups: list[dict[str, Any]],
                     scaling: list[dict[str, Any]], figures: list[FigureFile], found: list[Any],
                     numbers: dict[str, int]) -> list[tuple]:
    """Results (table, scaling, figures with their observations) and the list of runs."""
    headers, cells, right = display_table(groups)
    blocks: list[tuple] = [("h", 2, "Results"), ("table", headers, cells, right), ("p", table_notes(groups))]
    rows = precision_rows(groups)
    if rows:  # more than one (--precision, --compile) cell of a configuration
        blocks += [("h", 3, "Precision x compile"), ("table", *precision_table(rows)), ("p", PRECISION_NOTE)]
    if scaling:
        blocks += [("h", 3, "Scaling"), ("table", ["backend", "model", "machine", "scaling", "processes",
                                                   "nodes x procs", "transport", "train img/s", "speed-up",
                                                   "efficiency %"],
                                         [[r["backend"], r["model"], r["machine"], r["scaling"], str(r["processes"]),
                                           r["layout"], r["transport"] or "", num(r["train_images_per_s"]),
                                           f"{r['speedup']:.2f}x", f"{100 * r['efficiency']:.0f}"] for r in scaling],
                                         [False, False, False, False, True, False, False, True, True, True]),
                   ("p", "efficiency: throughput(N) / (N x throughput of one process), or of the fewest processes "
                         "run; nodes x procs: machines x processes on each; transport: what carried the gradients.")]
    for f in figures:
        if f.name == "inference.png" or f.name.startswith(SAMPLES_PREFIX):
            continue
        blocks += [("h", 3, f"Figure {numbers[f.name]}: {f.title}"), ("img", f.name, f.title),
                   ("p", CAPTIONS.get(f.name, ""))]
        own = [o.text for o in found if o.figure == f.name]
        if own:
            blocks.append(("list", own))
    blocks += [("h", 2, "Runs"), ("table", ["run", "machine", "backend", "seed", "status", "epochs", "train img/s",
                                            "best acc %", "folder"],
                                  [[r["run_id"], r["machine"], r["backend"], str(r["seed"]), r["stopped_at"] or r["status"],
                                    str(r["epochs"]), num(r["train_images_per_s"]),
                                    "" if r["best_test_acc"] is None else f"{100 * r['best_test_acc']:.1f}", f"`{r['path']}`"]
                                   for r in records], [False, False, False, True, False, True, True, True, False])]
    return blocks


def _sample_blocks(grids: list[SampleGrid], numbers: dict[str, int]) -> list[tuple]:
    """'Sample images': per dataset its grid and caption, or the sentence saying why there is none."""
    if not grids:
        return []
    blocks: list[tuple] = [("h", 2, "Sample images")]
    for g in grids:
        if g.png is None:
            blocks += [("h", 3, g.dataset), ("p", g.note)]
        else:
            title = f"Sample images: {g.dataset}"
            blocks += [("h", 3, f"Figure {numbers[g.name]}: {title}"), ("img", g.name, title), ("p", g.note)]
    return blocks


def _default_title(groups: list[dict[str, Any]], inferred: list[dict[str, Any]] = ()) -> str:  # type: ignore[assignment]
    rows = list(groups) or list(inferred)
    models = ", ".join(dict.fromkeys(f"{g['model']} on {g['dataset']}" for g in rows))
    backends = " vs ".join(dict.fromkeys(g["backend"] for g in [*groups, *inferred]))
    what = "" if groups else "inference of "
    return f"bench report: {what}{models}, {backends}"


def _intro(records: list[dict[str, Any]], inferred: list[dict[str, Any]] = ()) -> str:  # type: ignore[assignment]
    machines = list(dict.fromkeys(r["machine"] for r in [*records, *inferred]))
    dates = sorted(str(r["started_at"])[:10] for r in [*records, *inferred] if r.get("started_at"))
    when = (f", recorded {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "")) if dates else ""
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_infer = len({r["run_id"] for r in inferred})
    counted = [f"{n} {what}{'s' if n != 1 else ''}" for n, what in ((len(records), "training run"),
                                                                   (n_infer, "inference run")) if n]
    return (f"{' and '.join(counted)} on {len(machines)} machine"
            f"{'s' if len(machines) != 1 else ''} ({'; '.join(machines)}){when}. Generated by bench {__version__} on {made}.")


# --- rendering --------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *a in blocks:
        if kind == "h":
            out.append(f"{'#' * a[0]} {a[1]}")
        elif kind == "p" and a[0]:
            out.append(a[0])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in a[0]))
        elif kind == "code":
            out.append(f"```sh\n{a[0].rstrip()}\n```")
        elif kind == "img":
            out.append(f"![{a[1]}]({a[0]})")
        elif kind == "table":
            headers, rows, right = a
            lines = ["| " + " | ".join(map(_md_cell, headers)) + " |",
                     "| " + " | ".join("---:" if r else ":---" for r in right) + " |"]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    """Escape, then the two inline forms the blocks use: `code` and [text](href)."""
    s = html.escape(str(text), quote=False)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", lambda m: f'<a href="{html.escape(m[2])}">{m[1]}</a>', s)


_CSS = """body{font:15px/1.5 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1f2328}table{border-collapse:collapse;margin:1em 0;font-size:13px;display:block;overflow-x:auto}
th,td{border:1px solid #d0d7de;padding:4px 8px;white-space:nowrap}th{background:#f6f8fa}td.r{text-align:right}
pre{background:#f6f8fa;padding:1em;overflow-x:auto}code{font-size:90%}img{max-width:100%;border:1px solid #eee}
h2{border-bottom:1px solid #d0d7de;padding-bottom:.3em}"""


def render_html(blocks: list[tuple], figures: dict[str, bytes]) -> str:
    title = next((a[1] for kind, *a in blocks if kind == "h"), "bench report")
    out = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for kind, *a in blocks:
        if kind == "h":
            out.append(f'<h{a[0]} id="{slug(a[1])}">{_inline_html(a[1])}</h{a[0]}>')
        elif kind == "p" and a[0]:
            out.append(f"<p>{_inline_html(a[0])}</p>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in a[0]) + "</ul>")
        elif kind == "code":
            out.append(f"<pre><code>{html.escape(a[0].rstrip())}</code></pre>")
        elif kind == "img":
            data = base64.b64encode(figures[a[0]]).decode("ascii")
            out.append(f'<p><img alt="{html.escape(a[1])}" src="data:image/png;base64,{data}"></p>')
        elif kind == "table":
            headers, rows, right = a
            head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
            body = "".join("<tr>" + "".join(f'<td{" class=r" if r else ""}>{_inline_html(c)}</td>'
                                            for c, r in zip(row, right)) + "</tr>" for row in rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "\n".join(out) + "\n</body></html>\n"


# --- writing ----------------------------------------------------------------------------------

def build_report(runs: list[RunFolder], infers: Sequence[InferFolder] = (), *, fmt: str = "md",
                 target_acc: float | None = None, baseline: str | None = None, title: str | None = None,
                 command: str | None = None, layers: bool = False) -> dict[str, bytes]:
    """File name -> content: report.md + PNGs, or report.html alone."""
    if fmt not in ("md", "html"):
        raise BenchError(f"--format {fmt}: choose md or html")
    blocks, figures = build_blocks(runs, infers, target_acc=target_acc, baseline=baseline, title=title, command=command,
                                   layers=layers)
    if fmt == "html":
        return {"report.html": render_html(blocks, {f.name: f.png for f in figures}).encode()}
    return {"report.md": render_markdown(blocks).encode()} | {f.name: f.png for f in figures}


def write_report(out: Path, files: dict[str, bytes]) -> list[Path]:
    """Create ``out`` if needed and write every file atomically, figures before the report
    that links them. BenchError if the folder cannot be made or written."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        order = sorted(files, key=lambda name: name.startswith("report."))
        for name in order:
            atomic_write_bytes(out / name, files[name])  # mode from the umask, like open()
    except OSError as exc:
        raise BenchError(f"cannot write the report to {out} ({exc.strerror or exc}): choose a folder you can "
                         f"write to with --out") from None
    return [out / name for name in order]
