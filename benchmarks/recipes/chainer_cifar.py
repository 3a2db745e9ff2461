"""Baseline: the user's Chainer ResNet-20 CIFAR-10 recipe (/work/shared/seeds/004_*.txt).

What the seed does, kept here: ``chainer.datasets.get_cifar10()`` data -- a ``TupleDataset``
of float32 CHW images scaled to [0, 1] and int32 labels, with **no augmentation and no
mean/std normalisation** -- a ``SerialIterator`` (shuffled) at batch 128, ``L.Classifier``
(softmax cross-entropy plus an accuracy every step), ``chainer.optimizers.Adam()`` with its
defaults (alpha 1e-3, no weight decay), a ``StandardUpdater`` on the CPU (``device=-1``)
and a ``Trainer`` with the seed's extensions: Evaluator, dump_graph, a snapshot every epoch,
LogReport, PrintReport and ProgressBar.

Changed, and why:
- the network is bench's ResNet-20 (``backends/chainer_impl/models/resnet_cifar.py``). The
  seed's ``BottleNeck`` has no identity shortcut at all in blocks that keep their shape (its
  ``h += shortcut`` only runs when ``stride != 1``) and a 1x1 projection everywhere else, so
  it is not ResNet-20; timing it would compare different networks;
- the data are bench's uint8 arrays converted exactly as ``get_cifar10`` converts CIFAR-10
  (``astype(float32) * 1/255``, NCHW), so no download is needed;
- ``evaluate=False`` leaves out the Evaluator and the per-epoch snapshot: bench's
  ``train_time_s`` excludes evaluation and checkpointing, so the comparison does as well.

Fairness note: bench does *more* work per image than this recipe (random crop + flip, and a
per-channel mean/std normalisation), so images/s comparisons flatter the recipe.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import IO, Any

import numpy as np

from backends.chainer_impl._compat import chainer
import chainer.links as L
from chainer import training
from chainer.training import extensions

from backends.chainer_impl.models.resnet_cifar import resnet_cifar

SETTINGS = {
    "batch_size": 128,  # the seed's --batchsize default
    "device": -1,  # the seed's parse_args(["-g", "-1"]): CPU
}


def make_dataset(images: np.ndarray, labels: np.ndarray) -> chainer.datasets.TupleDataset:
    """uint8 NHWC -> what ``get_cifar10(withlabel=True, ndim=3, scale=1.0)`` returns."""
    x = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32)
    x *= 1.0 / 255.0
    return chainer.datasets.TupleDataset(x, labels.astype(np.int32))


class EpochTimer(training.Extension):
    """Wall-clock time at the trainer's start and at the end of every epoch. Lowest priority,
    so an epoch's time includes the other extensions that run at its end."""

    trigger = (1, "epoch")
    priority = -1000

    def __init__(self) -> None:
        self.marks: list[float] = []

    def initialize(self, trainer: training.Trainer) -> None:
        self.marks = [time.perf_counter()]

    def __call__(self, trainer: training.Trainer) -> None:
        self.marks.append(time.perf_counter())

    def epoch_seconds(self) -> list[float]:
        return list(np.diff(self.marks))


def build_trainer(train, *, epochs: int | None = 10, max_steps: int | None = None, test=None,
                  out: str | Path = "result/4", depth: int = 20, num_classes: int = 10,
                  evaluate: bool = True, stream: IO[str] | None = None) -> tuple[training.Trainer, EpochTimer]:
    """The seed's ``train.py`` as a function. ``max_steps`` (iterations) overrides ``epochs``."""
    device = SETTINGS["device"]
    model = resnet_cifar(depth=depth, num_classes=num_classes)
    classifier_model = L.Classifier(model)
    optimizer = chainer.optimizers.Adam()
    optimizer.setup(classifier_model)
    train_iter = chainer.iterators.SerialIterator(train, SETTINGS["batch_size"])
    updater = training.StandardUpdater(train_iter, optimizer, device=device)
    stop = (max_steps, "iteration") if max_steps is not None else (epochs, "epoch")
    trainer = training.Trainer(updater, stop, out=str(out))
    if evaluate and test is not None:
        test_iter = chainer.iterators.SerialIterator(test, SETTINGS["batch_size"], repeat=False, shuffle=False)
        trainer.extend(extensions.Evaluator(test_iter, classifier_model, device=device))
    trainer.extend(extensions.dump_graph("main/loss"))
    if evaluate:
        trainer.extend(extensions.snapshot(), trigger=(1, "epoch"))
    kwargs: dict[str, Any] = {} if stream is None else {"out": stream}
    trainer.extend(extensions.LogReport())
    trainer.extend(extensions.PrintReport(
        ["epoch", "main/loss", "validation/main/loss", "main/accuracy", "validation/main/accuracy",
         "elapsed_time"], **kwargs))
    trainer.extend(extensions.ProgressBar(**kwargs))
    timer = EpochTimer()
    trainer.extend(timer)
    return trainer, timer


def run(images: np.ndarray, labels: np.ndarray, *, epochs: int, depth: int = 20, num_classes: int = 10,
        seed: int = 0, max_steps: int | None = None, evaluate: bool = False,
        stream: IO[str] | None = None) -> list[dict[str, float]]:
    """Train on uint8 NHWC ``images``; per completed epoch: images, seconds, images/s."""
    np.random.seed(seed)  # SerialIterator shuffles with numpy's global RNG
    train = make_dataset(images, labels)
    with tempfile.TemporaryDirectory(prefix="chainer-recipe-") as out:
        trainer, timer = build_trainer(train, epochs=epochs, max_steps=max_steps, out=out, depth=depth,
                                       num_classes=num_classes, evaluate=evaluate, stream=stream)
        trainer.run()
    # SerialIterator counts an epoch every len(train) images (a batch may straddle two).
    per_epoch = len(train)
    return [{"images": per_epoch, "seconds": s, "images_per_s": per_epoch / s} for s in timer.epoch_seconds()]
