"""How a run is stopped from outside: SIGTERM and Ctrl-C end it after recording, with status
``interrupted`` and exit code 130 (what a shell reports for a signalled job)."""
from __future__ import annotations

import signal


class Interrupted(BaseException):
    """SIGTERM or Ctrl-C: stop after recording, status ``interrupted``. A BaseException so
    that no ``except Exception`` in a backend or a data thread swallows it."""


class StopOnSigterm:
    """Turn SIGTERM into :class:`Interrupted` for the duration of a run (Ctrl-C already
    raises KeyboardInterrupt), restoring the previous handler afterwards."""

    def __enter__(self) -> "StopOnSigterm":
        def handler(signum: int, frame: object) -> None:
            raise Interrupted()

        self._old = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._old)
