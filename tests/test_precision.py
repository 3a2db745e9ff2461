"""--precision and --compile (harness/precision.py): refusals from the capability flags, what a
run records, mixed-precision accuracy against float32, compile time kept out of steady state,
`bench parity` in low precision and the precision x compile table, on real tiny runs."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from harness.backend import BACKENDS
from harness.config import RunConfig
from harness.errors import BenchError
from harness.precision import PRECISION_NAMES, unsupported
from harness.report.compare import compare_runs, load_runs
from harness.report.precision import precision_rows
from tests.conftest import bench, run_dirs

# small_cnn at 32 px compiles fastest; resnet8 learns the synthetic set at 32 px within a few
# epochs (fp32 ~0.37 after 4 on this set; small_cnn at its native 224 px learns too, but a
# run costs minutes on 2 cores).
SMALL = ["--model", "small_cnn", "--dataset", "synthetic", "--quiet", "--threads", "1", "--batch-size", "64",
         "--image-size", "32"]
LEARN = ["--model", "resnet8", "--dataset", "synthetic", "--quiet", "--threads", "1", "--batch-size", "64",
         "--train-size", "1024", "--test-size", "256", "--epochs", "5", "--lr", "0.05"]


def one_line_refusal(proc, results: Path, *words: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert not run_dirs(results)  # refused before anything was written
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["--backend", "chainer", "--compile", "default"], ("--compile default", "chainer", "no graph compiler")),
    (["--precision", "tf32"], ("--precision tf32", "torch on cpu", "NVIDIA")),
    (["--backend", "chainer", "--precision", "bf16-mixed"], ("chainer on cpu", "bfloat16")),
    (["--backend", "chainer", "--precision", "fp16-mixed"], ("chainer on cpu", "float16", "--device cuda")),
    (["--precision", "fp8"], ("--precision", "fp8", "invalid choice")),
])
def test_unsupported_combinations_are_one_line_exit_2(results, args, words) -> None:
    one_line_refusal(bench("run", *args, "--results-dir", str(results), "--quiet", timeout=120), results, *words)


def test_refusals_come_from_the_capability_flags() -> None:
    for name, entry in BACKENDS.items():
        for kind, allowed in entry.precisions.items():
            for p in PRECISION_NAMES:
                assert (unsupported(name, kind, p) is None) == (p in allowed), (name, kind, p)
        assert (unsupported(name, "cpu", "fp32", "default") is None) == (entry.compiler is not None)
    assert unsupported("torch", "cuda:1", "tf32") is None  # a GPU's generation is the backend's to check
    with pytest.raises(BenchError, match="tf32"):
        RunConfig(precision="tf32").validate()
    RunConfig(backends=["torch", "chainer"], device="cuda", precision="fp16-mixed").validate()


def test_missing_compiler_is_one_line(results) -> None:
    proc = bench("run", *SMALL, "--train-size", "64", "--test-size", "64", "--epochs", "1", "--compile", "default",
                 "--results-dir", str(results), env={"CXX": "no-such-compiler++"}, timeout=300)
    line = one_line_refusal(proc, results, "--compile default", "C++ compiler", "no-such-compiler++")
    assert "apt-get install g++" in line and "--compile none" in line


# The tests that read the `learned` runs share one xdist worker, so the two training runs are
# made once per test session (a module fixture is built once per worker that needs it).
LEARNED_GROUP = pytest.mark.xdist_group("precision-learned")


@pytest.fixture(scope="module")
def learned(tmp_path_factory) -> Path:
    """fp32 and bf16-mixed eager runs of the same seed on the synthetic set."""
    results = tmp_path_factory.mktemp("precision-runs")
    for precision in ("fp32", "bf16-mixed"):
        bench("run", *LEARN, "--precision", precision, "--results-dir", str(results), check=True, timeout=900)
    return results


def _runs(results: Path) -> dict[str, Path]:
    return {json.loads((d / "run.json").read_text())["settings"]["precision"]: d for d in run_dirs(results)}


@pytest.mark.slow
@LEARNED_GROUP
def test_precision_is_recorded_in_run_json_and_rows(learned) -> None:
    run = _runs(learned)["bf16-mixed"]
    meta = json.loads((run / "run.json").read_text())
    assert meta["settings"]["precision"] == "bf16-mixed" and meta["settings"]["compile"] == "none"
    assert meta["execution"]["precision"] == {"precision": "bf16-mixed", "format": "bfloat16",
                                              "autocast_dtype": "bfloat16", "param_dtype": "float32",
                                              "grad_scaler": False}
    assert meta["execution"]["compile"] == {"mode": "none"}
    rows = list(csv.DictReader((run / "epochs.csv").open()))
    assert [r["precision"] for r in rows] == ["bf16-mixed"] * 5 and {r["compile"] for r in rows} == {"none"}
    assert {r["compile_s"] for r in rows} == {""}  # not compiling: empty, never 0
    fp32 = json.loads((_runs(learned)["fp32"] / "run.json").read_text())
    assert fp32["group"] != meta["group"]  # precision is part of the identity


@pytest.mark.slow
@LEARNED_GROUP
def test_bf16_mixed_reaches_fp32_accuracy_within_noise(learned) -> None:
    """Same seed, same batches: the two runs differ only in rounding. The margin is 3 binomial
    standard errors of a test accuracy measured on n images (sqrt(p(1-p)/n), p = fp32's
    accuracy): what two float32 runs of different seeds differ by on this set. A broken mixed
    precision (gradients lost, a layer not learning) lands at chance, far outside it."""
    acc = {}
    for precision, run in _runs(learned).items():
        rows = list(csv.DictReader((run / "epochs.csv").open()))
        acc[precision] = max(float(r["test_acc"]) for r in rows)
    p, n = acc["fp32"], 256
    assert p > 0.3, f"fp32 did not learn ({p:.3f}): the comparison would be empty"
    margin = 3 * math.sqrt(p * (1 - p) / n)
    assert abs(acc["bf16-mixed"] - p) <= margin, (acc, margin)


@pytest.mark.slow
@LEARNED_GROUP
def test_precision_table_from_real_runs(learned) -> None:
    _, groups = compare_runs(load_runs([str(learned)]))
    rows = {r["precision"]: r for r in precision_rows(groups)}
    assert set(rows) == {"fp32", "bf16-mixed"}
    assert rows["fp32"]["speedup"] == pytest.approx(1.0) and rows["fp32"]["acc_diff"] == 0
    assert rows["bf16-mixed"]["speedup"] == pytest.approx(
        rows["bf16-mixed"]["train_images_per_s"] / rows["fp32"]["train_images_per_s"])
    out = bench("compare", str(learned), check=True).stdout
    table = out[out.index("Precision x compile"):].splitlines()
    assert table[2].split()[:2] == ["machine", "backend"] and "speed-up" in table[2]
    assert any(" bf16-mixed " in line and "x " in line for line in table)


@pytest.mark.slow
def test_compiled_run_times_compile_apart_from_steady_state(results) -> None:
    """One compiled run (small_cnn, ~30-100 s of inductor on 2 cores): epoch 1 holds the
    compile (train and eval graphs), epoch 2 compiles nothing, and the steady figure is epoch 2's."""
    bench("run", *SMALL, "--train-size", "128", "--test-size", "64", "--epochs", "2", "--compile", "default",
          "--results-dir", str(results), check=True, timeout=1200)
    (run,) = run_dirs(results)
    rows = list(csv.DictReader((run / "epochs.csv").open()))
    assert float(rows[0]["compile_s"]) > 1.0 and float(rows[1]["compile_s"]) == 0.0
    assert float(rows[0]["compile_s"]) <= float(rows[0]["train_time_s"]) + float(rows[0]["eval_time_s"])
    assert float(rows[1]["elapsed_s"]) > float(rows[0]["compile_s"])  # time-to-accuracy includes it
    compile_info = json.loads((run / "run.json").read_text())["execution"]["compile"]
    assert compile_info["mode"] == "default" and compile_info["backend"] == "inductor"
    assert Path(compile_info["cache_dir"]).is_dir() and compile_info["cache"].split()[0] in ("warm", "cold")
    (g,) = compare_runs(load_runs([str(run)]))[1]
    assert g["train_images_per_s"] == pytest.approx(float(rows[1]["train_images_per_s"]))
    assert g["compile_s"] == pytest.approx(float(rows[0]["compile_s"]))


@pytest.mark.slow
def test_parity_in_low_precision_states_its_tolerance() -> None:
    proc = bench("parity", "--model", "resnet8", "--batch-size", "8", "--threads", "1", "--precision", "bf16-mixed")
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines[0].startswith("parity torch bf16-mixed vs torch fp32: resnet8")
    assert lines[1] == "tolerance 0.0312: 8 x bfloat16's unit roundoff 2^-8 = 0.0312"
    assert lines[-1].startswith("PASS")
    # fp16 has 3 more bits: its tolerance is 8x tighter, and a tolerance below the rounding fails
    proc = bench("parity", "--model", "resnet8", "--batch-size", "8", "--threads", "1", "--precision", "fp16-mixed",
                 "--tolerance", "1e-5")
    assert proc.returncode == 1 and proc.stdout.strip().splitlines()[-1].startswith("FAIL")


@pytest.mark.slow
def test_chainer_mixed16_step_on_numpy() -> None:
    """Chainer's fp16-mixed is offered on CuPy only (flags), but the code is the same on NumPy:
    one step there proves the float16 forward, the float32 loss and the fp32 master update
    (this machine may have no GPU). The backend is driven directly, past the harness's flags."""
    import numpy as np

    from harness.backend import Batch, create_backend
    from harness.train.prepare import model_specs

    config = RunConfig(model="small_cnn", batch_size=8, image_size=32)
    backend = create_backend("chainer")
    backend.configure(device="cpu", threads=1, seed=0, precision="fp16-mixed")
    backend.build(*model_specs(config, 10))
    before = backend.state_arrays()
    rng = np.random.default_rng(0)
    batch = Batch(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 8).astype(np.int64))
    loss = backend.train_step_probe(batch)
    after = backend.state_arrays()
    assert math.isfinite(loss) and 1.0 < loss < 4.0  # ~ln(10) from a fresh init
    assert any(not np.array_equal(before[k], after[k]) for k in before)  # the update happened
    assert backend.predict(batch.images).dtype == np.float32
    assert backend.execution()["precision"]["loss_scaling"] == "dynamic"
