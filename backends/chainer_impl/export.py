"""Export the Chainer backend's model to ONNX (`bench export --format onnx`).

Mirrors ``backends/torch_impl/export.py``: one input ``images`` float32 (batch, 3, H, W),
normalised; one output ``logits`` (batch, classes); dynamic batch; self-contained file.

Exporter: ``onnx_chainer``, which ships inside the chainer 7.8.1 distribution (top-level
package ``onnx_chainer`` in site-packages). Do not ``pip install onnx-chainer``: that old
package downgrades chainer and onnx. Two things it needs from us:

- ``onnx.mapping``, which onnx removed in 1.19; :func:`_ensure_onnx_mapping` registers the
  three tables it reads, rebuilt from ``onnx._mapping.TENSOR_TYPE_MAP`` / ``onnx.helper``.
- A dynamic batch. It traces one fixed-size batch, so :func:`_dynamic_batch` renames the
  batch dimension of the input and output to ``batch`` and turns a ``Reshape`` to
  ``(TRACE_BATCH, -1)`` (small_cnn's flatten) into ``(0, -1)`` ("copy dimension 0"). It also
  drops the weights from the graph inputs (onnx_chainer lists them there, IR < 4 style):
  ONNX Runtime treats an initializer that is also an input as overridable, which stops
  constant folding and Conv+BatchNorm fusion.

onnx_chainer supports opsets 7 to 11; 11 is the default.
"""
from __future__ import annotations

import importlib
import sys
import types
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from ._compat import chainer

from backends.onnx_file import finish, first_line
from harness.errors import BenchError

TRACE_BATCH = 3  # odd, so no channel count or spatial size is mistaken for it in a Reshape


def _ensure_onnx_mapping() -> None:
    """Provide ``onnx.mapping`` (removed in onnx 1.19) with the tables onnx_chainer reads."""
    try:
        importlib.import_module("onnx.mapping")  # onnx < 1.19 still has it
        return
    except ImportError:
        pass
    from onnx import _mapping, helper

    standard = {k: v for k, v in _mapping.TENSOR_TYPE_MAP.items() if v.np_dtype.type.__module__ == "numpy"}
    mod: Any = types.ModuleType("onnx.mapping")  # a stand-in, filled attribute by attribute
    mod.__doc__ = "bench stand-in for onnx.mapping (removed in onnx 1.19), for onnx_chainer"
    mod.TENSOR_TYPE_TO_NP_TYPE = {k: v.np_dtype for k, v in standard.items()}
    mod.NP_TYPE_TO_TENSOR_TYPE = {np.dtype(v.np_dtype): k for k, v in standard.items()}
    mod.STORAGE_TENSOR_TYPE_TO_FIELD = {k: helper.tensor_dtype_to_field(k)
                                        for k, v in standard.items() if v.storage_dtype == k}
    sys.modules["onnx.mapping"] = mod
    onnx.mapping = mod  # type: ignore[attr-defined]


def export_onnx(backend: Any, path: Path, *, opset: int | None = None,
                metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Write ``backend.model`` (``train=False``) to ``path``; returns what the sidecar records."""
    _ensure_onnx_mapping()
    import onnx_chainer

    model, spec = backend.model, backend.spec
    if model is None or spec is None:
        raise RuntimeError("ChainerBackend.build() must be called before export_onnx()")
    low, high = onnx_chainer.MINIMUM_OPSET_VERSION, onnx_chainer.MAXIMUM_OPSET_VERSION
    opset = high if opset is None else opset
    if not low <= opset <= high:
        raise BenchError(f"--opset {opset} is outside what Chainer's onnx_chainer exports ({low} to {high}): "
                         f"use --opset {high}")
    size = spec.image_size
    example = backend.device.send(
        np.random.default_rng(0).standard_normal((TRACE_BATCH, 3, size, size), dtype=np.float32))
    try:
        # train=False: BatchNorm uses running statistics, dropout is off. Backprop stays on:
        # onnx_chainer walks the graph of creator functions that it records.
        with chainer.using_device(backend.device), chainer.using_config("train", False), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proto = onnx_chainer.export(model, example, filename=None, opset_version=opset,
                                        input_names=["images"], output_names=["logits"])
    except Exception as exc:
        first = first_line(exc)
        raise BenchError(f"onnx_chainer could not export {spec.name} ({type(exc).__name__}: {first})") from None
    _dynamic_batch(proto.graph, TRACE_BATCH)
    finish(proto, path, metadata)
    return {"exporter": "onnx_chainer (bundled with chainer)", "opset": opset, "trace_batch": TRACE_BATCH,
            "chainer": chainer.__version__, "onnx": onnx.__version__}


def _dynamic_batch(graph: onnx.GraphProto, batch: int) -> None:
    """Make the traced batch size symbolic (see the module docstring)."""
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    for value in [*graph.input, *graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = "batch"
    del graph.value_info[:]  # intermediate shapes were inferred with the fixed batch
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    initializers = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        source = node.input[1]
        if source in constants:
            attr = next(a for a in constants[source].attribute if a.name == "value")
            tensor = attr.t
        elif source in initializers:
            tensor = initializers[source]
        else:
            continue
        shape = numpy_helper.to_array(tensor).copy()
        if shape.ndim == 1 and shape.size and shape[0] == batch:
            shape[0] = 0  # ONNX Reshape: 0 copies that dimension from the input
            tensor.CopyFrom(numpy_helper.from_array(shape.astype(np.int64), tensor.name))
