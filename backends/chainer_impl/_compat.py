"""Import chainer 7.8.1 in a current Python environment.

Every module of this package imports chainer through here (``from ._compat import chainer``).

Chainer's import-time environment check (``chainer/_environment_check.py``) does
``import numpy.distutils.system_info`` and only *uses* it on macOS, to warn about Apple's
Accelerate BLAS. With setuptools >= 74 that import fails (``No module named
'distutils.msvccompiler'``: numpy 1.26's distutils expects a module setuptools removed), so
a plain ``import chainer`` dies on Linux for a check that does nothing there. We try the real
import first and, only if it fails, register a stand-in whose ``get_info`` returns ``{}``
("no BLAS information"), which makes the macOS check a no-op. This is done in-process, so it
works however Python was started (pytest, ``python -c``, a console script) without relying on
``SETUPTOOLS_USE_DISTUTILS=stdlib`` in the environment.

The same check imports ``pkg_resources``, which setuptools >= 67 deprecates with a
UserWarning on import; that warning says nothing actionable to a bench user, so it is
silenced for the duration of the chainer import only.
"""
from __future__ import annotations

import sys
import types
import warnings


def _install_numpy_distutils_stand_in() -> None:
    with warnings.catch_warnings():
        # numpy.distutils itself warns that it is deprecated (numpy >= 1.23).
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import numpy.distutils.system_info  # noqa: F401  (the real one, where it works)
            return
        except Exception:  # ImportError, or anything else a broken distutils raises
            pass
        try:
            import numpy.distutils  # noqa: F401
        except Exception:
            sys.modules["numpy.distutils"] = types.ModuleType("numpy.distutils")
    stand_in = types.ModuleType("numpy.distutils.system_info")
    stand_in.__doc__ = "bench stand-in: numpy.distutils.system_info failed to import."
    stand_in.get_info = lambda name, notfound_action=0: {}  # type: ignore[attr-defined]
    sys.modules["numpy.distutils.system_info"] = stand_in
    parent = sys.modules["numpy.distutils"]
    parent.system_info = stand_in  # type: ignore[attr-defined]  # so attribute access works too
    import numpy

    if not hasattr(numpy, "distutils"):
        numpy.distutils = parent  # type: ignore[attr-defined]


if "chainer" not in sys.modules:
    _install_numpy_distutils_stand_in()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pkg_resources.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*pkg_resources.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pkg_resources.*")
        import chainer  # noqa: E402

import chainer  # noqa: E402,F811  (already imported above, or by the caller before us)

__all__ = ["chainer"]
