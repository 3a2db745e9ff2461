"""`bench weights`: convert torchvision weights for Chainer, and say where ImageNet weights go.

    bench weights convert SRC.pth [--model NAME] [--out X.npz]
    bench weights where [MODEL ...]

``convert`` reads a torchvision ``state_dict`` (needs torch), checks it against the Chainer
model it is for (needs chainer; the model is recognised from the block counts unless
``--model`` is given) and writes an ``.npz`` of canonical arrays that ``--weights X.npz``
loads into any backend. ``bench run --backend chainer --weights X.pth`` does the same
automatically and caches the result by the source's sha256 (see :mod:`harness.weights`).
"""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from harness import weights as W
from harness.backend import load_backend_class
from harness.catalogue import MODELS
from harness.errors import BenchError

NAME = "weights"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(NAME, help="convert torchvision weights for Chainer; where ImageNet weights go",
                       description="Work with weight files: torchvision .pth -> canonical .npz (what "
                                   "Chainer loads), and the torchvision cache paths of the ImageNet weights.")
    actions = p.add_subparsers(dest="weights_command", metavar="ACTION", parser_class=type(p))
    c = actions.add_parser("convert", help="torchvision state_dict (.pth) -> .npz of canonical arrays for Chainer")
    c.add_argument("src", type=Path, metavar="SRC.pth",
                   help="a torchvision state_dict file (torch.save(model.state_dict()))")
    c.add_argument("--model", choices=list(MODELS), metavar="MODEL",
                   help="the model the weights are for (default: recognised from the file)")
    c.add_argument("--out", type=Path, metavar="X.npz", help="output file (default: SRC with .npz)")
    w = actions.add_parser("where", help="torchvision cache path and URL of the ImageNet weights, and whether present")
    w.add_argument("models", nargs="*", metavar="MODEL", help=f"any of {', '.join(W.IMAGENET_FILES)} (default: all)")
    p.set_defaults(print_help=p.print_help)


def run(args: argparse.Namespace) -> int:
    if args.weights_command == "convert":
        return run_convert(args)
    if args.weights_command == "where":
        return run_where(args)
    args.print_help()  # `bench weights` alone: say what it can do
    return 2


def run_convert(args: argparse.Namespace) -> int:
    src: Path = args.src
    if not src.is_file():
        raise BenchError(f"{src}: no such file. Pass a torchvision state_dict (.pth)")
    if src.suffix == ".npz":
        raise BenchError(f"{src} is already an .npz: pass it to --weights as it is")
    out: Path = args.out or src.with_suffix(".npz")
    arrays = convert(src, args.model)
    W.save_npz(out, arrays)
    print(f"wrote {out}: {len(arrays)} tensors of {args.model or W.guess_architecture(arrays)}, "
          f"from {src} (sha256 {W.file_sha256(src)})")
    return 0


def convert(src: Path, model: str | None) -> dict:
    """Canonical arrays of ``src``, checked against the Chainer model they are for."""
    arrays = W.torch_weights_module(f"converting {src}").read_state_dict(src)
    load_backend_class("chainer")  # a clear error naming the package if chainer is missing
    cw = importlib.import_module("backends.chainer_impl.weights")
    arrays = cw.convert_torchvision_state_dict(arrays)
    guess = W.guess_architecture(arrays)
    model = model or guess
    if model is None:
        raise BenchError(f"cannot tell which model {src} is for: pass --model")
    try:
        cw.check_state(arrays, model, what=f"the weights in {src}")
    except BenchError as exc:
        looks = f" They look like {guess}'s weights." if guess and guess != model else ""
        raise BenchError(f"{str(exc).rstrip('.')}.{looks}") from None
    return arrays


def run_where(args: argparse.Namespace) -> int:
    for model in args.models or list(W.IMAGENET_FILES):
        path, url = W.imagenet_location(model)
        state = "present" if path.is_file() else "missing"
        print(f"{model:10s} {state:8s} {path}  <-  {url}")
    return 0
