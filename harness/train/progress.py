"""What a run shows while it trains: a tqdm bar per epoch on stderr and one line per epoch.

The bar is drawn only when stderr is a terminal: written to a file or a pipe (``./run.sh >
log 2>&1``, CI) its carriage-return updates become thousands of partial lines, so there a
run writes the per-epoch lines alone.

The step callback it hands the backend also stops the epoch at the first non-finite loss
(:class:`Diverged`), with or without a bar. Its own cost is counted (``cost_s``) so that
epochs.csv's ``harness_s`` can say how much of an epoch was the harness's.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable

from harness.errors import Diverged


class Progress:
    """tqdm bar per epoch (images, loss, images/s) on stderr when it is a terminal; the
    per-epoch lines always; nothing with --quiet."""

    def __init__(self, quiet: bool, *, bar: bool | None = None) -> None:
        self.quiet = quiet
        self.show_bar = not quiet and (_is_terminal(sys.stderr) if bar is None else bar)
        self.bar: Any = None
        self.cost_s = 0.0  # time spent in the step callbacks since take_cost() (harness_s)
        if self.show_bar:
            import tqdm  # noqa: F401  (imported here, once, not inside the first epoch's timing)

    def start(self, desc: str, total: int) -> Callable[[int, float | None], None]:
        if not self.show_bar:
            def check_only(done: int, loss: float | None) -> None:
                if loss is not None and not math.isfinite(loss):
                    raise Diverged()
            return check_only
        from tqdm import tqdm

        t0 = time.perf_counter()
        self.bar = tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True, file=sys.stderr)
        self.cost_s += time.perf_counter() - t0

        def update(done: int, loss: float | None) -> None:
            t0 = time.perf_counter()
            try:
                self.bar.update(done - self.bar.n)
                if loss is not None:
                    if not math.isfinite(loss):
                        raise Diverged()
                    self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            finally:
                self.cost_s += time.perf_counter() - t0
        return update

    def take_cost(self) -> float:
        cost, self.cost_s = self.cost_s, 0.0
        return cost

    def close(self) -> None:
        if self.bar is not None:
            t0 = time.perf_counter()
            self.bar.close()
            self.bar = None
            self.cost_s += time.perf_counter() - t0

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False
