"""What ``bench parity`` needs from the torch backend beyond the Backend protocol.

Mirrors ``backends/chainer_impl/parity.py``.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


@contextlib.contextmanager
def without_dropout(backend) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Dropout off (p = 0) for the duration: its masks come from each framework's own RNG, so
    a one-step comparison across frameworks must not draw any."""
    modules = [m for m in backend.model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    saved = [m.p for m in modules]
    for m in modules:
        m.p = 0.0
    try:
        yield
    finally:
        for m, p in zip(modules, saved):
            m.p = p
