"""`bench run` end to end with the seeds' data settings (issue 15): an image folder in seed
001's train/valid/test layout, CIFAR-format files with a validation carve-out, truncated
images, normalisation and evaluation choices, deterministic mode. Real subprocesses, real
frameworks, tiny sizes."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import tests.cifar_fixtures as cf
from harness import schema as R
from tests.conftest import bench, run_dirs
from tests.test_data_sources import make_tree, write_image

SMALL = ["--model", "resnet8", "--quiet", "--threads", "1", "--epochs", "2"]


def _runs(results: Path) -> list[tuple[dict, pd.DataFrame]]:
    return [(json.loads((r / R.RUN_JSON).read_text()), pd.read_csv(r / R.EPOCHS_CSV)) for r in run_dirs(results)]


def test_seed_001_folder_validates_every_epoch_and_tests_once_at_the_end(tmp_path):
    """train/valid/test as seed 001 had them: valid/ evaluated after every epoch, test/ once
    after the last, with the seed's transforms, in both frameworks from the same bytes."""
    root = make_tree(tmp_path / "dogImages", per_class=4)
    write_image(root / "valid" / "pug" / "extra.jpg", (30, 44), 77)  # valid and test differ in size: 13 vs 12
    results = tmp_path / "results"
    bench("run", "--backend", "torch", "--backend", "chainer", *SMALL, "--dataset", f"imagefolder:{root}",
          "--image-size", "16", "--eval-resize", "20", "--augment", "random_resized_crop", "--rotate", "30",
          "--normalize", "imagenet", "--batch-size", "4", "--eval-batch-size", "5", "--deterministic",
          "--results-dir", str(results), check=True, timeout=600)
    runs = _runs(results)
    assert len(runs) == 2
    for meta, rows in runs:
        assert rows["epoch"].tolist() == [1, 2]
        assert rows["valid_loss"].notna().all() and rows["valid_acc"].between(0, 1).all()
        # test/ is evaluated once: only the last row carries it
        assert rows["test_acc"].isna().tolist() == [True, False] and rows["test_loss"].notna().tolist() == [False, True]
        ev = meta["evaluation"]
        assert ev["per_epoch"] == {"split": "valid", "images": 13} and ev["final"]["split"] == "test"
        assert ev["final"]["images"] == 12 and ev["final"]["epoch"] == 2
        assert ev["final"]["acc"] == pytest.approx(rows["test_acc"].iloc[-1], abs=1e-6)
        s = meta["settings"]
        assert (s["normalize"], s["eval_resize"], s["rotate"], s["eval_batch_size"]) == ("imagenet", 20, 30, 5)
        assert meta["preprocess"]["train"] == "RandomRotation(30) + RandomResizedCrop(16) + RandomHorizontalFlip()"
        assert meta["preprocess"]["eval"] == "Resize(20) + CenterCrop(16)"
        assert meta["preprocess"]["mean"] == [0.485, 0.456, 0.406]
        assert meta["dataset"]["valid_split"] == "valid" and "whole frames" in meta["dataset"]["train_storage"]
        assert meta["deterministic"] is True
    (torch_meta, _), (chainer_meta, _) = sorted(runs, key=lambda r: r[0]["backend"]["name"], reverse=True)
    assert torch_meta["dataset"] == chainer_meta["dataset"]  # the same bytes reached both
    assert torch_meta["threads"]["framework"]["deterministic_algorithms"] is True
    assert torch_meta["threads"]["framework"]["deterministic_warn_only"] is True
    assert chainer_meta["threads"]["framework"]["cudnn_deterministic"] is True


def test_cifar_carve_out_validates_on_training_images_and_keeps_test_for_the_end(tmp_path):
    cf.write_folder(tmp_path / "data", cf.make_cifar(n=40))  # 200 training, 40 test images
    results = tmp_path / "results"
    args = ["--backend", "torch", *SMALL, "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"),
            "--no-download", "--valid-size", "50", "--train-size", "96", "--batch-size", "32",
            "--normalize", "none", "--results-dir", str(results)]
    bench("run", *args, check=True)
    bench("run", *args, check=True)
    (meta, rows), (again, _) = _runs(results)
    assert meta["dataset"]["train_size"] == 96 and meta["dataset"]["valid_size"] == 50
    assert meta["dataset"]["valid_split"] == "carved from the training split (seed 0)"
    assert meta["dataset"]["sha256"] == again["dataset"]["sha256"]  # seeded: the same carve-out each time
    assert meta["evaluation"]["per_epoch"] == {"split": "valid", "images": 50}
    assert meta["evaluation"]["final"]["images"] == 40
    assert rows["valid_acc"].notna().all() and rows["test_acc"].notna().tolist() == [False, True]
    assert meta["preprocess"]["mean"] == [0, 0, 0] and meta["preprocess"]["std"] == [1, 1, 1]
    assert meta["deterministic"] is False


def test_without_a_validation_split_every_epoch_is_tested_as_before(tmp_path):
    results = tmp_path / "results"
    bench("run", "--backend", "torch", *SMALL, "--dataset", "synthetic", "--train-size", "64", "--test-size", "32",
          "--batch-size", "32", "--results-dir", str(results), check=True)
    ((meta, rows),) = _runs(results)
    assert rows["test_acc"].notna().all() and rows["valid_acc"].isna().all()
    assert meta["evaluation"]["per_epoch"] == {"split": "test", "images": 32}
    assert meta["evaluation"]["final"] is None and "no validation split" in meta["evaluation"]["note"]


def test_truncated_image_needs_the_flag_and_is_counted(tmp_path):
    root = make_tree(tmp_path / "dogImages", splits=("train", "test"), per_class=2)
    bad = root / "train" / "beagle" / "cut.jpg"
    write_image(bad, (48, 48), 9)
    bad.write_bytes(bad.read_bytes()[:len(bad.read_bytes()) // 2])
    results = tmp_path / "results"
    args = ["--backend", "torch", *SMALL, "--epochs", "1", "--dataset", f"imagefolder:{root}", "--image-size", "16",
            "--batch-size", "4", "--results-dir", str(results)]
    proc = bench("run", *args)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "cut.jpg" in err and "--allow-truncated" in err
    assert run_dirs(results) == []
    bench("run", *args, "--allow-truncated", check=True)
    ((meta, _),) = _runs(results)
    assert meta["dataset"]["truncated_images"] == 1 and meta["settings"]["allow_truncated"] is True


@pytest.mark.parametrize("args,expect", [
    (["--normalize", "cifar"], "--normalize 'cifar' is not one of"),
    (["--eval-resize", "16"], "--eval-resize 16 is smaller than the input size 32"),
    (["--rotate", "200"], "--rotate takes degrees from 0 to 180"),
    (["--valid-size", "0"], "--valid-size must be a positive number of images"),
    (["--eval-batch-size", "0"], "--eval-batch-size must be a positive number of images"),
])
def test_bad_preprocessing_flags_are_one_line_errors(tmp_path, args, expect):
    results = tmp_path / "results"
    proc = bench("run", "--backend", "torch", *SMALL, "--dataset", "synthetic", "--train-size", "64",
                 "--test-size", "16", "--results-dir", str(results), *args)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and expect in err and len(err.splitlines()) == 1, err
    assert run_dirs(results) == []
