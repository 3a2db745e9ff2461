"""Learning curves: loss and accuracy of the training and evaluation passes, epoch by epoch.

What the seeds plotted after training (000 and 001: "train loss" against "validation loss";
001's training against validation accuracy) to see whether a model under- or over-fits.
One panel per configuration (its first run: repeats look alike), training solid and
evaluation dashed in the run's colour, so the gap between the two reads within a panel.
Evaluation is the validation split when the run has one (``valid_loss``/``valid_acc``
columns with values) and the test set otherwise; the legend says which.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from harness.report.figures import MAX_PANELS, FigureFile, Style, _figure, _png, _styled, styles
from harness.schema import RunFolder

EVAL_SPLITS = (("valid", "validation"), ("test", "test"))  # preferred first


def eval_split(epochs: Any, metric: str) -> tuple[str, str] | None:
    """(column, name) of the evaluation figure ``metric`` ("loss" or "acc") this run has:
    validation when its column holds values, else test; None when neither does."""
    for prefix, name in EVAL_SPLITS:
        column = f"{prefix}_{metric}"
        if column in epochs.columns and epochs[column].notna().any():
            return column, name
    return None


def _panels(runs: list[RunFolder], records: list[dict[str, Any]], metric: str
            ) -> list[tuple[RunFolder, Style, tuple[str, str] | None]]:
    out: list[tuple[RunFolder, Style, tuple[str, str] | None]] = []
    seen: set[tuple[Any, Any, Any]] = set()
    for run, st, rec in zip(runs, styles(records), records):
        key = (rec["machine_id"], rec["backend"], rec["config"])
        has_train = f"train_{metric}" in run.epochs.columns and run.epochs[f"train_{metric}"].notna().any()
        evaluation = eval_split(run.epochs, metric)
        if key in seen or (not has_train and evaluation is None) or len(out) >= MAX_PANELS:
            continue
        seen.add(key)
        out.append((run, st, evaluation))
    return out


def _draw(runs: list[RunFolder], records: list[dict[str, Any]], metric: str) -> bytes | None:
    panels = _panels(runs, records, metric)
    if not panels:
        return None
    scale = 100.0 if metric == "acc" else 1.0
    ncols = 1 if len(panels) == 1 else 2
    nrows = -(-len(panels) // ncols)
    fig, axes = _figure(11.0 if ncols == 2 else 8.0, 1.3 + 3.0 * nrows, nrows=nrows, ncols=ncols, squeeze=False)
    for ax, (run, st, evaluation) in zip(axes.flat, panels):
        ep = run.epochs
        lines = [(f"train_{metric}", "training", "-")]
        if evaluation is not None:
            lines.append((evaluation[0], evaluation[1], "--"))
        for column, name, linestyle in lines:
            if column not in ep.columns:
                continue
            rows = ep.dropna(subset=[column])
            ax.plot(rows["epoch"], scale * rows[column].to_numpy(float), color=st.colour, linestyle=linestyle,
                    marker=st.marker if linestyle == "-" else None, markersize=4, linewidth=1.6, label=name)
        ax.set_title(st.label, fontsize=10, loc="left", color=st.colour)
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Loss (cross-entropy)" if metric == "loss" else "Top-1 accuracy (%)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if metric == "acc":
            top = np.nanmax([scale * ep[c].max() for c, _, _ in lines if c in ep.columns] + [1.0])
            ax.set_ylim(0, min(100.0, top * 1.1 + 2))
        ax.legend(loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    what = "Loss" if metric == "loss" else "Accuracy"
    fig.suptitle(f"{what}: training (solid) against evaluation (dashed)", fontweight="bold")
    return _png(fig)


@_styled
def loss_curves(runs: list[RunFolder], records: list[dict[str, Any]]) -> bytes | None:
    """Training loss (mean over the epoch's steps) and evaluation loss (after the epoch)."""
    return _draw(runs, records, "loss")


@_styled
def train_eval_accuracy(runs: list[RunFolder], records: list[dict[str, Any]]) -> bytes | None:
    """Training accuracy (on the augmented batches, while the weights moved) against evaluation."""
    return _draw(runs, records, "acc")


def learning_figures(runs: list[RunFolder], records: list[dict[str, Any]]) -> list[FigureFile]:
    """The two figures, for the report after the test-accuracy ones (absent when no run has the columns)."""
    plan = (("loss.png", "Loss: training and evaluation", loss_curves),
            ("train_eval_acc.png", "Accuracy: training and evaluation", train_eval_accuracy))
    out = []
    for name, title, draw in plan:
        png = draw(runs, records)
        if png is not None:
            out.append(FigureFile(name, title, png))
    return out
