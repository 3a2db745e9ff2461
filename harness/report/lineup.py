"""Runs from several machines lined up by comparison key: one table per key, machines as columns.

Phoronix's ``merge-results`` idea: every run.json carries a key that names *what* was measured
(experiment, version, the settings that change the measurement, the schema), never *where*
(EXPERIMENTS.md), so folders from machines that never met line up by it. For each key this
module takes the median of the repeats on each machine (with their count n), the ratio of
each machine's headline figure to the baseline machine's, and over the keys every machine has,
the geometric mean of those ratios (the one number a suite gives per machine; a geometric mean
because ratios multiply: 2x on one key and 0.5x on another is no net change). Keys that only
some machines have are listed, never silently dropped.
"""
from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import BenchError
from harness.experiments.keys import key_of_run
from harness.report.compare import short_cpu, short_gpu, summarise_run
from harness.report.table import num, pct
from harness.schema import InferFolder, RunFolder, find_runs, read_meta, reference_view

# Per kind, the figures of a key's table: (field, label, formatter); the first is the headline
# whose ratios the geometric mean takes. All headlines are "higher is better" rates.
Figure = tuple[str, str, Callable[[Any], str]]
TRAIN_FIGURES: tuple[Figure, ...] = (
    ("train_images_per_s", "train img/s", num), ("epoch_time_s", "epoch time s", num),
    ("best_test_acc", "best test acc %", pct), ("rss_peak_mb", "peak RSS MiB", num))
INFER_FIGURES: tuple[Figure, ...] = (
    ("images_per_s", "infer img/s (largest batch)", num), ("latency_p50_ms", "p50 latency ms (smallest batch)", num),
    ("top1_acc", "top-1 acc %", pct))
NOTE = ("Each column is one machine; a figure is the median over that machine's repeats of the key (n). "
        "Ratios are the headline figure (first row) over the baseline machine's: above 1 is faster.")


# --- keys -------------------------------------------------------------------------------------

def folder_key(meta: dict[str, Any]) -> str:
    """The comparison key of a run folder: the one its run.json records (a suite's child
    writes it), or, for folders written before keys existed, recomputed from its settings."""
    recorded = meta.get("key")
    if isinstance(recorded, str) and recorded:
        return recorded
    return key_of_run(meta)


def describe(meta: dict[str, Any]) -> str:
    """What a key measured, for people: 'quick/resnet20-train: backend=torch, threads=2'."""
    exp = meta.get("experiment") or {}
    if exp.get("name"):
        cell = exp.get("cell") or {}
        axes = ", ".join(f"{k}={_show(v)}" for k, v in cell.items())
        name = f"{exp['suite']}/{exp['name']}" if exp.get("suite") else str(exp["name"])
        return f"{name}: {axes}" if axes else name
    s = meta.get("settings") or {}
    backend = s.get("backend") or (meta.get("backend") or {}).get("name") or "?"
    if meta.get("kind") == "infer":
        return f"ad hoc: infer {backend} {s.get('model', '?')} on {s.get('device', '?')}"
    return (f"ad hoc: {backend} {s.get('model', '?')} {s.get('dataset', '?')} batch {s.get('batch_size', '?')} "
            f"on {s.get('device', '?')}, {s.get('epochs', '?')} epochs")


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


# --- machines ---------------------------------------------------------------------------------

@dataclass
class Machine:
    id: str  # machine_id (hostname when a folder lacks one)
    hostname: str
    hardware: str  # 'A10G' or 'i7-1165G7 (8 threads)'
    label: str = ""  # what tables show: hardware, after the hostname when two machines share it


def machine_of(meta: dict[str, Any]) -> Machine:
    m = meta.get("machine") or {}
    gpus = [g for g in (m.get("gpus") or []) if isinstance(g, dict)]
    if gpus:
        names = [short_gpu(g.get("name")) for g in gpus]
        hardware = " + ".join(dict.fromkeys(f"{names.count(n)}x {n}" if names.count(n) > 1 else n for n in names))
    else:
        threads = f" ({m['cpu_logical_cores']} threads)" if m.get("cpu_logical_cores") else ""
        hardware = short_cpu(m.get("cpu_model")) + threads
    host = str(m.get("hostname") or "?")
    if m.get("reference"):  # a published reference set (harness/schema/read.py reference_view)
        hardware = f"reference: {hardware}"
    return Machine(str(m.get("machine_id") or host), host, hardware)


def label_machines(machines: list[Machine]) -> None:
    """Short labels: the hardware alone; two machines with the same hardware (they differ only
    by hostname) get the hostname too, and two with the same hostname as well the id."""
    for m in machines:
        same = [o for o in machines if o.hardware == m.hardware]
        m.label = m.hardware if len(same) == 1 else f"{m.hostname}: {m.hardware}"
        if sum(o.hostname == m.hostname for o in same) > 1:
            m.label = f"{m.hostname} #{m.id[:6]}: {m.hardware}"


# --- the line-up ------------------------------------------------------------------------------

@dataclass
class Entry:
    """One key on one machine: the figures (median over its n repeats) and the folders."""
    n: int
    figures: dict[str, float | None]
    run_ids: list[str]


@dataclass
class KeyRow:
    key: str
    kind: str  # "train" or "infer"
    description: str
    entries: dict[str, Entry] = field(default_factory=dict)  # machine id -> entry
    ratios: dict[str, float | None] = field(default_factory=dict)  # machine id -> headline / baseline's

    @property
    def figures(self) -> tuple[Figure, ...]:
        return INFER_FIGURES if self.kind == "infer" else TRAIN_FIGURES


@dataclass
class Lineup:
    machines: list[Machine]
    baseline: Machine
    keys: list[KeyRow]
    geomean: dict[str, float | None]  # machine id -> geometric mean of its ratios over `shared`
    shared: list[str]  # keys every machine has a headline figure for
    partial: list[KeyRow]  # keys only some machines have
    # (key, machine id) -> why that machine could not run the key (its suite.json: support.py)
    unsupported: dict[tuple[str, str], str] = field(default_factory=dict)

    def missing(self, row: KeyRow) -> list[str]:
        """The machines without ``row``, each with the reason its suite recorded, if any."""
        return [m.label + (f" (unsupported there: {why})" if (why := self.unsupported.get((row.key, m.id))) else "")
                for m in self.machines if m.id not in row.entries]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``--format json``: labels instead of ids, every figure unrounded."""
        names = {m.id: m.label for m in self.machines}
        return {
            "machines": [{"label": m.label, "machine_id": m.id, "hostname": m.hostname} for m in self.machines],
            "baseline": self.baseline.label, "shared_keys": len(self.shared),
            "geomean": {names[i]: v for i, v in self.geomean.items()},
            "headline": {"train": TRAIN_FIGURES[0][0], "infer": INFER_FIGURES[0][0]},
            "keys": [{"key": k.key, "kind": k.kind, "description": k.description,
                      "machines": {names[i]: {"n": e.n, **e.figures, "ratio": k.ratios.get(i), "run_ids": e.run_ids}
                                   for i, e in k.entries.items()}} for k in self.keys],
            "partial": [{"key": k.key, "description": k.description, "on": [names[i] for i in k.entries],
                         "missing": self.missing(k)} for k in self.partial],
        }


def machine_count(runs: Sequence[RunFolder], infers: Sequence[InferFolder] = ()) -> int:
    folders: list[RunFolder | InferFolder] = [*runs, *infers]
    return len({machine_of(f.meta).id for f in folders})


def line_up(runs: Sequence[RunFolder], infers: Sequence[InferFolder] = (), *,
            baseline: str | None = None) -> Lineup:
    """Line ``runs`` (training) and ``infers`` up by key; machines in order of first appearance
    (so the first folder given is the default baseline)."""
    machines: dict[str, Machine] = {}
    samples: dict[str, tuple[KeyRow, dict[str, list[tuple[str, dict[str, Any]]]]]] = {}
    folders: list[RunFolder | InferFolder] = [*runs, *infers]
    for folder in folders:  # argument order
        machine = machines.setdefault(machine_of(folder.meta).id, machine_of(folder.meta))
        key = folder_key(folder.meta)
        kind = "infer" if isinstance(folder, InferFolder) else "train"
        row, per_machine = samples.setdefault(key, (KeyRow(key, kind, describe(folder.meta)), {}))
        figures = _infer_figures(folder) if isinstance(folder, InferFolder) else summarise_run(folder)
        per_machine.setdefault(machine.id, []).append((folder.run_id, figures))
    if not machines:
        raise BenchError("no runs to line up: pass run folders made by `bench run` or `bench infer`")
    order = list(machines.values())
    label_machines(order)
    base = resolve_baseline(baseline, order)
    rows = []
    for row, per_machine in samples.values():
        for mid, found in per_machine.items():
            row.entries[mid] = Entry(len(found), {name: _median([f.get(name) for _, f in found])
                                                  for name, _, _ in row.figures}, [rid for rid, _ in found])
        rows.append(row)
    rows.sort(key=lambda r: (r.kind != "train", r.description, r.key))
    for row in rows:
        head = row.figures[0][0]
        ref = row.entries.get(base.id)
        for mid, entry in row.entries.items():
            value, ref_value = entry.figures.get(head), ref.figures.get(head) if ref else None
            row.ratios[mid] = value / ref_value if value is not None and ref_value else None
    shared = [r for r in rows if all(r.ratios.get(m.id) is not None for m in order)]
    geomean = {m.id: (math.exp(statistics.fmean(math.log(ratio) for r in shared
                                                     if (ratio := r.ratios[m.id]) is not None)) if shared else None)
               for m in order}
    partial = [r for r in rows if len(r.entries) < len(order)]
    return Lineup(order, base, rows, geomean, [r.key for r in shared], partial, unsupported_here(folders))


def unsupported_here(folders: Sequence[RunFolder | InferFolder]) -> dict[tuple[str, str], str]:
    """(key, machine id) -> why: the cells a suite recorded as unsupported on its machine
    (harness/experiments/support.py). A suite's suite.json sits beside its run folders, and
    those folders say which machine ran it; an unsupported cell itself has no folder."""
    from harness.experiments.runner import SUITE_JSON
    from harness.experiments.support import UNSUPPORTED

    machine_by_suite = {f.path.parent: machine_of(f.meta).id for f in folders}
    found: dict[tuple[str, str], str] = {}
    for parent, mid in machine_by_suite.items():
        try:
            summary = json.loads((parent / SUITE_JSON).read_text())
        except (OSError, ValueError):
            continue
        cells = (summary.get("cells") if isinstance(summary, dict) else None) or []
        for c in cells:
            if isinstance(c, dict) and c.get("status") == UNSUPPORTED and c.get("key"):
                reason = next((a.get("reason") for a in c.get("attempts") or [] if a.get("reason")), "")
                found[(str(c["key"]), mid)] = str(reason or "no reason recorded")
    return found


def resolve_baseline(spec: str | None, machines: list[Machine]) -> Machine:
    """``--baseline``: a machine's label, hostname or id prefix, ``machine=`` any of those, or a
    folder whose runs came from that machine. None: the first machine."""
    if not spec:
        return machines[0]
    value = spec.split("=", 1)[1].strip() if spec.startswith("machine=") else spec.strip()
    for m in machines:
        if value in (m.label, m.hostname, m.hardware) or (len(value) >= 4 and m.id.startswith(value)):
            return m
    if Path(value).exists():
        found = find_runs([value])
        wanted = machine_of(reference_view(found[0], read_meta(found[0]))).id if found else None
        for m in machines:
            if m.id == wanted:
                return m
        raise BenchError(f"--baseline {spec}: the runs in that folder are from a machine not among the ones "
                         f"compared; pass it as an argument too")
    raise BenchError(f"--baseline {spec}: no machine of that name; the machines are "
                     f"{', '.join(repr(m.label) for m in machines)} (or give one of their folders)")


def split_baseline(spec: str | None) -> tuple[str | None, str | None]:
    """--baseline -> (the compare table's KEY=VALUE or None, the line-up's machine or None):
    a bare MACHINE is the line-up's alone; machine=X serves both."""
    if not spec:
        return None, None
    if "=" not in spec:
        return None, spec
    return spec, (spec if spec.startswith("machine=") else None)


def check_machine_baseline(spec: str | None) -> None:
    """A bare --baseline MACHINE when every run is from one machine: nothing to line up."""
    if spec and "=" not in spec:
        raise BenchError(f"--baseline {spec}: a machine baseline needs runs from two or more machines and these "
                         f"are all from one; add another machine's folders, or write KEY=VALUE (backend=torch)")


def _infer_figures(folder: InferFolder) -> dict[str, Any]:
    rows = folder.rows.sort_values("batch_size")
    if not len(rows):
        return {}
    return {"images_per_s": _num(rows["images_per_s"].iloc[-1]), "latency_p50_ms": _num(rows["latency_p50_ms"].iloc[0]),
            "top1_acc": _num(rows["top1_acc"].iloc[0])}


def _num(x: Any) -> float | None:
    x = x.item() if hasattr(x, "item") else x
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _median(values: list[Any]) -> float | None:
    v = [float(x) for x in values if _num(x) is not None]
    return statistics.median(v) if v else None


# --- rendering --------------------------------------------------------------------------------

def summary_sentence(lineup: Lineup) -> str:
    """'Geometric mean of the headline ratios against X over the 7 keys all 2 machines share: ...'."""
    n, others = len(lineup.shared), [m for m in lineup.machines if m is not lineup.baseline]
    if not n:
        return (f"No key has a figure on all {len(lineup.machines)} machines, so there is no geometric mean; "
                f"the per-key tables below still compare what each pair has.")
    means = "; ".join(f"{m.label} {lineup.geomean[m.id]:.2f}x" for m in others)
    return (f"Geometric mean of the headline ratios (train or inference images/s) against {lineup.baseline.label}, "
            f"over the {n} key{'s' if n != 1 else ''} all {len(lineup.machines)} machines share: {means}.")


def key_table(row: KeyRow, lineup: Lineup) -> tuple[list[str], list[list[str]], list[bool]]:
    """Rows: the figures, n and the ratio; columns: the machines (baseline first)."""
    machines = [lineup.baseline] + [m for m in lineup.machines if m is not lineup.baseline]
    headers = ["figure"] + [m.label + (" (baseline)" if m is lineup.baseline else "") for m in machines]
    cells = []
    for name, label, show in row.figures:
        cells.append([label] + [show(row.entries[m.id].figures.get(name)) if m.id in row.entries else "—"
                                for m in machines])
    cells.append(["runs (n)"] + [str(row.entries[m.id].n) if m.id in row.entries else "0" for m in machines])
    cells.append([f"× {lineup.baseline.label}"] + [f"{row.ratios[m.id]:.2f}x" if row.ratios.get(m.id) is not None
                                                   else "" for m in machines])
    return headers, cells, [False] + [True] * len(machines)


def overview_table(lineup: Lineup) -> tuple[list[str], list[list[str]], list[bool]]:
    """Every key in one table: its headline figure on each machine, and the ratio to the
    baseline ('903 · 2.95x'); a last row with the geometric means. What a suite reads at a glance."""
    machines = [lineup.baseline] + [m for m in lineup.machines if m is not lineup.baseline]
    headers = ["cell", "key", "headline"] + [m.label for m in machines]
    cells = []
    for row in lineup.keys:
        name, label, show = row.figures[0]
        line = [row.description, row.key, label]
        for m in machines:
            entry = row.entries.get(m.id)
            value = entry.figures.get(name) if entry else None
            ratio = row.ratios.get(m.id)
            line.append("—" if entry is None else show(value) + (f" · {ratio:.2f}x" if ratio is not None and m is not
                                                                    lineup.baseline else ""))
        cells.append(line)
    if lineup.shared:
        cells.append([f"geometric mean over {len(lineup.shared)} shared keys", "", "× baseline"]
                     + [f"{lineup.geomean[m.id]:.2f}x" for m in machines])
    return headers, cells, [False, False, False] + [True] * len(machines)


def partial_items(lineup: Lineup) -> list[str]:
    names = {m.id: m.label for m in lineup.machines}
    return [f"`{r.key}` {r.description}: on {', '.join(names[i] for i in r.entries)}; missing on "
            f"{', '.join(lineup.missing(r))}" for r in lineup.partial]


def lineup_blocks(lineup: Lineup) -> list[tuple]:
    """The report's 'Machines lined up by key' section, as harness/report/markdown.py blocks."""
    blocks: list[tuple] = [("h", 2, "Machines lined up by key"), ("p", summary_sentence(lineup)),
                           ("table", *overview_table(lineup)), ("p", NOTE)]
    for row in lineup.keys:
        blocks += [("h", 3, f"{row.description} (key {row.key})"), ("table", *key_table(row, lineup))]
    if lineup.partial:
        blocks += [("h", 3, "Keys only some machines have"), ("list", partial_items(lineup))]
    return blocks


def format_lineup(lineup: Lineup, fmt: str = "text") -> str:
    """The line-up for `bench compare`: text or Markdown (JSON: :meth:`Lineup.as_dict`)."""
    from harness.report.table import render_cells

    out = [summary_sentence(lineup), render_cells(*overview_table(lineup), fmt, "").rstrip()]
    for row in lineup.keys:
        head = f"{row.description} (key {row.key})"
        out.append(("### " if fmt == "markdown" else "") + head + "\n\n"
                   + render_cells(*key_table(row, lineup), fmt, "").rstrip())
    if lineup.partial:
        items = "\n".join(f"- {re.sub(r'`', '', s) if fmt == 'text' else s}" for s in partial_items(lineup))
        out.append(f"Keys only some machines have ({len(lineup.partial)}):\n{items}")
    out.append(NOTE)
    return "\n\n".join(out) + "\n"
