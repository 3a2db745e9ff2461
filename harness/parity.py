"""``bench parity``: do two backends compute the same network?

Both backends are prepared exactly as ``bench run`` prepares them (canonical init for the
seed, then ``--weights``), see the same uint8 batch, and are compared on

* the state as loaded (must be identical: the same arrays went in);
* eval-mode logits;
* the loss of one SGD step in train mode (batch statistics, momentum, weight decay), and
  every parameter and BatchNorm running statistic after that step.

Dropout is switched off for the step (each framework draws its masks from its own RNG) by
the backend package's ``parity.without_dropout``. Each row reports the largest absolute
difference and the same relative to the quantity's largest magnitude (``max|a - b| / max|b|``
over all its tensors, the measure of tests/test_parity.py). The check passes when every
relative difference is at most ``tolerance``.

Float32 sets the floor for the step: ReLU masks flip where an activation rounds across 0 and
early-layer gradients sum many cancelling terms, so the parameters after one step agree to
~1e-7 of the largest weight for resnet8 but only ~1e-4 for resnet20/resnet18 (measured on
CPU, lr 0.1, batch 16); in float64 the two frameworks' gradients agree to ~1e-14.

In low precision (``--precision bf16-mixed`` etc.) the first backend runs in that precision
and the second in float32, the reference: the question is whether the low-precision step
computes the float32 step up to the format's rounding. The tolerance is then
:data:`PRECISION_FACTOR` times the format's unit roundoff u (bf16 2^-8, fp16 and tf32 2^-11;
harness/precision.py), stated in the output; the float32 floor does not apply.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
from dataclasses import dataclass, field
from typing import Any, ContextManager

import numpy as np

from harness.backend import Backend, Batch
from harness.config import RunConfig
from harness.precision import PRECISIONS, parity_tolerance
from harness.train.prepare import prepare_backend

STAT_SUFFIXES = (".running_mean", ".running_var")


FLOOR_FACTOR = 4.0  # a step difference up to this multiple of the float32 floor passes
# Low precision: differences up to this many unit roundoffs pass. Every layer rounds its
# inputs and output once (a relative error <= u each), errors of independent roundings grow
# like sqrt(depth) and BatchNorm renormalises every block, so a correct resnet8/resnet20 step
# stays within about one u (measured, resnet8, batch 8, CPU: logits 1.3 u bf16-mixed and 1.1 u
# fp16-mixed, parameters after the step 0.3 u and 0.8 u of the largest weight); 8 u passes that
# with room, while a wrong cast (a layer in a format with fewer bits: bf16 where fp16 was asked
# is 8x fp16's u) or a dropped unscale (a factor 2^k) fails.
PRECISION_FACTOR = 8.0


def precision_basis(precision: str) -> str:
    """How the tolerance for ``precision`` was derived, for the report's header."""
    p = PRECISIONS[precision]
    bits = round(-math.log2(p.unit_roundoff))
    return (f"{PRECISION_FACTOR:g} x {p.format}'s unit roundoff 2^-{bits} = "
            f"{parity_tolerance(precision, PRECISION_FACTOR):.3g}")


@dataclass
class Row:
    quantity: str
    max_abs: float
    max_rel: float
    worst: str = ""
    floor: float | None = None  # the same step's difference within one framework, batch reordered

    def passes(self, tolerance: float) -> bool:
        return self.max_rel <= tolerance or (self.floor is not None and self.max_rel <= FLOOR_FACTOR * self.floor)

    def as_dict(self) -> dict[str, Any]:
        return {"quantity": self.quantity, "max_abs": self.max_abs, "max_rel": self.max_rel, "worst": self.worst,
                "float32_floor": self.floor}


@dataclass
class ParityReport:
    backends: tuple[str, str]
    model: str
    image_size: int
    batch_size: int
    weights: dict[str, Any]
    tolerance: float
    precision: str = "fp32"  # the first backend's; the second runs float32
    tolerance_basis: str = ""  # how the tolerance was derived (low precision) or "" (given)
    rows: list[Row] = field(default_factory=list)
    losses: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def worst(self) -> Row:
        return max(self.rows, key=lambda r: r.max_rel)

    @property
    def passed(self) -> bool:
        return all(r.passes(self.tolerance) for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {"backends": list(self.backends), "model": self.model, "image_size": self.image_size,
                "batch_size": self.batch_size, "weights": self.weights, "tolerance": self.tolerance,
                "precision": self.precision, "reference_precision": "fp32", "tolerance_basis": self.tolerance_basis,
                "floor_factor": FLOOR_FACTOR, "losses": list(self.losses), "rows": [r.as_dict() for r in self.rows],
                "passed": self.passed}


def compare_arrays(quantity: str, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> Row:
    """Max absolute difference over the tensors in both, relative to the largest magnitude in
    ``b`` (the scale of the quantity: a BatchNorm bias one step from zero is judged against the
    network's weights, not against its own tiny values); ``worst`` names the tensor."""
    row, scale = Row(quantity, 0.0, 0.0), 0.0
    for name in sorted(set(a) & set(b)):
        x, y = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
        if not y.size:
            continue
        diff = float(np.abs(x - y).max())
        scale = max(scale, float(np.abs(y).max()))
        if diff > row.max_abs:
            row.max_abs, row.worst = diff, name
    row.max_rel = row.max_abs / max(scale, 1e-12)
    return row


def _without_dropout(backend: Backend) -> ContextManager[None]:
    package = type(backend).__module__.rsplit(".", 1)[0]
    try:
        module = importlib.import_module(f"{package}.parity")
    except ModuleNotFoundError:
        return contextlib.nullcontext()
    return module.without_dropout(backend)


Step = tuple[float, dict[str, np.ndarray]]  # (loss, state after the step)


def one_step(backend: Backend, batch: Batch) -> Step:
    with _without_dropout(backend):
        loss = backend.train_step_probe(batch)
    return loss, backend.state_arrays()


def step_rows(a: Step, b: Step) -> list[Row]:
    """Loss, parameters and BatchNorm running statistics of two steps compared."""
    params = [{k: v for k, v in s.items() if not k.endswith(STAT_SUFFIXES)} for s in (a[1], b[1])]
    stats = [{k: v for k, v in s.items() if k.endswith(STAT_SUFFIXES)} for s in (a[1], b[1])]
    losses = [{"loss": np.asarray(step[0], np.float64)} for step in (a, b)]
    rows = [compare_arrays("loss of one SGD step", *losses),
            compare_arrays("parameters after the step", *params)]
    if stats[0]:
        rows.append(compare_arrays("BatchNorm running stats after", *stats))
    return rows


def run_parity(config: RunConfig, *, num_classes: int, tolerance: float, tolerance_basis: str = "") -> ParityReport:
    """Compare ``config.backends[0]`` and ``[1]`` on one batch of ``config.batch_size`` images.

    When a step difference exceeds ``tolerance``, each backend also repeats the step from
    fresh with the batch reordered: mathematically the same step, rounded differently. That
    within-framework difference is float32's floor for this network; a cross-framework
    difference within ``FLOOR_FACTOR`` times it is rounding, not a different computation."""
    names = (config.backends[0], config.backends[1])
    seed = config.seed
    # The first backend at config.precision, the second the float32 eager reference.
    configs = (config, dataclasses.replace(config, precision="fp32", compile="none"))

    def fresh(i: int) -> Backend:
        return prepare_backend(configs[i], names[i], seed, num_classes).backend

    first = prepare_backend(config, names[0], seed, num_classes)
    a, b = first.backend, fresh(1)
    size = first.spec.image_size
    rng = np.random.default_rng(seed)
    batch = Batch(rng.integers(0, 256, (config.batch_size, size, size, 3), dtype=np.uint8),
                  rng.integers(0, num_classes, config.batch_size).astype(np.int64))
    report = ParityReport(names, config.model, size, config.batch_size, first.weights, tolerance,
                          config.precision, tolerance_basis)
    report.rows.append(compare_arrays("state as loaded", a.state_arrays(), b.state_arrays()))
    report.rows.append(compare_arrays("logits, eval mode", {"logits": a.predict(batch.images)},
                                      {"logits": b.predict(batch.images)}))
    steps = one_step(a, batch), one_step(b, batch)
    report.losses = (steps[0][0], steps[1][0])
    rows = step_rows(*steps)
    report.rows += rows
    if any(r.max_rel > tolerance for r in rows) and config.precision == "fp32":  # float32's floor
        order = np.random.default_rng([seed, 1]).permutation(config.batch_size)
        reordered = Batch(batch.images[order].copy(), batch.labels[order].copy())
        for i, step in enumerate(steps):
            for row, own in zip(rows, step_rows(step, one_step(fresh(i), reordered))):
                row.floor = max(row.floor or 0.0, own.max_rel)
    return report


def format_report(report: ParityReport) -> str:
    w = report.weights
    source = w.get("path") or "canonical init"
    a, b = report.backends
    if report.precision != "fp32":
        a, b = f"{a} {report.precision}", f"{b} fp32"
    lines = [(f"parity {a} vs {b}: {report.model}, {report.image_size} px, "
              f"batch {report.batch_size}, weights {w.get('source', 'none')} ({source})")]
    if report.tolerance_basis:
        lines.append(f"tolerance {report.tolerance:.3g}: {report.tolerance_basis}")
    lines += [
             f"{'quantity':32s} {'max abs':>10s} {'max rel':>10s} {'fp32 floor':>10s}  worst tensor"]
    for r in report.rows:
        floor = "" if r.floor is None else f"{r.floor:.3g}"
        lines.append(f"{r.quantity:32s} {r.max_abs:10.3g} {r.max_rel:10.3g} {floor:>10s}  "
                     f"{r.worst if r.max_abs else ''}")
    worst = report.worst
    where = f"{worst.quantity}{', ' + worst.worst if worst.worst not in ('', 'logits', 'loss') else ''}"
    if worst.max_rel <= report.tolerance:
        verdict = f"PASS: largest relative difference {worst.max_rel:.3g} ({where}) <= tolerance {report.tolerance:g}"
    elif report.passed:
        verdict = (f"PASS: largest relative difference {worst.max_rel:.3g} ({where}) exceeds tolerance "
                   f"{report.tolerance:g} but is within {FLOOR_FACTOR:g}x float32's floor for this step "
                   f"({worst.floor:.3g}: each framework differs that much from itself with the batch reordered)")
    else:
        failing = [r for r in report.rows if not r.passes(report.tolerance)]
        verdict = "FAIL: " + "; ".join(
            f"{r.quantity} differs by {r.max_rel:.3g} relative ({r.worst}) > tolerance {report.tolerance:g}"
            + (f" and > {FLOOR_FACTOR:g}x the float32 floor {r.floor:.3g}" if r.floor is not None else "")
            for r in failing)
    lines.append(verdict)
    return "\n".join(lines)
