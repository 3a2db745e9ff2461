"""Reading the host's pseudo-files (sysfs, procfs, /etc) under a root that tests can move.

Every reader of machine state in ``harness/measure`` (energy counters, Tegra GPU load, board
description, distribution) takes a ``root`` and reads ``root/sys/...`` instead of ``/sys/...``,
so a test can hand it a directory tree laid out like a Jetson's or a RAPL server's. Without an
explicit root, ``BENCH_SYSFS_ROOT`` names one: a **test hook** that lets an end-to-end
``bench run`` subprocess read a fake tree (documented in the README; never set it on a real
machine, where it only hides the real files).

The three outcomes of a read are kept apart because reports must say *why* a figure is missing:
the file does not exist (``None``: the machine has no such sensor), it exists but is not
readable by this user (``Unreadable``: the fix is a permission), or it reads.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT_ENV = "BENCH_SYSFS_ROOT"


class Unreadable(Exception):
    """A file that exists but this user may not read (e.g. RAPL's energy_uj since Linux 5.10)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"needs read access to {path}")
        self.path = path


def host_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The directory that stands for ``/``: ``root`` if given, else ``$BENCH_SYSFS_ROOT``, else ``/``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(ROOT_ENV) or "/")


def under(root: Path, absolute: str) -> Path:
    """``/sys/x`` under ``root`` (``root / "sys/x"``)."""
    return root / absolute.lstrip("/")


def read_text(path: Path) -> str | None:
    """The file's text, stripped (device-tree strings end in NUL); ``None`` when it does not
    exist or the kernel refuses the read (EIO/ENODATA from a sensor that is powered off);
    raises ``Unreadable`` when it exists but permissions forbid reading it."""
    try:
        return path.read_bytes().decode("utf-8", errors="replace").strip().strip("\x00").strip()
    except PermissionError:
        raise Unreadable(path) from None
    except OSError:
        return None


def read_number(path: Path) -> float | None:
    """A file holding one number (sysfs style); ``None`` when absent or not a number."""
    text = read_text(path)
    if text is None:
        return None
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None
