"""harness.metrics: the one top-k rule (ties never count for the model), and that `bench run`
(the backends' evaluate) and `bench infer` (harness.infer.accuracy) now agree on it."""
from __future__ import annotations

import numpy as np
import pytest

from harness.metrics import top1_top5, topk_correct

CLASSES = 10


def test_clear_winners_and_ranks_with_more_than_five_classes():
    logits = np.array([[0.1, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0],  # label 1: first
                       [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # label 4: fifth -> top-5 only
                       [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])  # label 5: sixth -> neither
    labels = np.array([1, 4, 5])
    assert top1_top5(logits, labels) == (1, 2)
    assert [topk_correct(logits, labels, k) for k in range(1, 8)] == [1, 1, 1, 1, 2, 3, 3]


def test_ties_never_count_for_the_model():
    tied_first = np.array([[0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]])
    assert top1_top5(tied_first, np.array([0])) == (0, 1)  # one other class >= it: not top-1
    assert top1_top5(tied_first, np.array([1])) == (0, 1)  # whichever index comes first
    # Tied with four others at rank 2: five other classes >= it, so not top-5 either.
    tied_fifth = np.array([[9.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    assert top1_top5(tied_fifth, np.array([3])) == (0, 0)
    assert topk_correct(tied_fifth, np.array([3]), 6) == 1


def test_constant_logits_score_nothing_below_the_class_count():
    logits = np.zeros((50, CLASSES), dtype=np.float32)
    labels = np.arange(50) % CLASSES
    assert top1_top5(logits, labels) == (0, 0)
    assert topk_correct(logits, labels, CLASSES) == 50  # k = classes: every label is "in"


def test_nan_true_logit_is_never_correct():
    logits = np.array([[np.nan, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, np.nan, 0.0, 0.0, 0.0, 0.0]])
    assert top1_top5(logits, np.array([0, 0])) == (1, 1)  # row 0 (NaN) never, row 1 first
    assert topk_correct(logits[:1], np.array([0]), 6) == 0
    assert topk_correct(logits[1:], np.array([0]), 1) == 1  # a NaN elsewhere does not beat it


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        topk_correct(np.zeros((3, 4)), np.zeros(2, dtype=np.int64), 1)
    with pytest.raises(ValueError):
        topk_correct(np.zeros((3, 4)), np.zeros(3, dtype=np.int64), 0)
