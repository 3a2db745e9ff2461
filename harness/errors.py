"""The one exception type that the CLI turns into a one-line message and exit code 2.

Anything raised as :class:`BenchError` is the user's to fix (a flag, a file, a missing
package), so its message must say what is wrong *and* what to do about it. Every other
exception is a bug in bench and keeps its traceback.
"""


class BenchError(Exception):
    """A problem with the user's input or environment; the message names the fix."""


class Diverged(Exception):
    """The training loss became NaN or infinite (recorded as status ``diverged``)."""
