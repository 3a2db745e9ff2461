"""bench report: report.md + PNGs (or one HTML file) from run folders, synthetic and real.

Synthetic folders come from the real schema writer; the real ones from `bench run` itself
(tiny torch and chainer runs, once per session), plus a copy edited to look like a second
machine, as folders arrive from a classmate's laptop.
"""
from __future__ import annotations

import base64
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, ImageStat

from harness.errors import BenchError
from harness.report import compare as C
from harness.report import markdown as M
from harness.report.observations import observe
from run_fixtures import write_synthetic_run
from harness.schema import read_meta, write_json

ROOT = Path(__file__).resolve().parents[1]


def _python_m(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("SETUPTOOLS_USE_DISTUTILS", None)
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def check_png(data: bytes) -> Image.Image:
    """A valid PNG, big enough to read, with something drawn on it."""
    Image.open(io.BytesIO(data)).verify()
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG" and img.width > 400 and img.height > 300, img.size
    grey = img.convert("L")
    lo, hi = grey.getextrema()
    assert hi - lo > 100 and ImageStat.Stat(grey).stddev[0] > 5, "blank figure"
    return img


def check_links(report: Path) -> list[str]:
    """Every relative link and image in report.md resolves: files exist, #anchors are headings."""
    text = report.read_text()
    anchors = {M.slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    for target in targets:
        if target.startswith("#"):
            assert target[1:] in anchors, target
        else:
            assert (report.parent / target).is_file(), target
    return targets


# --- synthetic runs ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    write_synthetic_run(root / "torch-a", backend="torch", images_per_s=312, cpu_pct=99, seed=0)
    write_synthetic_run(root / "torch-b", backend="torch", images_per_s=305, cpu_pct=99, seed=1, repeat_index=1)
    write_synthetic_run(root / "chainer-a", backend="chainer", images_per_s=31.8, final_acc=0.69, cpu_pct=99,
                        data_wait_frac=0.2)
    write_synthetic_run(root / "torch-gpu", backend="torch", machine="gpu-box", device="cuda:0", images_per_s=4100,
                        sample_s=0.25)
    return root


@pytest.fixture(scope="module")
def md_report(runs_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "nested" / "out"  # created on demand
    files = M.build_report(C.load_runs([str(runs_dir)]), target_acc=0.6, baseline="backend=torch",
                           command=f"bench report {runs_dir} --out {out}")
    M.write_report(out, files)
    return out


def test_markdown_report_files_and_links(md_report):
    report = md_report / "report.md"
    text = report.read_text()
    targets = check_links(report)
    pngs = sorted(p.name for p in md_report.glob("*.png"))
    assert {"accuracy_epoch.png", "accuracy_time.png", "throughput.png", "epoch_time.png", "epoch_breakdown.png",
            "cpu_util.png", "cpu_cores.png", "gpu_util.png", "loss.png", "train_eval_acc.png"} == set(pngs)
    assert set(pngs) <= set(targets)  # every figure is shown
    for png in pngs:
        check_png((md_report / png).read_bytes())
    for heading in ("## Summary", "## Environment", "### laptop (i7-1165G7, 8 threads)", "### gpu-box (EPYC 7R32, A10G)",
                    "## How to reproduce", "## Results", "## Runs"):
        assert f"\n{heading}\n" in text, heading
    assert "| NVIDIA A10G" not in text and "0: NVIDIA A10G, 23028 MiB, driver 535.104.05" in text
    assert "bench run --backend chainer --model resnet20" in text and "bench report " in text
    assert not list(md_report.glob(".*.tmp"))


def test_report_table_is_the_compare_table(md_report, runs_dir):
    """The Results table carries the same numbers as `bench compare --format markdown`."""
    _, groups = C.compare_runs(C.load_runs([str(runs_dir)]), target_acc=0.6, baseline="backend=torch")
    table = C.format_table(groups, "markdown").split("\n\n")[0]
    assert table in (md_report / "report.md").read_text()


def test_observations_follow_the_numbers(runs_dir):
    _, groups = C.compare_runs(C.load_runs([str(runs_dir)]))
    torch = next(g for g in groups if g["backend"] == "torch" and g["hostname"] == "laptop")
    chainer = next(g for g in groups if g["backend"] == "chainer")
    texts = [o.text for o in observe(groups)]
    ratio = torch["train_images_per_s"] / chainer["train_images_per_s"]
    assert any(t.startswith("On laptop (i7-1165G7, 8 threads), torch trained resnet20") and f"{ratio:.1f}x chainer's" in t
               for t in texts), texts
    assert any(t.startswith("The CPU was saturated for torch") for t in texts)
    assert any(t.startswith("Data loading was a bottleneck for chainer") for t in texts)
    assert any("Data loading was not a bottleneck for torch" in t for t in texts)
    best = f"{100 * chainer['best_test_acc']:.1f} %"
    assert any(t.startswith("Best test accuracy, resnet20 on cifar10:") and best in t for t in texts)
    # on the laptop torch ran seeds 0 and 1, chainer seed 0 only: not the same starts (the gpu-box has torch only)
    assert any("did not start equal: their initial weights, seeds differ" in t for t in texts), texts
    assert any(t.startswith("Peak memory did not grow after the first epoch (at most +0.1 %") for t in texts), texts


def test_unequal_starts_are_called_out(tmp_path):
    write_synthetic_run(tmp_path / "a", backend="torch", seed=0)
    write_synthetic_run(tmp_path / "b", backend="chainer", seed=1)
    _, groups = C.compare_runs(C.load_runs([str(tmp_path)]))
    (said,) = [o.text for o in observe(groups) if "start" in o.text and "equal" in o.text]
    assert "did not start equal" in said and "initial weights" in said and "seeds" in said


def test_memory_growth_is_called_out(tmp_path):
    write_synthetic_run(tmp_path / "leaky", backend="chainer", epochs=5)
    path = tmp_path / "leaky" / "epochs.csv"
    df = pd.read_csv(path)
    df["rss_peak_mb"] = [900, 1000, 1100, 1200, 1300]  # +30 % from epoch 2 to 5
    df.to_csv(path, index=False)
    _, groups = C.compare_runs(C.load_runs([str(tmp_path / "leaky")]))
    found = [o for o in observe(groups) if "Peak memory" in o.text]
    assert len(found) == 1 and found[0].headline and "grew by 30 % from the second epoch" in found[0].text


def test_html_report_is_self_contained(runs_dir, tmp_path):
    files = M.build_report(C.load_runs([str(runs_dir / "torch-*")]), fmt="html")
    assert list(files) == ["report.html"]
    html = files["report.html"].decode()
    sources = re.findall(r'src="([^"]+)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for s in sources:
        check_png(base64.b64decode(s.split(",", 1)[1]))
    assert "<table>" in html and "http" not in html.replace("https://", "")  # nothing fetched from elsewhere


def test_scaling_figure_and_table(tmp_path):
    for n, ips in ((1, 300.0), (2, 560.0), (4, 990.0)):
        write_synthetic_run(tmp_path / "runs" / f"w{n}", world_size=n, images_per_s=ips, epochs=2)
    files = M.build_report(C.load_runs([str(tmp_path / "runs")]))
    check_png(files["scaling.png"])
    text = files["report.md"].decode()
    assert "### Scaling" in text and "| torch | resnet20 |" in text and "gpu_util.png" not in files


def test_bad_inputs_write_nothing(runs_dir, tmp_path):
    bad = write_synthetic_run(tmp_path / "bad", epochs=2)
    (bad / "run.json").write_text("{")
    out = tmp_path / "out"
    with pytest.raises(BenchError, match="not valid JSON"):
        M.write_report(out, M.build_report(C.load_runs([str(runs_dir), str(bad)])))
    assert not out.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(BenchError, match="cannot write the report"):
        M.write_report(tmp_path / "file" / "sub", {"report.md": b"x"})
    with pytest.raises(BenchError, match="format"):
        M.build_report(C.load_runs([str(runs_dir / "torch-a")]), fmt="pdf")


def test_a_failed_write_leaves_whole_files(runs_dir, tmp_path, monkeypatch):
    files = M.build_report(C.load_runs([str(runs_dir / "torch-a")]))
    real = M.atomic_write_bytes

    def failing(path, data):
        if Path(path).name == "report.md":
            raise OSError(28, "No space left on device")
        real(path, data)
    monkeypatch.setattr(M, "atomic_write_bytes", failing)
    with pytest.raises(BenchError, match="No space left"):
        M.write_report(tmp_path / "out", files)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "report.md" not in written and not [n for n in written if n.endswith(".tmp")]
    for name in written:
        assert (tmp_path / "out" / name).read_bytes() == files[name]


# --- real runs from `bench run` ---------------------------------------------------------------

TINY_RUN = ["--model", "resnet8", "--dataset", "synthetic", "--epochs", "2", "--train-size", "256",
            "--test-size", "128", "--batch-size", "64", "--quiet"]


# The tests that use `real_runs` share one xdist worker: its runs are made once per session, not
# once per worker that needs them.
SHARES_REAL_RUNS = pytest.mark.xdist_group("test_report-real_runs")


@pytest.fixture(scope="session")
def real_runs(tmp_path_factory) -> Path:
    """Tiny torch (and chainer, when installed) runs, plus copies that claim another machine."""
    root = tmp_path_factory.mktemp("real")
    backends = ["--backend", "torch"] + (["--backend", "chainer"] if importlib.util.find_spec("chainer") else [])
    proc = _python_m("harness.cli", "run", *backends, *TINY_RUN, "--results-dir", str(root / "here"), cwd=root)
    assert proc.returncode == 0, proc.stderr
    for run in (root / "here").iterdir():
        copy = root / "there" / run.name
        shutil.copytree(run, copy)
        meta = read_meta(copy)
        meta["machine"].update(machine_id="feedfacecafe", hostname="lab-pc",
                               cpu_model="Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", cpu_logical_cores=40)
        write_json(copy / "run.json", meta)
    return root


@SHARES_REAL_RUNS
def test_real_runs_compare(real_runs):
    here = sorted((real_runs / "here").iterdir())
    _, groups = C.compare_runs(C.load_runs([str(real_runs / "here"), str(real_runs / "there" / "*")]),
                               baseline=f"machine={read_meta(here[0])['machine']['hostname']}")
    assert len(groups) == 2 * len(here) and {g["hostname"] for g in groups} >= {"lab-pc"}
    for run in here:
        meta = read_meta(run)
        ep = pd.read_csv(run / "epochs.csv")
        steady = ep[(ep["status"] == "ok") & (ep["epoch"] > 1)]
        for g in (g for g in groups if g["backend"] == meta["settings"]["backend"]):
            assert g["train_images_per_s"] == pytest.approx(steady["train_images_per_s"].median())
            assert g["best_test_acc"] == pytest.approx(ep["test_acc"].max())
            assert g["speedup"] == pytest.approx(1.0)  # the copy is the same numbers on "another machine"
            assert g["model"] == "resnet8" and g["world_size"] == 1 and g["epochs"] == 2


@SHARES_REAL_RUNS
def test_real_runs_report_through_the_cli(real_runs, tmp_path):
    out = tmp_path / "report"
    proc = _python_m("harness.cli", "report", str(real_runs / "here"), str(real_runs / "there"), "--out", str(out),
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    check_links(out / "report.md")
    for png in out.glob("*.png"):
        check_png(png.read_bytes())
    text = (out / "report.md").read_text()
    assert "### lab-pc (Xeon Gold 6230, 40 threads)" in text and "--backend torch" in text
    assert (out / "cpu_util.png").is_file() and (out / "cpu_cores.png").is_file()
    # issue 15: learning curves and the sample images the model saw (synthetic data: drawable anywhere)
    for png in ("loss.png", "train_eval_acc.png", "samples_synthetic.png"):
        assert f"]({png})" in text and (out / png).stat().st_size > 0
    assert "\n## Sample images\n" in text and "as the model received them: 32 × 32 px" in text
    # issue 14: the copies claim another machine with the same settings: every key on both
    assert "\n## Machines lined up by key\n" in text and "over the " in text and "Keys only some" not in text
    if importlib.util.find_spec("chainer"):  # one `bench run` of both backends: equal starts, from run.json
        assert "chainer and torch started equal: the same settings, the same initial weights" in text
        assert "The training losses of chainer and torch stayed within" in text
    bad = _python_m("harness.cli", "report", str(real_runs / "here"), "--out", str(out / "report.md"), cwd=tmp_path)
    assert bad.returncode == 2 and "is a file" in bad.stderr


def test_equal_starts_compare_their_loss_curves(tmp_path):
    write_synthetic_run(tmp_path / "t", backend="torch")
    write_synthetic_run(tmp_path / "c", backend="chainer")
    torch_losses = pd.read_csv(tmp_path / "t" / "epochs.csv")["train_loss"]
    path = tmp_path / "c" / "epochs.csv"
    for factor, words in ((1.0, ("within 0.0 %", "trained alike")),
                          (1.5, ("trained differently",))):
        df = pd.read_csv(path)
        df["train_loss"] = torch_losses * factor
        df.to_csv(path, index=False)
        _, groups = C.compare_runs(C.load_runs([str(tmp_path)]))
        (said,) = [o.text for o in observe(groups) if o.text.startswith("The training losses")]
        assert all(w in said for w in words), said


def test_report_layers_appendix_has_both_frameworks_tables(tmp_path):
    """`bench report --layers`: each trained model's per-layer table (`bench summary`, computed
    in a child process so the report imports no framework), totals as `bench list` counts them."""
    write_synthetic_run(tmp_path / "runs" / "t", epochs=2)
    files = M.build_report(C.load_runs([str(tmp_path / "runs")]), layers=True)
    text = files["report.md"].decode()
    assert "## Appendix: layers" in text and "269,722" in text
    assert "torch" in text.split("## Appendix: layers")[1] and "chainer" in text.split("## Appendix: layers")[1]
    assert "## Appendix: layers" not in M.build_report(C.load_runs([str(tmp_path / "runs")]))["report.md"].decode()
