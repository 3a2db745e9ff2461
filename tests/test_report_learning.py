"""The report's learning curves (harness/report/learning.py) and sample images
(harness/report/samples.py): drawn from what the folders hold, or a sentence saying why not."""
from __future__ import annotations

import numpy as np
import pytest
from run_fixtures import write_synthetic_run
from test_report import check_png

from harness.data.stream import BatchStream
from harness.report import compare as C
from harness.report import markdown as M
from harness.report.learning import eval_split, learning_figures
from harness.report.samples import first_batch, sample_grids
from harness.schema import read_meta, write_json


def test_curves_use_validation_when_the_run_has_it(tmp_path):
    run = write_synthetic_run(tmp_path / "r")
    folder = C.load_runs([str(run)])[0]
    assert eval_split(folder.epochs, "loss") == ("test_loss", "test")
    folder.epochs["valid_loss"] = folder.epochs["test_loss"] * 0.9  # the columns H6 adds (issue 15 item 2)
    folder.epochs["valid_acc"] = float("nan")  # present but empty: falls back to test
    assert eval_split(folder.epochs, "loss") == ("valid_loss", "validation")
    assert eval_split(folder.epochs, "acc") == ("test_acc", "test")
    records = [C.summarise_run(folder)]
    figures = learning_figures([folder], records)
    assert [f.name for f in figures] == ["loss.png", "train_eval_acc.png"]
    for f in figures:
        check_png(f.png)
    folder.epochs = folder.epochs.drop(columns=["train_loss", "test_loss", "valid_loss"])
    assert [f.name for f in learning_figures([folder], records)] == ["train_eval_acc.png"]


def _synthetic_run(tmp_path):
    """A fixture folder on the synthetic set, its dataset identity as the data layer gives it."""
    run = write_synthetic_run(tmp_path / "syn", dataset="synthetic", train_size=256, test_size=64, batch_size=32, seed=3)
    meta = read_meta(run)
    meta["dataset"]["sha256"] = "synthetic, seed 0"
    write_json(run / "run.json", meta)
    return run


def test_sample_grid_is_the_first_training_batch(tmp_path):
    folder = C.load_runs([str(_synthetic_run(tmp_path))])[0]
    images, labels, classes, augmentation = first_batch(folder, 18)
    assert images.dtype == np.uint8 and images.shape == (18, 32, 32, 3) and augmentation == "crop_flip"
    assert len(classes) == 10 and labels.min() >= 0 and labels.max() < 10
    # what the loop's StreamSource feeds at epoch 1 with the run's seed (3): the same bytes
    from harness.data import load_dataset

    data = load_dataset("synthetic", data_dir=tmp_path, train_size=256, test_size=64, seed=0)
    expected = next(iter(BatchStream(data.train_images, data.train_labels, batch_size=32, seed=3, epoch=1,
                                     shuffle=True, augment="crop_flip", out_size=32)))  # the run's batch of 32
    assert np.array_equal(images, expected.images[:18]) and np.array_equal(labels, expected.labels[:18])
    other_seed = next(iter(BatchStream(data.train_images, data.train_labels, batch_size=18, seed=0, epoch=1,
                                       shuffle=True, augment="crop_flip", out_size=32)))
    assert not np.array_equal(images, other_seed.images)
    (grid,) = sample_grids([folder])
    assert grid.name == "samples_synthetic.png" and "first 18 images" in grid.note
    check_png(grid.png)


def test_no_data_here_says_so_instead_of_drawing(tmp_path):
    run = write_synthetic_run(tmp_path / "c", dataset="cifar10")
    meta = read_meta(run)
    meta["settings"]["data_dir"] = str(tmp_path / "nowhere")
    write_json(run / "run.json", meta)
    syn = write_synthetic_run(tmp_path / "s", dataset="synthetic", train_size=256, test_size=64)  # sha "000..."
    grids = sample_grids(C.load_runs([str(run), str(syn)]))
    assert [g.png for g in grids] == [None, None]
    assert "not readable on the machine that made this report" in grids[0].note and "CIFAR-10" in grids[0].note
    assert "is not the data the run recorded" in grids[1].note
    files = M.build_report(C.load_runs([str(run)]))
    text = files["report.md"].decode()
    assert "\n## Sample images\n\n### cifar10\n\nNo sample images of cifar10" in text
    assert not any(name.startswith("samples_") for name in files)


@pytest.mark.parametrize("dataset, name", [("synthetic", "samples_synthetic.png"),
                                           ("imagefolder:/data/dogs/", "samples_imagefolder_dogs.png")])
def test_grid_file_names(dataset, name):
    from harness.report.samples import _file_name

    assert _file_name(dataset) == name
