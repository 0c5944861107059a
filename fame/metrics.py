"""Attribution metrics in plain numpy, with scikit-learn's definitions (the tests check that).

Labels are integer class indices. Macro averages run over the classes present in ``y_true`` or
``y_pred`` (scikit-learn's default); a class with no predictions or no samples scores 0 where the
ratio is undefined. AUC is one-vs-rest and rank based (ties get average ranks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

log = logging.getLogger(__name__)


def _labels(y: ArrayLike) -> NDArray[np.int64]:
    array = np.asarray(y, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {array.shape}")
    return array


def _check_pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[NDArray[np.int64], ...]:
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in length")
    if t.size == 0:
        raise ValueError("metrics need at least one sample")
    return t, p


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    t, p = _check_pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None
) -> NDArray[np.int64]:
    """Rows are true classes, columns predicted classes."""
    t, p = _check_pair(y_true, y_pred)
    n = int(max(t.max(), p.max()) + 1) if num_classes is None else num_classes
    if t.min() < 0 or p.min() < 0 or max(t.max(), p.max()) >= n:
        raise ValueError(f"labels must lie in [0, {n}), got {t.min()}..{max(t.max(), p.max())}")
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (t, p), 1)
    return matrix


@dataclass(frozen=True)
class PerClass:
    """Per-class scores over ``labels`` (the class indices they belong to)."""

    labels: NDArray[np.int64]
    precision: NDArray[np.float64]
    recall: NDArray[np.float64]
    f1: NDArray[np.float64]
    support: NDArray[np.int64]


def _safe_ratio(num: NDArray[np.float64], den: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def per_class(y_true: ArrayLike, y_pred: ArrayLike, labels: ArrayLike | None = None) -> PerClass:
    """Precision, recall, F1 and support for ``labels`` (default: classes seen in either)."""
    t, p = _check_pair(y_true, y_pred)
    classes = np.union1d(t, p) if labels is None else _labels(labels)
    tp = np.array([np.sum((t == c) & (p == c)) for c in classes], dtype=np.float64)
    predicted = np.array([np.sum(p == c) for c in classes], dtype=np.float64)
    support = np.array([np.sum(t == c) for c in classes], dtype=np.int64)
    precision = _safe_ratio(tp, predicted)
    recall = _safe_ratio(tp, support.astype(np.float64))
    f1 = _safe_ratio(2 * precision * recall, precision + recall)
    return PerClass(classes, precision, recall, f1, support)


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, labels: ArrayLike | None = None) -> float:
    return float(np.mean(per_class(y_true, y_pred, labels).f1))


def average_ranks(values: ArrayLike) -> NDArray[np.float64]:
    """1-based ranks; tied values share the mean of their ranks (scipy's 'average')."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], x.size] - 1
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = (first[group] + last[group]) / 2.0 + 1.0
    return ranks


def binary_auc(is_positive: ArrayLike, scores: ArrayLike) -> float:
    """Mann-Whitney AUC; needs both positives and negatives."""
    pos = np.asarray(is_positive, dtype=bool)
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes, got {n_pos} positives and {n_neg} negatives")
    ranks = average_ranks(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass(frozen=True)
class AUCResult:
    """Macro one-vs-rest AUC and which classes it had to skip (absent or sole class)."""

    macro: float
    per_class: dict[int, float]
    skipped: tuple[int, ...]


def macro_auc_ovr(y_true: ArrayLike, scores: ArrayLike) -> AUCResult:
    """One-vs-rest AUC per class of ``scores`` [N, C], averaged over the scorable classes.

    A class absent from ``y_true`` (or the only class present) has no AUC; it is skipped and
    listed in ``skipped``. ``macro`` is NaN when no class is scorable.
    """
    t = _labels(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != t.size:
        raise ValueError(f"scores must be [N={t.size}, C], got shape {s.shape}")
    per: dict[int, float] = {}
    skipped: list[int] = []
    for c in range(s.shape[1]):
        positive = t == c
        if positive.all() or not positive.any():
            skipped.append(c)
            continue
        per[c] = binary_auc(positive, s[:, c])
    if skipped:
        log.info("macro AUC skips classes %s (absent from y_true or the only class)", skipped)
    macro = float(np.mean(list(per.values()))) if per else float("nan")
    return AUCResult(macro, per, tuple(skipped))
