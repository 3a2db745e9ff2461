"""Export the torch backend's model to ONNX (`bench export --format onnx`).

Mirrors ``backends/chainer_impl/export.py``: ``export_onnx(backend, path, ...)`` writes a
self-contained ``.onnx`` whose one input ``images`` is float32 (batch, 3, H, W), already
normalised, and whose one output ``logits`` is (batch, classes), with the batch dimension
dynamic. The harness then checks it against :meth:`TorchBackend.predict` in ONNX Runtime.

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript), the default since
torch 2.9; the TorchScript exporter (``dynamo=False``) is deprecated. Both gave ResNet-18
logits within 4e-6 of torch here; the dynamo one takes ~5-8 s per model on a 2-core CPU
against <1 s, which only matters to the test suite. ``external_data=False`` keeps the
weights inside the one file (the exporter's default writes a ``.onnx.data`` beside it).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
import torch

from backends.onnx_file import finish, first_line
from harness.errors import BenchError

DEFAULT_OPSET = 18  # the dynamo exporter's own default; older opsets go through a version converter
TRACE_BATCH = 2  # batch of the example input; 0 and 1 would be specialised by torch.export


def export_onnx(backend: Any, path: Path, *, opset: int | None = None,
                metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Write ``backend.model`` (eval mode) to ``path``; returns what the sidecar records."""
    model, spec = backend.model, backend.spec
    if model is None or spec is None:
        raise RuntimeError("TorchBackend.build() must be called before export_onnx()")
    opset = DEFAULT_OPSET if opset is None else opset
    size = spec.image_size
    example = torch.from_numpy(
        np.random.default_rng(0).standard_normal((TRACE_BATCH, 3, size, size), dtype=np.float32)).to(backend.device)
    model.eval()
    chatter = io.StringIO()
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")  # exporter notes on decompositions; failures still raise
            torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False, verbose=False,
                              input_names=["images"], output_names=["logits"], opset_version=opset,
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as exc:
        first = first_line(exc)
        raise BenchError(f"torch could not export {spec.name} to ONNX opset {opset} ({type(exc).__name__}: "
                         f"{first}): try the default --opset {DEFAULT_OPSET}") from None
    proto = onnx.load(str(path))
    finish(proto, path, metadata)
    return {"exporter": "torch.onnx.export(dynamo=True)", "opset": opset, "trace_batch": TRACE_BATCH,
            "torch": torch.__version__, "onnx": onnx.__version__}
