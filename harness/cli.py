"""The `bench` command line: the parser, exit codes and one-line errors.

Exit codes: 0 success; 2 bad input (a one-line message naming the problem and the fix, no
traceback); 3 a run diverged (NaN/inf loss); 130 interrupted (Ctrl-C / SIGTERM). Only between
a suite and its child: 4, this machine cannot run the cell (:class:`~harness.errors.Unsupported`,
the same one line; a user's own `bench run` gets 2 for it).
Each sub-command is a module of harness/commands/ (listed in ``COMMANDS`` there).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import NoReturn, Sequence

from harness import __version__
from harness.commands import COMMANDS
from harness.errors import EXIT_UNSUPPORTED, BenchError, Unsupported

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class BenchParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = BenchParser(prog="bench", description="Train and evaluate the same image models in several frameworks "
                         "on the same data, and record what each costs on this machine.",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="examples:\n  bench run --backend torch --backend chainer --epochs 2 --train-size 2000\n"
                                "  bench compare results/*\n  bench report results/* --out report/")
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=BenchParser)
    for command in COMMANDS:
        command.add_parser(sub)
        sub.choices[command.NAME].set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # only a command that asks for them (extra_args) takes arguments it does not know
        if not hasattr(args, "extra_args"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.extra_args = extra
    # As the user would type it again; recorded in run.json (argv, not sys.argv: main() is
    # also called in-process, by tests and by `python -m harness.cli`).
    args.command_line = "bench " + shlex.join(sys.argv[1:] if argv is None else [str(a) for a in argv])
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from harness.distributed.outcome import rank_exit

    return rank_exit(_dispatch(args))  # under `bench launch`: rank 0's code goes to it (outcome.py)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        if isinstance(exc, Unsupported):
            from harness.experiments.context import parent_record

            return EXIT_UNSUPPORTED if parent_record() is not None else EXIT_USAGE
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
