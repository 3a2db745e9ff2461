"""util.csv from every rank: ranks > 0 sample into a local spool that rank 0 merges."""
from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

from harness.distributed.comm import Dist

class UtilRelay:
    """util.csv rows of ranks > 0, carried to rank 0 at epoch ends.

    Each rank's Monitor samples its own process. Rank 0's writes util.csv in the run folder;
    another rank's writes a spool file in this host's temp dir, and :meth:`exchange` sends
    the rows completed since the last call to rank 0, which appends them to util.csv
    re-ordered into its own columns (hosts with other core or GPU counts lose the per-core
    columns rank 0's header lacks). The loop calls it after every epoch and once more when
    the run ends normally; an interrupted run loses the other ranks' samples of its last epoch.
    """

    def __init__(self, dist: Dist, util_csv: Path | None) -> None:
        self.dist = dist
        self.util_csv = util_csv
        self.spool: Path | None = None
        self._offset = 0
        self._header = ""
        if not dist.is_writer:
            fd, name = tempfile.mkstemp(prefix=f"bench-util-rank{dist.rank}-", suffix=".csv")
            os.close(fd)
            self.spool = Path(name)

    @property
    def monitor_path(self) -> Path | None:
        """Where this rank's Monitor writes."""
        return self.util_csv if self.dist.is_writer else self.spool

    def _new_rows(self) -> str:
        """Rows the spool gained since the last call (whole lines only: the sampler may be mid-row)."""
        if self.spool is None or not self.spool.is_file():
            return ""
        with self.spool.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        if not self._header:
            nl = data.find(b"\n")
            if nl < 0:
                return ""
            self._header = data[:nl].decode()
            self._offset += nl + 1
            data = data[nl + 1:]
        end = data.rfind(b"\n") + 1
        self._offset += end
        return data[:end].decode()

    def exchange(self) -> None:
        """Collective: every rank > 0 sends its new rows; rank 0 appends them."""
        if not self.dist.distributed or self.dist.world_size == 1:
            return
        rows = self._new_rows()
        parts = self.dist.comm.gather((self._header, rows))
        if parts is not None and self.util_csv is not None:
            self._append(parts)

    def _append(self, parts: list[tuple[str, str]]) -> None:
        from harness import schema as R

        util_csv = self.util_csv
        if util_csv is None or not util_csv.is_file():
            return
        with util_csv.open() as f:
            columns = next(csv.reader(f), [])
        lines = []
        for header, text in parts[1:]:
            if not text:
                continue
            rows = csv.DictReader(io.StringIO(header + "\n" + text))
            lines += [R.csv_line(columns, {c: row.get(c) for c in columns}) for row in rows]
        if lines:
            fd = os.open(util_csv, os.O_WRONLY | os.O_APPEND)
            try:  # one write: the O_APPEND rows of rank 0's own sampler never land inside it
                os.write(fd, b"".join(lines))
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        """Remove the spool (its rows were sent by the last :meth:`exchange`)."""
        if self.spool is not None:
            self.spool.unlink(missing_ok=True)
