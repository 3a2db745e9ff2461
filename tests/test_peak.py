"""Matmul peaks per framework and data type, measured in child processes (harness/measure/peak.py)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from harness.measure import peak


def test_torch_measures_every_dtype_and_the_harness_does_not_import_torch(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    was_loaded = "torch" in sys.modules
    measured = peak.measure("torch", dtypes=("float32", "bfloat16"), seconds=0.05)
    assert ("torch" in sys.modules) == was_loaded
    for dtype in ("float32", "bfloat16"):
        entry = measured[dtype]
        assert entry["gflops"] > 0 and entry["n"] >= 512 and entry["engine"].startswith("torch ")
    mine = peak.save("m1", "cpu", "torch", measured)
    assert peak.cached("m1") == mine
    got = peak.peak_for(mine, device="cpu", backend="torch", dtype="bfloat16")
    assert got is not None and got["gflops"] == measured["bfloat16"]["gflops"] and got["dtype"] == "bfloat16"


def test_chainer_says_it_has_no_bfloat16() -> None:
    if importlib.util.find_spec("chainer") is None:
        pytest.skip("chainer is not installed")
    measured = peak.measure("chainer", dtypes=("bfloat16",), seconds=0.05)
    assert measured == {"bfloat16": {"skipped": "Chainer has no bfloat16 arrays (numpy/CuPy)"}}


def test_peak_for_prefers_the_run_backend_and_falls_back_to_another(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    peak.save("m2", "cpu", "torch", {"float32": {"gflops": 300.0, "n": 2048}, "bfloat16": {"gflops": 1900.0, "n": 4096}})
    mine = peak.save("m2", "cpu", "chainer", {"float32": {"gflops": 250.0, "n": 2048},
                                              "bfloat16": {"skipped": "Chainer has no bfloat16 arrays (numpy/CuPy)"}})
    assert peak.peak_for(mine, device="cpu", backend="chainer")["gflops"] == 250.0
    assert peak.peak_for(mine, device="cpu", backend="torch")["gflops"] == 300.0
    assert peak.peak_for(mine, device="cpu", backend="chainer", dtype="bfloat16")["backend"] == "torch"
    assert peak.peak_for(mine, device="cuda:0", backend="torch") is None
    lines = dict(peak.format_peaks(mine))
    assert lines["bfloat16 matmul peak, chainer on cpu"].startswith("not measured: Chainer has no bfloat16")


def test_old_float32_only_cache_entries_are_not_read_as_new_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    (tmp_path / "matmul-peak.json").write_text('{"m3": {"gflops": 100.0, "threads": 2, "n": 2048}}')
    assert peak.cached("m3") == {}


def test_cpu_flags_from_a_cpuinfo_tree(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    # x86 /proc/cpuinfo "flags" of a Sapphire Rapids Xeon (excerpt) and an Orin's Arm "Features"
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\n")
    assert peak.cpu_dtype_flags(tmp_path) == ["amx_bf16", "avx512_bf16", "avx512f", "avx2"]
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics "
                                           "fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n")
    assert peak.cpu_dtype_flags(tmp_path) == ["asimdhp", "fphp"]
