"""The one parser of device strings (``cpu``, ``cuda``, ``cuda:N``).

A device string reaches bench from the command line, from run.json of a folder made on
another machine and from the distributed launcher; every place that needs its kind or its
GPU index asks :func:`parse_device`, so the accepted spellings and the error a user sees
for a bad one are written once. Framework-free: backends map a :class:`Device` onto their
own device objects.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.errors import BenchError

CPU, CUDA = "cpu", "cuda"


@dataclass(frozen=True)
class Device:
    """A parsed device: ``kind`` is "cpu" or "cuda"; ``index`` is the CUDA ordinal given
    (None for ``cpu`` and for a bare ``cuda``, which means "the current/first GPU")."""

    kind: str
    index: int | None = None

    @property
    def is_cuda(self) -> bool:
        return self.kind == CUDA

    @property
    def ordinal(self) -> int | None:
        """The GPU ordinal to use: the index given, 0 for a bare ``cuda``, None on the CPU."""
        return (self.index or 0) if self.is_cuda else None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def parse_device(text: str) -> Device:
    """``"cuda:1"`` -> ``Device("cuda", 1)``; BenchError (one line, with the fix) otherwise."""
    kind, colon, index = str(text).partition(":")
    if kind == CPU and not colon:
        return Device(CPU)
    if kind == CUDA and not colon:
        return Device(CUDA)
    if kind == CUDA and index.isdigit():
        return Device(CUDA, int(index))
    raise BenchError(f"unknown device {text!r}: use cpu, cuda or cuda:N")
