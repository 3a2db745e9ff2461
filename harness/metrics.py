"""The one definition of top-k accuracy that every backend and every command uses.

Why one function: round 1 had three tie rules in five places (``argmax`` picks the first
maximum, ``topk`` an unspecified one, the rank rules counted ties for the true class), so a
model with constant logits scored 100 % top-1 in `bench infer` and ~10 % in `bench run`.

The rule: a sample is top-k correct when **fewer than k other classes have a logit >= the
true class's**. Ties never count for the model: constant logits score 0 % at every k below
the number of classes, and a model cannot gain accuracy by emitting equal scores. A NaN true
logit is never correct (NaN compares false, which would otherwise count it as rank 0). The
inputs are numpy arrays on the CPU: backends bring their logits there first, so the same
arithmetic runs whatever the framework or device.
"""
from __future__ import annotations

import numpy as np


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows of ``logits`` (N x classes) are top-``k`` correct for ``labels`` (N,).

    With ``k >= classes`` every sample whose true logit is a number is correct."""
    logits = np.asarray(logits)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"expected logits (N, classes) and labels (N,), got {logits.shape} and {labels.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    true = logits[np.arange(len(labels)), labels][:, None]
    others_at_least = (logits >= true).sum(axis=1) - 1  # the true class always ties itself
    return int(((others_at_least < k) & ~np.isnan(true[:, 0])).sum())


def top1_top5(logits: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """(top-1 hits, top-5 hits) of one batch: what TrainStats/EvalStats accumulate."""
    return topk_correct(logits, labels, 1), topk_correct(logits, labels, 5)
