"""Where an epoch's training and evaluation batches come from.

The loop asks an :class:`EpochSource` for "train epoch e" and "evaluate after epoch e" and
does the bookkeeping around it; a new way of feeding the model (a frozen backbone's cached
features, harness/feature_cache.py; a rank's shard) is one more source, not a loop change.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from harness.backend import Backend, EvalStats, StepCallback, TrainStats
from harness.config import RunConfig
from harness.data.dataset import Dataset
from harness.data.preprocess import Preprocess
from harness.data.stream import BatchStream, prefetch

if TYPE_CHECKING:
    from harness.train.prepare import Prepared


class EpochSource(Protocol):
    """Where an epoch's training and evaluation come from. The default streams augmented
    batches through the whole model; other sources (a frozen backbone's cached features,
    a rank's shard) plug in here without touching the bookkeeping around them."""

    def train_images(self, epoch: int) -> int: ...

    def train(self, epoch: int, on_step: StepCallback) -> TrainStats: ...

    def evaluate(self, epoch: int) -> EvalStats:
        """The per-epoch evaluation: the validation split when there is one, else test."""

    def test(self) -> EvalStats:
        """The test split, evaluated once after the last epoch when there is a validation split."""


@dataclass
class StreamSource:
    """Batches from :class:`harness.data.Preprocess` (seeded by (seed, epoch)), built ahead by a thread."""

    config: RunConfig
    backend: Backend
    dataset: Dataset
    seed: int
    image_size: int
    # (rank, world) of a distributed run: this rank's part of every global batch, for training
    # and evaluation alike. config.batch_size is the global batch (it divides by world:
    # harness.distributed.plan checked), so the images of global step k never depend on world.
    shard: tuple[int, int] = (0, 1)

    def _pre(self) -> Preprocess:
        return replace(self.config.preprocess(), image_size=self.image_size)

    def _stream(self, epoch: int, train: bool) -> BatchStream:
        pre, world = self._pre(), self.shard[1]
        if train:
            return pre.train_stream(self.dataset, batch_size=self.config.batch_size // world, seed=self.seed,
                                    epoch=epoch, shard=self.shard)
        return pre.eval_stream(self.dataset, self.dataset.per_epoch_split, shard=self.shard,
                               batch_size=max(1, self.config.evaluation_batch_size // world))

    def train_images(self, epoch: int) -> int:
        return self._stream(epoch, True).num_images

    def train(self, epoch: int, on_step: StepCallback) -> TrainStats:
        with prefetch(self._stream(epoch, True)) as batches:
            return self.backend.train_epoch(batches, on_step)

    def evaluate(self, epoch: int) -> EvalStats:
        with prefetch(self._stream(epoch, False)) as batches:
            return self.backend.evaluate(batches)

    def test(self) -> EvalStats:
        # Unsharded: in a distributed run the writer alone evaluates the final model, which
        # every rank holds identically.
        stream = self._pre().eval_stream(self.dataset, "test", batch_size=self.config.evaluation_batch_size)
        with prefetch(stream) as batches:
            return self.backend.evaluate(batches)


def make_source(config: RunConfig, prepared: Prepared, dataset: Dataset, seed: int,
                shard: tuple[int, int] = (0, 1)) -> EpochSource:
    """The source for this run: cached features for --cache-features, else streamed batches
    (a rank's ``shard`` of them in a distributed run, where --cache-features is refused)."""
    if config.cache_features:  # frozen backbone: its features once, then the head alone
        from harness.feature_cache import FeatureSource

        return FeatureSource(config, prepared, dataset, seed)
    return StreamSource(config, prepared.backend, dataset, seed, prepared.spec.image_size, shard=shard)
