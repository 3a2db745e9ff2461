"""bench's framework-free half: interface, data, runner, results, reports and CLI.

Nothing under ``harness/`` imports torch, chainer, cupy or onnxruntime; backends are found
by name in :mod:`harness.backend` and imported only when a command needs them.
"""

__version__ = "0.1.0"
