"""Evaluation of predictions against ground truth, one image at a time.

The evaluators are accumulators: `add` reduces an image to a few numbers per object, so a split of
any size is evaluated without holding its maps. Instance metrics follow the published definitions:
matching at IoU >= 0.5 as in StarDist's `matching` (precision, recall, F1, panoptic quality, mean
matched IoU), and COCO's AP50 and AP[.5:.95] computed exactly as pycocotools' `COCOeval` does for
`segm` with one area range and a large `maxDets`. Shapes: H x W label images; K classes, class
index 0 is background and class i (1..K) is `class_names[i - 1]`; T score thresholds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

from segpipe.models.trainer_io import (
    THRESHOLDS,
    AveragePrecision,
    Metrics,
    SplitEvaluation,
    ThresholdPoint,
)
from segpipe_trainer.postprocess import Instances

logger = logging.getLogger(__name__)

#: A predicted object matches a ground-truth object of its class at this IoU or more.
MATCH_IOU = 0.5
#: COCO's IoU thresholds (the same floating-point values pycocotools uses) and recall points.
COCO_IOUS = np.linspace(0.5, 0.95, 10)
COCO_RECALLS = np.linspace(0.0, 1.0, 101)
#: Detections per image and class that count towards AP (COCO's maxDets; 100 truncates dense images).
MAX_DETECTIONS = 10_000
#: Scores within this distance count as a tie when suggesting a threshold.
_TIE = 1e-9


# --- Overlaps ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pairs:
    """Overlapping (ground truth, prediction) object pairs of one image, IoU >= MATCH_IOU only."""

    gt: np.ndarray  # int64 [P], ground-truth labels
    pred: np.ndarray  # int64 [P], predicted labels
    iou: np.ndarray  # float64 [P]

    def select(self, keep: np.ndarray) -> _Pairs:
        return _Pairs(gt=self.gt[keep], pred=self.pred[keep], iou=self.iou[keep])

    def is_matching(self) -> bool:
        """True when no object takes part in two pairs (always, unless an IoU is exactly 0.5)."""
        return len(np.unique(self.gt)) == len(self.gt) and len(np.unique(self.pred)) == len(self.pred)


def _areas(labels: np.ndarray, *, count: int) -> np.ndarray:
    """int64 [count + 1]: pixels per value 0..count of an H x W label image; larger values raise."""
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    if len(areas) > count + 1:
        raise ValueError(f"a label image holds the value {len(areas) - 1}, but only 0..{count} are described")
    return areas


def _candidate_pairs(
    gt_labels: np.ndarray, pred_labels: np.ndarray, *, gt_area: np.ndarray, pred_area: np.ndarray
) -> _Pairs:
    """The object pairs of two H x W label images whose IoU is at least MATCH_IOU."""
    both = (gt_labels > 0) & (pred_labels > 0)
    stride = len(pred_area)
    keys = gt_labels[both].astype(np.int64) * stride + pred_labels[both]
    if len(gt_area) * stride <= 4 * keys.size + 1024:
        counts = np.bincount(keys, minlength=len(gt_area) * stride)
        keys = np.flatnonzero(counts)
        inter = counts[keys]
    else:
        keys, inter = np.unique(keys, return_counts=True)
    gt, pred = keys // stride, keys % stride
    iou = inter / (gt_area[gt] + pred_area[pred] - inter)
    keep = iou >= MATCH_IOU
    return _Pairs(gt=gt[keep], pred=pred[keep], iou=iou[keep])


def _maximum_matching(pairs: _Pairs) -> _Pairs:
    """The pairs of a matching with the most pairs, then the largest IoU sum (StarDist's rule)."""
    if pairs.is_matching():
        return pairs
    gts, gt_index = np.unique(pairs.gt, return_inverse=True)
    preds, pred_index = np.unique(pairs.pred, return_inverse=True)
    costs = np.zeros((len(gts), len(preds)))
    costs[gt_index, pred_index] = -1.0 - pairs.iou / (2 * min(len(gts), len(preds)))
    rows, cols = linear_sum_assignment(costs)
    chosen = np.zeros((len(gts), len(preds)), dtype=bool)
    chosen[rows, cols] = True
    return pairs.select(chosen[gt_index, pred_index])


def _sum_at(scores: np.ndarray, weights: np.ndarray | None, *, thresholds: np.ndarray) -> np.ndarray:
    """float64 [T]: at each ascending threshold t, the sum of `weights` where `scores >= t`."""
    passed = np.searchsorted(thresholds, scores, side="right")
    hist = np.bincount(passed, weights=weights, minlength=len(thresholds) + 1)
    return np.cumsum(hist[::-1])[::-1][1:]


# --- Instance evaluation -----------------------------------------------------------------------


@dataclass
class _ClassTally:
    """Running sums of one class over the images added so far."""

    thresholds: int
    gt: int = 0
    tp: np.ndarray = field(init=False)
    predicted: np.ndarray = field(init=False)
    iou_sum: np.ndarray = field(init=False)
    ap_scores: list[np.ndarray] = field(default_factory=list)
    ap_matched: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tp = np.zeros(self.thresholds, dtype=np.int64)
        self.predicted = np.zeros(self.thresholds, dtype=np.int64)
        self.iou_sum = np.zeros(self.thresholds)

    def metrics(self, index: int) -> Metrics:
        return metrics_from_counts(
            tp=int(self.tp[index]),
            predicted=int(self.predicted[index]),
            gt=self.gt,
            iou_sum=float(self.iou_sum[index]),
        )


def metrics_from_counts(*, tp: int, predicted: int, gt: int, iou_sum: float) -> Metrics:
    """One statistics row. Ratios without a denominator (nothing to count) are None."""
    fp, fn = predicted - tp, gt - tp
    return Metrics(
        tp=tp,
        fp=fp,
        fn=fn,
        precision=tp / predicted if predicted else None,
        recall=tp / gt if gt else None,
        f1=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        panoptic_quality=iou_sum / (tp + fp / 2 + fn / 2) if tp + fp + fn else None,
        mean_matched_iou=iou_sum / tp if tp else None,
        predicted_objects=predicted,
    )


class InstanceEvaluator:
    """Matching statistics at each score threshold, and COCO AP, over the images added.

    At threshold t only predicted objects scored >= t take part. A predicted object matches a
    ground-truth object of the same class when their IoU >= 0.5; overall rows sum tp, fp and fn
    over the classes (micro average). AP does not depend on t.
    """

    def __init__(
        self,
        *,
        class_names: Sequence[str],
        thresholds: Sequence[float] = THRESHOLDS,
        max_detections: int = MAX_DETECTIONS,
    ) -> None:
        self.class_names = list(class_names)
        self.thresholds = np.sort(np.asarray(thresholds, dtype=np.float64))
        self.max_detections = max_detections
        self.images = 0
        self._tallies = [_ClassTally(thresholds=len(self.thresholds)) for _ in self.class_names]
        #: Per added image: float64 3 x K x T, the (tp, predicted, iou sum) of each class at each
        #: threshold, and int64 [K] its ground-truth objects per class (for the bootstrap).
        self.image_counts: list[np.ndarray] = []
        self.image_gt: list[np.ndarray] = []

    def add(self, *, gt_labels: np.ndarray, gt_classes: np.ndarray, pred: Instances) -> None:
        """Add one image: gt_labels int H x W (0 background), gt_classes int [N+1] (class of each label).

        Ground-truth labels without pixels (hidden by a later object) are not counted.
        """
        if gt_labels.shape != pred.labels.shape:
            raise ValueError(
                f"ground truth {gt_labels.shape} and prediction {pred.labels.shape} differ in shape"
            )
        gt_classes = np.asarray(gt_classes)
        gt_area = _areas(gt_labels, count=len(gt_classes) - 1)
        pred_area = _areas(pred.labels, count=pred.count)
        pairs = _candidate_pairs(gt_labels, pred.labels, gt_area=gt_area, pred_area=pred_area)
        pairs = pairs.select(gt_classes[pairs.gt] == pred.classes[pairs.pred])
        before = self._counts()
        for k, tally in enumerate(self._tallies, start=1):
            detections = _Detections.of_class(pred, area=pred_area, k=k)
            tally.gt += int(np.count_nonzero((gt_classes == k) & (gt_area > 0)))
            class_pairs = pairs.select(gt_classes[pairs.gt] == k)
            self._tally_sweep(tally, pairs=class_pairs, detections=detections)
            self._tally_ap(tally, pairs=class_pairs, detections=detections)
        after = self._counts()
        self.image_counts.append(after[0] - before[0])
        self.image_gt.append(after[1] - before[1])
        self.images += 1

    def _counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(float64 3 x K x T running tp, predicted, iou sum; int64 [K] running ground truth)."""
        tallies = self._tallies
        counts = np.stack(
            [
                np.stack([t.tp for t in tallies]).astype(np.float64),
                np.stack([t.predicted for t in tallies]).astype(np.float64),
                np.stack([t.iou_sum for t in tallies]),
            ]
        )
        return counts, np.asarray([t.gt for t in tallies], dtype=np.int64)

    def detections(self, image: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Image `image`'s detections of class k (1..K) for AP: scores [D] and matched flags 10 x D."""
        tally = self._tallies[k - 1]
        return tally.ap_scores[image], tally.ap_matched[image]

    def _tally_sweep(self, tally: _ClassTally, *, pairs: _Pairs, detections: _Detections) -> None:
        """Add one image's matching counts of one class at every threshold."""
        tally.predicted += _sum_at(detections.scores, None, thresholds=self.thresholds).astype(np.int64)
        pair_scores = detections.score_of(pairs.pred)
        if pairs.is_matching():
            # Dropping predictions only drops pairs, so each threshold's matching is a subset of this one.
            tally.tp += _sum_at(pair_scores, None, thresholds=self.thresholds).astype(np.int64)
            tally.iou_sum += _sum_at(pair_scores, pairs.iou, thresholds=self.thresholds)
            return
        for index, threshold in enumerate(self.thresholds):
            matched = _maximum_matching(pairs.select(pair_scores >= threshold))
            tally.tp[index] += len(matched.iou)
            tally.iou_sum[index] += float(matched.iou.sum())

    def _tally_ap(self, tally: _ClassTally, *, pairs: _Pairs, detections: _Detections) -> None:
        """Add one image's detections of one class: scores, best first, and matched flags per COCO IoU."""
        ranked = detections.ranked(limit=self.max_detections)
        tally.ap_scores.append(detections.score_of(ranked))
        tally.ap_matched.append(_coco_matches(pairs, ranked=ranked))

    def result(self) -> SplitEvaluation:
        """Statistics at every threshold, per class and overall, and AP per class and overall."""
        logger.debug("Instance evaluation of %d images", self.images)
        sweep = [self._point(index, float(threshold)) for index, threshold in enumerate(self.thresholds)]
        names_and_tallies = zip(self.class_names, self._tallies, strict=True)
        per_class = {name: _average_precision(tally) for name, tally in names_and_tallies}
        return SplitEvaluation(
            images=self.images,
            objects=sum(tally.gt for tally in self._tallies),
            sweep=sweep,
            ap_overall=mean_ap(list(per_class.values())),
            ap_per_class=per_class,
        )

    def _point(self, index: int, threshold: float) -> ThresholdPoint:
        overall = metrics_from_counts(
            tp=int(sum(tally.tp[index] for tally in self._tallies)),
            predicted=int(sum(tally.predicted[index] for tally in self._tallies)),
            gt=sum(tally.gt for tally in self._tallies),
            iou_sum=float(sum(tally.iou_sum[index] for tally in self._tallies)),
        )
        names_and_tallies = zip(self.class_names, self._tallies, strict=True)
        per_class = {name: tally.metrics(index) for name, tally in names_and_tallies}
        return ThresholdPoint(threshold=threshold, overall=overall, per_class=per_class)


@dataclass(frozen=True)
class _Detections:
    """The predicted objects of one class in one image."""

    labels: np.ndarray  # int64 [D], labels with pixels, ascending
    scores: np.ndarray  # float64 [D]
    all_scores: np.ndarray  # float64 [N+1], indexed by label

    @classmethod
    def of_class(cls, pred: Instances, *, area: np.ndarray, k: int) -> _Detections:
        labels = np.flatnonzero((pred.classes == k) & (area > 0))
        all_scores = pred.scores.astype(np.float64)
        return cls(labels=labels, scores=all_scores[labels], all_scores=all_scores)

    def score_of(self, labels: np.ndarray) -> np.ndarray:
        return self.all_scores[labels]

    def ranked(self, *, limit: int) -> np.ndarray:
        """int64 [min(D, limit)]: labels by descending score, ties in label order (as COCO sorts)."""
        return self.labels[np.argsort(-self.scores, kind="mergesort")][:limit]


def _coco_matches(pairs: _Pairs, *, ranked: np.ndarray) -> np.ndarray:
    """bool [10 x D]: whether each ranked detection is a true positive at each COCO IoU threshold.

    COCO matches greedily: each detection, best score first, takes the unmatched ground truth of
    highest IoU at or above the threshold (the later one on equal IoU).
    """
    matched = np.zeros((len(COCO_IOUS), len(ranked)), dtype=bool)
    if len(ranked) == 0 or len(pairs.iou) == 0:
        return matched
    rank = np.full(int(max(ranked.max(), pairs.pred.max())) + 1, -1, dtype=np.int64)
    rank[ranked] = np.arange(len(ranked))
    pairs = pairs.select(rank[pairs.pred] >= 0)
    if pairs.is_matching():
        matched[:, rank[pairs.pred]] = pairs.iou[None, :] >= COCO_IOUS[:, None]
        return matched
    for t, threshold in enumerate(COCO_IOUS):
        taken: set[int] = set()
        for position, label in enumerate(ranked):
            gt = _greedy_pick(pairs.select(pairs.pred == label), taken=taken, threshold=float(threshold))
            if gt is not None:
                taken.add(gt)
                matched[t, position] = True
    return matched


def _greedy_pick(candidates: _Pairs, *, taken: set[int], threshold: float) -> int | None:
    """COCO's choice for one detection among its candidate pairs (ground truth in label order)."""
    best, best_iou = None, min(threshold, 1 - 1e-10)
    for gt, iou in sorted(zip(candidates.gt.tolist(), candidates.iou.tolist(), strict=True)):
        if gt in taken or iou < best_iou:
            continue
        best, best_iou = gt, iou
    return best


def _average_precision(tally: _ClassTally) -> AveragePrecision:
    """COCO AP50 and AP[.5:.95] of one class: 101-point interpolated precision, as pycocotools'
    `accumulate` computes it. None when the class has no ground truth."""
    scores = np.concatenate([np.zeros(0), *tally.ap_scores])
    hits = np.concatenate([np.zeros((len(COCO_IOUS), 0), dtype=bool), *tally.ap_matched], axis=1)
    return pooled_average_precision(scores, hits, gt=tally.gt)


def pooled_average_precision(scores: np.ndarray, hits: np.ndarray, *, gt: int) -> AveragePrecision:
    """AP50 and AP[.5:.95] of pooled detections: scores float64 [D], matched flags bool 10 x D."""
    if gt == 0:
        return AveragePrecision()
    hits = hits[:, np.argsort(-scores, kind="mergesort")]
    tp = np.cumsum(hits, axis=1).astype(np.float64)
    fp = np.cumsum(~hits, axis=1).astype(np.float64)
    recall = tp / gt
    precision = tp / (tp + fp + np.spacing(1))
    # The precision envelope, with a last column of zeros for recall levels never reached.
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    envelope = np.concatenate([envelope, np.zeros((len(COCO_IOUS), 1))], axis=1)
    per_iou = np.array(
        [
            envelope[t][np.searchsorted(recall[t], COCO_RECALLS, side="left")].mean()
            for t in range(len(COCO_IOUS))
        ]
    )
    return AveragePrecision(ap50=float(per_iou[0]), ap=float(per_iou.mean()))


def mean_ap(values: list[AveragePrecision]) -> AveragePrecision:
    """Mean over the classes that have ground truth, as COCO averages over categories."""
    ap50 = [value.ap50 for value in values if value.ap50 is not None]
    ap = [value.ap for value in values if value.ap is not None]
    return AveragePrecision(
        ap50=float(np.mean(ap50)) if ap50 else None,
        ap=float(np.mean(ap)) if ap else None,
    )


# --- Semantic evaluation -----------------------------------------------------------------------


@dataclass(frozen=True)
class SemanticCounts:
    """One image's pixel counts at each of T thresholds for K classes."""

    intersection: np.ndarray  # float64 T x K
    predicted_area: np.ndarray  # float64 T x K
    gt_area: np.ndarray  # float64 [K]
    correct: np.ndarray  # float64 [T]
    pixels: float


class SemanticEvaluator:
    """IoU and Dice per class, their means, and pixel accuracy, at each score threshold.

    The prediction at threshold t is the class map of the predicted regions scored >= t (background
    elsewhere): what the viewer shows at the slider is what is measured.
    """

    def __init__(self, *, class_names: Sequence[str], thresholds: Sequence[float] = THRESHOLDS) -> None:
        self.class_names = list(class_names)
        self.thresholds = np.sort(np.asarray(thresholds, dtype=np.float64))
        shape = (len(self.thresholds), len(self.class_names))
        self.images = 0
        self._regions = 0
        self._pixels = 0
        self._gt_area = np.zeros(len(self.class_names))
        self._intersection = np.zeros(shape)
        self._predicted_area = np.zeros(shape)
        self._objects = np.zeros(shape, dtype=np.int64)
        self._correct = np.zeros(len(self.thresholds))
        #: Per added image: float64 T x K intersections and predicted areas, [K] truth areas, [T]
        #: correct pixels and its pixel count (for the bootstrap).
        self.image_counts: list[SemanticCounts] = []

    def add(self, *, gt_classes: np.ndarray, pred: Instances) -> None:
        """Add one image: gt_classes int H x W, 0 background, k in 1..K the class of the pixel."""
        if gt_classes.shape != pred.labels.shape:
            raise ValueError(
                f"ground truth {gt_classes.shape} and prediction {pred.labels.shape} differ in shape"
            )
        gt = np.asarray(gt_classes, dtype=np.int64)
        gt_area = _areas(gt, count=len(self.class_names)).astype(np.float64)
        area, hits, on_background = _object_pixels(gt, pred)
        scores = pred.scores.astype(np.float64)
        counts = SemanticCounts(
            intersection=np.zeros_like(self._intersection),
            predicted_area=np.zeros_like(self._predicted_area),
            gt_area=gt_area[1:],
            correct=np.zeros_like(self._correct),
            pixels=float(gt.size),
        )
        for index in range(len(self.class_names)):
            ids = np.flatnonzero(pred.classes == index + 1)
            counts.intersection[:, index] = _sum_at(scores[ids], hits[ids], thresholds=self.thresholds)
            counts.predicted_area[:, index] = _sum_at(scores[ids], area[ids], thresholds=self.thresholds)
            self._objects[:, index] += _sum_at(scores[ids], None, thresholds=self.thresholds).astype(np.int64)
        # Correct pixels at t: hits of the objects shown, plus background not covered by them.
        counts.correct[:] = gt_area[0] - _sum_at(scores[1:], on_background[1:], thresholds=self.thresholds)
        counts.correct[:] += _sum_at(scores[1:], hits[1:], thresholds=self.thresholds)
        self._intersection += counts.intersection
        self._predicted_area += counts.predicted_area
        self._correct += counts.correct
        self._gt_area += counts.gt_area
        self._pixels += gt.size
        self.image_counts.append(counts)
        self._regions += _region_count(gt)
        self.images += 1

    def result(self) -> SplitEvaluation:
        """IoU, Dice and predicted objects per class at every threshold; means and pixel accuracy overall."""
        logger.debug("Semantic evaluation of %d images", self.images)
        return SplitEvaluation(
            images=self.images,
            objects=self._regions,
            sweep=[self._point(index, float(threshold)) for index, threshold in enumerate(self.thresholds)],
        )

    def _point(self, index: int, threshold: float) -> ThresholdPoint:
        per_class = {}
        for k, name in enumerate(self.class_names):
            inter, predicted, truth = (
                self._intersection[index, k],
                self._predicted_area[index, k],
                self._gt_area[k],
            )
            per_class[name] = Metrics(
                iou=float(inter / (truth + predicted - inter)) if truth + predicted > 0 else None,
                dice=float(2 * inter / (truth + predicted)) if truth + predicted > 0 else None,
                predicted_objects=int(self._objects[index, k]),
            )
        ious = [row.iou for row in per_class.values() if row.iou is not None]
        dices = [row.dice for row in per_class.values() if row.dice is not None]
        overall = Metrics(
            iou=float(np.mean(ious)) if ious else None,
            dice=float(np.mean(dices)) if dices else None,
            pixel_accuracy=float(self._correct[index] / self._pixels) if self._pixels else None,
            predicted_objects=int(self._objects[index].sum()),
        )
        return ThresholdPoint(threshold=threshold, overall=overall, per_class=per_class)


def _object_pixels(gt: np.ndarray, pred: Instances) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 [N+1] each, per predicted object: its pixels, those where the ground truth has its
    class, and those where the ground truth is background."""
    labels = pred.labels.ravel()
    size = pred.count + 1
    area = np.bincount(labels, minlength=size)
    hits = np.bincount(labels[pred.classes[labels] == gt.ravel()], minlength=size)
    on_background = np.bincount(labels[gt.ravel() == 0], minlength=size)
    return area.astype(np.float64), hits.astype(np.float64), on_background.astype(np.float64)


def _region_count(gt: np.ndarray) -> int:
    """Connected (8-connected) regions of each class of an H x W class map, summed over classes."""
    classes = np.unique(gt)
    return sum(int(ndi.label(gt == k, structure=np.ones((3, 3)))[1]) for k in classes[classes > 0])


# --- Threshold suggestion ----------------------------------------------------------------------


def suggest_thresholds(evaluation: SplitEvaluation, *, model_type: str) -> tuple[float, dict[str, float]]:
    """(overall threshold, per-class thresholds) of the sweep point with the best F1 (instance) or IoU
    (semantic). Ties go to the threshold nearest 0.5 (then the lower); with no score at all, 0.5."""
    key = "f1" if model_type == "instance" else "iou"
    overall = _best_threshold([(point.threshold, getattr(point.overall, key)) for point in evaluation.sweep])
    names = sorted({name for point in evaluation.sweep for name in point.per_class})
    per_class = {
        name: _best_threshold(
            [
                (point.threshold, getattr(point.per_class[name], key))
                for point in evaluation.sweep
                if name in point.per_class
            ]
        )
        for name in names
    }
    return overall, per_class


def _best_threshold(values: list[tuple[float, float | None]]) -> float:
    scored = [(threshold, value) for threshold, value in values if value is not None]
    if not scored:
        return 0.5
    best = max(value for _, value in scored)
    tied = [threshold for threshold, value in scored if value >= best - _TIE]
    return min(tied, key=lambda threshold: (abs(threshold - 0.5), threshold))
