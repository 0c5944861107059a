"""The numpy metrics agree with scikit-learn on random data, including ties and absent classes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk

from fame import metrics

labels_pairs = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 4), min_size=n, max_size=n),
        st.lists(st.integers(0, 4), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(labels_pairs)
def test_label_metrics_match_sklearn(pair: tuple[list[int], list[int]]) -> None:
    y_true, y_pred = np.array(pair[0]), np.array(pair[1])
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert metrics.macro_f1(y_true, y_pred) == pytest.approx(
        sk.f1_score(y_true, y_pred, average="macro", zero_division=0)
    )
    scores = metrics.per_class(y_true, y_pred, labels=range(5))
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        y_true, y_pred, labels=range(5), zero_division=0
    )
    np.testing.assert_allclose(scores.precision, precision)
    np.testing.assert_allclose(scores.recall, recall)
    np.testing.assert_allclose(scores.f1, f1)
    np.testing.assert_array_equal(scores.support, support)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y_true, y_pred, 5),
        sk.confusion_matrix(y_true, y_pred, labels=range(5)),
    )


@pytest.mark.parametrize("seed", range(20))
def test_macro_auc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, classes = int(rng.integers(8, 80)), 4
    y_true = rng.integers(0, classes, n)
    # Coarse rounding makes many tied scores.
    scores = np.round(rng.random((n, classes)), 1)
    result = metrics.macro_auc_ovr(y_true, scores)
    expected = {
        c: sk.roc_auc_score(y_true == c, scores[:, c])
        for c in range(classes)
        if 0 < np.sum(y_true == c) < n
    }
    assert set(result.per_class) == set(expected)
    for c, auc in expected.items():
        assert result.per_class[c] == pytest.approx(auc)
    assert result.macro == pytest.approx(np.mean(list(expected.values())))


def test_macro_auc_equals_sklearn_ovr_on_probabilities() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 5))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_true = rng.integers(0, 5, 200)
    expected = sk.roc_auc_score(y_true, probs, multi_class="ovr", average="macro")
    assert metrics.macro_auc_ovr(y_true, probs).macro == pytest.approx(expected)


def test_auc_skips_and_names_absent_classes() -> None:
    result = metrics.macro_auc_ovr([0, 0, 2, 2], np.eye(3)[[0, 1, 2, 2]])
    assert result.skipped == (1,)
    assert result.per_class == {0: 0.75, 2: 1.0}
    assert np.isnan(metrics.macro_auc_ovr([1, 1], np.ones((2, 3))).macro)


def test_average_ranks_share_ties() -> None:
    np.testing.assert_array_equal(metrics.average_ranks([3, 1, 3, 2]), [3.5, 1, 3.5, 2])


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        metrics.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="at least one"):
        metrics.accuracy([], [])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        metrics.confusion_matrix([0, 2], [0, 1], num_classes=2)
