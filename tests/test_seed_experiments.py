"""The seeds' experiment files (issue 15 item 7) run end to end here, on small data in each
seed's layout: CIFAR-format batch files (000, 003, 004) and a generated image folder with
train/valid/test (001), shrunk by command-line overrides (sizes, epochs, image size; no
download: weights none). Every key of every file is a `bench run` setting. Each runs as users run it,
`bench run --config FILE` with flags overriding the file."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cifar_fixtures import make_cifar, write_folder
from conftest import bench, run_dirs
from harness.config import RunConfig, parse_mapping
from test_data_sources import make_tree

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SEED_FILES = sorted(EXPERIMENTS.glob("seed-*.toml"))
RESERVED = ("name", "version", "description", "kind", "exclude", "timeout_s", "processes")


def _settings(path: Path) -> dict:
    values = tomllib.loads(path.read_text())
    return {k: v for k, v in values.items() if k not in RESERVED}


def test_every_seed_file_is_valid_and_says_what_its_seed_reported():
    assert {p.name[:8] for p in SEED_FILES} == {"seed-000", "seed-001", "seed-003", "seed-004"}
    for path in SEED_FILES:
        text = path.read_text()
        assert "What it reported" in text and "What bench does differently" in text, path.name
        meta = tomllib.loads(text)
        assert meta["name"] == path.stem and isinstance(meta.get("version"), int) and meta.get("description")
        RunConfig.from_mapping(_settings(path), str(path))  # every key a setting, every value valid


def _data(tmp_path: Path, path: Path) -> list[str]:
    settings = parse_mapping(_settings(path), path.name)
    if settings["dataset"].startswith("imagefolder:"):
        root = make_tree(tmp_path / "dogImages", per_class=4)  # the seed's train/valid/test layout
        return ["--dataset", f"imagefolder:{root}"]
    write_folder(tmp_path / "data", make_cifar(n=12))
    return ["--data-dir", str(tmp_path / "data"), "--no-download"]


SHRINK = ["--device", "cpu", "--threads", "1", "--quiet", "--train-size", "12", "--test-size", "6",
          "--batch-size", "6", "--eval-batch-size", "6", "--weights", "none"]


@pytest.mark.timeout(900)  # ResNet-101/152 on the CPU of a loaded 2-core machine
@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.stem)
def test_seed_file_runs_end_to_end_on_small_data(tmp_path, path):
    settings = parse_mapping(_settings(path), path.name)
    shrink = list(SHRINK) + ["--epochs", "2" if settings.get("snapshot_every") else "1"]
    if (settings.get("image_size") or 32) > 32:
        shrink += ["--image-size", "32"]
    if settings.get("eval_resize"):
        shrink += ["--eval-resize", "36"]
    results = tmp_path / "results"
    proc = bench("run", "--config", str(path), *_data(tmp_path, path), *shrink, "--results-dir", str(results),
                 timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = run_dirs(results)
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "completed"
    recorded = meta["settings"]
    for name in ("model", "optimizer", "schedule", "shortcut", "head", "freeze", "no_skip", "normalize",
                 "augment", "rotate", "train_bn"):
        if name in settings:
            assert recorded[name] == (list(settings[name]) if isinstance(settings[name], tuple)
                                      else settings[name]), name
    if settings.get("snapshot_every"):
        assert [s["epoch"] for s in meta["snapshots"]] == [1, 2]
    if settings["dataset"].startswith("imagefolder:"):
        assert meta["best"]["metric"] == "valid_loss"
