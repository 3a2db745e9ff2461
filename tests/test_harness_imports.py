"""The harness never imports a framework: everything framework-specific is under backends/."""
import pkgutil
import subprocess
import sys

import harness

FRAMEWORKS = ("torch", "torchvision", "chainer", "cupy", "onnxruntime", "onnx")


def test_harness_modules_import_no_framework():
    modules = [m.name for m in pkgutil.walk_packages(harness.__path__, "harness.")]
    assert "harness.cli" in modules and "harness.train.loop" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(','.join(sorted(f for f in {FRAMEWORKS!r} if f in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"harness imported {out.stdout.strip()}"


def test_missing_framework_is_a_clear_error(monkeypatch):
    import pytest

    from harness import backend
    from harness.errors import BenchError

    monkeypatch.setitem(backend.REGISTRY, "fake", ("backends.fake_impl_missing.backend:Fake", "fakeframework"))
    with pytest.raises(ModuleNotFoundError):  # a bug in our own module tree is not dressed up
        backend.load_backend_class("fake")
    monkeypatch.setitem(backend.REGISTRY, "ghost", ("cupy.backend:Ghost", "cupy-cuda12x"))
    with pytest.raises(BenchError, match="needs cupy, which is not installed.*pip install cupy-cuda12x"):
        backend.load_backend_class("ghost")
