"""The one exception type that the CLI turns into a one-line message and exit code 2.

Anything raised as :class:`BenchError` is the user's to fix (a flag, a file, a missing
package), so its message must say what is wrong *and* what to do about it. Every other
exception is a bug in bench and keeps its traceback.
"""


class BenchError(Exception):
    """A problem with the user's input or environment; the message names the fix."""


# The exit code of a suite's child that raised Unsupported (harness/cli.py), read by the
# suite's runner (harness/experiments/runner.py).
EXIT_UNSUPPORTED = 4


class Unsupported(BenchError):
    """This machine cannot run what was asked (a precision its device lacks, no CUDA device, no
    compiler for --compile); the message names the fix. A `bench run` typed by a user exits 2
    like any BenchError; the child of a suite exits EXIT_UNSUPPORTED (harness/cli.py) so the
    suite records the cell as unsupported here, not as a failure (harness/experiments/support.py)."""


class Diverged(Exception):
    """The training loss became NaN or infinite (recorded as status ``diverged``)."""
