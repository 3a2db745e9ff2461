"""Which cells this machine can run, decided before a child is started.

One suite file serves a laptop, an A10G and a Jetson (`bench suite run write-up` on each, then
`bench report` over the folders), so a cell that asks for ``tf32`` or ``fp16-mixed`` is right
on the GPU machines and impossible on the laptop. Such a cell is *unsupported here*, as
TorchBench reports an unsupported precision: said in its line, recorded in ``suite.json``
with the one-line reason, and neither a failure nor a change of the suite's exit code. A
cell that could run and then fails stays an error.

The decision uses the backends' capability flags (``harness/precision.py`` ``unsupported``,
nothing imported). ``device = "auto"`` is resolved the way the cell's own child would
(``harness/train/prepare.py`` ``resolve_device``), once per backend, in a short child process,
and only for cells whose answer depends on it: the parent never imports a framework. What
only the cell's own process can find out (no CUDA device behind ``device = "cuda"``, no C++
compiler or Triton for ``compile``, a GPU generation without bf16) comes back from the child
as :class:`harness.errors.Unsupported`, exit code 4, and is recorded the same way
(harness/experiments/runner.py).
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from harness.config import AUTO_DEVICE
from harness.experiments.files import TRAIN
from harness.experiments.matrix import Cell
from harness.precision import unsupported

UNSUPPORTED = "unsupported"
DEVICE_KINDS = ("cpu", "cuda")
PROBE_TIMEOUT_S = 120.0
_PROBE = ("import sys; from harness.train.prepare import resolve_device; "
          "print(resolve_device('auto', sys.argv[1]))")


def probe_auto_device(backend: str) -> str:
    """What ``--device auto`` resolves to for ``backend`` here (a child imports the framework).
    A probe that fails answers ``cpu``: the cell's own child then says what is wrong."""
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, backend], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return "cpu"
    lines = proc.stdout.split()
    return lines[-1] if proc.returncode == 0 and lines else "cpu"


def static_reason(cell: Cell) -> str | None:
    """Why ``cell`` cannot run on any machine (or on its explicit device), from the capability
    flags alone; None when it can, or when that depends on what ``auto`` finds here."""
    c = cell.config
    if cell.kind != TRAIN or c is None:
        return None
    if c.device != AUTO_DEVICE:
        return unsupported(cell.backend, c.device, c.precision, c.compile)
    reasons = [unsupported(cell.backend, kind, c.precision, c.compile) for kind in DEVICE_KINDS]
    return reasons[0] if all(reasons) else None


def needs_device(cell: Cell) -> str | None:
    """The device kind an ``auto`` cell can run on when only one can ("cuda" for tf32), for
    `--dry-run`; None when any will do or none can."""
    c = cell.config
    if cell.kind != TRAIN or c is None or c.device != AUTO_DEVICE:
        return None
    able = [kind for kind in DEVICE_KINDS if unsupported(cell.backend, kind, c.precision, c.compile) is None]
    return able[0] if len(able) == 1 else None


class Support:
    """Answers "can this machine run the cell, and if not why" for a runner; resolves
    ``auto`` once per backend, lazily."""

    def __init__(self, probe: Callable[[str], str] = probe_auto_device):
        self._probe = probe
        self._auto: dict[str, str] = {}

    def reason(self, cell: Cell) -> str | None:
        c = cell.config
        if cell.kind != TRAIN or c is None:
            return None
        why = static_reason(cell)
        if c.device != AUTO_DEVICE or why is not None:
            return why
        if needs_device(cell) is None:  # every device kind runs it
            return None
        if cell.backend not in self._auto:
            self._auto[cell.backend] = self._probe(cell.backend)
        reason = unsupported(cell.backend, self._auto[cell.backend], c.precision, c.compile)
        return f"{reason} [--device auto found {self._auto[cell.backend]}]" if reason else None
