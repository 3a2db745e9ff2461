"""Every file bench writes goes through here: the one atomic replace, the CSV appender and
JSON writing.

Why one mechanism: a run folder must never hold half a file, whatever stops bench (a full
disk, ``kill -9``, a power cut). :func:`atomic_path` is that guarantee, written once:
a temporary file in the same folder (so the rename cannot cross filesystems), fsync of the
file, ``os.replace`` over the target, fsync of the folder (so the rename itself survives a
power cut), and the temporary removed on any error. :func:`atomic_write_bytes` is it for
bytes already in memory; writers that need a file name (``torch.save``, ``np.savez``,
matplotlib, ONNX exporters, downloads) take the temporary path from :func:`atomic_path`.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from harness.errors import BenchError
from harness.schema.columns import EPOCH_COLUMNS

MIB = 1 << 20
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(BenchError):
    """A write failed because the filesystem is full: one line naming the file and the space
    it needs (a BenchError: the user's to fix, exit 2). What was on disk before is intact;
    a run that meets it can be resumed once space is freed."""

    def __init__(self, path: Path, free: int, need: int) -> None:
        self.path, self.free, self.need = Path(path), free, need
        super().__init__(f"cannot write {self.path}: its filesystem is full ({free / MIB:.1f} MiB free, "
                         f"about {max(need, 1) / MIB:.1f} MiB needed): free space there, then run again")


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return -1


def disk_full(exc: BaseException, path: Path, need: int) -> DiskFull | None:
    """The :class:`DiskFull` that ``exc`` means, or None. An OSError says ENOSPC/EDQUOT;
    framework writers (torch.save raises RuntimeError) lose the errno, so for them a
    filesystem left with less than ``need`` bytes (and under 1 MiB) is taken as the cause."""
    if isinstance(exc, DiskFull):
        return exc
    folder = Path(path).parent
    free = _free_bytes(folder)
    if isinstance(exc, OSError):
        return DiskFull(path, free, need) if exc.errno in _FULL_ERRNOS else None
    if isinstance(exc, Exception) and 0 <= free < min(max(need, 1), MIB):
        return DiskFull(path, free, need)
    return None


def _umask_mode() -> int:
    """0o666 less the umask, as ``open()`` would give: mkstemp makes files 0600, and results
    are meant to be shared. Read once, at import: reading the umask means setting it, and no
    other thread has started yet."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _umask_mode()


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written: one call may write fewer bytes than asked
    (a signal, a pipe, some filesystems near full) and return the count, not an error."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # never for a regular file; guards against an endless loop
            raise OSError(f"os.write wrote {written} bytes")
        view = view[written:]


def fsync_dir(folder: Path) -> None:
    """fsync a folder so a rename in it is on disk; a filesystem that cannot is skipped."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error, the
    file written there is fsync'd and renamed over ``path`` and the folder fsync'd. On any
    error (including KeyboardInterrupt) the temporary is removed and ``path`` is untouched.

    ``suffix`` is the temporary's extension, for writers that choose a format by it."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        # What the new file needed: at least what reached the temporary, or the old file's size.
        need = max(_size(tmp), _size(path))
        tmp.unlink(missing_ok=True)
        full = disk_full(exc, path, need)
        if full is not None and full is not exc:
            raise full from exc
        raise
    fsync_dir(path.parent)


def atomic_link(source: Path, path: Path) -> None:
    """Make ``path`` the same file as ``source`` (a checkpoint kept as ``best`` or a snapshot):
    a hard link made beside ``path`` and renamed over it, then the folder fsync'd, so a reader
    sees the old file or the new one, never half, and no byte is written twice. Safe because
    every writer replaces files by rename (:func:`atomic_path`): the linked inode is never
    rewritten in place. Where hard links are refused (some network or FAT filesystems), the
    bytes are copied through :func:`atomic_path` instead."""
    source, path = Path(source), Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        with atomic_path(path) as copy:
            shutil.copyfile(source, copy)
        return
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def move_aside(path: Path, target: Path) -> None:
    """Rename ``path`` to ``target`` in the same folder, never over an existing file, and fsync
    the folder (``--restart`` keeps an earlier attempt's files this way, never deleting them)."""
    path, target = Path(path), Path(target)
    if target.exists():
        raise FileExistsError(errno.EEXIST, "a file of that name is already there", str(target))
    os.rename(path, target)
    fsync_dir(target.parent)


def promote(path: Path, target: Path) -> None:
    """Rename ``path`` over ``target`` in the same folder and fsync the folder: the second half
    of a two-step commit whose first half (``path``, written by :func:`atomic_path`) is already
    durable (the epoch commit's checkpoint, harness/train/commit.py)."""
    os.replace(path, target)
    fsync_dir(Path(target).parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data``: readers see the old file or the new one, never half."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            write_all(fd, data)
        except OSError as exc:
            full = disk_full(exc, path, len(data))
            if full is not None:
                raise full from exc
            raise
        finally:
            os.close(fd)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_bytes(data: Mapping[str, Any]) -> bytes:
    """run.json's encoding: indented, NaN refused (JSON has none; write None instead)."""
    return (json.dumps(data, indent=2, default=_json_default, allow_nan=False) + "\n").encode()


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, json_bytes(data))


def _format(value: Any) -> str:
    """Empty for None/NaN (pandas reads it as NaN), short repr for floats."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(round(value, 6)) if abs(value) >= 1e-3 or value == 0 else f"{value:.6g}"
    return str(value)


def csv_line(columns: Iterable[str], row: Mapping[str, Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_format(row.get(c)) for c in columns])
    return buf.getvalue().encode()


class CsvAppender:
    """Appends whole rows to a CSV, then flushes them to disk.

    Each row is one buffer written to an O_APPEND descriptor (completed with
    :func:`write_all` if the kernel takes it in parts), so a ``kill -9`` leaves at most a torn
    last line, which the readers ignore; a failed write (a full disk) is cut back off, so no
    torn row is left for the next append to follow; ``fsync`` per row (``durable=True``) means a power cut
    loses at most the epoch in flight. The header is written when the file is new or empty.
    """

    def __init__(self, path: Path, columns: list[str], *, durable: bool = True) -> None:
        self.path = Path(path)
        self.columns = columns
        self.durable = durable
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if os.fstat(self._fd).st_size == 0:
            self._write(csv_line(columns, dict(zip(columns, columns))))

    def _write(self, data: bytes) -> None:
        size = os.fstat(self._fd).st_size
        try:
            write_all(self._fd, data)
            if self.durable:
                os.fsync(self._fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)  # no torn row for the next append to follow
            full = disk_full(exc, self.path, len(data))
            if full is not None:
                raise full from exc
            raise

    def append(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"columns not in the schema: {sorted(unknown)}")
        self._write(csv_line(self.columns, row))

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


def rewrite_epochs(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace epochs.csv with exactly ``rows`` (used by --resume to drop rows past the
    checkpoint), atomically."""
    columns = list(EPOCH_COLUMNS)
    data = csv_line(columns, dict(zip(columns, columns))) + b"".join(csv_line(columns, r) for r in rows)
    atomic_write_bytes(path, data)
