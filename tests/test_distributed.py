"""Distributed runs: launcher detection, per-rank maths, `bench launch`, and real 2-process
runs of both backends on CPU (torch under torchrun with gloo, chainer under mpiexec with
ChainerMN's naive communicator), resnet8, tiny synthetic data, one thread per process.

What "the same as one process" can mean, and where it cannot:

- With the same global batch and seed, each global step of N processes sees the same
  images as the step of one process (BatchStream shards every global batch r::world), and
  the gradients are averaged over ranks. If each image's loss depends only on that image and
  the weights, the mean over ranks of the per-rank mean gradients over equal shards IS the
  global-batch mean gradient, so the runs must agree up to float summation order.
- BatchNorm in train mode breaks that: it normalises with the statistics of the batch it
  sees, which is batch_size / N images per rank instead of batch_size. So full training of a
  ResNet with N processes is a (slightly) different computation than with one, and its
  losses differ; that is inherent to data-parallel BatchNorm, not a bug (SyncBatchNorm /
  MultiNodeBatchNormalization would remove it, at a cost per layer).
- So the equivalence test freezes the backbone (``--freeze backbone``: every BatchNorm in
  eval mode, only the classifier trains): per-image losses, and the whole 2-epoch run,
  including momentum, weight decay, the cosine lr change, sharded evaluation and a resume,
  must match the one-process run. The full-BatchNorm run proves the other half: every
  trained parameter of every layer ends bit-identical on both ranks (equal SHA-256 of the
  model state, recorded in run.json), which only holds if every gradient was averaged.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import distributed as D
from harness import launch
from harness import schema as R
from harness.backend import EvalStats, TrainStats
from harness.config import RunConfig
from harness.data.dataset import Dataset
from harness.errors import BenchError
from harness.train.sources import StreamSource
from tests.conftest import bench, mpi_missing, run_dirs

TINY = ["--model", "resnet8", "--dataset", "synthetic", "--train-size", "128", "--test-size", "64",
        "--batch-size", "32", "--quiet", "--threads", "1"]
FROZEN = [*TINY, "--freeze", "backbone"]  # BatchNorm in eval mode: 2 processes must equal 1 (docstring)


# --- the launcher's environment and the per-rank maths ---------------------------------------

def test_detect_reads_torchrun_and_open_mpi_variables():
    assert D.detect({}) == {}
    torchrun = D.detect({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert torchrun == {D.TORCHRUN: D.LaunchEnv(D.TORCHRUN, 1, 4, 1, 2)}
    mpi = D.detect({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_LOCAL_RANK": "0"})
    assert mpi == {D.MPI: D.LaunchEnv(D.MPI, 2, 3, 0, 1)}
    assert D.detect({"PMI_RANK": "0", "PMI_SIZE": "2"})[D.MPI].world_size == 2  # MPICH / Intel MPI
    with pytest.raises(BenchError, match="rank must lie"):
        D.detect({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(BenchError, match="not integers"):
        D.detect({"RANK": "x", "WORLD_SIZE": "2"})


def test_batch_size_is_global_and_must_divide():
    assert D.per_rank_batch(128, 1) == 128
    assert D.per_rank_batch(128, 4) == 32
    with pytest.raises(BenchError, match=r"--batch-size 31 is the global batch.*3 processes.*use 30 or 33"):
        D.per_rank_batch(31, 3)
    with pytest.raises(BenchError, match="use 2"):
        D.per_rank_batch(1, 2)


def test_rank_device_gives_each_local_rank_its_gpu():
    env = D.LaunchEnv(D.TORCHRUN, 3, 4, 1, 2)
    assert D.rank_device("cpu", env) == "cpu"
    assert D.rank_device("cuda", env) == "cuda:1"
    with pytest.raises(BenchError, match="all on one GPU"):
        D.rank_device("cuda:0", env)
    assert D.rank_device("cuda:0", D.LaunchEnv(D.TORCHRUN, 1, 2, 0, 1)) == "cuda:0"  # one process per host


def test_plan_needs_the_backends_own_launcher():
    torchrun2 = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}
    assert D.plan(RunConfig(), environ={}) is None
    with pytest.raises(BenchError, match="must be started by a launcher.*bench launch"):
        D.plan(RunConfig(distributed=True), environ={})
    with pytest.raises(BenchError, match="runs distributed under mpiexec"):
        D.plan(RunConfig(backends=["chainer"]), environ=torchrun2)
    p = D.plan(RunConfig(batch_size=64), environ=torchrun2)  # under torchrun: distributed by itself
    assert (p.rank, p.world_size, p.per_rank_batch, p.device) == (0, 2, 32, "cpu")
    with pytest.raises(BenchError, match="global batch"):
        D.plan(RunConfig(batch_size=33), environ=torchrun2)
    with pytest.raises(BenchError, match="one backend"):
        RunConfig(backends=["torch", "chainer"], distributed=True).validate()


def test_shards_of_global_batches_are_disjoint_cover_the_data_and_do_not_depend_on_world():
    """StreamSource as train_loop builds it per rank: the union of the ranks' k-th batches is
    the one-process k-th batch (training, last partial global batch dropped), and evaluation
    sees every test image exactly once over the ranks."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (70, 8, 8, 3), dtype=np.uint8)
    dataset = Dataset("t", images, np.arange(70) % 10, images[:23], np.arange(23) % 10, [str(i) for i in range(10)])
    config = RunConfig(batch_size=8, augment="none")

    class Recorder:
        def __init__(self) -> None:
            self.train: list[np.ndarray] = []
            self.test: list[np.ndarray] = []

        def train_epoch(self, batches, on_step=None) -> TrainStats:
            self.train = [b.images for b in batches]
            return TrainStats()

        def evaluate(self, batches) -> EvalStats:
            self.test = [b.images for b in batches]
            return EvalStats()

    def run(shard: tuple[int, int]) -> Recorder:
        rec = Recorder()
        source = StreamSource(config, rec, dataset, seed=3, image_size=8, shard=shard)
        source.train(epoch=2, on_step=lambda *a: None)
        source.evaluate(epoch=2)
        return rec

    one = run((0, 1))
    ranks = [run((r, 2)) for r in range(2)]
    assert len(one.train) == 70 // 8 and all(len(r.train) == len(one.train) for r in ranks)
    as_set = lambda a: {bytes(x) for x in a}  # noqa: E731
    for k, batch in enumerate(one.train):
        halves = [as_set(r.train[k]) for r in ranks]
        assert len(ranks[0].train[k]) == len(ranks[1].train[k]) == 4
        assert not halves[0] & halves[1] and halves[0] | halves[1] == as_set(batch)
    seen = np.concatenate([b for r in ranks for b in r.test])
    assert len(seen) == 23 and as_set(seen) == as_set(images[:23])


def test_combined_row_sums_counts_and_takes_the_slowest_rank():
    def part(loss_sum, count, time, cpu):
        t = TrainStats(loss_sum=loss_sum, correct=count // 2, count=count, steps=2, data_wait_s=0.1)
        e = EvalStats(loss_sum=loss_sum, correct=1, count=count, top5_correct=count)
        util = {"cpu_util_mean_pct": cpu, "cpu_util_max_pct": cpu + 10, "process_cpu_pct": 90.0, "rss_peak_mb": 100.0,
                "gpu_util_mean_pct": None, "gpu_util_max_pct": None, "gpu_mem_peak_mb": None}
        return D.epoch_part(t, time, e, time / 10, util)

    train, train_time, test, eval_time, util = D.combine_epoch([part(10.0, 16, 2.0, 50.0), part(6.0, 16, 3.0, 70.0)])
    assert (train.count, train.loss, train.accuracy) == (32, 0.5, 0.5)
    assert (train_time, eval_time) == (3.0, 0.3) and train.data_wait_s == pytest.approx(0.1)
    assert test.top5_accuracy == 1.0 and test.correct == 2
    assert util["cpu_util_mean_pct"] == 60.0 and util["cpu_util_max_pct"] == 80.0
    assert util["process_cpu_pct"] == 180.0 and util["rss_peak_mb"] == 200.0 and util["gpu_util_mean_pct"] is None
    # energy: read by rank 0 alone (its machine's meters); the row carries rank 0's joules
    rank0, rank1 = part(10.0, 16, 2.0, 50.0), part(6.0, 16, 3.0, 70.0)
    rank0["util"] |= {"energy_j": 120.0, "train_energy_j": 100.0}
    rank1["util"] |= {"energy_j": None, "train_energy_j": None}
    util = D.combine_epoch([rank0, rank1])[4]
    assert (util["energy_j"], util["train_energy_j"]) == (120.0, 100.0)
    one = part(10.0, 16, 2.0, 50.0)  # one process: its own figures, untouched
    assert D.combine_epoch([one])[4] == one["util"] and D.combine_epoch([one])[0].loss == 10.0 / 16


# --- bench launch ----------------------------------------------------------------------------

def test_launch_lines_carry_the_launcher_flags():
    env, cmd = launch.build_command(2, "torch", ["--epochs", "1"], environ={}, cores=2)
    assert env == {"OMP_NUM_THREADS": "1"}
    assert Path(cmd[0]).name == "torchrun" and cmd[1:3] == ["--standalone", "--nproc_per_node=2"]
    assert cmd[-6:] == ["run", "--backend", "torch", "--distributed", "--epochs", "1"]
    env, cmd = launch.build_command(3, "chainer", ["--threads", "1"], environ={"SETUPTOOLS_USE_DISTUTILS": "stdlib"},
                                    is_root=True, cores=2, open_mpi=True)
    assert env == {"OMP_NUM_THREADS": "1"}
    line = launch.format_command(env, cmd)
    for flag in ("--allow-run-as-root", "--oversubscribe", "--bind-to none", "-x OMP_NUM_THREADS",
                 "-x SETUPTOOLS_USE_DISTUTILS", "-n 3", "run --backend chainer --distributed --threads 1"):
        assert flag in line
    _, cmd = launch.build_command(2, "chainer", [], environ={"OMP_NUM_THREADS": "2"}, is_root=False, cores=2,
                                  open_mpi=True)
    assert "--allow-run-as-root" not in cmd and "--oversubscribe" not in cmd
    _, cmd = launch.build_command(2, "chainer", [], environ={}, is_root=True, cores=1, open_mpi=False)  # MPICH
    assert cmd[1:3] == ["-n", "2"]


def test_launch_dry_run_prints_and_checks_the_run_flags():
    proc = bench("launch", "--nproc", "2", "--backend", "torch", "--epochs", "1", "--dry-run", check=True)
    assert "torchrun --standalone --nproc_per_node=2" in proc.stdout and "--distributed --epochs 1" in proc.stdout
    bad = bench("launch", "--nproc", "2", "--backend", "torch", "--batch-size", "33", "--dry-run")
    assert bad.returncode == 2 and "global batch" in bad.stderr and "use 32 or 34" in bad.stderr
    typo = bench("launch", "--nproc", "2", "--backend", "chainer", "--epoks", "1", "--dry-run")
    assert typo.returncode == 2 and "--epoks" in typo.stderr


def test_distributed_run_without_a_launcher_is_refused(results):
    proc = bench("run", "--distributed", *TINY, "--results-dir", str(results))
    assert proc.returncode == 2 and "bench launch" in proc.stderr
    assert run_dirs(results) == []


# --- real 2-process runs ---------------------------------------------------------------------

def _launch(backend: str, results: Path, *flags: str, nproc: int = 2) -> subprocess.CompletedProcess:
    return bench("launch", "--nproc", str(nproc), "--backend", backend, *flags, "--results-dir", str(results),
                 check=True, timeout=240)


def _rows(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / R.EPOCHS_CSV)


def _check_one_complete_folder(results: Path, epochs: int) -> tuple[Path, dict]:
    runs = run_dirs(results)
    assert len(runs) == 1, runs  # one folder for the job, made by rank 0 alone
    meta = json.loads((runs[0] / R.RUN_JSON).read_text())
    rows = _rows(runs[0])
    assert rows["epoch"].tolist() == list(range(1, epochs + 1)) and (rows["status"] == "ok").all()
    assert (rows["world_size"] == 2).all() and (rows["batch_size"] == 32).all()
    d = meta["distributed"]
    assert meta["status"] == "completed" and meta["world_size"] == 2 and meta["settings"]["distributed"] is True
    assert (d["global_batch_size"], d["per_rank_batch_size"]) == (32, 16)
    assert [r["rank"] for r in d["ranks"]] == [0, 1] and all(r["hostname"] and r["pid"] for r in d["ranks"])
    assert len({r["pid"] for r in d["ranks"]}) == 2
    for e in d["per_epoch"]:  # disjoint shards of equal size that cover the epoch and the test set
        assert e["train_images"] == [64, 64] and e["test_images"] == [32, 32]
    util = pd.read_csv(runs[0] / R.UTIL_CSV)
    assert set(util["rank"]) == {0, 1}  # every rank's samples, merged by rank 0
    return runs[0], meta


def _check_full_training(backend: str, results: Path) -> None:
    """Every layer trained (BatchNorm in train mode): ranks end bit-identical."""
    _launch(backend, results, *TINY, "--epochs", "1")
    run, meta = _check_one_complete_folder(results, 1)
    d = meta["distributed"]
    assert d["ranks_identical"] is True and len(set(d["final_state_sha256"])) == 1
    assert d["communicator"] == {"torch": "gloo", "chainer": "naive"}[backend]
    assert list(run.glob("checkpoint.*"))


def _check_matches_one_process_and_resumes(backend: str, tmp_path: Path) -> None:
    """Frozen backbone (docstring): 2 processes, stopped after epoch 1 and resumed, give the
    same rows as 1 process running 2 epochs straight."""
    one, two = tmp_path / "one", tmp_path / "two"
    bench("run", "--backend", backend, *FROZEN, "--epochs", "2", "--results-dir", str(one), check=True)
    # --target-acc 0.01 ends the job after epoch 1 (with its checkpoint); setting the status
    # back to "running" is what a kill -9 after that epoch leaves behind.
    _launch(backend, two, *FROZEN, "--epochs", "2", "--target-acc", "0.01")
    run = run_dirs(two)[0]
    meta = json.loads((run / R.RUN_JSON).read_text())
    assert meta["epochs_completed"] == 1
    meta["status"] = "running"
    R.write_json(run / R.RUN_JSON, meta)
    _launch(backend, two, "--resume", str(run), "--quiet")
    run, meta = _check_one_complete_folder(two, 2)
    assert meta["distributed"]["ranks_identical"] is True and meta["resumes"][-1]["world_size"] == 2
    a, b = _rows(run_dirs(one)[0]), _rows(run)
    for col in ("train_loss", "train_acc", "test_loss", "test_acc", "test_top5_acc", "lr"):
        np.testing.assert_allclose(b[col], a[col], rtol=2e-5, atol=1e-6, err_msg=col)
    # bench compare sees one configuration at two world sizes: a strong-scaling series
    from harness.report.compare import compare_runs, load_runs, scaling_rows

    _, groups = compare_runs(load_runs([str(run_dirs(one)[0]), str(run)]))
    assert {r["processes"] for r in scaling_rows(groups) if r["scaling"] == "strong"} == {1, 2}


def test_torch_ddp_two_processes_full_training(results):
    _check_full_training("torch", results)


@pytest.mark.slow  # a plain run and two torchrun jobs: 20-35 s on 2 cores
def test_torch_ddp_matches_one_process_and_resumes(tmp_path):
    _check_matches_one_process_and_resumes("torch", tmp_path)


def test_chainermn_two_processes_full_training(results):
    if (why := mpi_missing()) is not None:
        pytest.skip(why)
    _check_full_training("chainer", results)


def test_chainermn_matches_one_process_and_resumes(tmp_path):
    if (why := mpi_missing()) is not None:
        pytest.skip(why)
    _check_matches_one_process_and_resumes("chainer", tmp_path)


def test_resume_with_another_world_size_is_refused(tmp_path):
    """A 2-process run resumed without a launcher (world size 1) says how to resume it."""
    from harness.train import session

    run = tmp_path / "run"
    run.mkdir()
    settings = RunConfig(distributed=True).settings() | {"backend": "torch", "seed": 0}
    R.write_json(run / R.RUN_JSON, {"schema_version": R.SCHEMA_VERSION, "status": "running", "settings": settings,
                                    "seed": 0, "world_size": 2})
    with pytest.raises(BenchError, match=r"2 process\(es\), this is 1.*bench launch --nproc 2 --backend torch --resume"):
        session.resume_command(run, {}, "bench run --resume run", quiet=True)
