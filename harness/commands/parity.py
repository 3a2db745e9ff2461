"""`bench parity`: torch vs Chainer on the same weights and batch (the work: :mod:`harness.parity`).

    bench parity --model resnet50 --weights imagenet --image-size 64
    bench parity --model resnet20 --json

Exit status 0 when every relative difference is within ``--tolerance`` or, for the SGD step,
within a few times the float32 reorder noise each framework shows against itself (the floor
measured when a difference exceeds the tolerance); 1 when one exceeds both; 2 for bad input.
"""
from __future__ import annotations

import argparse
import json
import math
from typing import Any

from harness.backend import REGISTRY, load_backend_class
from harness.catalogue import MODELS, SHORTCUTS
from harness.config import DEFAULT_LR, RunConfig
from harness.errors import BenchError
from harness.precision import PRECISION_NAMES, parity_tolerance

NAME = "parity"

DEFAULT_TOLERANCE = 1e-4
DEFAULT_BATCH = 16
_D = RunConfig()


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        NAME, help="check that two backends compute the same logits and SGD step from the same weights",
        description="Build the model in two backends from the same weights (canonical init or a file), feed "
                    "the same batch, and report the largest differences of the eval-mode logits and of every "
                    "parameter after one identical SGD step. Exit 1 if a difference exceeds --tolerance and, for the "
                    "step, also a few times (harness/parity.py FLOOR_FACTOR) the float32 reorder noise each "
                    "framework shows against itself.")
    a = p.add_argument
    a("--model", required=True, choices=list(MODELS), metavar="MODEL", help=f"one of {', '.join(MODELS)}")
    a("--weights", default="none", help="none (canonical init), imagenet, or PATH to a torchvision .pth / .npz "
                                        "(default: none)")
    a("--image-size", type=int, help="input side in pixels (default: the model's native size)")
    a("--batch-size", type=int, default=DEFAULT_BATCH, help=f"images in the batch (default: {DEFAULT_BATCH})")
    a("--tolerance", type=float,
      help=f"largest relative difference that passes (default: {DEFAULT_TOLERANCE:g}; with --precision other "
           f"than fp32: 8 x the format's unit roundoff, e.g. bf16 8 x 2^-8)")
    a("--precision", choices=PRECISION_NAMES, default="fp32",
      help="run the first backend in this precision against the second in fp32 (default: fp32 for both; "
           "with a low precision and no --backend: torch against torch fp32)")
    a("--classes", type=int, default=10, help="classifier outputs (default: 10)")
    a("--backend", action="append", choices=list(REGISTRY), dest="backends",
      help="the two backends to compare (default: torch and chainer)")
    a("--seed", type=int, default=0, help="seed of the canonical init and of the batch (default: 0)")
    a("--shortcut", choices=SHORTCUTS, default=_D.shortcut, help="CIFAR ResNet shortcut (default: A)")
    a("--head", choices=("linear", "mlp"), default=_D.head, help="classifier head (default: linear)")
    a("--lr", type=float, default=DEFAULT_LR["sgd"],
      help=f"SGD learning rate of the step (default: {DEFAULT_LR['sgd']}, as bench run)")
    a("--weight-decay", type=float, default=_D.weight_decay,
      help=f"SGD weight decay of the step (default: {_D.weight_decay:g}, as bench run)")
    a("--threads", type=int, help="CPU threads per framework (default: the framework's own)")
    a("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    a("--no-download", dest="download", action="store_false", help="never download weights")
    a("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from harness.parity import PRECISION_FACTOR, format_report, precision_basis, run_parity

    low = args.precision != "fp32"
    backends = args.backends or (["torch", "torch"] if low else ["torch", "chainer"])
    if len(backends) == 1 and low:
        backends = backends * 2  # one backend in low precision against itself in fp32
    if len(backends) != 2 or (backends[0] == backends[1] and not low):
        raise BenchError("bench parity compares two different backends (or one backend with --precision against "
                         "itself in fp32): give --backend twice, or neither")
    basis = ""
    if args.tolerance is None:
        args.tolerance = parity_tolerance(args.precision, PRECISION_FACTOR) if low else DEFAULT_TOLERANCE
        basis = precision_basis(args.precision) if low else ""
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise BenchError(f"--tolerance must be a number >= 0, got {args.tolerance}")
    if args.classes < 1:
        raise BenchError(f"--classes must be positive, got {args.classes}")
    # Validated for the first backend, which runs --precision; the second runs fp32 (any backend can).
    config = RunConfig(backends=backends[:1], model=args.model, weights=args.weights, image_size=args.image_size,
                       batch_size=args.batch_size, seed=args.seed, shortcut=args.shortcut, head=args.head,
                       lr=args.lr, weight_decay=args.weight_decay, threads=args.threads, device=args.device,
                       download=args.download, quiet=True, precision=args.precision).validate()
    config.backends = list(backends)
    for name in backends:
        load_backend_class(name)
    report = run_parity(config, num_classes=args.classes, tolerance=args.tolerance, tolerance_basis=basis)
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report))
    return 0 if report.passed else 1
