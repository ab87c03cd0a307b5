"""The evaluation a trainer would write for the synthetic predictions (`tests.helpers.synthetic`).

Every synthetic object is already known to match a ground-truth object or not (and at which IoU),
so the matching step is skipped; everything after it is the trainer's own code: the statistics row
at each threshold (`segpipe_trainer.metrics`), COCO AP over pooled detections, the suggested
thresholds, and the bootstrap's draws, metrics and intervals (`segpipe_trainer.bootstrap`). The
statistics table, the plot and the viewer of a seeded version therefore agree with each other and
with what a real training reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segpipe.models.trainer_io import (
    THRESHOLDS,
    AveragePrecision,
    Bootstrap,
    Evaluation,
    Interval,
    Metrics,
    Selection,
    SplitEvaluation,
    ThresholdIntervals,
    ThresholdPoint,
)
from segpipe_trainer.bootstrap import INSTANCE_SWEEP, instance_metrics, resample, resample_counts
from segpipe_trainer.bootstrap import percentile_interval as interval
from segpipe_trainer.metrics import COCO_IOUS, mean_ap, pooled_average_precision, suggest_thresholds
from segpipe_trainer.metrics import metrics_from_counts as instance_row
from tests.helpers.synthetic import SyntheticImage, by_split

#: A score counts as shown at a threshold it equals (the sweep's thresholds are rounded decimals).
_TIE = 1e-9


@dataclass(frozen=True)
class _Pool:
    """All predicted objects of one split (or one class of it), N of them."""

    scores: np.ndarray  # N
    truth: np.ndarray  # N (bool)
    ious: np.ndarray  # N
    ground_truth: int

    def point(self, threshold: float) -> tuple[int, int, float]:
        """(true positives, predicted objects, summed IoU of the matches) at `threshold`."""
        shown = self.scores >= threshold - _TIE
        matched = shown & self.truth
        return int(matched.sum()), int(shown.sum()), float(self.ious[matched].sum())

    def average_precision(self) -> AveragePrecision:
        hits = self.truth[None, :] & (self.ious[None, :] >= COCO_IOUS[:, None])  # 10 x N
        return pooled_average_precision(self.scores, hits, gt=self.ground_truth)


def _pools(images: list[SyntheticImage], classes: tuple[str, ...]) -> dict[str | None, _Pool]:
    """The split's pool (key None) and one per class."""
    objects = [o for image in images for o in image.predictions.objects]
    scores = np.asarray([o.score for o in objects], dtype=np.float64)
    labels = np.asarray([classes.index(o.category) for o in objects], dtype=np.int64)
    truth = np.concatenate([image.truth for image in images]).astype(bool)
    ious = np.concatenate([image.ious for image in images])
    missed = np.sum([image.missed for image in images], axis=0)
    pools: dict[str | None, _Pool] = {None: _Pool(scores, truth, ious, int(truth.sum() + missed.sum()))}
    for k, name in enumerate(classes):
        mine = labels == k
        pools[name] = _Pool(scores[mine], truth[mine], ious[mine], int(truth[mine].sum() + missed[k]))
    return pools


def _metrics(pool: _Pool, threshold: float) -> Metrics:
    tp, predicted, iou_sum = pool.point(threshold)
    return instance_row(tp=tp, predicted=predicted, gt=pool.ground_truth, iou_sum=iou_sum)


def _split_evaluation(images: list[SyntheticImage], classes: tuple[str, ...]) -> SplitEvaluation:
    pools = _pools(images, classes)
    sweep = [
        ThresholdPoint(
            threshold=t,
            overall=_metrics(pools[None], t),
            per_class={name: _metrics(pools[name], t) for name in classes},
        )
        for t in THRESHOLDS
    ]
    per_class = {name: pools[name].average_precision() for name in classes}
    return SplitEvaluation(
        images=len(images),
        objects=pools[None].ground_truth,
        sweep=sweep,
        ap_overall=mean_ap(list(per_class.values())),
        ap_per_class=per_class,
    )


# --- bootstrap intervals, directly from the seeded objects ----------------------------------------


def _counts(images: list[SyntheticImage]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per image (N) and threshold (T): true positives, predicted objects and summed matched IoU
    (N x T each), and ground-truth objects (N)."""
    thresholds = np.asarray(THRESHOLDS)[None, :]
    rows = []
    for image in images:
        scores = np.asarray([o.score for o in image.predictions.objects])[:, None]
        shown = scores >= thresholds - _TIE  # objects x T
        matched = shown & image.truth[:, None]
        rows.append((matched.sum(0), shown.sum(0), (matched * image.ious[:, None]).sum(0)))
    tp, predicted, iou = (np.stack(column).astype(float) for column in zip(*rows, strict=True))
    truth = np.asarray([image.truth.sum() + image.missed.sum() for image in images], dtype=float)
    return tp, predicted, iou, truth


def bootstrap_of(
    *,
    images: list[SyntheticImage],
    result: SplitEvaluation,
    classes: tuple[str, ...],
    suggested: float,
    draws: int,
    seed: int = 0,
    confidence: float = 0.95,
) -> Bootstrap:
    """Percentile intervals of one split's figures, drawn as the trainer draws them (`resample`):
    each draw takes the split's N images with replacement and recomputes the figures from those
    images' counts."""
    tp, predicted, iou, truth = _counts(images)
    weights = resample_counts(len(images), draws=draws, seed=seed).astype(float)  # D x N
    values = instance_metrics(weights @ tp, weights @ predicted, (weights @ truth)[:, None], weights @ iou)
    column = THRESHOLDS.index(suggested)

    def at(point: ThresholdPoint, names: tuple[str, ...], index: int) -> dict[str, Interval]:
        estimates = point.overall.model_dump()
        return {
            name: interval(estimates[name], values[name][:, index], confidence=confidence) for name in names
        }

    headline = at(result.sweep[column], (*INSTANCE_SWEEP, "panoptic_quality"), column)
    drawn = [[images[j] for j in row] for row in resample(len(images), draws=draws, seed=seed)]
    ap_draws = [_split_evaluation(members, classes).ap_overall or AveragePrecision() for members in drawn]
    ap = result.ap_overall or AveragePrecision()
    missing = float("nan")
    headline["ap50"] = interval(
        ap.ap50,
        np.asarray([a.ap50 if a.ap50 is not None else missing for a in ap_draws]),
        confidence=confidence,
    )
    headline["ap"] = interval(
        ap.ap, np.asarray([a.ap if a.ap is not None else missing for a in ap_draws]), confidence=confidence
    )
    return Bootstrap(
        split=images[0].predictions.split or "train",
        draws=draws,
        seed=seed,
        confidence=confidence,
        images=len(images),
        headline=ThresholdIntervals(threshold=suggested, metrics=headline),
        sweep=[
            ThresholdIntervals(threshold=point.threshold, metrics=at(point, INSTANCE_SWEEP, index))
            for index, point in enumerate(result.sweep)
        ],
    )


def _selection_on_train(train: list[SyntheticImage]) -> Selection:
    return Selection(
        method="none",
        epochs_from="config",
        final_images=len(train),
        final_epochs=20,
        threshold_from="train",
        summary=f"Nothing was held out: 20 configured epochs on all {len(train)} training images, and the "
        "thresholds chosen on them; the test set only measures.",
    )


def evaluation_of(
    *, images: list[SyntheticImage], classes: tuple[str, ...], bootstrap_draws: int = 0
) -> Evaluation:
    """The evaluation as older trainers wrote it (thresholds tuned on the test set), or with
    `bootstrap_draws` as newer ones do: thresholds chosen on the training images, and intervals."""
    sides = by_split(images)
    train_result = _split_evaluation(sides["train"], classes)
    test_result = _split_evaluation(sides["test"], classes) if sides["test"] else None
    newer = bootstrap_draws > 0
    tuned = train_result if newer else test_result or train_result
    suggested, per_class = suggest_thresholds(tuned, model_type="instance")
    intervals = (
        bootstrap_of(
            images=sides["test"],
            result=test_result,
            classes=classes,
            suggested=suggested,
            draws=bootstrap_draws,
        )
        if newer and test_result
        else None
    )
    return Evaluation(
        model_type="instance",
        classes=list(classes),
        suggested_threshold=suggested,
        suggested_thresholds=per_class,
        suggested_from="test" if test_result and not newer else "train",
        train=train_result,
        test=test_result,
        epochs_trained=20,
        best_epoch=17,
        selection=_selection_on_train(sides["train"]) if newer else None,
        intervals=intervals,
    )
