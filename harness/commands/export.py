"""`bench export`: a `bench run` checkpoint as an ONNX model, checked in ONNX Runtime before it is written.

The work is in :mod:`harness.infer` (loading the run's model) and the backend's export.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.backend import REGISTRY
from harness.errors import BenchError
from harness.infer import ONNX_NAME, export_onnx, load_model, resolve_source, run_config, sidecar_path, source_record
from harness.train.rundir import ensure_writable

NAME = "export"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME, help="export a trained model to ONNX, checked against the framework",
        description="Export the model of a `bench run` checkpoint (torch or chainer) to ONNX with a dynamic batch "
                    "dimension, check it with onnx.checker and against the framework's own output in ONNX "
                    "Runtime, and write FILE.json beside it with the check and the source run.")
    p.add_argument("path", type=Path, metavar="RUN_DIR|CHECKPOINT", help="a run folder, or its checkpoint file")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="export format (default: onnx)")
    p.add_argument("--out", type=Path, metavar="FILE", help=f"where to write (default: RUN_DIR/{ONNX_NAME})")
    p.add_argument("--opset", type=int, metavar="N",
                   help="ONNX opset (default: the exporter's: 18 for torch, 11 for chainer, which supports 7-11)")
    p.add_argument("--backend", choices=[n for n in REGISTRY], help="backend that reads the checkpoint (default: the run's)")
    p.add_argument("--run", type=Path, metavar="RUN_DIR", help="the training run a CHECKPOINT file elsewhere belongs to")


def run(args: argparse.Namespace) -> int:
    export_command(args.path, fmt=args.format, out=args.out, opset=args.opset, backend=args.backend, run=args.run)
    return 0


def export_command(path: Path, *, fmt: str, out: Path | None, opset: int | None,
                   backend: str | None = None, run: Path | None = None) -> Path:
    if fmt != "onnx":
        raise BenchError(f"unknown --format {fmt!r}: onnx is the one format bench exports")
    source = resolve_source(path, backend=backend, run=run)
    if source.model_file.suffix == ".onnx":
        raise BenchError(f"{source.model_file} is already an ONNX model: export the run's checkpoint "
                         "(pass the run folder, or --backend torch|chainer)")
    out = Path(out) if out is not None else (source.run_dir or source.model_file.parent) / ONNX_NAME
    if out.suffix != ".onnx":
        raise BenchError(f"--out {out} must end in .onnx (that is how `bench infer` knows to use onnxruntime)")
    if out.is_dir():
        raise BenchError(f"--out {out} is a folder: give a file name ending in .onnx")
    ensure_writable(out.parent)
    loaded = load_model(source, run_config(source), device="cpu", threads=None)
    sidecar = export_onnx(loaded, out, opset=opset, source=source_record(source))
    check = sidecar["check"]
    print(f"wrote {out} ({sidecar['bytes'] / 2**20:.1f} MiB, opset {sidecar['opset']}, {sidecar['exporter']})")
    print(f"checked in onnxruntime against {check['compared_with']}: max |difference| {check['max_abs_diff']:.2e} "
          f"(tolerance {check['tolerance']:.1e}) on {check['images']} images; details in {sidecar_path(out).name}")
    return out
