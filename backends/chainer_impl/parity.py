"""What ``bench parity`` needs from the Chainer backend beyond the Backend protocol.

Mirrors ``backends/torch_impl/parity.py``.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from ._compat import chainer
import chainer.functions


@contextlib.contextmanager
def without_dropout(backend) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Dropout off for the duration: its masks come from each framework's own RNG, so a
    one-step comparison across frameworks must not draw any. The models call
    ``F.dropout`` (``chainer.functions.dropout``) at run time, so replacing that function
    reaches every dropout, whatever its ratio."""
    del backend
    original = chainer.functions.dropout
    chainer.functions.dropout = lambda x, ratio=0.5, **kwargs: chainer.as_variable(x)
    try:
        yield
    finally:
        chainer.functions.dropout = original
