"""A suite written for several machines: a cell this machine cannot run (tf32 without an NVIDIA
GPU, bfloat16 in Chainer) is reported as unsupported here, with its reason, and is neither a
failure nor a child process (harness/experiments/support.py). Issue 16: "an unsupported
combination is reported as such, not a crash"."""
from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import bench, run_dirs
from test_experiments import TINY_FILE

from harness.experiments.files import load_experiment
from harness.experiments.matrix import expand
from harness.experiments.runner import ERROR, CellOutcome, worst_exit
from harness.experiments.support import UNSUPPORTED, Support, needs_device, probe_auto_device, static_reason

TINY = TINY_FILE + "epochs = 1\n"


def _cells(tmp_path: Path, body: str):
    f = tmp_path / "e.toml"
    f.write_text(TINY + body)
    return {(c.backend, c.values["precision"], c.values["device"]): c for c in expand(load_experiment(str(f)))}


def test_capability_flags_decide_without_a_probe_where_they_can(tmp_path):
    cells = _cells(tmp_path, 'backend = ["torch", "chainer"]\nprecision = ["fp32", "tf32", "bf16-mixed"]\n'
                             'device = ["auto", "cpu"]\n')
    # Chainer has neither tf32 nor bfloat16 on any device; torch has no tf32 on a CPU
    for key in [("chainer", "tf32", "auto"), ("chainer", "bf16-mixed", "auto"), ("chainer", "tf32", "cpu"),
                ("torch", "tf32", "cpu")]:
        assert static_reason(cells[key]) is not None, key
    assert "no bfloat16" in static_reason(cells[("chainer", "bf16-mixed", "auto")])
    for key in [("torch", "fp32", "auto"), ("torch", "bf16-mixed", "cpu"), ("chainer", "fp32", "cpu"),
                ("torch", "tf32", "auto")]:  # the last one: depends on what auto finds
        assert static_reason(cells[key]) is None, key
    assert needs_device(cells[("torch", "tf32", "auto")]) == "cuda"
    assert needs_device(cells[("torch", "fp32", "auto")]) is None

    asked: list[str] = []

    def probe(found: str):
        def answer(backend: str) -> str:
            asked.append(backend)
            return found
        return answer

    on_cpu = Support(probe("cpu"))
    assert on_cpu.reason(cells[("torch", "fp32", "auto")]) is None and asked == []  # no probe needed
    why = on_cpu.reason(cells[("torch", "tf32", "auto")])
    assert why is not None and "tf32" in why and "--device auto found cpu" in why
    assert on_cpu.reason(cells[("torch", "tf32", "auto")]) is not None and asked == ["torch"]  # once per backend
    assert on_cpu.reason(cells[("chainer", "bf16-mixed", "auto")]) is not None and asked == ["torch"]
    assert Support(probe("cuda")).reason(cells[("torch", "tf32", "auto")]) is None


def test_the_real_probe_answers_what_auto_resolves_to():
    assert re.fullmatch(r"cpu|cuda", probe_auto_device("torch"))


def test_unsupported_is_not_a_failure_but_an_error_still_is(tmp_path):
    cells = list(_cells(tmp_path, 'backend = "torch"\nprecision = ["fp32", "tf32"]\ndevice = "cpu"\n').values())
    ok, unsupported = CellOutcome(cells[0]), CellOutcome(cells[1])
    from harness.experiments.runner import Attempt

    ok.attempts.append(Attempt(cells[0].key, "e", {}, "torch", 0, "completed"))
    unsupported.attempts.append(Attempt(cells[1].key, "e", {}, "torch", 0, UNSUPPORTED, "no tf32"))
    assert worst_exit([ok, unsupported]) == 0
    assert worst_exit([unsupported]) == 2  # nothing asked for runs here
    bad = CellOutcome(cells[0])
    bad.attempts.append(Attempt(cells[0].key, "e", {}, "torch", 0, ERROR, "bad input"))
    assert worst_exit([ok, unsupported, bad]) == 2


def test_suite_reports_unsupported_cells_and_finishes_green(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(f"""
name = "mixed"
[[experiment]]
name = "prec"
backend = ["torch", "chainer"]
precision = ["fp32", "bf16-mixed", "tf32"]
device = "cpu"
{TINY}
[[experiment.exclude]]
backend = "chainer"
precision = "fp32"
""")
    out = tmp_path / "out"
    dry = bench("suite", "run", str(suite), "--dry-run", "--out", str(out), check=True).stdout
    assert len(re.findall(r"\[unsupported: ", dry)) == 3, dry  # chainer bf16/tf32, torch tf32 on cpu
    proc = bench("suite", "run", str(suite), "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\[3/5\] prec torch precision=tf32 \[\w+\]: unsupported here: --precision tf32 is not "
                     r"available for torch on cpu", proc.stdout), proc.stdout
    assert "3 of 5 cells are unsupported on this machine" in proc.stdout and "did not complete" not in proc.stdout
    cells = json.loads((out / "suite.json").read_text())["cells"]
    assert [c["status"] for c in cells] == ["completed", "completed", UNSUPPORTED, UNSUPPORTED, UNSUPPORTED]
    assert all(c["attempts"][0]["reason"] for c in cells[2:])
    assert len(run_dirs(out)) == 2  # no child, no folder, for what cannot run here
    assert not list((out / "logs").glob("*tf32*"))


def test_flags_typed_to_bench_run_that_no_machine_runs_are_bad_input(tmp_path):
    out = tmp_path / "results"
    proc = bench("run", "--backend", "torch", "--backend", "chainer", "--precision", "bf16-mixed",
                 "--results-dir", str(out))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "bf16-mixed is not available for chainer" in proc.stderr and not out.exists()


def test_what_only_the_cells_own_process_finds_out_is_unsupported_too(tmp_path):
    """No CUDA device visible (CUDA_VISIBLE_DEVICES=""): a cell asking for --device cuda passes
    the capability flags, starts, and its child's one-line refusal (harness.errors.Unsupported,
    exit 4 to its suite) makes it unsupported here, not an error. (A user's own `bench run
    --device cuda` exits 2 with that line: test_cli_run.py.)"""
    suite = tmp_path / "s.toml"
    suite.write_text(f"""
name = "gpu-or-not"
[[experiment]]
name = "dev"
backend = "torch"
device = ["cpu", "cuda"]
{TINY}
""")
    out, env = tmp_path / "out", {"CUDA_VISIBLE_DEVICES": ""}
    proc = bench("suite", "run", str(suite), "--out", str(out), env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cells = json.loads((out / "suite.json").read_text())["cells"]
    assert [c["status"] for c in cells] == ["completed", UNSUPPORTED]
    (attempt,) = cells[1]["attempts"]
    assert attempt["exit_code"] == 4 and attempt["reason"].startswith("CUDA was requested but"), attempt
    assert "[2/2] dev torch device=cuda" in proc.stdout and "unsupported here: CUDA was requested" in proc.stdout
