"""results/reference/'s copy step (harness/report/reference.py): small files only, size-checked,
swapped in whole; and reports read the checkpoint-less copy."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from run_fixtures import write_synthetic_run

from harness.errors import BenchError
from harness.report import compare as C
from harness.report.reference import LIMIT_BYTES, copy_reference, folder_size, thin_util

ALLOWED = {"run.json", "epochs.csv", "util.csv", "infer.csv"}


@pytest.fixture
def suite_out(tmp_path: Path) -> Path:
    """A suite's --out folder as `bench suite run` leaves it: run folders with checkpoints,
    logs, an ONNX file and suite.json."""
    out = tmp_path / "quick"
    for backend in ("torch", "chainer"):
        run = write_synthetic_run(out / f"2026-{backend}", backend=backend, sample_s=0.05)  # ~10^3 util rows
        (run / f"checkpoint.{'pt' if backend == 'torch' else 'npz'}").write_bytes(b"\0" * 300_000)
        (run / "checkpoint.json").write_text(json.dumps({"epoch": 5}))
        (run / "model.onnx").write_bytes(b"\0" * 50_000)
    (out / "logs").mkdir()
    (out / "logs" / "cell-1.log").write_text("child output\n" * 1000)
    (out / "suite.json").write_text(json.dumps({"suite": "quick", "cells": []}))
    return out


def _rows(path: Path) -> list[list[str]]:
    return list(csv.reader(path.open()))


def test_copy_keeps_only_the_small_files(suite_out, tmp_path):
    dest = tmp_path / "results" / "reference"
    n, size = copy_reference(suite_out, dest)
    assert n == 2 and size == folder_size(dest) and size < LIMIT_BYTES
    assert sorted(p.name for p in dest.iterdir()) == ["2026-chainer", "2026-torch", "reference.json", "suite.json"]
    assert json.loads((dest / "reference.json").read_text())["suite"] == "quick"
    for run in ("2026-torch", "2026-chainer"):
        names = {p.name for p in (dest / run).iterdir()}
        assert names == {"run.json", "epochs.csv", "util.csv"} and names <= ALLOWED  # no checkpoint, no ONNX
        assert (dest / run / "run.json").read_bytes() == (suite_out / run / "run.json").read_bytes()
        assert (dest / run / "epochs.csv").read_bytes() == (suite_out / run / "epochs.csv").read_bytes()
        full, thin = _rows(suite_out / run / "util.csv"), _rows(dest / run / "util.csv")
        assert len(full) > 500 and len(thin) == 151  # header + 150 samples
        assert thin[0] == full[0] and thin[1] == full[1] and thin[-1] == full[-1]
        assert all(row in full for row in thin)
    assert not list((tmp_path / "results").glob(".reference-*"))  # no staging left behind
    # reports read it as any results folder (lined up against the originals by key)
    runs = C.load_runs([str(dest)])
    assert sorted(r.run_id for r in runs) == ["2026-chainer", "2026-torch"] and runs[0].util is not None


def test_the_reference_is_its_own_machine_beside_runs_of_the_same_one(suite_out, tmp_path):
    """A newcomer on the machine the reference was measured on: `bench report results/reference
    <theirs>` lines up two columns (reference, theirs), never pools them as repeats."""
    from harness.report import lineup as L

    dest = tmp_path / "results" / "reference"
    copy_reference(suite_out, dest)
    runs, infers = C.load_all([str(dest), str(suite_out)])
    lu = L.line_up(runs, infers)
    assert [m.label for m in lu.machines] == ["reference: i7-1165G7 (8 threads)", "i7-1165G7 (8 threads)"]
    assert lu.baseline is lu.machines[0] and len(lu.shared) == 2 and not lu.partial
    assert all(e.n == 1 for row in lu.keys for e in row.entries.values())
    ref = next(r for r in runs if r.path.parent == dest)
    assert ref.meta["machine"]["hostname"].startswith("reference (")
    assert json.loads((ref.path / "run.json").read_text())["machine"] == \
        json.loads((suite_out / ref.path.name / "run.json").read_text())["machine"]  # the file is untouched
    _, groups = C.compare_runs(runs)
    assert len(groups) == 4 and sum(g["machine"].startswith("reference (") for g in groups) == 2  # not pooled


def test_over_the_limit_leaves_the_old_reference(suite_out, tmp_path):
    dest = tmp_path / "reference"
    copy_reference(suite_out, dest)
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    with pytest.raises(BenchError, match=r"over the 10 kB limit"):
        copy_reference(suite_out, dest, limit_bytes=10_000)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quick", "reference"]


def test_thin_util_per_rank():
    header = "timestamp,elapsed_s,rank,cpu_pct\n"
    body = "".join(f"{t},{t},{rank},50\n" for t in range(100) for rank in (0, 1))
    thin = list(csv.reader(thin_util(header + body + "100,100,0", rows_per_rank=10).splitlines()))
    assert thin[0] == ["timestamp", "elapsed_s", "rank", "cpu_pct"]
    for rank in ("0", "1"):
        rows = [r for r in thin[1:] if r[2] == rank]
        assert len(rows) == 10 and rows[0][0] == "0" and rows[-1][0] == "99"  # torn last line dropped
    assert thin_util(header + "1,1,0,5\n", rows_per_rank=10) == header + "1,1,0,5\n"


def test_module_command_exit_codes(suite_out, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "harness.report.reference", str(suite_out), str(tmp_path / "ref")],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "2 runs" in ok.stderr, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "harness.report.reference", str(suite_out), str(tmp_path / "ref2"),
                          "--limit-kb", "5"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "over the 5 kB limit" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "ref2").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    none = subprocess.run([sys.executable, "-m", "harness.report.reference", str(empty), str(tmp_path / "ref3")],
                          capture_output=True, text=True, check=False)
    assert none.returncode == 2 and "holds none" in none.stderr


def test_reference_is_tracked_by_git():
    root = Path(__file__).resolve().parents[1]
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/reference/x/run.json"], cwd=root, check=False)
    assert ignored.returncode == 1  # not ignored
    assert subprocess.run(["git", "check-ignore", "-q", "results/some-run/run.json"], cwd=root, check=False).returncode == 0
