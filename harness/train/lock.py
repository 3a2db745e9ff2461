"""One writer per run folder: the process that runs it holds a lock on it until it ends.

Without it, ``bench run --resume RUN`` on a run that is still going gives two processes
appending to the same epochs.csv and replacing the same checkpoint. The lock is
``flock(LOCK_EX)`` on the run folder itself (a directory can be flock'ed on Linux and the
BSDs), because:

- the kernel drops it when its holder dies, however it dies (``kill -9``, a crash, a power
  cut), so a stale lock cannot exist and nothing has to guess whether a recorded pid is
  still alive (or the same process, after pid reuse);
- it leaves no file in the folder: a folder that is copied, compared or refused is
  byte-identical to what the run wrote.

A filesystem that cannot lock (some network filesystems answer ENOLCK) is run without the
lock: refusing every run there would be worse than the race it prevents.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from harness.errors import BenchError

_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


class RunLock:
    """``with RunLock(run_dir): ...``: this process is the folder's only writer meanwhile."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._fd = -1

    def acquire(self) -> "RunLock":
        fd = os.open(self.run_dir, os.O_RDONLY | os.O_DIRECTORY)  # close-on-exec: children do not hold it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock_holder(fd)
            os.close(fd)
            raise BenchError(f"{self.run_dir} is being written by another bench process"
                             f"{f' (pid {holder})' if holder else ''} that is still running: wait for it to end, "
                             f"or stop it (its run is then resumable), before --resume") from None
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                os.close(fd)
                raise
            # this filesystem cannot lock: go on unlocked (module docstring)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = -1

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(fd: int) -> int | None:
    """The pid holding a flock on ``fd``'s file, from /proc/locks (Linux); None elsewhere."""
    st = os.fstat(fd)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if "->" not in fields and fields[1] == "FLOCK" and fields[5] == dev:
                return int(fields[4])
    return None
