"""Evaluation cost: InstanceEvaluator beside faster-coco-eval on the same predictions.

50 images of 384 x 384 pixels with about 125 ground-truth objects each, and a scored prediction of
each image (objects kept, shifted, shrunk, grown or missed, plus false ones), one class. The
evaluator is timed from label images to its result (matching sweep and AP). faster-coco-eval is
timed for its own `evaluate()` and `accumulate()` on the same objects given as RLE; building its
COCO objects (RLE encoding, indexing) is not counted. Each figure is the median of 5 runs; both
run single-threaded here (faster-coco-eval's C++ core uses one thread). AP from both is printed
to show they agree.
"""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster
from pycocotools import mask as mask_utils
from scipy import ndimage as ndi

from segpipe_trainer.metrics import InstanceEvaluator
from segpipe_trainer.postprocess import Instances

IMAGES = 50
OBJECTS = 125
SIZE = 384
REPEATS = 5
MAX_DETECTIONS = [1, 10, 100, 10_000]

Case = tuple[np.ndarray, np.ndarray, Instances]


def make_case(rng: np.random.Generator) -> Case:
    """(gt labels, gt classes, prediction) of one image."""
    gt = np.zeros((SIZE, SIZE), dtype=np.int32)
    rows, cols = np.ogrid[:SIZE, :SIZE]
    for index in range(1, OBJECTS + 1):
        row, col, radius = rng.uniform(0, SIZE), rng.uniform(0, SIZE), rng.uniform(5, 12)
        gt[(rows - row) ** 2 + (cols - col) ** 2 < radius**2] = index
    gt = _sequential(gt)
    pred = np.zeros_like(gt)
    for label, box in enumerate(ndi.find_objects(gt), start=1):
        if box is None or rng.random() < 0.1:
            continue
        grown = tuple(slice(max(part.start - 3, 0), part.stop + 3) for part in box)
        mask = _perturb(rng, gt[grown] == label)
        pred[grown][mask] = label
    for _ in range(10):
        row, col = rng.integers(0, SIZE - 12, 2)
        pred[row : row + 10, col : col + 10] = pred.max() + 1
    pred = _sequential(pred)
    count = int(pred.max())
    scores = np.concatenate([[0.0], rng.uniform(0.05, 1.0, count)]).astype(np.float32)
    classes = np.minimum(np.arange(count + 1), 1).astype(np.int64)
    return gt, np.minimum(np.arange(gt.max() + 1), 1), Instances(labels=pred, classes=classes, scores=scores)


def _perturb(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    change = rng.integers(0, 4)
    if change == 1:
        return np.roll(mask, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2)))
    if change == 2:
        return ndi.binary_erosion(mask)
    if change == 3:
        return ndi.binary_dilation(mask)
    return mask


def _sequential(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)


def coco_records(cases: list[Case]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """COCO ground truth and detections (RLE) of the cases."""
    dataset: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cell"}]}
    detections: list[dict[str, Any]] = []
    for image_id, (gt, _, pred) in enumerate(cases, start=1):
        dataset["images"].append({"id": image_id, "height": SIZE, "width": SIZE})
        for _label, rle, area in _objects(gt):
            dataset["annotations"].append(
                {
                    "id": len(dataset["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": area,
                    "bbox": list(mask_utils.toBbox(rle)),
                    "iscrowd": 0,
                }
            )
        for label, rle, _ in _objects(pred.labels):
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": rle,
                    "score": float(pred.scores[label]),
                }
            )
    return dataset, detections


def _objects(labels: np.ndarray) -> list[tuple[int, dict[str, Any], float]]:
    out = []
    for label, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        mask = np.zeros(labels.shape, dtype=np.uint8, order="F")
        mask[box] = labels[box] == label
        rle = mask_utils.encode(mask)
        rle["counts"] = rle["counts"].decode("ascii")
        out.append((label, rle, float(mask.sum())))
    return out


def run_evaluator(cases: list[Case]) -> tuple[float | None, float | None]:
    evaluator = InstanceEvaluator(class_names=["cell"])
    for gt, gt_classes, pred in cases:
        evaluator.add(gt_labels=gt, gt_classes=gt_classes, pred=pred)
    result = evaluator.result()
    assert result.ap_overall is not None
    return result.ap_overall.ap50, result.ap_overall.ap


def faster_coco_eval(
    dataset: dict[str, Any], detections: list[dict[str, Any]]
) -> Callable[[], tuple[float, float]]:
    """A function running faster-coco-eval's evaluate() and accumulate() on prepared COCO objects."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = copy.deepcopy(dataset)
        truth.createIndex()
        found = truth.loadRes(copy.deepcopy(detections))

    def run() -> tuple[float, float]:
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = COCOeval_faster(truth, found, "segm")
            evaluation.params.maxDets = MAX_DETECTIONS
            evaluation.evaluate()
            evaluation.accumulate()
        precision = evaluation.eval["precision"][:, :, 0, 0, -1]
        return float(precision[0].mean()), float(precision.mean())

    return run


def median_s(run: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    cases = [make_case(rng) for _ in range(IMAGES)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset, detections = coco_records(cases)
    fce = faster_coco_eval(dataset, detections)
    ours_ap, theirs_ap = run_evaluator(cases), fce()
    ours_s, theirs_s = median_s(lambda: run_evaluator(cases)), median_s(fce)
    print(
        f"Instance evaluation, {IMAGES} images of {SIZE} x {SIZE}, {len(dataset['annotations'])} objects, "
        f"{len(detections)} detections; median of {REPEATS} runs"
    )
    print(f"{'evaluator':<48} {'seconds':>8} {'AP50':>7} {'AP':>7}")
    for name, seconds, (ap50, ap) in (
        ("InstanceEvaluator (label images -> sweep + AP)", ours_s, ours_ap),
        ("faster-coco-eval evaluate + accumulate (RLE)", theirs_s, theirs_ap),
    ):
        print(f"{name:<48} {seconds:8.3f} {ap50 or float('nan'):7.4f} {ap or float('nan'):7.4f}")


if __name__ == "__main__":
    main()
