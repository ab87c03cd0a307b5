"""Bootstrap intervals agree with a direct bootstrap: resample images, re-evaluate, take percentiles."""

from __future__ import annotations

import numpy as np
import pytest

from segpipe_trainer.bootstrap import bootstrap_intervals, resample_counts
from segpipe_trainer.metrics import InstanceEvaluator, SemanticEvaluator
from segpipe_trainer.postprocess import Instances
from tests.trainer.test_metrics import random_case, random_semantic

CLASSES = ["a", "b"]
DRAWS = 1000
SEED = 11


def _cases(kind: str, count: int) -> list[tuple[np.ndarray, np.ndarray, Instances]]:
    rng = np.random.default_rng(4)
    if kind == "instance":
        return [random_case(rng, num_classes=2) for _ in range(count)]
    return [(*random_semantic(rng, num_classes=2), None) for _ in range(count)]  # type: ignore[misc]


def _evaluator(kind: str, cases: list[tuple[np.ndarray, np.ndarray, Instances]], chosen: np.ndarray):  # type: ignore[no-untyped-def]
    if kind == "instance":
        instance = InstanceEvaluator(class_names=CLASSES)
        for index in chosen:
            labels, classes, pred = cases[index]
            instance.add(gt_labels=labels, gt_classes=classes, pred=pred)
        return instance
    semantic = SemanticEvaluator(class_names=CLASSES)
    for index in chosen:
        gt, pred, _ = cases[index]
        semantic.add(gt_classes=gt, pred=pred)
    return semantic


def _direct(
    kind: str, cases: list[tuple[np.ndarray, np.ndarray, Instances]], *, threshold: float
) -> dict[str, list[float]]:
    """Each draw's metrics from a fresh evaluator fed the drawn images (repeats included)."""
    indices = np.random.default_rng(SEED).integers(0, len(cases), size=(DRAWS, len(cases)))
    values: dict[str, list[float]] = {}
    for chosen in indices:
        result = _evaluator(kind, cases, chosen).result()
        point = result.at(threshold).overall
        names = (
            ["f1", "precision", "recall", "panoptic_quality"]
            if kind == "instance"
            else ["iou", "dice", "pixel_accuracy"]
        )
        row = {name: getattr(point, name) for name in names}
        if kind == "instance":
            assert result.ap_overall is not None
            row["ap50"], row["ap"] = result.ap_overall.ap50, result.ap_overall.ap
        for name, value in row.items():
            values.setdefault(name, []).append(np.nan if value is None else float(value))
    return values


@pytest.mark.parametrize("kind", ["instance", "semantic"])
def test_intervals_match_a_direct_bootstrap_of_the_test_images(kind: str) -> None:
    cases = _cases(kind, 7)
    evaluator = _evaluator(kind, cases, np.arange(len(cases)))
    whole = evaluator.result()
    threshold = 0.45

    intervals = bootstrap_intervals(evaluator, threshold=threshold, draws=DRAWS, seed=SEED)

    assert intervals is not None and (intervals.draws, intervals.seed, intervals.images) == (DRAWS, SEED, 7)
    assert intervals.headline.threshold == pytest.approx(threshold)
    direct = _direct(kind, cases, threshold=threshold)
    for name, values in direct.items():
        drawn = np.asarray(values)
        low, high = np.percentile(drawn[np.isfinite(drawn)], [2.5, 97.5])
        got = intervals.headline.metrics[name]
        assert (got.low, got.high) == (pytest.approx(low), pytest.approx(high)), name
        expected = getattr(whole.at(threshold).overall, name, None)
        if name in {"ap50", "ap"}:
            assert whole.ap_overall is not None
            expected = getattr(whole.ap_overall, name)
        assert got.estimate == pytest.approx(expected), name
        assert got.low is not None and got.high is not None and got.low <= got.high
    assert len(intervals.sweep) == len(evaluator.thresholds)


def test_the_sweep_bands_match_a_direct_bootstrap_at_every_threshold() -> None:
    cases = _cases("instance", 5)
    evaluator = _evaluator("instance", cases, np.arange(len(cases)))
    intervals = bootstrap_intervals(evaluator, threshold=0.5, draws=200, seed=3)
    assert intervals is not None

    indices = np.random.default_rng(3).integers(0, len(cases), size=(200, len(cases)))
    results = [_evaluator("instance", cases, chosen).result() for chosen in indices]
    for t, band in enumerate(intervals.sweep):
        f1 = np.asarray([r.sweep[t].overall.f1 for r in results], dtype=float)
        assert band.metrics["f1"].low == pytest.approx(np.percentile(f1, 2.5))
        assert band.metrics["f1"].high == pytest.approx(np.percentile(f1, 97.5))
        assert band.metrics["f1"].estimate == pytest.approx(evaluator.result().sweep[t].overall.f1)


def test_resampling_draws_as_many_images_as_the_split_has() -> None:
    counts = resample_counts(6, draws=50, seed=0)

    assert counts.shape == (50, 6) and (counts.sum(axis=1) == 6).all()


def test_no_images_no_intervals() -> None:
    assert bootstrap_intervals(InstanceEvaluator(class_names=CLASSES), threshold=0.5) is None
