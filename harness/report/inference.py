"""`bench infer` folders in `bench compare` and `bench report`: table, figure, sentences.

An inference folder (``run.json`` with ``"kind": "infer"`` + ``infer.csv``, see
:mod:`harness.schema`) holds one row per batch size. Here each row becomes one record
with the machine it ran on, so rows from several backends (torch, chainer, onnxruntime) and
several machines line up in one table. Where a model was measured on one machine by more
than one backend, each row also gets its throughput relative to the reference backend
(torch when present: "how much faster is ONNX Runtime than the framework it came from").
"""
from __future__ import annotations

from typing import Any

from harness.errors import BenchError
from harness.report.compare import machine_label
from harness.report.table import num, pct, render_cells
from harness.schema import InferFolder

# Reference for the "vs" column, in order of preference: the framework the model came from.
REFERENCE_BACKENDS = ("torch", "chainer")
NOTE = ("Latency: wall time of one predict() call (uint8 images in, logits on the host out), percentiles over "
        "the timed calls after warm-up. images/s: images / total timed time at that batch size. "
        "Accuracy: top-1/top-5 on the source run's test set. vs: images/s over the {ref} row of the same "
        "machine, model and batch size.")


def infer_records(folders: list[InferFolder]) -> list[dict[str, Any]]:
    """One record per (folder, batch size), sorted by model, machine, batch size, backend."""
    records = []
    for folder in folders:
        meta = folder.meta
        machine = meta.get("machine") or {}
        settings = meta.get("settings") or {}
        threads = (meta.get("threads") or {}).get("requested")
        source = meta.get("source") or {}
        for row in folder.rows.to_dict("records"):
            records.append({
                "run_id": folder.run_id, "path": str(folder.path), "status": meta.get("status") or "unknown",
                "machine": machine_label(machine), "hostname": machine.get("hostname") or "?",
                "machine_id": str(machine.get("machine_id") or machine.get("hostname") or "?"),
                "backend": str(row["backend"]), "model": str(row["model"]), "dataset": str(row["dataset"]),
                "device": str(row["device"]), "threads": threads, "trained_with": source.get("trained_with"),
                "source_run": source.get("run_id"), "image_size": settings.get("image_size"),
                "batch_size": int(row["batch_size"]),
                **{k: _float(row[k]) for k in ("latency_p50_ms", "latency_p90_ms", "latency_p99_ms",
                                               "latency_mean_ms", "images_per_s", "top1_acc", "top5_acc")},
                "command": meta.get("command") or "", "started_at": meta.get("started_at"),
            })
    records.sort(key=lambda r: (r["model"], r["machine"], r["device"], r["batch_size"], r["backend"], r["run_id"]))
    _add_relative(records)
    return records


def reference_backend(records: list[dict[str, Any]]) -> str | None:
    present = {r["backend"] for r in records}
    return next((b for b in REFERENCE_BACKENDS if b in present), None)


def _add_relative(records: list[dict[str, Any]]) -> None:
    """``vs_reference``: images/s over the reference backend's row at the same machine, model,
    device and batch size (the median when it was measured more than once)."""
    ref = reference_backend(records)
    for r in records:
        r["reference_backend"], r["vs_reference"] = ref, None
    if ref is None or len({r["backend"] for r in records}) < 2:
        return
    base: dict[tuple, list[float]] = {}
    for r in records:
        if r["backend"] == ref and r["images_per_s"]:
            base.setdefault(_key(r), []).append(r["images_per_s"])
    for r in records:
        values = sorted(base.get(_key(r), []))
        if values and r["images_per_s"] is not None:
            r["vs_reference"] = r["images_per_s"] / values[len(values) // 2]


def _key(r: dict[str, Any]) -> tuple:
    return (r["machine_id"], r["model"], r["device"], r["batch_size"], r["threads"])


def _float(x: Any) -> float | None:
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return None if value != value else value


# --- table ------------------------------------------------------------------------------------

HEADERS = ["machine", "backend", "model", "device", "trained with", "batch", "p50 ms", "p90 ms", "p99 ms",
           "images/s", "vs", "top-1 %", "top-5 %"]
_RIGHT = [False, False, False, False, False, True, True, True, True, True, True, True, True]


def infer_cells(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[bool]]:
    """(headers, rows of text, right-aligned?) for text and Markdown tables; "vs" only when set."""
    cells = [[r["machine"], r["backend"], r["model"], r["device"], str(r["trained_with"] or ""), str(r["batch_size"]),
              _ms(r["latency_p50_ms"]), _ms(r["latency_p90_ms"]), _ms(r["latency_p99_ms"]), num(r["images_per_s"]),
              "" if r["vs_reference"] is None else f"{r['vs_reference']:.2f}x",
              pct(r["top1_acc"]), pct(r["top5_acc"])] for r in records]
    keep = [i for i, h in enumerate(HEADERS) if h != "vs" or any(row[i] for row in cells)]
    return [HEADERS[i] for i in keep], [[row[i] for i in keep] for row in cells], [_RIGHT[i] for i in keep]


def infer_table(records: list[dict[str, Any]], fmt: str = "text") -> str:
    """The records as text/markdown (for people) or csv/json (every field, unrounded)."""
    if fmt in ("csv", "json"):
        from harness.report.table import format_table

        return format_table(records, fmt)
    return render_cells(*infer_cells(records), fmt, infer_note(records))


def infer_note(records: list[dict[str, Any]]) -> str:
    return NOTE.format(ref=reference_backend(records) or "reference")


def _ms(x: float | None) -> str:
    return "" if x is None else f"{x:.3g}" if x < 10 else f"{x:.1f}"


# --- figure -----------------------------------------------------------------------------------

def inference_figure(records: list[dict[str, Any]]) -> bytes | None:
    """Throughput and median latency against batch size, one line per backend x machine x model."""
    from harness.report.figures import _LINESTYLES, _MARKERS, _figure, _figure_legend, _png, _styled, backend_colour

    @_styled
    def draw() -> bytes | None:
        series: dict[tuple, list[dict[str, Any]]] = {}
        for r in records:
            series.setdefault((r["backend"], r["machine_id"], r["model"], r["device"], r["run_id"]), []).append(r)
        if not series or all(len(rows) < 2 for rows in series.values()):
            return None  # one batch size each: the table says it all
        machines = list(dict.fromkeys(r["machine_id"] for r in records))
        models = list(dict.fromkeys(r["model"] for r in records))
        varying = {name: len({get(r) for r in records}) > 1 for name, get in
                   (("machine", lambda r: r["hostname"]), ("model", lambda r: r["model"]),
                    ("device", lambda r: r["device"]))}
        fig, (left, right) = _figure(11.0, 4.8, ncols=2)
        for (backend, machine_id, model, device, _), rows in series.items():
            rows = sorted(rows, key=lambda r: r["batch_size"])
            label = " · ".join([backend] + [str(v) for k, v in (("machine", rows[0]["hostname"]), ("model", model),
                                                                   ("device", device)) if varying[k]]
                               + ([f"from {rows[0]['trained_with']}"]
                                  if rows[0]["trained_with"] not in (None, backend) else []))
            kw = dict(color=backend_colour(backend), linestyle=_LINESTYLES[machines.index(machine_id) % 4],
                      marker=_MARKERS[models.index(model) % len(_MARKERS)])
            sizes = [r["batch_size"] for r in rows]
            left.plot(sizes, [r["images_per_s"] for r in rows], label=label, **kw)
            right.plot(sizes, [r["latency_p50_ms"] for r in rows], **kw)
        for ax in (left, right):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("Batch size (images per call)")
            sizes = sorted({r["batch_size"] for r in records})
            ax.set_xticks(sizes, [str(s) for s in sizes])
        left.set(title="Inference throughput", ylabel="Images per second")
        left.set_ylim(bottom=0)
        right.set(title="Median latency per call", ylabel="p50 latency (ms)")
        right.set_yscale("log")
        _figure_legend(fig, left, len(series))
        return _png(fig)

    return draw()


INFERENCE_CAPTION = ("Left: images per second at each batch size. Right: median time of one call (log scale): "
                     "batch 1 is the latency an interactive user feels, large batches the throughput a server gets.")


# --- sentences --------------------------------------------------------------------------------

def infer_observations(records: list[dict[str, Any]]) -> list[str]:
    """Plain sentences: who is fastest at batch 1 and at the largest batch, and by how much."""
    out = []
    by: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        by.setdefault((r["machine"], r["model"], r["device"]), []).append(r)
    for (machine, model, device), rows in by.items():
        backends = sorted({r["backend"] for r in rows})
        if len(backends) < 2:
            continue
        for size, what in ((min(r["batch_size"] for r in rows), "latency"),
                           (max(r["batch_size"] for r in rows), "throughput")):
            best = _best_per_backend([r for r in rows if r["batch_size"] == size], what)
            if len(best) < 2:
                continue
            ranked = sorted(best.values(), key=lambda r: -r["images_per_s"])
            first, last = ranked[0], ranked[-1]
            if what == "latency":
                out.append(f"On {machine}, {model} on {device} at batch {size}: {first['backend']} answers in "
                           f"{_ms(first['latency_p50_ms'])} ms (median), {last['backend']} in "
                           f"{_ms(last['latency_p50_ms'])} ms, {last['latency_p50_ms'] / first['latency_p50_ms']:.1f}x "
                           f"longer.")
            elif size > 1:
                out.append(f"At batch {size} {first['backend']} reaches {num(first['images_per_s'])} images/s, "
                           f"{first['images_per_s'] / last['images_per_s']:.1f}x {last['backend']}'s "
                           f"{num(last['images_per_s'])}.")
    out += _runtime_vs_framework(records)
    out += _same_model_accuracy(records)
    return out


def _runtime_vs_framework(records: list[dict[str, Any]]) -> list[str]:
    """The same trained model in its framework and in another backend (ONNX Runtime), at the
    smallest and the largest batch size both measured."""
    out = []
    by_source: dict[tuple, dict[str, dict[int, dict[str, Any]]]] = {}
    for r in records:
        if r["source_run"] and r["images_per_s"]:
            key = (str(r["source_run"]), r["machine_id"], r["device"])
            by_source.setdefault(key, {}).setdefault(r["backend"], {})[r["batch_size"]] = r
    for (source, _, device), backends in by_source.items():
        native = next((r for rows in backends.values() for r in rows.values()), {}).get("trained_with")
        if native not in backends:
            continue
        for other, rows in backends.items():
            if other == native:
                continue
            sizes = sorted(set(rows) & set(backends[native]))
            if not sizes:
                continue
            parts = []
            for size in dict.fromkeys((sizes[0], sizes[-1])):
                a, b = rows[size], backends[native][size]
                parts.append(f"{a['images_per_s'] / b['images_per_s']:.1f}x as fast at batch {size} "
                             f"({_ms(a['latency_p50_ms'])} against {_ms(b['latency_p50_ms'])} ms per call)")
            out.append(f"{other} ran the {native}-trained {rows[sizes[0]]['model']} (run {source}) on {device} "
                       f"{' and '.join(parts)} compared with {native} itself.")
    return out


def _same_model_accuracy(records: list[dict[str, Any]]) -> list[str]:
    """One trained model (source run) run by several backends must score the same."""
    out = []
    by_source: dict[str, dict[str, float]] = {}
    for r in records:
        if r["source_run"] and r["top1_acc"] is not None:
            by_source.setdefault(str(r["source_run"]), {})[r["backend"]] = r["top1_acc"]
    for source, accs in by_source.items():
        if len(accs) < 2:
            continue
        listed = ", ".join(f"{b} {100 * a:.2f} %" for b, a in sorted(accs.items()))
        if max(accs.values()) - min(accs.values()) > 1e-9:
            out.append(f"The model of run {source} scores differently in different backends ({listed}): an export "
                       f"or loading problem, not a speed difference.")
        else:
            out.append(f"The model of run {source} scores the same top-1 in {' and '.join(sorted(accs))} "
                       f"({100 * next(iter(accs.values())):.2f} %): the backends ran the same function.")
    return out


def _best_per_backend(rows: list[dict[str, Any]], what: str) -> dict[str, dict[str, Any]]:
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["images_per_s"] is None or r["latency_p50_ms"] is None:
            continue
        if r["backend"] not in best or r["images_per_s"] > best[r["backend"]]["images_per_s"]:
            best[r["backend"]] = r
    return best


def check_any(train: list[Any], infer: list[Any]) -> None:
    if not train and not infer:
        raise BenchError("no runs found: pass folders made by `bench run` or `bench infer`, or a results folder")
