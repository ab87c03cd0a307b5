"""Evaluation against published implementations: StarDist's matching and pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
from typing import Any

import faster_coco_eval
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import ndimage as ndi
from stardist.matching import matching

from segpipe.models.trainer_io import THRESHOLDS, AveragePrecision, Metrics, SplitEvaluation, ThresholdPoint
from segpipe_trainer.metrics import InstanceEvaluator, SemanticEvaluator, suggest_thresholds
from segpipe_trainer.postprocess import Instances

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# --- Synthetic images --------------------------------------------------------------------------


def random_labels(
    rng: np.random.Generator, *, shape: tuple[int, int] = (64, 64), count: int = 14
) -> np.ndarray:
    """int32 H x W of random discs (later ones cover earlier ones), numbered 1..N without gaps."""
    labels = np.zeros(shape, dtype=np.int32)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    for index in range(1, count + 1):
        row, col, radius = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(2, 8)
        labels[(rows - row) ** 2 + (cols - col) ** 2 < radius**2] = index
    return sequential(labels)


def sequential(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)


def perturbed(rng: np.random.Generator, truth: np.ndarray) -> np.ndarray:
    """A prediction of `truth`: objects kept, shifted, shrunk, grown or missed, plus false objects."""
    pred = np.zeros_like(truth)
    for label in range(1, int(truth.max()) + 1):
        mask = truth == label
        change = rng.integers(0, 5)
        if change == 1:
            mask = np.roll(mask, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2)))
        elif change == 2:
            mask = ndi.binary_erosion(mask)
        elif change == 3:
            mask = ndi.binary_dilation(mask)
        elif change == 4 and rng.random() < 0.5:
            continue
        pred[mask] = label
    for _ in range(int(rng.integers(0, 4))):
        row, col = rng.integers(0, truth.shape[0] - 6), rng.integers(0, truth.shape[1] - 6)
        pred[row : row + rng.integers(2, 7), col : col + rng.integers(2, 7)] = pred.max() + 1
    return sequential(pred)


def random_case(rng: np.random.Generator, *, num_classes: int) -> tuple[np.ndarray, np.ndarray, Instances]:
    """(gt labels, gt classes, prediction) with random classes and distinct random scores."""
    gt_labels = random_labels(rng)
    gt_classes = np.concatenate([[0], rng.integers(1, num_classes + 1, gt_labels.max())]).astype(np.int64)
    pred_labels = perturbed(rng, gt_labels)
    count = int(pred_labels.max())
    # Keep most predictions on the class of the object they came from.
    source = np.array(
        [np.bincount(gt_labels[pred_labels == n], minlength=1).argmax() for n in range(count + 1)]
    )
    random_classes = rng.integers(1, num_classes + 1, count + 1)
    pred_classes = np.where((rng.random(count + 1) < 0.8) & (source > 0), gt_classes[source], random_classes)
    pred_classes[0] = 0
    scores = np.concatenate([[0.0], rng.permutation(np.linspace(0.02, 0.98, count))]).astype(np.float32)
    return (
        gt_labels,
        gt_classes,
        Instances(labels=pred_labels, classes=pred_classes.astype(np.int64), scores=scores),
    )


# --- Oracles -----------------------------------------------------------------------------------


def coco_records(
    cases: list[tuple[np.ndarray, np.ndarray, Instances]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The COCO ground-truth dataset and detection list of the cases (objects in label order)."""

    def rle(mask: np.ndarray) -> dict[str, Any]:
        encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        return {"size": encoded["size"], "counts": encoded["counts"].decode("ascii")}

    num_classes = int(max(max(gt_classes.max(), pred.classes.max()) for _, gt_classes, pred in cases))
    dataset: dict[str, Any] = {"images": [], "annotations": [], "categories": []}
    dataset["categories"] = [{"id": k, "name": str(k)} for k in range(1, num_classes + 1)]
    detections = []
    for image_id, (gt_labels, gt_classes, pred) in enumerate(cases, start=1):
        height, width = gt_labels.shape
        dataset["images"].append({"id": image_id, "height": height, "width": width})
        for label in range(1, len(gt_classes)):
            mask = gt_labels == label
            if mask.any():
                dataset["annotations"].append(
                    {
                        "id": len(dataset["annotations"]) + 1,
                        "image_id": image_id,
                        "category_id": int(gt_classes[label]),
                        "segmentation": rle(mask),
                        "area": float(mask.sum()),
                        "bbox": [0.0, 0.0, 1.0, 1.0],
                        "iscrowd": 0,
                    }
                )
        for label in range(1, pred.count + 1):
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": int(pred.classes[label]),
                    "segmentation": rle(pred.labels == label),
                    "score": float(pred.scores[label]),
                }
            )
    return dataset, detections


def pycocotools_eval(
    cases: list[tuple[np.ndarray, np.ndarray, Instances]], *, max_dets: list[int]
) -> COCOeval:
    dataset, detections = coco_records(cases)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = copy.deepcopy(dataset)
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(copy.deepcopy(detections)), "segm")
        evaluation.params.maxDets = max_dets
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def faster_coco_eval_stats(
    cases: list[tuple[np.ndarray, np.ndarray, Instances]], *, max_dets: list[int]
) -> np.ndarray:
    """faster-coco-eval's summary stats (AP, AP50 first) on the same records."""
    dataset, detections = coco_records(cases)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = faster_coco_eval.COCO()
        truth.dataset = copy.deepcopy(dataset)
        truth.createIndex()
        evaluation = faster_coco_eval.COCOeval_faster(truth, truth.loadRes(copy.deepcopy(detections)), "segm")
        evaluation.params.maxDets = max_dets
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return np.asarray(evaluation.stats)


def coco_class_ap(evaluation: COCOeval, *, k: int) -> tuple[float, float]:
    """(AP50, AP) of category index k from COCOeval's precision table (all areas, largest maxDets)."""
    precision = evaluation.eval["precision"][:, :, k, 0, -1]
    at50 = precision[0][precision[0] > -1]
    return float(at50.mean()), float(precision[precision > -1].mean())


# --- Instance matching against StarDist --------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_matching_agrees_with_stardist_at_every_threshold(seed: int) -> None:
    # Given one class of random objects and a scored prediction of them
    rng = np.random.default_rng(seed)
    gt_labels, _, pred = random_case(rng, num_classes=1)
    evaluator = InstanceEvaluator(class_names=["cell"])

    # When the evaluator sweeps the thresholds
    evaluator.add(gt_labels=gt_labels, gt_classes=np.minimum(np.arange(gt_labels.max() + 1), 1), pred=pred)
    sweep = evaluator.result().sweep

    # Then at each threshold it agrees with StarDist run on the objects scored at least that
    for point in sweep:
        # Scores compare as the float64 values written to predictions JSON, as the viewer compares them.
        kept = np.flatnonzero(pred.scores.astype(np.float64) >= point.threshold)
        shown = np.where(np.isin(pred.labels, kept[kept > 0]), pred.labels, 0)
        oracle = matching(gt_labels, shown, thresh=0.5)
        row = point.overall
        assert (row.tp, row.fp, row.fn) == (oracle.tp, oracle.fp, oracle.fn)
        assert row.predicted_objects == oracle.n_pred
        assert row.f1 == pytest.approx(oracle.f1)
        assert row.recall == pytest.approx(oracle.recall)
        assert row.panoptic_quality == pytest.approx(oracle.panoptic_quality, rel=1e-6)
        if oracle.tp:
            assert row.precision == pytest.approx(oracle.precision)
            assert row.mean_matched_iou == pytest.approx(oracle.mean_matched_score, rel=1e-6)
        else:
            assert row.mean_matched_iou is None
        assert point.per_class["cell"] == row


def test_ties_at_iou_one_half_are_matched_as_stardist_matches_them() -> None:
    # Given a 4-pixel object and two 2-pixel predictions, each at IoU exactly 0.5
    gt_labels = np.zeros((6, 6), dtype=np.int32)
    gt_labels[1, 1:5] = 1
    pred_labels = np.zeros((6, 6), dtype=np.int32)
    pred_labels[1, 1:3] = 1
    pred_labels[1, 3:5] = 2
    pred = Instances(
        labels=pred_labels, classes=np.array([0, 1, 1]), scores=np.array([0, 0.6, 0.8], np.float32)
    )
    evaluator = InstanceEvaluator(class_names=["cell"], thresholds=[0.5])

    # When evaluated
    evaluator.add(gt_labels=gt_labels, gt_classes=np.array([0, 1]), pred=pred)
    row = evaluator.result().sweep[0].overall

    # Then one match, as StarDist finds
    oracle = matching(gt_labels, pred_labels, thresh=0.5)
    assert (row.tp, row.fp, row.fn) == (oracle.tp, oracle.fp, oracle.fn) == (1, 1, 0)
    assert row.mean_matched_iou == pytest.approx(0.5)


def test_objects_match_only_within_their_class_and_overall_sums_the_classes() -> None:
    # Given two objects predicted perfectly, one of them with the wrong class
    gt_labels = np.zeros((20, 20), dtype=np.int32)
    gt_labels[2:8, 2:8] = 1
    gt_labels[10:18, 10:18] = 2
    pred = Instances(
        labels=gt_labels.copy(), classes=np.array([0, 1, 1]), scores=np.array([0, 0.9, 0.9], np.float32)
    )
    evaluator = InstanceEvaluator(class_names=["a", "b"], thresholds=[0.5])

    # When evaluated
    evaluator.add(gt_labels=gt_labels, gt_classes=np.array([0, 1, 2]), pred=pred)
    point = evaluator.result().sweep[0]

    # Then class a has a hit and a false positive, class b a miss, and overall sums them
    assert (point.per_class["a"].tp, point.per_class["a"].fp, point.per_class["a"].fn) == (1, 1, 0)
    assert (point.per_class["b"].tp, point.per_class["b"].fp, point.per_class["b"].fn) == (0, 0, 1)
    assert (point.overall.tp, point.overall.fp, point.overall.fn) == (1, 1, 1)
    assert point.per_class["b"].precision is None and point.per_class["b"].f1 == 0


def test_empty_cases_give_none_and_never_divide_by_zero() -> None:
    # Given an image with no objects at all, predicted empty
    evaluator = InstanceEvaluator(class_names=["a"])
    nothing = Instances(
        labels=np.zeros((8, 8), np.int32), classes=np.zeros(1, np.int64), scores=np.zeros(1, np.float32)
    )

    # When evaluated
    evaluator.add(gt_labels=np.zeros((8, 8), np.int32), gt_classes=np.zeros(1, np.int64), pred=nothing)
    result = evaluator.result()

    # Then counts are zero and every ratio is None
    row = result.sweep[0].overall
    assert (row.tp, row.fp, row.fn, row.predicted_objects) == (0, 0, 0, 0)
    assert row.precision is row.recall is row.f1 is row.panoptic_quality is row.mean_matched_iou is None
    assert result.ap_overall == AveragePrecision(ap50=None, ap=None)
    assert result.images == 1 and result.objects == 0


# --- COCO AP against pycocotools ---------------------------------------------------------------


def test_average_precision_agrees_with_pycocotools() -> None:
    # Given twelve images of two classes with scored predictions
    rng = np.random.default_rng(7)
    cases = [random_case(rng, num_classes=2) for _ in range(12)]
    evaluator = InstanceEvaluator(class_names=["a", "b"])

    # When evaluated here, by pycocotools and by faster-coco-eval (maxDets raised, 100 kept so that
    # stats[0] is filled)
    for gt_labels, gt_classes, pred in cases:
        evaluator.add(gt_labels=gt_labels, gt_classes=gt_classes, pred=pred)
    result = evaluator.result()
    oracle = pycocotools_eval(cases, max_dets=[1, 10, 100, 10_000])
    faster = faster_coco_eval_stats(cases, max_dets=[1, 10, 100, 10_000])

    # Then AP50 and AP[.5:.95] agree, per class and overall
    assert result.ap_overall is not None
    assert result.ap_overall.ap == pytest.approx(oracle.stats[0], abs=1e-12)
    assert result.ap_overall.ap50 == pytest.approx(oracle.stats[1], abs=1e-12)
    assert (result.ap_overall.ap, result.ap_overall.ap50) == pytest.approx(tuple(faster[:2]), abs=1e-9)
    for k, name in enumerate(["a", "b"]):
        ap50, ap = coco_class_ap(oracle, k=k)
        assert result.ap_per_class[name].ap50 == pytest.approx(ap50, abs=1e-12)
        assert result.ap_per_class[name].ap == pytest.approx(ap, abs=1e-12)
    assert result.ap_overall.ap50 is not None and 0.2 < result.ap_overall.ap50 < 1


def test_average_precision_of_a_dense_image_counts_every_detection() -> None:
    # Given one image with 150 objects, more than COCO's default 100 detections
    rng = np.random.default_rng(11)
    gt_labels = np.zeros((160, 160), dtype=np.int32)
    for index in range(150):
        row, col = divmod(index, 12)
        gt_labels[row * 12 + 1 : row * 12 + 10, col * 13 + 1 : col * 13 + 11] = index + 1
    pred_labels = perturbed(rng, gt_labels)
    count = int(pred_labels.max())
    scores = np.concatenate([[0.0], rng.permutation(np.linspace(0.05, 0.95, count))]).astype(np.float32)
    pred = Instances(labels=pred_labels, classes=np.minimum(np.arange(count + 1), 1), scores=scores)
    case = (gt_labels, np.minimum(np.arange(151), 1), pred)

    # When evaluated with the default maxDets and with 100 (as pycocotools truncates by default)
    full = InstanceEvaluator(class_names=["cell"])
    truncated = InstanceEvaluator(class_names=["cell"], max_detections=100)
    full.add(gt_labels=case[0], gt_classes=case[1], pred=pred)
    truncated.add(gt_labels=case[0], gt_classes=case[1], pred=pred)

    # Then each agrees with pycocotools at that maxDets, and truncation costs recall
    large = pycocotools_eval([case], max_dets=[1, 10, 100, 10_000])
    default = pycocotools_eval([case], max_dets=[1, 10, 100])
    every, first_100 = full.result().ap_per_class["cell"].ap50, truncated.result().ap_per_class["cell"].ap50
    assert every == pytest.approx(coco_class_ap(large, k=0)[0], abs=1e-12)
    assert first_100 == pytest.approx(coco_class_ap(default, k=0)[0], abs=1e-12)
    assert every is not None and first_100 is not None and first_100 < every


def test_average_precision_breaks_iou_ties_as_pycocotools_does() -> None:
    # Given a 4-pixel object, two half-size predictions at IoU exactly 0.5, and a second object
    gt_labels = np.zeros((8, 8), dtype=np.int32)
    gt_labels[1, 1:5] = 1
    gt_labels[4:6, 4:6] = 2
    pred_labels = np.zeros((8, 8), dtype=np.int32)
    pred_labels[1, 1:3] = 1
    pred_labels[1, 3:5] = 2
    pred_labels[4:6, 4:7] = 3
    pred = Instances(
        labels=pred_labels, classes=np.array([0, 1, 1, 1]), scores=np.array([0, 0.3, 0.9, 0.6], np.float32)
    )
    case = (gt_labels, np.array([0, 1, 1]), pred)
    evaluator = InstanceEvaluator(class_names=["cell"])

    # When evaluated
    evaluator.add(gt_labels=case[0], gt_classes=case[1], pred=pred)

    # Then AP agrees with pycocotools
    ap50, ap = coco_class_ap(pycocotools_eval([case], max_dets=[1, 10, 100]), k=0)
    found = evaluator.result().ap_per_class["cell"]
    assert (found.ap50, found.ap) == pytest.approx((ap50, ap), abs=1e-12)


# --- Sweep invariants --------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), num_classes=st.integers(1, 3))
def test_raising_the_threshold_never_adds_objects_or_matches(seed: int, num_classes: int) -> None:
    # Given a few random images
    rng = np.random.default_rng(seed)
    names = [f"c{k}" for k in range(num_classes)]
    evaluator = InstanceEvaluator(class_names=names)
    for _ in range(2):
        gt_labels, gt_classes, pred = random_case(rng, num_classes=num_classes)
        evaluator.add(gt_labels=gt_labels, gt_classes=gt_classes, pred=pred)

    # When the sweep is read
    sweep = evaluator.result().sweep

    # Then thresholds ascend and predicted objects and tp never grow with them
    assert [point.threshold for point in sweep] == sorted(THRESHOLDS)
    for lower, higher in itertools.pairwise(sweep):
        for name in [None, *names]:
            a = lower.overall if name is None else lower.per_class[name]
            b = higher.overall if name is None else higher.per_class[name]
            assert b.predicted_objects is not None and a.predicted_objects is not None
            assert b.predicted_objects <= a.predicted_objects
            assert b.tp is not None and a.tp is not None and b.tp <= a.tp
            assert a.fn is not None and b.fn is not None and a.tp + a.fn == b.tp + b.fn


# --- Semantic ----------------------------------------------------------------------------------


def numpy_semantic(gt: np.ndarray, pred: Instances, *, threshold: float, num_classes: int) -> dict[str, Any]:
    """Per-class IoU and Dice, their means, and pixel accuracy, computed directly on the maps."""
    shown = np.where(pred.scores.astype(np.float64)[pred.labels] >= threshold, pred.classes[pred.labels], 0)
    ious, dices = [], []
    for k in range(1, num_classes + 1):
        a, b = gt == k, shown == k
        union, total = np.count_nonzero(a | b), np.count_nonzero(a) + np.count_nonzero(b)
        ious.append(np.count_nonzero(a & b) / union if union else None)
        dices.append(2 * np.count_nonzero(a & b) / total if total else None)
    return {"iou": ious, "dice": dices, "accuracy": float(np.mean(shown == gt))}


def random_semantic(rng: np.random.Generator, *, num_classes: int) -> tuple[np.ndarray, Instances]:
    """(gt class map, predicted regions) on a 48 x 48 image."""

    def blobs() -> np.ndarray:
        field = ndi.gaussian_filter(rng.normal(size=(num_classes + 1, 48, 48)), (0, 3, 3))
        return np.argmax(field, axis=0)

    gt, shown = blobs(), blobs()
    labels = np.zeros(shown.shape, dtype=np.int32)
    classes = [0]
    for k in range(1, num_classes + 1):
        regions, count = ndi.label(shown == k)
        labels[regions > 0] = regions[regions > 0] + len(classes) - 1
        classes += [k] * count
    scores = np.concatenate([[0.0], rng.uniform(0, 1, len(classes) - 1)]).astype(np.float32)
    return gt, Instances(labels=labels, classes=np.array(classes, dtype=np.int64), scores=scores)


@pytest.mark.parametrize("seed", range(4))
def test_semantic_metrics_agree_with_numpy_at_every_threshold(seed: int) -> None:
    # Given two images with three classes and scored predicted regions
    rng = np.random.default_rng(seed)
    images = [random_semantic(rng, num_classes=3) for _ in range(2)]
    evaluator = SemanticEvaluator(class_names=["a", "b", "c"])

    # When evaluated
    for gt, pred in images:
        evaluator.add(gt_classes=gt, pred=pred)
    result = evaluator.result()

    # Then every threshold's figures equal a direct computation on the stacked maps
    gt_all = np.concatenate([gt for gt, _ in images], axis=1)
    offsets = np.cumsum([0] + [pred.count for _, pred in images])
    pred_all = Instances(
        labels=np.concatenate(
            [np.where(p.labels > 0, p.labels + o, 0) for (_, p), o in zip(images, offsets, strict=False)],
            axis=1,
        ),
        classes=np.concatenate([[0]] + [p.classes[1:] for _, p in images]),
        scores=np.concatenate([[0.0]] + [p.scores[1:] for _, p in images]).astype(np.float32),
    )
    for point in result.sweep:
        expected = numpy_semantic(gt_all, pred_all, threshold=point.threshold, num_classes=3)
        for k, name in enumerate(["a", "b", "c"]):
            assert point.per_class[name].iou == pytest.approx(expected["iou"][k])
            assert point.per_class[name].dice == pytest.approx(expected["dice"][k])
        defined = [value for value in expected["iou"] if value is not None]
        assert point.overall.iou == pytest.approx(np.mean(defined))
        assert point.overall.pixel_accuracy == pytest.approx(expected["accuracy"])
        shown = np.count_nonzero(pred_all.scores[1:].astype(np.float64) >= point.threshold)
        assert point.overall.predicted_objects == shown
    assert result.images == 2 and result.objects > 0 and result.ap_overall is None


def test_semantic_class_absent_everywhere_is_none() -> None:
    gt = np.zeros((10, 10), dtype=np.int64)
    gt[2:5, 2:5] = 1
    pred = Instances(
        labels=(gt > 0).astype(np.int32), classes=np.array([0, 1]), scores=np.array([0, 0.7], np.float32)
    )
    evaluator = SemanticEvaluator(class_names=["a", "b"], thresholds=[0.5, 0.9])

    evaluator.add(gt_classes=gt, pred=pred)
    low, high = evaluator.result().sweep

    assert low.per_class["b"].iou is None and low.per_class["b"].dice is None
    assert low.per_class["a"].iou == 1 and low.overall.iou == 1 and low.overall.pixel_accuracy == 1
    assert high.per_class["a"].iou == 0 and high.overall.pixel_accuracy == pytest.approx(91 / 100)


# --- Threshold suggestion ----------------------------------------------------------------------


def sweep_of(values: dict[float, float | None], *, key: str) -> SplitEvaluation:
    points = [
        ThresholdPoint(threshold=t, overall=Metrics(**{key: value}), per_class={"x": Metrics(**{key: value})})
        for t, value in values.items()
    ]
    return SplitEvaluation(images=1, sweep=points)


def test_suggestion_takes_the_best_f1() -> None:
    evaluation = sweep_of({0.3: 0.5, 0.4: 0.8, 0.5: 0.7, 0.6: 0.1}, key="f1")

    assert suggest_thresholds(evaluation, model_type="instance") == (0.4, {"x": 0.4})


def test_suggestion_breaks_ties_toward_the_middle() -> None:
    evaluation = sweep_of({0.2: 0.9, 0.35: 0.9, 0.45: 0.9, 0.55: 0.9, 0.8: 0.9, 0.9: 0.1}, key="iou")

    threshold, _ = suggest_thresholds(evaluation, model_type="semantic")

    assert threshold == 0.45


def test_suggestion_uses_iou_for_semantic_and_falls_back_to_the_middle() -> None:
    semantic = sweep_of({0.3: 0.2, 0.7: 0.6}, key="iou")
    nothing = sweep_of({0.3: None, 0.7: None}, key="f1")

    assert suggest_thresholds(semantic, model_type="semantic") == (0.7, {"x": 0.7})
    assert suggest_thresholds(nothing, model_type="instance") == (0.5, {"x": 0.5})
