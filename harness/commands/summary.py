"""`bench summary`: the per-layer table of a model in every backend (the work: harness/summary.py).

    bench summary --model resnet20
    bench summary --model resnet101 --head mlp --classes 133 --backend torch
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from harness.config import SETTINGS, RunConfig

NAME = "summary"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(NAME, help="per-layer table (layer, output shape, parameters) of a model in each backend",
                       description="Build the model in each backend and list every layer that holds parameters "
                                   "with its output shape and parameter count, side by side; rows that differ "
                                   "between backends are marked !=. Totals are `bench list`'s parameter counts.")
    a = p.add_argument
    a("--model", required=True, choices=SETTINGS["model"].choices, metavar="MODEL", help=SETTINGS["model"].help)
    a("--image-size", type=int, help="input side in pixels (default: the model's native size)")
    a("--classes", type=int, help="classifier outputs (default: 10 for CIFAR models, 1000 for ImageNet ones)")
    a("--backend", action="append", dest="backends", choices=SETTINGS["backends"].choices,
      help="a backend to list (repeat; default: torch and chainer)")
    a("--shortcut", choices=SETTINGS["shortcut"].choices, default="A", help=SETTINGS["shortcut"].help)
    a("--head", choices=SETTINGS["head"].choices, default="linear", help=SETTINGS["head"].help)
    a("--format", choices=("text", "markdown"), default="text", help="table format (default: text)")
    a("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from harness.backend import load_backend_class
    from harness.errors import BenchError
    from harness.summary import default_classes, format_summary, summarise

    config = RunConfig(model=args.model, image_size=args.image_size, shortcut=args.shortcut, head=args.head,
                       backends=args.backends or ["torch", "chainer"], quiet=True).validate()
    if args.classes is not None and args.classes < 1:
        raise BenchError(f"--classes must be positive, got {args.classes}")
    for name in config.backends:  # a missing framework: one line naming the package
        load_backend_class(name)
    summary = summarise(config, args.classes or default_classes(args.model))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary, args.format), end="" if not args.json else "\n")
    return 0
