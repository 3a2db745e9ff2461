"""`bench run` end to end: real subprocesses, real frameworks, tiny synthetic data."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import schema as R
from tests.conftest import BENCH, TINY, bench, run_dirs


def _epochs(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / R.EPOCHS_CSV)


def test_both_backends_leave_complete_run_folders(results):
    proc = bench("run", "--backend", "torch", "--backend", "chainer", *TINY, "--epochs", "2",
                 "--results-dir", str(results), check=True)
    runs = run_dirs(results)
    assert len(runs) == 2
    metas = [json.loads((r / R.RUN_JSON).read_text()) for r in runs]
    assert sorted(m["backend"]["name"] for m in metas) == ["chainer", "torch"]
    for run, meta in zip(runs, metas):
        df = _epochs(run)
        assert list(df.columns) == list(R.EPOCH_COLUMNS)
        assert df["epoch"].tolist() == [1, 2] and (df["status"] == "ok").all()
        assert df["gpu_util_mean_pct"].isna().all()  # no GPU: empty, not zero
        assert (df["train_images_per_s"] > 0).all() and (df["cpu_util_mean_pct"].notna()).all()
        assert df["elapsed_s"].is_monotonic_increasing
        # the harness's own work: measured (checkpoint at least), and part of the epoch
        assert ((df["harness_s"] > 0) & (df["harness_s"] < df["epoch_time_s"] - df["train_time_s"] + 0.5)).all()
        util = pd.read_csv(run / R.UTIL_CSV)
        assert {"timestamp", "phase", "cpu_pct", "cpu0_pct", "process_cpu_pct", "rss_mb"} <= set(util.columns)
        assert meta["status"] == "completed" and meta["schema_version"] == R.SCHEMA_VERSION
        assert meta["settings"]["model"] == "resnet8" and meta["settings"]["threads"] == 1
        assert meta["command"].startswith("bench run")
        assert meta["dataset"]["name"] == "synthetic" and meta["machine"]["cpu_logical_cores"] >= 1
        assert meta["model"]["params"] == meta["model"]["trainable_params"] > 0
        assert list(run.glob("checkpoint.*"))
    # Same data, same seed, same canonical initial weights: same parameter count, and the
    # first epoch's test loss of the two frameworks agrees closely.
    assert metas[0]["model"]["params"] == metas[1]["model"]["params"]
    assert metas[0]["dataset"] == metas[1]["dataset"]
    assert "torch" in proc.stdout and "chainer" in proc.stdout  # the summary table


def _wait_for_rows(run_parent: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for run in run_dirs(run_parent):
            if (run / R.EPOCHS_CSV).is_file() and len(R.read_epochs_rows(run / R.EPOCHS_CSV)) >= n:
                return run
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the run never wrote its rows")


SLOW_ENOUGH = ["--backend", "torch", "--model", "resnet8", "--dataset", "synthetic", "--train-size", "512",
               "--test-size", "64", "--batch-size", "32", "--epochs", "3", "--quiet", "--threads", "1", "--seed", "7"]


def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
    bench("run", *SLOW_ENOUGH, "--results-dir", str(tmp_path / "ref"), check=True)
    reference = _epochs(run_dirs(tmp_path / "ref")[0])

    proc = subprocess.Popen([BENCH, "run", *SLOW_ENOUGH, "--results-dir", str(tmp_path / "killed")])
    run = _wait_for_rows(tmp_path / "killed", 1, proc)
    time.sleep(0.3)  # well inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows = R.read_epochs_rows(run / R.EPOCHS_CSV)
    assert 1 <= len(rows) < 3  # every completed epoch is there, and the CSV parses
    pd.read_csv(run / R.EPOCHS_CSV)

    bench("run", "--resume", str(run), "--quiet", check=True)
    resumed = _epochs(run)
    assert resumed["epoch"].tolist() == [1, 2, 3]
    for col in ("train_loss", "test_loss", "test_acc", "lr"):
        assert resumed[col].tolist() == pytest.approx(reference[col].tolist(), rel=1e-5, abs=1e-6), col
    meta = json.loads((run / R.RUN_JSON).read_text())
    assert meta["status"] == "completed" and meta["resumes"]

    again = bench("run", "--resume", str(run))
    assert again.returncode == 2 and "already complete" in again.stderr


def test_sigterm_records_interrupted_and_resume_finishes(tmp_path):
    proc = subprocess.Popen([BENCH, "run", *SLOW_ENOUGH, "--results-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = _wait_for_rows(tmp_path, 1, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    meta = json.loads((run / R.RUN_JSON).read_text())
    assert meta["status"] == "interrupted"
    df = _epochs(run)
    assert df["status"].iloc[-1] == "interrupted"
    conflict = bench("run", "--resume", str(run), "--epochs", "9")
    assert conflict.returncode == 2 and "conflicts" in conflict.stderr
    bench("run", "--resume", str(run), "--quiet", check=True)
    df = _epochs(run)
    assert df["epoch"].tolist() == [1, 2, 3] and (df["status"] == "ok").all()


def test_nan_loss_stops_with_status_diverged(results):
    proc = bench("run", "--backend", "torch", *TINY, "--epochs", "2", "--lr", "1e12", "--results-dir", str(results))
    assert proc.returncode == 3, proc.stderr
    (run,) = run_dirs(results)
    assert json.loads((run / R.RUN_JSON).read_text())["status"] == "diverged"
    assert _epochs(run)["status"].iloc[-1] == "diverged"


def test_concurrent_runs_never_share_a_folder(results):
    procs = [subprocess.Popen([BENCH, "run", "--backend", "torch", *TINY, "--epochs", "1", "--train-size", "64",
                               "--results-dir", str(results)]) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    runs = run_dirs(results)
    assert len(runs) == 2
    for run in runs:
        assert len(_epochs(run)) == 1


def _corrupt_cifar(folder: Path) -> Path:
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"]:
        (batches / name).write_bytes(b"\x80\x02}q\x00(X")  # a truncated pickle
    return folder


@pytest.mark.parametrize("args, expect", [
    (["--model", "resnet21"], "invalid choice"),
    (["--backend", "mxnet"], "invalid choice"),
    (["--dataset", "mnist"], "unknown dataset"),
    (["--optimizer", "rmsprop"], "invalid choice"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--batch-size", "4096"], "larger than the 128 training images"),
    (["--device", "cuda"], "CUDA"),
    (["--device", "cuda", "--backend", "chainer"], "CuPy"),
    (["--dataset", "cifar10", "--data-dir", "{tmp}/empty", "--no-download"], "--dataset synthetic"),
    (["--dataset", "cifar10", "--data-dir", "{corrupt}"], "cifar-10-batches-py"),
    (["--results-dir", "{file}/sub"], "not writable"),
    (["--resume", "{tmp}"], "not a bench run"),
    (["--no-skip", "layer9.9"], "unknown blocks"),
])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, args, expect):
    (tmp_path / "afile").write_text("x")
    subs = {"tmp": str(tmp_path), "file": str(tmp_path / "afile"), "corrupt": str(_corrupt_cifar(tmp_path / "c"))}
    args = [a.format(**subs) for a in args]
    results = tmp_path / "results"
    base = [a for a in TINY if a not in ("--quiet",)]
    proc = bench("run", *base, "--epochs", "1", "--results-dir", str(results), *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert expect in err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert run_dirs(results) == []


def test_missing_framework_is_named(tmp_path, results):
    fake = tmp_path / "shadow"
    fake.mkdir()
    (fake / "chainer.py").write_text("raise ModuleNotFoundError(\"No module named 'chainer'\", name='chainer')\n")
    proc = bench("run", "--backend", "chainer", *TINY, "--results-dir", str(results),
                 env={"PYTHONPATH": str(fake)})
    assert proc.returncode == 2
    assert "needs chainer, which is not installed" in proc.stderr and "pip install chainer==7.8.1" in proc.stderr
    assert run_dirs(results) == []


def test_help_documents_every_flag_with_default():
    out = bench("run", "--help", check=True).stdout
    for flag in ("--backend", "--device", "--model", "--dataset", "--data-dir", "--epochs", "--batch-size", "--lr",
                 "--optimizer", "--seed", "--train-size", "--test-size", "--threads", "--results-dir", "--resume",
                 "--repeat", "--target-acc", "--quiet"):
        assert flag in out
    assert "default: resnet20" in out and "default: 128" in out
    assert bench("--help", check=True).stdout.count("run") >= 1


def test_list_and_sysinfo_json():
    info = json.loads(bench("list", "--json", check=True, timeout=600).stdout)
    assert info["backends"]["torch"]["installed"] and info["backends"]["chainer"]["installed"]
    assert info["models"]["resnet20"]["params"] == {"torch": 269722, "chainer": 269722}
    cuda = [d for d in info["backends"]["torch"]["devices"] if d["name"].startswith("cuda")]
    assert cuda and all(not d["usable"] and d["detail"] for d in cuda)
    sysinfo = json.loads(bench("sysinfo", "--json", check=True).stdout)
    assert sysinfo["cpu_logical_cores"] == os.cpu_count()
    assert "CPU" in bench("sysinfo", check=True).stdout


def test_sysinfo_peak_is_remembered_and_reported_as_a_share(tmp_path):
    """`bench sysinfo --peak` once (every installed framework, float32 / bfloat16 / float16,
    each measured in a child process); later runs record it; compare shows % of the float32
    peak of the run's own backend."""
    env = {"BENCH_CACHE_DIR": str(tmp_path / "cache")}
    measured = json.loads(bench("sysinfo", "--peak", "--peak-seconds", "0.05", "--json", env=env,
                                check=True).stdout)["peak_matmul"]
    torch_cpu = measured["cpu"]["torch"]
    assert torch_cpu["float32"]["gflops"] > 0 and torch_cpu["bfloat16"]["gflops"] > 0
    assert (tmp_path / "cache" / "matmul-peak.json").is_file()
    results = tmp_path / "results"
    bench("run", "--backend", "torch", *TINY, "--epochs", "2", "--results-dir", str(results), env=env, check=True)
    (run,) = run_dirs(results)
    assert json.loads((run / R.RUN_JSON).read_text())["machine"]["peak_matmul"] == measured
    (row,) = json.loads(bench("compare", str(run), "--format", "json", check=True).stdout)
    assert row["peak_pct"] == pytest.approx(100 * row["train_gflops_per_s"] / torch_cpu["float32"]["gflops"])
    assert "% peak" in bench("compare", str(run), check=True).stdout
    # elsewhere (no cache): recorded as unknown, and the column is left out
    bare = tmp_path / "bare"
    bench("run", "--backend", "torch", *TINY, "--epochs", "1", "--results-dir", str(bare),
          env={"BENCH_CACHE_DIR": str(tmp_path / "none")}, check=True)
    assert json.loads((run_dirs(bare)[0] / R.RUN_JSON).read_text())["machine"]["peak_matmul"] == {}
    assert "% peak" not in bench("compare", str(run_dirs(bare)[0]), check=True).stdout
