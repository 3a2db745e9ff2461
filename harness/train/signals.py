"""How a run is stopped from outside: SIGTERM and Ctrl-C end it after recording, with status
``interrupted`` and exit code 130 (what a shell reports for a signalled job).

The first signal stops the run; from then on the run is *recording* (the interrupted row,
util.csv, run.json) and further signals are noted and ignored until the records are
written: an impatient second Ctrl-C, or a supervisor that sends SIGTERM twice, must not
leave a traceback and a run.json that says "running". The same shield covers the end of a
run that finished by itself (:func:`shield`), so a first signal that arrives while it
writes its last records waits for them too.
"""
from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """SIGTERM or Ctrl-C: stop after recording, status ``interrupted``. A BaseException so
    that no ``except Exception`` in a backend or a data thread swallows it."""


class StopOnSignals:
    """For the duration of a run: the first SIGTERM / SIGINT raises :class:`Interrupted`,
    later ones (and any once :meth:`shield` is called) are recorded in :attr:`ignored`.
    The previous handlers are restored at exit."""

    def __init__(self) -> None:
        self.stopping = False
        self.ignored: list[str] = []
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            self.ignored.append(signal.Signals(signum).name)  # no print here: stderr may be mid-write
            return
        self.stopping = True
        raise Interrupted(signal.Signals(signum).name)

    def shield(self) -> None:
        """The run is recording its end: from now on signals wait until it is done."""
        self.stopping = True

    def __enter__(self) -> "StopOnSignals":
        global _active
        self._old = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        _active = None
        for s, old in self._old.items():
            signal.signal(s, old)  # type: ignore[arg-type]


_active: StopOnSignals | None = None


def shield() -> None:
    """Shield the recording that follows from signals (no-op outside :class:`StopOnSignals`)."""
    if _active is not None:
        _active.shield()
