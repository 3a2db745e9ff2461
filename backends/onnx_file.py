"""What both ONNX exporters (backends/<fw>_impl/export.py) do once the graph exists: stamp
bench's metadata into it, run onnx.checker in full, save. Framework-free; imports onnx only."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import onnx


def first_line(exc: BaseException) -> str:
    """An exporter's exception as one short line for a BenchError (they can be pages long)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def finish(proto: Any, path: Path, metadata: Mapping[str, str] | None) -> None:
    """Add ``metadata`` as metadata_props, check the model (full shape inference), save it."""
    for key, value in (metadata or {}).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
