"""`bench summary`: a per-layer table (layer, output shape, parameters) of one model in every
backend side by side, as 001's ``torchsummary`` gave it for torch alone.

Each backend computes its own rows (``Backend.layer_summary``: forward hooks in torch, a
link hook in Chainer) from one forward pass; this module only lines them up by layer name
and flags a row whose shape or parameter count differs, or that one backend lacks. Rows are
the layers that hold parameters (convolutions, BatchNorms, linears): parameter-free
operations (ReLU, pooling, dropout) are functions in Chainer, not links, so neither backend
lists them, and their effect shows in the next row's shape. The totals are each backend's
``param_count()``, the figure `bench list` shows, and are checked against the rows' sum.
"""
from __future__ import annotations

from typing import Any

from harness.backend import create_backend
from harness.config import RunConfig
from harness.catalogue import model_info


def default_classes(model: str) -> int:
    """As `bench list` counts: 1000 classes for ImageNet networks, 10 otherwise."""
    return 1000 if model_info(model).family == "resnet_imagenet" else 10


def summarise(config: RunConfig, num_classes: int) -> dict[str, Any]:
    """Every backend of ``config.backends`` builds ``config``'s model and reports its rows;
    the merged table: one row per layer name (first backend's order, then any the others
    add) with each backend's type, shape and parameters, and ``match``."""
    from harness.train.prepare import model_specs

    spec, optim, inputs = model_specs(config, num_classes)
    per_backend: dict[str, dict[str, Any]] = {}
    for name in config.backends:
        backend = create_backend(name)
        backend.configure(device=config.device, threads=config.threads, seed=0)
        backend.build(spec, optim, inputs)
        rows = backend.layer_summary(spec.image_size)
        total, trainable = backend.param_count()
        per_backend[name] = {"rows": rows, "total": total, "trainable": trainable,
                             "rows_total": sum(r["params"] for r in rows)}
    order: list[str] = []
    for entry in per_backend.values():
        order += [r["layer"] for r in entry["rows"] if r["layer"] not in order]
    merged = []
    for layer in order:
        cells = {b: next((r for r in e["rows"] if r["layer"] == layer), None) for b, e in per_backend.items()}
        seen = [(tuple(c["output_shape"]), c["params"]) if c else None for c in cells.values()]
        merged.append({"layer": layer, "backends": cells, "match": len(set(seen)) == 1})
    totals_match = len({(e["total"], e["trainable"]) for e in per_backend.values()}) == 1
    return {"model": config.model, "image_size": spec.image_size, "num_classes": num_classes,
            "shortcut": spec.shortcut, "head": spec.head, "backends": per_backend, "rows": merged,
            "match": totals_match and all(r["match"] for r in merged)
                     and all(e["total"] == e["rows_total"] for e in per_backend.values())}


def _shape(cell: dict[str, Any] | None) -> str:
    return "-" if cell is None else "[" + ", ".join(map(str, cell["output_shape"])) + "]"


def title(summary: dict[str, Any]) -> str:
    return (f"{summary['model']} at {summary['image_size']} px, {summary['num_classes']} classes "
            f"(shortcut {summary['shortcut']}, head {summary['head']})")


def table_cells(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the table, totals last; ``!=`` in the last column marks a row whose
    shape or parameters differ between backends, or that one lacks."""
    names = list(summary["backends"])
    header = ["layer"] + [f"{b} {what}" for b in names for what in ("type", "output shape", "params")] + [""]
    body = []
    for row in summary["rows"]:
        cells = [row["layer"]]
        for b in names:
            c = row["backends"][b]
            cells += [c["type"] if c else "-", _shape(c), f"{c['params']:,}" if c else "-"]
        body.append(cells + ["" if row["match"] else "!="])
    totals = ["total"]
    for b in names:
        e = summary["backends"][b]
        totals += ["", "", f"{e['total']:,}"]
    body.append(totals + ["" if len({summary['backends'][b]['total'] for b in names}) == 1 else "!="])
    return header, body


def format_summary(summary: dict[str, Any], fmt: str = "text") -> str:
    """The table as text (aligned) or markdown, with its title and the trainable counts."""
    header, body = table_cells(summary)
    heading = title(summary)
    trainable = ", ".join(f"{b} {e['trainable']:,}" for b, e in summary["backends"].items())
    foot = f"trainable parameters: {trainable}"
    if not summary["match"]:
        foot += "\nrows marked != differ between backends (or the rows do not add up to the total)"
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
        return f"{heading}\n\n" + "\n".join(lines) + f"\n\n{foot}\n"
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
             for cells in [header] + body]
    return f"{heading}\n" + "\n".join(lines) + f"\n{foot}\n"
