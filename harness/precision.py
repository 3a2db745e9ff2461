"""Numeric precision and compilation: the names a run may ask for, what each means, and which
backend can do which on which kind of device.

The names follow TorchBench's ``--precision`` (fp32, tf32, amp/amp_bf16 spelt out as
``fp16-mixed``/``bf16-mixed``, pure ``bf16``), because that is what people compare against:

======== ===================================================================================
fp32     float32 everywhere. On CUDA, TF32 tensor-core math is switched *off* (torch allows it
         for cuDNN convolutions by default), so fp32 means float32.
tf32     float32 storage, matmuls and convolutions on TF32 tensor cores (10-bit mantissa).
         NVIDIA Ampere or newer only.
bf16-mixed  float32 weights and optimiser; forward/backward under autocast to bfloat16
         (matmuls, convolutions); no loss scaling (bfloat16 has float32's exponent range).
fp16-mixed  float32 weights and optimiser; autocast to float16 with a gradient scaler
         (dynamic loss scaling, torch ``GradScaler``; Chainer's ``mixed16`` with
         ``loss_scaling()``) so small gradients do not flush to zero.
bf16     "pure" bfloat16: weights, activations *and* the optimiser's state in bfloat16 (no
         float32 master copy). Cheapest in memory; SGD updates smaller than 2^-8 of a weight
         are lost, so it trains worse than bf16-mixed: it is here because it is what some
         hardware write-ups report.
======== ===================================================================================

Which backend supports which precision on which device kind, and whether it compiles, are
capability flags of :data:`harness.backend.BACKENDS` (readable without importing a
framework); :func:`unsupported` turns them into the one-line refusal. The harness never
asks a backend's name.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.backend import BACKENDS


@dataclass(frozen=True)
class Precision:
    name: str
    format: str  # the low-precision format the arithmetic rounds to
    unit_roundoff: float  # u = 2^-p (p significand bits incl. the implicit one): the format's epsilon
    mixed: bool  # float32 master weights, autocast for the compute
    help: str


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", "float32", 2.0 ** -24, False, "float32 everywhere (TF32 off on CUDA)"),
    Precision("tf32", "tf32", 2.0 ** -11, False, "float32 storage, TF32 tensor-core matmuls/convolutions "
                                                 "(NVIDIA Ampere or newer)"),
    Precision("bf16-mixed", "bfloat16", 2.0 ** -8, True, "float32 weights, autocast to bfloat16"),
    Precision("fp16-mixed", "float16", 2.0 ** -11, True, "float32 weights, autocast to float16, dynamic "
                                                         "loss scaling"),
    Precision("bf16", "bfloat16", 2.0 ** -8, False, "everything in bfloat16, no float32 master weights"),
)}
PRECISION_NAMES: tuple[str, ...] = tuple(PRECISIONS)

# torch.compile's modes (inductor); "none" runs eagerly.
COMPILE_MODES: tuple[str, ...] = ("none", "default", "reduce-overhead", "max-autotune")


def device_kind(device: str) -> str | None:
    """``cpu`` or ``cuda`` for a device string; None while it is still to be resolved (auto)."""
    kind = device.split(":")[0]
    return kind if kind in ("cpu", "cuda") else None


def unsupported(backend: str, device: str, precision: str = "fp32", compile: str = "none") -> str | None:
    """Why ``backend`` cannot run ``precision``/``compile`` on ``device``, in one line with the
    fix, or None when it can. From the capability flags alone: nothing is imported."""
    entry = BACKENDS[backend]
    kind = device_kind(device)
    if kind is not None and precision not in entry.precisions.get(kind, ()):
        others = ", ".join(entry.precisions.get(kind, ())) or "none"
        why = entry.precision_notes.get(precision, "")
        return (f"--precision {precision} is not available for {backend} on {kind}"
                f"{': ' + why if why else ''} (available there: {others})")
    if compile != "none" and entry.compiler is None:
        return f"--compile {compile} is not available for {backend}: {entry.no_compiler_reason}; use --compile none"
    return None


def peak_dtype(precision: str) -> str:
    """The matmul peak (`bench sysinfo --peak`, keyed by dtype) a run of ``precision`` is a share
    of: bfloat16 or float16 for the bf16/fp16 precisions, float32 otherwise (also for an
    unknown name from a newer bench)."""
    p = PRECISIONS.get(precision)
    return p.format if p is not None and p.format in ("bfloat16", "float16") else "float32"


def parity_tolerance(precision: str, factor: float) -> float:
    """The relative difference `bench parity` accepts for ``precision``: ``factor`` times the
    format's unit roundoff (bf16 2^-8, fp16/tf32 2^-11)."""
    return factor * PRECISIONS[precision].unit_roundoff
