"""The `bench` command line: argument parsing, exit codes and one-line errors.

Exit codes: 0 success; 2 bad input (a one-line message naming the problem and the fix, no
traceback); 3 a run diverged (NaN/inf loss); 130 interrupted (Ctrl-C / SIGTERM).
Sub-commands are thin: they parse flags and call harness modules that do the work.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from harness import __version__
from harness.backend import REGISTRY
from harness.catalogue import MODELS
from harness.config import AUGMENTS, DEFAULT_LR, OPTIMIZERS, SCHEDULES, RunConfig
from harness.errors import BenchError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


_D = RunConfig()  # defaults shown in --help come from the one place they are defined


def _add_run_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="train and evaluate a model, recording per-epoch results",
                       description="Train and evaluate a model in one or more backends with identical "
                                   "settings, data order and initial weights; write results/<run_id>/.")
    a = p.add_argument
    a("--backend", action="append", choices=list(REGISTRY), dest="backends",
      help="framework to run; repeat the flag to run several one after the other (default: torch)")
    a("--device", help=f"cpu, cuda or cuda:N (Chainer: cuda means CuPy) (default: {_D.device})")
    a("--model", choices=list(MODELS), metavar="MODEL",
      help=f"one of {', '.join(MODELS)} (default: {_D.model})")
    a("--dataset", help=f"cifar10, synthetic (no download) or imagefolder:PATH (default: {_D.dataset})")
    a("--data-dir", type=Path, help=f"where CIFAR-10 is found or downloaded to (default: {_D.data_dir})")
    a("--epochs", type=int, help=f"number of epochs (default: {_D.epochs})")
    a("--batch-size", type=int, help=f"training and eval batch size (default: {_D.batch_size})")
    a("--lr", type=float, help=f"peak learning rate (default: {DEFAULT_LR['sgd']} for sgd, {DEFAULT_LR['adam']} for adam)")
    a("--optimizer", choices=OPTIMIZERS, help=f"sgd (momentum 0.9) or adam (default: {_D.optimizer})")
    a("--momentum", type=float, help=f"SGD momentum (default: {_D.momentum})")
    a("--weight-decay", type=float, help=f"coupled L2 weight decay on all parameters (default: {_D.weight_decay})")
    a("--schedule", choices=SCHEDULES, help=f"per-epoch learning-rate schedule (default: {_D.schedule})")
    a("--seed", type=int, help=f"seed for weights, data order and augmentation (default: {_D.seed})")
    a("--train-size", type=int, help="use the first N training images (default: all; synthetic: 5000)")
    a("--test-size", type=int, help="use the first N test images (default: all; synthetic: 1000)")
    a("--threads", type=int, help="CPU threads for the framework and its BLAS (default: the framework's own)")
    a("--results-dir", type=Path, help=f"where run folders are created (default: {_D.results_dir})")
    a("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    a("--repeat", type=int, help=f"independent runs with seeds seed, seed+1, ... (default: {_D.repeat})")
    a("--target-acc", type=float, help="stop when test accuracy reaches this fraction and record the time (default: off)")
    a("--quiet", action="store_true", default=None, help="no progress bars or per-epoch lines")
    a("--shortcut", choices=("A", "B"), help=f"CIFAR ResNet shortcut: A identity+zero-pad, B 1x1 projection (default: {_D.shortcut})")
    a("--no-skip", help="comma-separated residual blocks to ablate, e.g. layer1.2,layer3.0 (default: none)")
    a("--freeze", choices=("none", "backbone"), help=f"freeze everything but the head (default: {_D.freeze})")
    a("--train-bn", action="store_true", default=None, help="with --freeze backbone, still update BatchNorm statistics")
    a("--head", choices=("linear", "mlp"), help=f"classifier head for ImageNet ResNets (default: {_D.head})")
    a("--augment", choices=AUGMENTS, help="training augmentation (default: crop_flip at 32 px, flip when resized)")
    a("--weights", help="none: canonical random init; imagenet: torchvision's IMAGENET1K_V1 (resnet18..152, "
      "from its cache or downloaded); PATH: a torchvision state_dict .pth or a `bench weights convert` .npz "
      f"(default: {_D.weights})")
    a("--cache-features", action="store_true", default=None,
      help="with --freeze backbone --augment none: compute the backbone's features once (cached under "
           "DATA_DIR/feature-cache/) and train the head on them")
    a("--image-size", type=int, help="input side in pixels (default: the model's: 32 CIFAR ResNets, 224 others)")
    a("--no-download", dest="download", action="store_false", default=None, help="never download datasets or weights")
    a("--sample-interval", type=float, dest="sample_interval_s",
      help=f"seconds between utilisation samples (default: {_D.sample_interval_s})")
    a("--distributed", action="store_true", default=None,
      help="data-parallel over the processes torchrun (torch) or mpiexec (chainer) started; --batch-size "
           "stays the global batch. `bench launch` prints and runs the launcher line (default: off; on "
           "by itself under a launcher with more than one process)")
    p.set_defaults(func=_cmd_run)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"func", "command", "command_line", "resume"}
    out = {k: v for k, v in vars(args).items() if v is not None and k not in skip}
    if "no_skip" in out:
        out["no_skip"] = [b for b in out["no_skip"].split(",") if b]
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.train import session

    command = args.command_line
    given = _given(args)
    if args.resume is not None:
        if "backends" in given:
            given["backend"] = given.pop("backends")[0]
        code = session.resume_command(args.resume, given, command, bool(given.get("quiet")))
        session.print_summary([args.resume])
        return code
    if "no_skip" in given:
        given["no_skip"] = tuple(given["no_skip"])
    config = RunConfig(**given)
    code, dirs = session.run_command(config, command)
    session.print_summary(dirs)
    return code


def _cmd_list(args: argparse.Namespace) -> int:
    from harness.listing import describe, format_listing

    info = describe(param_counts=not args.no_params)
    print(json.dumps(info, indent=2) if args.json else format_listing(info))
    return 0


def _cmd_sysinfo(args: argparse.Namespace) -> int:
    from harness.measure.sysinfo import format_machine, machine_info, measure_matmul_peak, save_peak

    info = machine_info()
    if args.peak:
        info["peak_matmul"] = save_peak(info["machine_id"], measure_matmul_peak())
    print(json.dumps(info, indent=2) if args.json else format_machine(info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Train and evaluate the same image models in several frameworks "
                     "on the same data, and record what each costs on this machine.",
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="examples:\n  bench run --backend torch --backend chainer --epochs 2 --train-size 2000\n"
                            "  bench compare results/*\n  bench report results/* --out report/")
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_run_parser(sub)
    p = sub.add_parser("list", help="models, backends, datasets, and what is usable on this machine")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-params", action="store_true", help="skip building models to count parameters (faster)")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("sysinfo", help="describe this machine as run.json records it")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--peak", action="store_true", help="also measure float32 matmul peak GFLOP/s (~5 s); later runs on this machine record "
                   "it so reports can say what share of the machine a framework used")
    p.set_defaults(func=_cmd_sysinfo)
    for register in _optional_commands():
        register(sub)
    return parser


def _optional_commands() -> list[Callable[[Any], None]]:
    """Sub-commands that live in their own modules (reports, parity, inference...)."""
    out: list[Callable[[Any], None]] = []
    try:
        from harness.report.cli_commands import add_compare_parser, add_report_parser

        out += [add_compare_parser, add_report_parser]
    except ImportError:
        pass
    # bench parity / bench weights (harness/parity_cli.py, harness/weights_cli.py)
    from harness.parity_cli import add_parity_parser
    from harness.weights_cli import add_weights_parser

    out += [add_parity_parser, add_weights_parser]
    # bench infer / bench export (harness/infer_cli.py)
    from harness.infer_cli import add_export_parser, add_infer_parser

    out += [add_infer_parser, add_export_parser]
    # bench launch (harness/launch.py): the torchrun / mpiexec line for --distributed
    from harness.launch import add_launch_parser

    out.append(add_launch_parser)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # As the user would type it again; recorded in run.json (argv, not sys.argv: main() is
    # also called in-process, by tests and by `python -m harness.cli`).
    args.command_line = "bench " + shlex.join(sys.argv[1:] if argv is None else [str(a) for a in argv])
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
