"""The PyTorch backend: :class:`backends.torch_impl.backend.TorchBackend` and its models.

Mirrors ``backends/chainer_impl/`` file for file (``backend.py``, ``models/<family>.py``) so
that diffing the two folders shows the contract.
"""
