"""Bootstrap confidence intervals of a split's metrics, resampling whole images.

Each draw takes the split's N images with replacement (N of them, from numpy's
`default_rng(seed).integers(0, N, size=(draws, N))`), and each metric is recomputed from the drawn
images' counts exactly as the evaluator computes it on the whole split: micro-averaged matching
counts, COCO AP from the pooled detections, semantic IoU and Dice from pooled pixel counts. The
interval is the central `confidence` share of the draws' values (percentile method); draws where
a metric is undefined (nothing to count) are left out of its interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from segpipe.models.common import SplitName
from segpipe.models.trainer_io import Bootstrap, Interval, ThresholdIntervals
from segpipe_trainer.metrics import (
    InstanceEvaluator,
    SemanticEvaluator,
    mean_ap,
    pooled_average_precision,
)

DRAWS = 1000
CONFIDENCE = 0.95
#: Metrics given a band at every threshold (the precision / recall / F1 plot, or IoU / Dice).
INSTANCE_SWEEP = ("precision", "recall", "f1")
SEMANTIC_SWEEP = ("iou", "dice")


def resample(images: int, *, draws: int, seed: int) -> np.ndarray:
    """int64 draws x N: the images of each draw, in the order drawn."""
    return np.random.default_rng(seed).integers(0, images, size=(draws, images))


def resample_counts(images: int, *, draws: int, seed: int) -> np.ndarray:
    """int64 draws x N: how often each image appears in each draw."""
    indices = resample(images, draws=draws, seed=seed)
    offsets = np.arange(draws)[:, None] * images
    return np.bincount((indices + offsets).ravel(), minlength=draws * images).reshape(draws, images)


def percentile_interval(estimate: float | None, values: np.ndarray, *, confidence: float) -> Interval:
    """The estimate with the central `confidence` percentile interval of its finite resampled values."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Interval(estimate=estimate)
    low, high = np.percentile(finite, [50 * (1 - confidence), 50 * (1 + confidence)])
    return Interval(estimate=estimate, low=float(low), high=float(high))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def instance_metrics(
    tp: np.ndarray, predicted: np.ndarray, gt: np.ndarray, iou: np.ndarray
) -> dict[str, np.ndarray]:
    """Matching metrics from summed counts (any matching shapes); NaN where undefined."""
    return {
        "precision": _ratio(tp, predicted),
        "recall": _ratio(tp, gt),
        "f1": _ratio(2 * tp, predicted + gt),
        "panoptic_quality": _ratio(2 * iou, predicted + gt),
    }


def semantic_metrics(
    intersection: np.ndarray,
    predicted: np.ndarray,
    truth: np.ndarray,
    correct: np.ndarray,
    pixels: np.ndarray,
) -> dict[str, np.ndarray]:
    """Mean IoU, mean Dice (over classes with truth or predictions) and pixel accuracy; ... x T x K in."""
    union = truth + predicted - intersection
    iou = _ratio(intersection, union)
    dice = _ratio(2 * intersection, truth + predicted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # a mean of nothing is NaN, as meant
        return {
            "iou": np.nanmean(iou, axis=-1),
            "dice": np.nanmean(dice, axis=-1),
            "pixel_accuracy": _ratio(correct, pixels),
        }


def _optional(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def bootstrap_intervals(
    evaluator: InstanceEvaluator | SemanticEvaluator,
    *,
    threshold: float,
    split: SplitName = "test",
    draws: int = DRAWS,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Bootstrap | None:
    """Intervals of the headline metrics at `threshold` and of the sweep metrics; None without images."""
    if evaluator.images == 0:
        return None
    weights = resample_counts(evaluator.images, draws=draws, seed=seed).astype(np.float64)
    index = int(np.argmin(np.abs(evaluator.thresholds - threshold)))
    if isinstance(evaluator, InstanceEvaluator):
        whole, drawn = _instance_draws(evaluator, weights=weights)
        headline = {name: (whole[name][index], drawn[name][:, index]) for name in whole}
        headline.update(_ap_draws(evaluator, draws=resample(evaluator.images, draws=draws, seed=seed)))
        sweep_names: tuple[str, ...] = INSTANCE_SWEEP
    else:
        whole, drawn = _semantic_draws(evaluator, weights=weights)
        headline = {name: (whole[name][index], drawn[name][:, index]) for name in whole}
        sweep_names = SEMANTIC_SWEEP
    sweep = [
        ThresholdIntervals(
            threshold=float(value),
            metrics={
                name: percentile_interval(_optional(whole[name][t]), drawn[name][:, t], confidence=confidence)
                for name in sweep_names
            },
        )
        for t, value in enumerate(evaluator.thresholds)
    ]
    return Bootstrap(
        split=split,
        draws=draws,
        seed=seed,
        confidence=confidence,
        images=evaluator.images,
        headline=ThresholdIntervals(
            threshold=float(evaluator.thresholds[index]),
            metrics={
                name: percentile_interval(_optional(estimate), values, confidence=confidence)
                for name, (estimate, values) in headline.items()
            },
        ),
        sweep=sweep,
    )


Draws = tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]


def _instance_draws(evaluator: InstanceEvaluator, *, weights: np.ndarray) -> Draws:
    """(metrics on the whole split [T], metrics of each draw draws x T) from per-image counts."""
    counts = np.stack(evaluator.image_counts).sum(axis=2)  # N x 3 x T, summed over classes
    gt = np.stack(evaluator.image_gt).sum(axis=1).astype(np.float64)  # N

    def metrics(w: np.ndarray) -> dict[str, np.ndarray]:
        summed = np.tensordot(w, counts, axes=(-1, 0))  # ... x 3 x T
        truth = (w @ gt)[..., None] * np.ones(counts.shape[-1])
        return instance_metrics(summed[..., 0, :], summed[..., 1, :], truth, summed[..., 2, :])

    return metrics(np.ones(evaluator.images)), metrics(weights)


def _semantic_draws(evaluator: SemanticEvaluator, *, weights: np.ndarray) -> Draws:
    rows = evaluator.image_counts
    intersection = np.stack([row.intersection for row in rows])  # N x T x K
    predicted = np.stack([row.predicted_area for row in rows])
    truth = np.stack([row.gt_area for row in rows])  # N x K
    correct = np.stack([row.correct for row in rows])  # N x T
    pixels = np.asarray([row.pixels for row in rows])  # N

    def metrics(w: np.ndarray) -> dict[str, np.ndarray]:
        inter = np.tensordot(w, intersection, axes=(-1, 0))
        pred = np.tensordot(w, predicted, axes=(-1, 0))
        true = (w @ truth)[..., None, :] * np.ones((correct.shape[-1], 1))
        return semantic_metrics(inter, pred, true, w @ correct, (w @ pixels)[..., None])

    return metrics(np.ones(evaluator.images)), metrics(weights)


def _ap_draws(evaluator: InstanceEvaluator, *, draws: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
    """AP50 and AP of the whole split and of each draw: the drawn images' detections pooled in the
    order drawn (COCO breaks score ties by order, as an evaluator fed those images would)."""
    gt = np.stack(evaluator.image_gt)  # N x K
    pooled = []
    for k in range(1, len(evaluator.class_names) + 1):
        parts = [evaluator.detections(i, k) for i in range(evaluator.images)]
        lengths = np.asarray([len(scores) for scores, _ in parts], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        scores = np.concatenate([np.zeros(0), *(scores for scores, _ in parts)])
        hits = np.concatenate([np.zeros((10, 0), dtype=bool), *(h for _, h in parts)], axis=1)
        pooled.append((starts, lengths, scores, hits))

    def one(chosen: np.ndarray) -> tuple[float, float]:
        per_class = []
        for k, (starts, lengths, scores, hits) in enumerate(pooled):
            sizes = lengths[chosen]
            first = np.repeat(starts[chosen], sizes)
            within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            take = first + within
            per_class.append(
                pooled_average_precision(scores[take], hits[:, take], gt=int(gt[chosen, k].sum()))
            )
        average = mean_ap(per_class)
        return (
            np.nan if average.ap50 is None else average.ap50,
            np.nan if average.ap is None else average.ap,
        )

    whole = one(np.arange(evaluator.images))
    drawn = np.asarray([one(chosen) for chosen in draws])
    return {"ap50": (whole[0], drawn[:, 0]), "ap": (whole[1], drawn[:, 1])}
