"""bench compare: validation of run folders, per-run summaries, grouping, baselines, formats.

Run folders are written by the real schema writer (harness.schema, through
tests/run_fixtures.py); every expected number is recomputed here from the CSVs with
pandas, independently of harness.report.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.errors import BenchError
from harness.report import compare as C
from run_fixtures import MACHINES, write_round1_run, write_synthetic_run
from harness.report.table import format_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """laptop: torch x2 seeds, chainer x1 (3 epochs); gpu-box: torch on cuda."""
    root = tmp_path_factory.mktemp("results")
    write_synthetic_run(root / "t0", backend="torch", images_per_s=312, seed=0)
    write_synthetic_run(root / "t1", backend="torch", images_per_s=300, seed=1, repeat_index=1)
    write_synthetic_run(root / "c0", backend="chainer", images_per_s=31.8, final_acc=0.68, epochs=3,
                        data_wait_frac=0.2, cpu_pct=60)
    write_synthetic_run(root / "g0", backend="torch", machine="gpu-box", device="cuda:0", images_per_s=4100,
                        sample_s=0.2)
    return root


def expected_run(folder: Path) -> dict:
    """The summary figures of one run, straight from epochs.csv."""
    ep = pd.read_csv(folder / "epochs.csv")
    ok = ep[ep["status"] == "ok"]
    steady = ok[ok["epoch"] > ep["epoch"].min()]
    return {
        "train_images_per_s": steady["train_images_per_s"].median(),
        "train_images_per_s_min": steady["train_images_per_s"].min(),
        "train_images_per_s_max": steady["train_images_per_s"].max(),
        "epoch_time_s": steady["epoch_time_s"].median(),
        "eval_images_per_s": steady["eval_images_per_s"].median(),
        "best_test_acc": ok["test_acc"].max(),
        "final_test_acc": ok["test_acc"].iloc[-1],
        "cpu_util_mean_pct": steady["cpu_util_mean_pct"].mean(),
        "rss_peak_mb": ep["rss_peak_mb"].max(),
        "data_wait_pct": 100 * steady["data_wait_s"].sum() / steady["train_time_s"].sum(),
    }


def rows_by(groups: list[dict], **match) -> dict:
    found = [g for g in groups if all(str(g[k]) == str(v) for k, v in match.items())]
    assert len(found) == 1, (match, [(g["machine"], g["backend"]) for g in groups])
    return found[0]


def test_numbers_match_the_csvs(tree):
    groups = json.loads(format_table(C.compare_runs(C.load_runs([str(tree)]))[1], "json"))
    assert len(groups) == 3
    for folder, match in ((tree / "c0", {"backend": "chainer"}), (tree / "g0", {"hostname": "gpu-box"})):
        g = rows_by(groups, **match)
        for key, value in expected_run(folder).items():
            assert g[key] == pytest.approx(value, rel=1e-9), key
        assert g["runs"] == 1
    # Two repeats: median of the runs' medians, spread across them.
    g = rows_by(groups, backend="torch", hostname="laptop")
    per_run = [expected_run(tree / name)["train_images_per_s"] for name in ("t0", "t1")]
    assert g["runs"] == 2 and sorted(g["run_ids"]) == ["t0", "t1"]
    assert g["train_images_per_s"] == pytest.approx(pd.Series(per_run).median())
    assert (g["train_images_per_s_min"], g["train_images_per_s_max"]) == pytest.approx((min(per_run), max(per_run)))
    assert g["gpu_util_mean_pct"] is None and rows_by(groups, hostname="gpu-box")["gpu_util_mean_pct"] > 0


def test_time_to_target_and_interrupted_epochs_left_out(tmp_path):
    run = write_synthetic_run(tmp_path / "r", epochs=4, status="diverged")
    rec = C.summarise_run(C.validate_run(C.read_run(run)), target_acc=60)  # percent is accepted
    ep = pd.read_csv(run / "epochs.csv")
    ok = ep[ep["status"] == "ok"]
    assert rec["epochs"] == 3 and rec["stopped_at"] == "diverged at epoch 4"
    assert rec["train_images_per_s"] == pytest.approx(ok[ok["epoch"] > 1]["train_images_per_s"].median())
    hit = ok[ok["test_acc"] >= 0.6].iloc[0]
    assert (rec["time_to_target_s"], rec["target_epoch"]) == (pytest.approx(hit["elapsed_s"]), hit["epoch"])
    assert C.summarise_run(C.read_run(run), target_acc=0.99)["time_to_target_s"] is None
    text = format_table(C.group_runs([rec]), "text")
    assert "diverged at epoch 4" in text and "3/4" in text


def test_short_runs_do_not_crash(tmp_path):
    one = C.summarise_run(C.read_run(write_synthetic_run(tmp_path / "one", epochs=1)))
    assert one["warmup_excluded"] is False and one["train_images_per_s"] > 0 and one["timed_epochs"] == "1"
    empty = write_synthetic_run(tmp_path / "empty", epochs=1)
    (empty / "epochs.csv").write_text(",".join(C.read_run(empty).epochs.columns) + "\n")
    rec = C.summarise_run(C.validate_run(C.read_run(empty)))
    assert rec["epochs"] == 0 and rec["train_images_per_s"] is None and rec["best_test_acc"] is None
    assert "machine" in format_table([rec], "text")


def test_baseline_backend_and_machine(tree):
    _, groups = C.compare_runs(C.load_runs([str(tree)]), baseline="backend=torch")
    torch, chainer = rows_by(groups, backend="torch", hostname="laptop"), rows_by(groups, backend="chainer")
    assert torch["speedup"] == pytest.approx(1.0)
    assert chainer["speedup"] == pytest.approx(chainer["train_images_per_s"] / torch["train_images_per_s"])
    assert chainer["acc_diff_pp"] is None  # 3 epochs against 5: speed compared, accuracy not
    assert rows_by(groups, hostname="gpu-box")["speedup"] == pytest.approx(1.0)
    _, groups = C.compare_runs(C.load_runs([str(tree)]), baseline="machine=laptop")
    gpu, lap = rows_by(groups, hostname="gpu-box"), rows_by(groups, backend="torch", hostname="laptop")
    assert gpu["speedup"] == pytest.approx(gpu["train_images_per_s"] / lap["train_images_per_s"])
    assert gpu["acc_diff_pp"] == pytest.approx(100 * (gpu["best_test_acc"] - lap["best_test_acc"]))
    for bad in ("backend", "colour=red", "backend=onnxruntime"):
        with pytest.raises(BenchError, match="--baseline"):
            C.compare_runs(C.load_runs([str(tree)]), baseline=bad)


def test_formats(tree):
    _, groups = C.compare_runs(C.load_runs([str(tree / "*")]), target_acc=0.6, baseline="backend=torch")
    text = format_table(groups, "text")
    caption, header, rule, *rows = text.splitlines()
    assert caption == "All rows: model resnet20, dataset cifar10, batch 128, procs 1."  # constant columns
    assert header.startswith("machine") and set(rule) <= {"-", " "} and "speed-up" in header
    assert "s to 60 %" in header and "laptop (i7-1165G7, 8 threads)" in text
    at = header.index("backend")  # aligned: every row's backend starts under the header
    assert all(row[at:].startswith(("torch ", "chainer ")) for row in rows[:3]) and rows[3] == ""
    md = format_table(groups, "markdown").splitlines()
    assert md[0].startswith("| machine |") and md[1].startswith("| :--- |") and len(md[2:2 + len(groups)]) == 3
    assert all(line.count("|") == md[0].count("|") for line in md[:2 + len(groups)])
    frame = pd.read_csv(io.StringIO(format_table(groups, "csv")))
    assert len(frame) == 3 and {"world_size", "train_images_per_s_min", "speedup", "best_test_acc"} <= set(frame.columns)
    assert frame["best_test_acc"].between(0, 1).all()  # schema units in machine formats
    assert not any(k.startswith("_") for k in json.loads(format_table(groups, "json"))[0])
    with pytest.raises(ValueError):
        format_table(groups, "xml")


def test_world_size_scaling(tmp_path):
    for n, ips in ((1, 300.0), (2, 570.0), (4, 1020.0)):
        write_synthetic_run(tmp_path / f"w{n}", world_size=n, images_per_s=ips)
    _, groups = C.compare_runs(C.load_runs([str(tmp_path)]))
    assert sorted(g["world_size"] for g in groups) == [1, 2, 4]
    rows = C.scaling_rows(groups)
    by_n = {r["processes"]: r for r in rows if r["scaling"] == "strong"}
    t1 = by_n[1]["train_images_per_s"]
    assert by_n[4]["efficiency"] == pytest.approx(by_n[4]["train_images_per_s"] / (4 * t1))
    assert by_n[1]["efficiency"] == pytest.approx(1.0)


def test_machine_labels():
    assert C.short_cpu("11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz") == "i7-1165G7"
    assert C.short_cpu("Intel(R) Xeon(R) CPU @ 2.20GHz") == "Xeon"
    assert C.short_cpu("AMD Ryzen 7 5800X 8-Core Processor") == "Ryzen 7 5800X"
    assert C.machine_label(MACHINES["gpu-box"]) == "gpu-box (EPYC 7R32, A10G)"
    assert C.machine_label({}) == "? (?)"


def _damage(folder: Path, how: str) -> None:
    if how == "no run.json":
        (folder / "run.json").unlink()
    elif how == "bad json":
        (folder / "run.json").write_text("{ not json")
    elif how == "schema 99":
        meta = json.loads((folder / "run.json").read_text())
        (folder / "run.json").write_text(json.dumps(meta | {"schema_version": 99}))
    elif how == "no epochs.csv":
        (folder / "epochs.csv").unlink()
    elif how == "missing column":
        pd.read_csv(folder / "epochs.csv").drop(columns=["test_acc"]).to_csv(folder / "epochs.csv", index=False)
    elif how == "text in a number":
        ep = pd.read_csv(folder / "epochs.csv", dtype=str)
        ep.loc[1, "train_images_per_s"] = "fast"
        ep.to_csv(folder / "epochs.csv", index=False)
    elif how == "empty epochs.csv":
        (folder / "epochs.csv").write_text("")
    elif how == "settings not an object":
        meta = json.loads((folder / "run.json").read_text())
        (folder / "run.json").write_text(json.dumps(meta | {"settings": [1, 2]}))


DAMAGES = ["no run.json", "bad json", "schema 99", "no epochs.csv", "missing column", "text in a number",
           "empty epochs.csv", "settings not an object"]
MESSAGES = ["not a bench run", "not valid JSON", "schema version 99", "no epochs.csv", "lacks columns test_acc",
            "line 3: train_images_per_s = 'fast' is not a number", "cannot be parsed", "'settings' is not an object"]


@pytest.mark.parametrize("how,message", zip(DAMAGES, MESSAGES))
def test_malformed_runs_are_bench_errors(tmp_path, how, message):
    folder = write_synthetic_run(tmp_path / "run", epochs=2)
    _damage(folder, how)
    with pytest.raises(BenchError, match=message):
        C.load_runs([str(folder)])


def test_not_runs(tmp_path):
    with pytest.raises(BenchError, match="no run folders match"):
        C.load_runs([str(tmp_path / "nothing*")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="holds none"):
        C.load_runs([str(tmp_path / "empty")])
    with pytest.raises(BenchError, match="target-acc"):
        C.normalise_target(150)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_compare(tree, tmp_path):
    """Through the lead's `bench` CLI: exit 0 with a table, exit 2 with one line for bad input."""
    damaged = write_synthetic_run(tmp_path / "bad", epochs=2)
    _damage(damaged, "schema 99")
    out = _cli("compare", str(tree), "--format", "csv", "--output", str(tmp_path / "t.csv"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(pd.read_csv(tmp_path / "t.csv")) == 3
    bad = _cli("compare", str(tree), str(damaged), cwd=tmp_path)
    assert bad.returncode == 2 and "schema version 99" in bad.stderr and "Traceback" not in bad.stderr
    bad = _cli("compare", str(tree), "--output", str(tmp_path / "no" / "such" / "dir" / "t.txt"), cwd=tmp_path)
    assert bad.returncode == 2 and "cannot write" in bad.stderr


def test_rows_that_differ_in_threads_say_so(tmp_path):
    """Runs that differ only in --threads are separate rows, labelled, not look-alike repeats."""
    for name, threads in (("one", 1), ("two", 2)):
        folder = write_synthetic_run(tmp_path / name, backend="torch", images_per_s=100.0 * threads)
        meta = json.loads((folder / "run.json").read_text())
        meta["settings"]["threads"] = threads
        (folder / "run.json").write_text(json.dumps(meta))
    write_synthetic_run(tmp_path / "chainer", backend="chainer")
    _, groups = C.compare_runs(C.load_runs([str(tmp_path)]))
    text = format_table(groups, "text")
    header = next(line for line in text.splitlines() if line.startswith("machine"))
    assert "threads" in header and len(groups) == 3
    from harness.report.observations import observe

    said = " ".join(o.text for o in observe(groups))
    assert "torch trained resnet20 (cifar10, batch 128, cpu, 2 threads) at 2" in said
    assert "torch trained resnet20 (cifar10, batch 128, cpu, 1 thread) at 1" in said and "(default threads)" in said


def test_observations_compare_like_with_like_across_machines_and_precisions(tmp_path):
    """Two machines, each with fp32 and bf16-mixed torch runs: a machine sentence pairs fp32
    with fp32 and bf16 with bf16 (never one machine's fastest with the other's slowest), and
    says which precision it is about."""
    from harness.report.observations import observe

    speeds = {("laptop", "fp32"): 300.0, ("laptop", "bf16-mixed"): 600.0,
              ("gpu-box", "fp32"): 330.0, ("gpu-box", "bf16-mixed"): 1800.0}
    for (machine, precision), ips in speeds.items():
        write_synthetic_run(tmp_path / f"{machine}-{precision}", machine=machine, precision=precision, images_per_s=ips)
    _, groups = C.compare_runs(C.load_runs([str(tmp_path)]))
    said = [o.text for o in observe(groups)]
    across = [t for t in said if "faster on" in t or "about as fast" in t]
    assert len(across) == 2, said
    (fp32,) = [t for t in across if ", fp32)" in t]
    (bf16,) = [t for t in across if ", bf16-mixed)" in t]
    import re

    def pair(text: str) -> tuple[float, float]:
        fast, slow = re.search(r"([\d,.]+) against ([\d,.]+) images/s", text).groups()
        return float(fast.replace(",", "")), float(slow.replace(",", ""))

    # the synthetic runs' epochs carry a few % of noise around the speeds asked for
    assert pair(bf16) == pytest.approx((1800, 600), rel=0.1) and "faster on gpu-box (cpu) than on laptop" in bf16
    assert pair(fp32) == pytest.approx((330, 300), rel=0.1), fp32


def test_round1_folders_read_compare_and_report(tmp_path):
    """Folders written by round 1 (schema 1: no harness_s column) still read, compare beside
    today's and go into a report; their missing figure is empty, not zero."""
    from harness.report import markdown as M

    old = write_round1_run(tmp_path / "old", backend="torch", seed=0, epochs=2)
    write_synthetic_run(tmp_path / "new", backend="chainer", seed=0, epochs=2, images_per_s=31.8)
    assert "harness_s" not in pd.read_csv(old / "epochs.csv").columns
    runs = C.load_runs([str(tmp_path)])
    by_id = {r.run_id: r for r in runs}
    assert by_id["old"].meta["schema_version"] == 1 and by_id["old"].epochs["harness_s"].isna().all()
    records, groups = C.compare_runs(runs)
    assert {r["backend"] for r in records} == {"torch", "chainer"}
    expected = expected_run(old)
    (torch,) = [r for r in records if r["backend"] == "torch"]
    assert torch["train_images_per_s"] == pytest.approx(expected["train_images_per_s"])
    files = M.build_report(runs, fmt="html", command="bench report old new")
    assert b"old" in files["report.html"] and b"resnet20" in files["report.html"]


def test_a_run_with_a_validation_split_picks_its_best_epoch_on_validation_not_test():
    """With valid/ (or --valid-size) the test set is evaluated once, after the last epoch: the
    best epoch and time-to-target come from valid_acc, and the test figure is that one value."""
    import pandas as pd

    from harness.report.compare import _accuracy

    ok = pd.DataFrame({"epoch": [1, 2, 3], "elapsed_s": [10.0, 20.0, 30.0],
                       "valid_acc": [0.40, 0.70, 0.60], "test_acc": [None, None, 0.55]})
    rec: dict = {}
    _accuracy(rec, ok, target=0.65)
    assert rec["selected_on"] == "validation" and rec["best_epoch"] == 2 and rec["best_valid_acc"] == 0.70
    assert rec["best_test_acc"] == rec["final_test_acc"] == 0.55
    assert rec["time_to_target_s"] == 20.0 and rec["target_epoch"] == 2
    # without a validation split: every epoch on test, as before
    rec = {}
    _accuracy(rec, ok.drop(columns="valid_acc").assign(test_acc=[0.4, 0.7, 0.6]), target=None)
    assert rec["selected_on"] == "test" and rec["best_epoch"] == 2 and rec["best_test_acc"] == 0.7
    assert rec["final_test_acc"] == 0.6 and rec["best_valid_acc"] is None


def test_figure_labels_tell_every_configuration_apart_and_fit(tmp_path):
    """Configurations that differ only in precision, compile, threads or experiment get labels
    that say so (not five identical bars, nor "seed None" for a group), only where needed; the
    figures grow to hold long labels and long legends."""
    from harness.report import figures as F

    for precision in ("fp32", "bf16-mixed"):
        write_synthetic_run(tmp_path / precision, precision=precision)
    for seed in (0, 1):
        write_synthetic_run(tmp_path / f"repeat-{seed}", model="resnet8", seed=seed)
    records, groups = C.compare_runs(C.load_runs([str(tmp_path)]))
    labels = [st.label for st in F.styles(groups)]
    assert len(set(labels)) == len(labels) == 3 and not any("None" in lab for lab in labels), labels
    assert sum(lab.endswith("· fp32") for lab in labels) == 1 and sum(lab.endswith("· bf16-mixed") for lab in labels) == 1
    assert not any("resnet8" in lab and "fp32" in lab for lab in labels)  # the repeats' group needs no precision
    run_labels = [st.label for st in F.styles(records)]
    assert len(set(run_labels)) == 4 and sum("seed 0" in lab or "seed 1" in lab for lab in run_labels) == 2
    assert F._bar_width([F.Style("x" * 120, "red", "-", "o")]) > F._bar_width([F.Style("x", "red", "-", "o")]) == 9.0
