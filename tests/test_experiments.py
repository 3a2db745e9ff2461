"""Experiment files, matrices, keys, the one-process-per-cell runner and suites (issue 14),
and issue 13 item 3 (a backend's peak RSS does not depend on what ran before it).
Real `bench` subprocesses at tiny sizes; the pure parts (expansion, keys, the stopping rule)
are also tested as functions."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import bench, run_dirs

from harness.config import IDENTITY, RunConfig
from harness.experiments import keys
from harness.experiments.files import load_experiment, load_suite
from harness.experiments.matrix import expand
from harness.experiments.repeats import Policy, rsd, should_stop
from harness.experiments.runner import train_argv

TINY_FILE = """
model = "resnet8"
dataset = "synthetic"
train-size = 64
test-size = 32
batch-size = 32
threads = 1
quiet = true
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _meta(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


# --- files: errors are one line, exit 2, nothing written ------------------------------------

@pytest.mark.parametrize("body, expect", [
    ("batch-sise = 32\n", r"unknown setting 'batch-sise' \(did you mean 'batch-size'\?\)"),
    ("epochs = \"two\"\n", r"epochs must be an integer, got 'two'"),
    ("model = \"resnet8\"\nepochs = = 2\n", r"TOML syntax error: .*at line 2, column \d+.*fix that line"),
    ("optimizer = \"sdg\"\n", r"optimizer must be one of sgd, adam; got 'sdg' \(did you mean 'sgd'\?\)"),
])
def test_file_errors_are_one_line_exit_2(tmp_path, body, expect):
    f = _write(tmp_path / "exp.toml", body)
    out = tmp_path / "results"
    proc = bench("run", "--config", str(f), "--results-dir", str(out))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(f) in lines[0], proc.stderr
    assert re.search(expect, lines[0]), lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_unknown_shipped_name_lists_the_shipped_ones():
    proc = bench("run", "no-such-experiment")
    assert proc.returncode == 2
    assert "no shipped experiment 'no-such-experiment'" in proc.stderr and "resnet20-he2016" in proc.stderr


# --- matrices ------------------------------------------------------------------------------

def test_matrix_expands_in_file_order_minus_exclude(tmp_path):
    f = _write(tmp_path / "m.toml", TINY_FILE.replace("threads = 1\n", "") + """
backend = ["torch", "chainer"]
threads = [1, 2]
processes = [1, 2]
[[exclude]]
processes = 2
threads = 2
[[exclude]]
backend = "chainer"
threads = 1
processes = 1
""")
    cells = expand(load_experiment(str(f)))
    got = [(c.backend, c.values["threads"], c.processes) for c in cells]
    assert got == [("torch", 1, 1), ("torch", 1, 2), ("torch", 2, 1), ("chainer", 1, 2), ("chainer", 2, 1)]
    assert len({c.key for c in cells}) == len(cells)
    # a flag replaces the whole axis
    cells = expand(load_experiment(str(f)), {"threads": 2})
    assert [(c.backend, c.values["threads"], c.processes) for c in cells] == [("torch", 2, 1), ("chainer", 2, 1)]


def test_dry_run_lists_cells_and_keys_and_runs_nothing(tmp_path):
    f = _write(tmp_path / "m.toml", TINY_FILE + 'backend = ["torch", "chainer"]\nepochs = [1, 2]\n')
    out = tmp_path / "results"
    proc = bench("run", "--config", str(f), "--dry-run", "--results-dir", str(out), check=True)
    expected = [c.key for c in expand(load_experiment(str(f)))]
    listed = re.findall(r"^\s*\d+\s+([0-9a-f]{12})\s", proc.stdout, re.MULTILINE)
    assert listed == expected and len(listed) == 4, proc.stdout
    # rates: measured where the shipped results/reference/ has the backend, else default
    assert "4 cells, about" in proc.stdout and "rates: " in proc.stdout
    assert not out.exists()


def test_shipped_suites_parse_and_list_their_cells():
    proc = bench("suite", "list", check=True)
    assert "quick" in proc.stdout and "write-up" in proc.stdout and "resnet20-he2016" in proc.stdout
    proc = bench("suite", "run", "quick", "--dry-run", check=True)
    assert "17 cells, about" in proc.stdout and "resnet20-infer onnxruntime" in proc.stdout
    assert "resnet20-precision torch precision=bf16-mixed compile=default" in proc.stdout
    assert "resnet20-layout chainer threads=1 processes=2" in proc.stdout
    assert "threads=2 processes=2" not in proc.stdout  # excluded
    # write-up: He et al.'s schedule and every seed's workload, in both frameworks
    listed = bench("suite", "run", "write-up", "--dry-run", check=True).stdout
    seeds = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "experiments").glob("seed-*.toml"))
    assert len(seeds) == 6 and "14 cells, about" in listed, listed
    for name in ["resnet20-he2016", *seeds]:
        assert f"{name} torch" in listed and f"{name} chainer" in listed, name
    he = load_experiment("resnet20-he2016")
    (cell, _) = expand(he)
    c = cell.config
    assert (c.lr, c.momentum, c.weight_decay, c.batch_size, c.schedule, c.epochs) == (0.1, 0.9, 1e-4, 128, "step", 164)
    assert "8.75" in he.file.read_text()  # the paper's figure, cited in the file


# --- keys ----------------------------------------------------------------------------------

_OTHER = {"device": "cuda", "model": "resnet14", "dataset": "cifar10", "epochs": 9, "batch_size": 7, "lr": 0.3,
          "optimizer": "adam", "momentum": 0.5, "weight_decay": 0.0, "schedule": "step", "train_size": 99,
          "test_size": 98, "threads": 3, "shortcut": "B", "no_skip": ["layer1.0"], "freeze": "backbone",
          "train_bn": True, "head": "mlp", "augment": "flip", "weights": "imagenet", "cache_features": True,
          "image_size": 64, "eval_batch_size": 33, "normalize": "imagenet", "eval_resize": 40, "rotate": 30.0,
          "valid_size": 50, "allow_truncated": True, "deterministic": True, "precision": "bf16-mixed", "compile": "default"}


def _key(settings: dict, **kw) -> str:
    return keys.comparison_key(kw.get("name", "e"), kw.get("version", 1),
                               keys.key_settings(settings, backend=kw.get("backend", "torch"),
                                                 processes=kw.get("processes", 1)))


def test_key_equal_for_equal_settings_and_changes_with_every_identity_setting():
    base = RunConfig().settings()
    assert set(_OTHER) == set(IDENTITY), "a new identity setting needs an other value here"
    assert _key(dict(base)) == _key(RunConfig().settings())
    seen = {_key(base)}
    for name in IDENTITY:
        changed = _key(base | {name: _OTHER[name]})
        assert changed not in seen, f"{name} does not change the key"
        seen.add(changed)
    for kw in ({"backend": "chainer"}, {"processes": 2}, {"name": "other"}, {"version": 2}):
        assert _key(base, **kw) not in seen
    # never the machine or the run: seed, repeats, where files go, quiet, sampling
    for name, value in {"seed": 5, "repeat": 3, "results_dir": "x", "quiet": True, "sample_interval_s": 2.0,
                        "data_dir": "y", "target_acc": 0.5, "download": False}.items():
        assert _key(base | {name: value}) == _key(base), name


def test_key_from_run_json_ignores_how_auto_resolved_and_matches_another_process():
    base = RunConfig().settings() | {"backend": "torch", "device": "cpu"}
    here = {"settings": base, "device_requested": "auto", "experiment": {"name": "e", "version": 1}}
    gpu_box = {"settings": base | {"device": "cuda"}, "device_requested": "auto",
               "experiment": {"name": "e", "version": 1}}
    assert keys.key_of_run(here) == keys.key_of_run(gpu_box)
    assert keys.key_of_run(here) != keys.key_of_run(here | {"device_requested": "cpu"})
    code = ("import json,sys; from harness.experiments import keys; "
            "print(keys.key_of_run(json.loads(sys.argv[1])))")
    other = subprocess.run([sys.executable, "-c", code, json.dumps(here)], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == keys.key_of_run(here)
    assert keys.key_of_run({"settings": base}) == _key(base, name="adhoc", version=0)  # a round-1 folder


# --- a file end to end: flags win, run.json records the file, the key is the same everywhere -----

def test_flags_override_the_file_and_run_json_records_it(tmp_path):
    f = _write(tmp_path / "exp.toml", TINY_FILE + 'backend = "torch"\nepochs = 2\ndevice = "auto"\n')
    out = tmp_path / "results"
    dry = bench("run", "--config", str(f), "--epochs", "1", "--dry-run", "--results-dir", str(out), check=True)
    proc = bench("run", "--config", str(f), "--epochs", "1", "--results-dir", str(out), check=True)
    (run,) = run_dirs(out)
    meta = _meta(run)
    assert meta["settings"]["epochs"] == 1 and meta["settings"]["train_size"] == 64  # flag over file; file kept
    assert meta["settings"]["device"] in ("cpu", "cuda") and meta["device_requested"] == "auto"
    exp = meta["experiment"]
    assert exp["name"] == "exp" and exp["version"] == 1 and exp["file"] == str(f)
    assert exp["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert meta["key"] == keys.key_of_run(meta)  # recomputed here from what run.json records
    assert meta["key"] in dry.stdout  # the parent's key, before the child ran
    assert meta["startup_s"] > 0
    assert "completed" in proc.stdout


# --- the runner: crashes are recorded, the others go on; a suite resumes ------------------------

@pytest.mark.timeout(900)  # several real bench processes in a row
def test_failing_cells_do_not_stop_the_suite_and_a_rerun_skips_done_cells(tmp_path):
    suite = _write(tmp_path / "s.toml", f"""
name = "t"
[[experiment]]
name = "ok"
backend = "torch"
epochs = 1
{TINY_FILE}
[[experiment]]
name = "bad-data"
backend = "torch"
epochs = 1
dataset = "imagefolder:{tmp_path}/missing"
[[experiment]]
name = "slow"
backend = "torch"
epochs = 50
train-size = 512
timeout_s = 3
""")
    out = tmp_path / "out"
    first = bench("suite", "run", str(suite), "--out", str(out), timeout=600)
    assert first.returncode == 1, first.stdout + first.stderr
    summary = json.loads((out / "suite.json").read_text())
    status = {c["experiment"]: c for c in summary["cells"]}
    assert status["ok"]["status"] == "completed"
    assert status["bad-data"]["status"] == "error" and "missing" in status["bad-data"]["attempts"][0]["reason"]
    assert status["slow"]["status"] == "timeout" and "3 s" in status["slow"]["attempts"][0]["reason"]
    assert re.search(r"\[3/3\] slow torch .*timeout", first.stdout)
    assert "2 of 3 cells did not complete" in first.stdout
    done = [d for d in run_dirs(out) if _meta(d)["status"] == "completed"]
    assert len(done) == 1 and _meta(done[0])["key"] == status["ok"]["key"]

    again = bench("suite", "run", str(suite), "--out", str(out), timeout=600)
    assert re.search(r"\[1/3\] ok torch .*skipped \(done earlier\)", again.stdout), again.stdout
    assert len([d for d in run_dirs(out) if _meta(d)["status"] == "completed"]) == 1


def test_an_interrupted_cell_is_resumed(tmp_path):
    f = _write(tmp_path / "s.toml", 'name = "r"\n[[experiment]]\nname = "one"\nbackend = "torch"\nepochs = 3\n'
               + TINY_FILE.replace("train-size = 64", "train-size = 512"))
    out = tmp_path / "out"
    (cell,) = expand(load_suite(str(f)).experiments[0])
    # this cell's child, stopped by SIGTERM after its first epoch, as a killed suite leaves it
    env = dict(os.environ, BENCH_EXPERIMENT=json.dumps(cell.record() | {"repeat": 0, "attempt": "x"}))
    proc = subprocess.Popen(train_argv(cell, results_dir=out, seed=0), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        rows = list(out.glob("*/epochs.csv"))
        if rows and len(rows[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    (run,) = run_dirs(out)
    meta = _meta(run)
    assert meta["key"] == cell.key and meta["status"] == "interrupted"
    proc = bench("suite", "run", str(f), "--out", str(out), check=True, timeout=600)
    assert run_dirs(out) == [run], proc.stdout
    assert _meta(run)["status"] == "completed" and len(pd.read_csv(run / "epochs.csv")) == 3
    assert _meta(run)["resumes"], "resumed, not started over"


# --- --repeat auto ------------------------------------------------------------------------------

def test_repeat_rule_stops_on_a_stable_figure_and_on_the_cap():
    p = Policy(auto=True, rsd=0.03, max_n=5)
    assert should_stop([], p) == (False, "")
    assert not should_stop([100.0, 100.0], p)[0]  # never under 3 repeats
    stop, why = should_stop([100.0, 101.0, 99.5], p)
    assert stop and why.startswith("stable")
    assert not should_stop([100.0, 130.0, 80.0], p)[0]
    stop, why = should_stop([100.0, 130.0, 80.0, 120.0, 90.0], p)
    assert stop and why.startswith("cap: 5 repeats")
    assert should_stop([1.0], Policy(count=1))[0] and not should_stop([1.0], Policy(count=2))[0]
    assert rsd([1.0]) is None and abs(rsd([9.0, 11.0]) - 0.1414) < 1e-3


@pytest.mark.timeout(900)  # several real bench processes in a row
@pytest.mark.parametrize("target, why", [("0.000001", "cap: 3 repeats"), ("0.9", "stable: RSD")])
def test_repeat_auto_runs_each_repeat_in_its_own_process_until_it_stops(tmp_path, target, why):
    out = tmp_path / "results"
    proc = bench("run", "--backend", "torch", *TINY_ARGS, "--epochs", "2", "--repeat", "auto",
                 "--repeat-rsd", target, "--repeat-max", "3", "--results-dir", str(out), check=True, timeout=600)
    runs = run_dirs(out)
    metas = sorted((_meta(r) for r in runs), key=lambda m: m["repeat_index"])
    assert [m["repeat_index"] for m in metas] == [0, 1, 2] and [m["seed"] for m in metas] == [0, 1, 2]
    assert len({m["key"] for m in metas}) == 1 and len({m["experiment"]["attempt"] for m in metas}) == 3
    assert all(m["repeats"]["taken"] == 3 and m["repeats"]["stopped"].startswith(why) for m in metas)
    assert re.search(r"completed in .*img/s \(RSD [\d.]+% over 3\); repeats: " + re.escape(why), proc.stdout), \
        proc.stdout


TINY_ARGS = ["--model", "resnet8", "--dataset", "synthetic", "--train-size", "64", "--test-size", "32",
             "--batch-size", "32", "--threads", "1", "--quiet"]


# --- issue 13 item 3: a figure does not depend on what ran before it ------------------------------

@pytest.mark.timeout(900)  # several real bench processes in a row
def test_chainer_peak_rss_is_the_same_alone_and_after_torch(tmp_path):
    args = ["--model", "resnet20", "--dataset", "synthetic", "--train-size", "256", "--test-size", "64",
            "--batch-size", "64", "--epochs", "1", "--threads", "1", "--quiet"]
    bench("run", "--backend", "chainer", *args, "--results-dir", str(tmp_path / "alone"), check=True, timeout=600)
    bench("run", "--backend", "torch", "--backend", "chainer", *args, "--results-dir", str(tmp_path / "both"),
          check=True, timeout=600)

    def chainer_rss(folder: Path) -> float:
        (run,) = [r for r in run_dirs(folder) if _meta(r)["settings"]["backend"] == "chainer"]
        return float(pd.read_csv(run / "epochs.csv")["rss_peak_mb"].max())

    alone, after = chainer_rss(tmp_path / "alone"), chainer_rss(tmp_path / "both")
    assert abs(after - alone) <= 0.10 * alone, f"chainer peak RSS {alone:.0f} MiB alone, {after:.0f} after torch"
