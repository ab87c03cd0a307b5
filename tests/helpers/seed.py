"""Seed a running local stack with model versions through the real ingestion path.

A completed version is made the way a finished SageMaker job makes one: the version item is
written with the DynamoDB registry (status `queued`, with a job name), the job's `output.tar.gz`
(evaluation, predictions, previews, built from the trainer contract) is uploaded where SageMaker
puts it, and a `SageMaker Training Job State Change` event goes to EventBridge, whose rule brings
it to the real job-state handler, which ingests the outputs. The seeder waits until the API says
the version is completed.

The synthetic images look like fluorescence microscopy: a dark background with bright blobs where
the objects are. Predicted objects are wobbly polygons in image pixels, scored over 0.05..1, of
several classes; a predicted object is a true positive with a probability that grows with its
score, and a few ground-truth objects are missed. The evaluation's sweep is computed from exactly
these objects, so the statistics table and the viewer agree.

`local_stack_process` runs a stack in a child process, so that the stack's environment and the
handler modules it imports never leak into the test process.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from segpipe.dal.dynamodb import DynamoModelRegistry
from segpipe.models import keys
from segpipe.models.common import SplitName, VersionStatus
from segpipe.models.report import (
    ClassCounts,
    Estimate,
    IgnoredCounts,
    ImageStats,
    Issue,
    TrainingDetails,
)
from segpipe.models.request import FractionTestSet, NoTestSet, TrainingRequest
from segpipe.models.trainer_io import (
    THRESHOLDS,
    AveragePrecision,
    Bootstrap,
    Evaluation,
    ImagePredictions,
    Interval,
    Metrics,
    Progress,
    Selection,
    SplitEvaluation,
    ThresholdIntervals,
    ThresholdPoint,
    prediction_stem,
)
from segpipe.models.version import ModelVersion
from segpipe_local.aws import client
from segpipe_local.config import LocalConfig
from segpipe_local.events import job_state_change_event

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
#: AP is averaged over these IoU thresholds (COCO's 0.5:0.95).
VERTICES = 18
AP_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


# --- what to seed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedSpec:
    """A synthetic completed instance-segmentation version."""

    project: str = "review"
    label: str = "Synthetic nuclei and cells"
    images: int = 16
    objects: int = 400
    classes: tuple[str, ...] = ("nucleus", "cell")
    test_fraction: float = 0.25
    width: int = 1024
    height: int = 768
    preview_scale: float = 0.5  # previews may be smaller than the image, as the trainer writes them
    seed: int = 0
    #: As newer trainers write it: thresholds chosen on the training images (a `Selection` of method
    #: `none`, the test set only measures) and bootstrap intervals of the test metrics over this many
    #: draws. 0: as older trainers wrote it (tuned on the test set, no selection, no intervals).
    bootstrap_draws: int = 0


@dataclass(frozen=True)
class SeededVersion:
    project: str
    version: int
    job_name: str
    classes: tuple[str, ...]
    images: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)


@dataclass
class _Image:
    """One synthetic image: its predictions, which of them are true, and what the model missed."""

    predictions: ImagePredictions
    truth: np.ndarray  # N (bool): predicted object i matches a ground-truth object
    ious: np.ndarray  # N: IoU of the match (0 when unmatched)
    missed: np.ndarray  # C: ground-truth objects per class without any prediction
    blobs: np.ndarray  # B x V x 2: rings drawn in the preview (the N predicted ones first), image pixels
    brightness: np.ndarray  # B: grey level of each blob
    preview: bytes = b""


# --- shapes and previews -------------------------------------------------------------------------


def _rings(*, rng: np.random.Generator, centres: np.ndarray, radii: np.ndarray, spec: SeedSpec) -> np.ndarray:
    """N x V x 2: wobbly tilted ellipses around N centres (N x 2), in image pixels."""
    n = len(radii)
    theta = np.linspace(0, 2 * np.pi, VERTICES, endpoint=False)[None, :]
    phases = rng.uniform(0, 2 * np.pi, size=(n, 2))
    wobble = 1 + 0.10 * np.sin(2 * theta + phases[:, :1]) + 0.06 * np.sin(3 * theta + phases[:, 1:])
    aspect, tilt = rng.uniform(0.7, 1.0, size=(n, 1)), rng.uniform(0, np.pi, size=(n, 1))
    x = radii[:, None] * wobble * np.cos(theta)
    y = radii[:, None] * aspect * wobble * np.sin(theta)
    xs = np.clip(centres[:, :1] + x * np.cos(tilt) - y * np.sin(tilt), 0, spec.width)
    ys = np.clip(centres[:, 1:] + x * np.sin(tilt) + y * np.cos(tilt), 0, spec.height)
    return np.round(np.stack([xs, ys], axis=-1), 1)


def _objects(
    *, rings: np.ndarray, labels: np.ndarray, scores: np.ndarray, classes: tuple[str, ...]
) -> list[dict[str, Any]]:
    """PredictedObject fields for N rings (N x V x 2): polygon, box and area (shoelace)."""
    xs, ys = rings[..., 0], rings[..., 1]
    areas = 0.5 * np.abs(np.sum(xs * np.roll(ys, 1, axis=1) - ys * np.roll(xs, 1, axis=1), axis=1))
    low, high = rings.min(axis=1), rings.max(axis=1)
    boxes = np.round(np.concatenate([low, high - low], axis=1), 1)
    return [
        {"category": classes[label], "score": score, "segmentation": [ring], "bbox": box, "area": area}
        for label, score, ring, box, area in zip(
            labels.tolist(),
            scores.tolist(),
            rings.reshape(len(rings), -1).tolist(),
            boxes.tolist(),
            np.round(areas, 1).tolist(),
            strict=True,
        )
    ]


def _background(width: int, height: int) -> np.ndarray:
    """H x W: a dim, uneven illumination field."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return 16 + 10 * np.exp(-(((xx - width * 0.4) / width) ** 2 + ((yy - height * 0.6) / height) ** 2) * 3)


def _preview_png(*, image: _Image, scale: float, background: np.ndarray) -> bytes:
    """An 8-bit grey PNG of H x W = `background`'s shape: the blobs drawn with soft edges.

    No pixel noise: noise makes PNG encoding several times slower and seeding must stay fast."""
    height, width = background.shape
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for ring, brightness in zip(image.blobs * scale, image.brightness.tolist(), strict=True):
        draw.polygon(ring.ravel().tolist(), fill=brightness)
    soft = np.asarray(canvas.filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float32)
    buffer = io.BytesIO()
    pixels = np.clip(background + soft, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# --- synthetic predictions -----------------------------------------------------------------------


def _object_counts(*, images: int, objects: int, rng: np.random.Generator) -> np.ndarray:
    """Objects per image, summing to `objects`, at least one per image when there are enough."""
    floor = 1 if objects >= images else 0
    return floor + rng.multinomial(objects - floor * images, [1 / images] * images)


def _synthetic_image(
    *, index: int, split: SplitName, count: int, spec: SeedSpec, rng: np.random.Generator
) -> _Image:
    classes = spec.classes
    weights = np.array([1.0 / (k + 1) for k in range(len(classes))])
    labels = rng.choice(len(classes), size=count, p=weights / weights.sum())
    scores = np.round(rng.uniform(0.05, 1.0, size=count), 3)
    truth = rng.random(count) < 1 / (1 + np.exp(-12 * (scores - 0.4)))
    ious = np.where(truth, np.clip(0.55 + 0.42 * scores * rng.uniform(0.75, 1.0, size=count), 0.5, 0.97), 0.0)
    missed = np.bincount(rng.choice(len(classes), size=rng.poisson(0.12 * count)), minlength=len(classes))
    blob_labels = np.concatenate([labels, np.repeat(np.arange(len(classes)), missed)])
    unit = min(spec.width, spec.height) / 60
    rings = _rings(
        rng=rng,
        centres=rng.uniform(0.03, 0.97, size=(len(blob_labels), 2)) * (spec.width, spec.height),
        radii=unit * (1 + 0.8 * blob_labels) * rng.uniform(0.7, 1.2, size=len(blob_labels)),
        spec=spec,
    )
    brightness = np.where(
        np.concatenate([truth, np.ones(missed.sum(), dtype=bool)]),
        rng.integers(140, 230, size=len(blob_labels)),
        rng.integers(30, 60, size=len(blob_labels)),
    )
    file_name = f"slide_{index % 4 + 1:02d}/tile {index:04d}.png"
    stem = prediction_stem(file_name)
    predictions = ImagePredictions.model_validate(
        {
            "file_name": file_name,
            "width": spec.width,
            "height": spec.height,
            "split": split,
            "preview": f"{stem}.png",
            "objects": _objects(rings=rings[:count], labels=labels, scores=scores, classes=classes),
        }
    )
    return _Image(
        predictions=predictions, truth=truth, ious=ious, missed=missed, blobs=rings, brightness=brightness
    )


def synthetic_images(*, spec: SeedSpec) -> list[_Image]:
    """Every image of the version with its preview, test images first."""
    rng = np.random.default_rng(spec.seed)
    n_test = (
        min(spec.images - 1, max(1, round(spec.images * spec.test_fraction))) if spec.test_fraction > 0 else 0
    )
    counts = _object_counts(images=spec.images, objects=spec.objects, rng=rng)
    images = [
        _synthetic_image(
            index=index,
            split="test" if index < n_test else "train",
            count=int(counts[index]),
            spec=spec,
            rng=rng,
        )
        for index in range(spec.images)
    ]
    background = _background(
        max(1, round(spec.width * spec.preview_scale)), max(1, round(spec.height * spec.preview_scale))
    )
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # Pillow encodes without the GIL
        previews = pool.map(
            lambda image: _preview_png(image=image, scale=spec.preview_scale, background=background), images
        )
        for image, preview in zip(images, previews, strict=True):
            image.preview = preview
    return images


# --- evaluation from the synthetic objects -------------------------------------------------------


@dataclass(frozen=True)
class _Pool:
    """All predicted objects of one split (or one class of it), N of them."""

    scores: np.ndarray  # N
    truth: np.ndarray  # N (bool)
    ious: np.ndarray  # N
    ground_truth: int


def _metrics(pool: _Pool, threshold: float) -> Metrics:
    shown = pool.scores >= threshold - 1e-9
    predicted, tp = int(shown.sum()), int((shown & pool.truth).sum())
    fp, fn = predicted - tp, pool.ground_truth - tp
    iou_sum = float(pool.ious[shown & pool.truth].sum())
    return Metrics(
        tp=tp,
        fp=fp,
        fn=fn,
        precision=tp / predicted if predicted else None,
        recall=tp / pool.ground_truth if pool.ground_truth else None,
        f1=2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        panoptic_quality=iou_sum / (tp + fp / 2 + fn / 2) if tp + fp + fn else None,
        mean_matched_iou=iou_sum / tp if tp else None,
        predicted_objects=predicted,
    )


def _average_precision(pool: _Pool) -> AveragePrecision:
    """All-point interpolated AP at IoU 0.5, and averaged over IoU 0.5:0.95."""
    if not pool.ground_truth:
        return AveragePrecision()
    order = np.argsort(-pool.scores, kind="stable")

    def at(iou: float) -> float:
        hits = (pool.truth & (pool.ious >= iou))[order]
        tp = np.cumsum(hits)
        precision = tp / np.arange(1, len(hits) + 1)
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        return float(envelope[hits].sum() / pool.ground_truth) if len(hits) else 0.0

    return AveragePrecision(ap50=round(at(0.5), 4), ap=round(float(np.mean([at(u) for u in AP_IOUS])), 4))


def _pools(images: list[_Image], classes: tuple[str, ...]) -> dict[str | None, _Pool]:
    """The split's pool (key None) and one per class."""
    scores = np.concatenate([[o.score for o in image.predictions.objects] for image in images])
    labels = np.concatenate(
        [[classes.index(o.category) for o in image.predictions.objects] for image in images]
    )
    truth = np.concatenate([image.truth for image in images]).astype(bool)
    ious = np.concatenate([image.ious for image in images])
    missed = np.sum([image.missed for image in images], axis=0)
    pools: dict[str | None, _Pool] = {
        None: _Pool(scores, truth, ious, int(truth.sum() + missed.sum())),
    }
    for k, name in enumerate(classes):
        mine = labels == k
        pools[name] = _Pool(scores[mine], truth[mine], ious[mine], int(truth[mine].sum() + missed[k]))
    return pools


def _split_evaluation(images: list[_Image], classes: tuple[str, ...]) -> SplitEvaluation:
    pools = _pools(images, classes)
    sweep = [
        ThresholdPoint(
            threshold=t,
            overall=_metrics(pools[None], t),
            per_class={name: _metrics(pools[name], t) for name in classes},
        )
        for t in THRESHOLDS
    ]
    per_class = {name: _average_precision(pools[name]) for name in classes}
    ap50 = [ap.ap50 for ap in per_class.values() if ap.ap50 is not None]
    ap = [ap.ap for ap in per_class.values() if ap.ap is not None]
    return SplitEvaluation(
        images=len(images),
        objects=pools[None].ground_truth,
        sweep=sweep,
        ap_overall=AveragePrecision(
            ap50=round(float(np.mean(ap50)), 4) if ap50 else None,
            ap=round(float(np.mean(ap)), 4) if ap else None,
        ),
        ap_per_class=per_class,
    )


def _best_threshold(sweep: list[ThresholdPoint], name: str | None) -> float:
    def f1(point: ThresholdPoint) -> float:
        metrics = point.overall if name is None else point.per_class[name]
        return metrics.f1 or 0.0

    return max(sweep, key=f1).threshold


# --- bootstrap intervals, directly from the seeded objects ----------------------------------------

#: The metrics given an interval at every threshold (the plot's bands).
BAND_METRICS = ("precision", "recall", "f1")


@dataclass(frozen=True)
class _Counts:
    """Matching counts per image (N) and threshold (T), summed over a draw's images by weights."""

    tp: np.ndarray  # N x T
    predicted: np.ndarray  # N x T
    iou: np.ndarray  # N x T: summed IoU of the matches
    ground_truth: np.ndarray  # N

    @classmethod
    def of(cls, images: list[_Image]) -> _Counts:
        thresholds = np.asarray(THRESHOLDS)[None, :]
        rows = []
        for image in images:
            scores = np.asarray([o.score for o in image.predictions.objects])[:, None]
            shown = scores >= thresholds - 1e-9  # objects x T
            matched = shown & image.truth[:, None]
            rows.append((matched.sum(0), shown.sum(0), (matched * image.ious[:, None]).sum(0)))
        tp, predicted, iou = (np.stack(column).astype(float) for column in zip(*rows, strict=True))
        ground_truth = np.asarray([image.truth.sum() + image.missed.sum() for image in images], dtype=float)
        return cls(tp=tp, predicted=predicted, iou=iou, ground_truth=ground_truth)

    def metrics(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """D x T per metric for D draws of image weights (D x N), micro-averaged; NaN where undefined."""
        tp, predicted, iou = weights @ self.tp, weights @ self.predicted, weights @ self.iou
        truth = (weights @ self.ground_truth)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            return {
                "precision": np.where(predicted > 0, tp / predicted, np.nan),
                "recall": np.where(truth > 0, tp / truth, np.nan),
                "f1": np.where(predicted + truth > 0, 2 * tp / (predicted + truth), np.nan),
                "panoptic_quality": np.where(predicted + truth > 0, 2 * iou / (predicted + truth), np.nan),
            }


def _interval(estimate: float | None, values: np.ndarray, confidence: float) -> Interval:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return Interval(estimate=estimate)
    low, high = np.percentile(finite, [50 * (1 - confidence), 50 * (1 + confidence)])
    return Interval(estimate=estimate, low=round(float(low), 4), high=round(float(high), 4))


def _mean_ap(images: list[_Image], classes: tuple[str, ...]) -> tuple[float, float]:
    """AP50 and AP of pooled detections, averaged over the classes that have ground truth (NaN: none)."""
    pools = _pools(images, classes)
    per_class = [_average_precision(pools[name]) for name in classes]
    ap50 = [ap.ap50 for ap in per_class if ap.ap50 is not None]
    ap = [ap.ap for ap in per_class if ap.ap is not None]
    return (float(np.mean(ap50)) if ap50 else np.nan, float(np.mean(ap)) if ap else np.nan)


def bootstrap_of(
    *,
    images: list[_Image],
    result: SplitEvaluation,
    classes: tuple[str, ...],
    suggested: float,
    draws: int,
    seed: int = 0,
    confidence: float = 0.95,
) -> Bootstrap:
    """Percentile intervals of one split's figures: each draw takes the split's N images with
    replacement (`default_rng(seed).integers(0, N, size=(draws, N))`) and recomputes the figures from
    those images' counts, exactly as `_split_evaluation` computes them on the whole split."""
    drawn = np.random.default_rng(seed).integers(0, len(images), size=(draws, len(images)))
    weights = np.stack([np.bincount(row, minlength=len(images)) for row in drawn]).astype(float)
    values = _Counts.of(images).metrics(weights)
    column = THRESHOLDS.index(suggested)

    def at(point: ThresholdPoint, names: tuple[str, ...], index: int) -> dict[str, Interval]:
        estimates = point.overall.model_dump()
        return {name: _interval(estimates[name], values[name][:, index], confidence) for name in names}

    headline = at(result.sweep[column], (*BAND_METRICS, "panoptic_quality"), column)
    ap_draws = np.asarray([_mean_ap([images[j] for j in row], classes) for row in drawn])
    ap = result.ap_overall or AveragePrecision()
    headline["ap50"] = _interval(ap.ap50, ap_draws[:, 0], confidence)
    headline["ap"] = _interval(ap.ap, ap_draws[:, 1], confidence)
    return Bootstrap(
        split=images[0].predictions.split or "train",
        draws=draws,
        seed=seed,
        confidence=confidence,
        images=len(images),
        headline=ThresholdIntervals(threshold=suggested, metrics=headline),
        sweep=[
            ThresholdIntervals(threshold=point.threshold, metrics=at(point, BAND_METRICS, index))
            for index, point in enumerate(result.sweep)
        ],
    )


def _selection_on_train(train: list[_Image]) -> Selection:
    return Selection(
        method="none",
        epochs_from="config",
        final_images=len(train),
        final_epochs=20,
        threshold_from="train",
        summary=f"Nothing was held out: 20 configured epochs on all {len(train)} training images, and the "
        "thresholds chosen on them; the test set only measures.",
    )


def evaluation_of(*, images: list[_Image], classes: tuple[str, ...], bootstrap_draws: int = 0) -> Evaluation:
    """The evaluation as older trainers wrote it (thresholds tuned on the test set), or with
    `bootstrap_draws` as newer ones do: thresholds chosen on the training images, and intervals."""
    test = [image for image in images if image.predictions.split == "test"]
    train = [image for image in images if image.predictions.split == "train"]
    train_result = _split_evaluation(train, classes)
    test_result = _split_evaluation(test, classes) if test else None
    newer = bootstrap_draws > 0
    tuned = train_result if newer else test_result or train_result
    suggested = _best_threshold(tuned.sweep, None)
    intervals = (
        bootstrap_of(
            images=test, result=test_result, classes=classes, suggested=suggested, draws=bootstrap_draws
        )
        if newer and test_result
        else None
    )
    return Evaluation(
        model_type="instance",
        classes=list(classes),
        suggested_threshold=suggested,
        suggested_thresholds={name: _best_threshold(tuned.sweep, name) for name in classes},
        suggested_from="test" if test_result and not newer else "train",
        train=train_result,
        test=test_result,
        epochs_trained=20,
        best_epoch=17,
        selection=_selection_on_train(train) if newer else None,
        intervals=intervals,
    )


def output_archive(*, evaluation: Evaluation, images: list[_Image]) -> bytes:
    """The bytes of the job's output.tar.gz, laid out as the trainer writes /opt/ml/output/data."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            archive.addfile(info, io.BytesIO(data))

        add("evaluation.json", evaluation.model_dump_json(exclude_none=True).encode())
        add("config.json", json.dumps({"preset": "tiny", "epochs": 20, "tile_size": 128}).encode())
        for image in images:
            item = image.predictions
            stem = (item.preview or "image.png").removesuffix(".png")
            add(f"predictions/{item.split}/{stem}.json", item.model_dump_json(exclude_none=True).encode())
            add(f"previews/{stem}.png", image.preview)
    return buffer.getvalue()


# --- the version item ----------------------------------------------------------------------------


def _class_counts(images: list[_Image], classes: tuple[str, ...]) -> list[ClassCounts]:
    rows = []
    for k, name in enumerate(classes):
        per_split = {"train": 0, "test": 0}
        holding = 0
        for image in images:
            labels = [o.category == name for o in image.predictions.objects]
            count = int(np.sum(image.truth[np.asarray(labels, dtype=bool)])) + int(image.missed[k])
            per_split[image.predictions.split or "train"] += count
            holding += count > 0
        rows.append(
            ClassCounts(
                name=name,
                annotations=per_split["train"] + per_split["test"],
                train=per_split["train"],
                test=per_split["test"],
                images=holding,
                median_area=None,
            )
        )
    return rows


def training_details(*, images: list[_Image], spec: SeedSpec) -> TrainingDetails:
    counts = _class_counts(images, spec.classes)
    test_images = sum(image.predictions.split == "test" for image in images)
    unfinished = max(1, spec.images // 10)
    total = sum(row.annotations for row in counts)
    return TrainingDetails(
        dataset="synthetic",
        model_type="instance",
        total_images=spec.images + unfinished,
        completed_images=spec.images,
        included_images=spec.images,
        train_images=spec.images - test_images,
        test_images=test_images,
        total_annotations=total + 3 * unfinished,
        included_annotations=total,
        train_annotations=sum(row.train for row in counts),
        test_annotations=sum(row.test for row in counts),
        average_annotations_per_image=round(total / max(spec.images, 1), 2),
        classes=counts,
        ignored=IgnoredCounts(unfinished_images=unfinished, annotations_on_unfinished_images=3 * unfinished),
        images=ImageStats(
            min_width=spec.width,
            max_width=spec.width,
            min_height=spec.height,
            max_height=spec.height,
            distinct_sizes=1,
            megapixels=round(spec.images * spec.width * spec.height / 1e6, 2),
            formats={"png": spec.images},
            channels=[1],
            bit_depths=[8],
            sampled=min(spec.images, 32),
        ),
        tile_size=128,
        epochs=20,
        preset="tiny",
        estimate=Estimate(
            instance_type="ml.g5.xlarge",
            spot=True,
            hours=0.4,
            cost_usd=0.19,
            basis="synthetic seed",
            hourly_usd=0.47,
        ),
    )


def _warnings(details: TrainingDetails) -> list[Issue]:
    if 0 < details.test_images < 10:
        return [
            Issue(
                code="small_test_set",
                message=(
                    f"Only {details.test_images} test image{'s' if details.test_images > 1 else ''}: "
                    "the statistics will be noisy. "
                    "Annotate more images or raise the test fraction."
                ),
                context={"test_images": details.test_images},
            )
        ]
    return []


def _job_name(project: str, version: int) -> str:
    safe = "".join(c if c.isalnum() else "-" for c in project)[:30].strip("-") or "p"
    return f"segpipe-{safe}-v{version}-{uuid.uuid4().hex[:8]}"


def _create_version(
    *,
    config: LocalConfig,
    project: str,
    label: str,
    classes: tuple[str, ...],
    details: TrainingDetails,
    warnings: list[Issue],
    test_fraction: float,
) -> tuple[int, str]:
    """Claim a version number and write the queued version item, as submission does."""
    registry = DynamoModelRegistry(client("dynamodb", config), config.table)
    now = datetime.now(UTC)
    number = registry.claim(project, f"seed:{uuid.uuid4()}", "seed", now).version
    job_name = _job_name(project, number)
    test_set = (
        FractionTestSet(strategy="fraction", fraction=test_fraction, seed=0)
        if test_fraction > 0
        else NoTestSet(strategy="none")
    )
    request = TrainingRequest(
        label=label, dataset="synthetic", model_type="instance", classes=list(classes), test_set=test_set
    )
    registry.create_version(
        ModelVersion(
            project=project,
            version=number,
            label=label,
            model_type="instance",
            classes=list(classes),
            dataset="synthetic",
            request=request,
            details=details,
            warnings=warnings,
            status=VersionStatus.QUEUED,
            job_name=job_name,
            created_at=now,
            updated_at=now,
        )
    )
    return number, job_name


# --- events and waiting --------------------------------------------------------------------------


def _send_job_event(
    *, config: LocalConfig, project: str, version: int, job_name: str, status: str, **extra: Any
) -> None:
    """Put a `SageMaker Training Job State Change` on EventBridge, as the job runner does."""
    now = datetime.now(UTC)
    description = {
        "TrainingJobName": job_name,
        "TrainingJobStatus": status,
        "SecondaryStatus": status,
        "LastModifiedTime": now,
        "OutputDataConfig": {"S3OutputPath": f"s3://{config.bucket}/{keys.output_prefix(project, version)}"},
        "Tags": {"segpipe:stack": config.stack, "segpipe:project": project, "segpipe:version": str(version)},
        **extra,
    }
    event = job_state_change_event(description, region=config.region)
    answer = client("events", config).put_events(
        Entries=[
            {
                "Source": event["source"],
                "DetailType": event["detail-type"],
                "Detail": json.dumps(event["detail"]),
                "Resources": event["resources"],
            }
        ]
    )
    if answer.get("FailedEntryCount"):
        raise RuntimeError(f"EventBridge refused the job event: {answer}")


def api_get(config: LocalConfig, path: str, *, timeout_s: float = 10.0) -> Any:
    """GET a JSON resource from the stack's HTTP API."""
    with urllib.request.urlopen(config.api_url + path, timeout=timeout_s) as response:
        return json.loads(response.read())


def wait_for_status(
    *, config: LocalConfig, project: str, version: int, statuses: set[str], timeout_s: float = 120.0
) -> dict[str, Any]:
    """Poll the API until the version reaches one of `statuses`; returns the ModelVersion body."""
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = api_get(config, f"/projects/{project}/models/{version}")
        if body["status"] in statuses:
            return body
        time.sleep(0.2)
    raise TimeoutError(f"version {version} stayed {body.get('status')!r}, waiting for {sorted(statuses)}")


# --- public seeders ------------------------------------------------------------------------------


def seed_completed_version(
    *, config: LocalConfig, spec: SeedSpec | None = None, timeout_s: float = 180.0
) -> SeededVersion:
    """A completed version with `spec.images` images and `spec.objects` predicted objects."""
    spec = spec or SeedSpec()
    started = time.monotonic()
    images = synthetic_images(spec=spec)
    details = training_details(images=images, spec=spec)
    result = evaluation_of(images=images, classes=spec.classes, bootstrap_draws=spec.bootstrap_draws)
    archive = output_archive(evaluation=result, images=images)
    built = time.monotonic()
    version, job_name = _create_version(
        config=config,
        project=spec.project,
        label=spec.label,
        classes=spec.classes,
        details=details,
        warnings=_warnings(details),
        test_fraction=spec.test_fraction,
    )
    key = keys.job_output_key(spec.project, version, job_name, "output.tar.gz")
    client("s3", config).put_object(Bucket=config.bucket, Key=key, Body=archive)
    model_key = keys.job_output_key(spec.project, version, job_name, "model.tar.gz")
    ended = datetime.now(UTC)
    _send_job_event(
        config=config,
        project=spec.project,
        version=version,
        job_name=job_name,
        status="Completed",
        TrainingStartTime=ended - timedelta(minutes=23),
        TrainingEndTime=ended,
        ModelArtifacts={"S3ModelArtifacts": f"s3://{config.bucket}/{model_key}"},
    )
    body = wait_for_status(
        config=config,
        project=spec.project,
        version=version,
        statuses={"completed", "failed"},
        timeout_s=timeout_s,
    )
    if body["status"] != "completed":
        raise RuntimeError(f"seeding failed: {body.get('failure_reason')}")
    logger.info(
        "seeded %s v%d: built in %.1f s, ingested in %.1f s",
        spec.project,
        version,
        built - started,
        time.monotonic() - built,
    )
    splits: dict[str, list[_Image]] = {"train": [], "test": []}
    for image in images:
        splits[image.predictions.split or "train"].append(image)
    return SeededVersion(
        project=spec.project,
        version=version,
        job_name=job_name,
        classes=spec.classes,
        images={name: len(members) for name, members in splits.items()},
        objects={name: sum(len(i.predictions.objects) for i in members) for name, members in splits.items()},
    )


def seed_unfinished_version(
    *,
    config: LocalConfig,
    project: str = "review",
    label: str = "Still training",
    status: Literal["queued", "training", "failed"] = "training",
    progress: Progress | None = None,
    failure_reason: str = "AlgorithmError: CUDA out of memory at tile size 1024; lower the tile size.",
    timeout_s: float = 60.0,
) -> int:
    """A version that is queued, training (with `progress` synced to S3) or failed; returns its number."""
    spec = SeedSpec(project=project, images=4, objects=8)
    details = training_details(images=synthetic_images(spec=spec), spec=spec)
    version, job_name = _create_version(
        config=config,
        project=project,
        label=label,
        classes=spec.classes,
        details=details,
        warnings=_warnings(details),
        test_fraction=spec.test_fraction,
    )
    if status == "queued":
        return version
    if status == "training":
        progress = progress or Progress(epoch=7, epochs=20, train_loss=0.412, val_score=0.71)
        key = keys.progress_key(project, version)
        client("s3", config).put_object(
            Bucket=config.bucket, Key=key, Body=progress.model_dump_json().encode()
        )
        _send_job_event(
            config=config, project=project, version=version, job_name=job_name, status="InProgress",
            TrainingStartTime=datetime.now(UTC),
        )  # fmt: skip
    else:
        _send_job_event(
            config=config, project=project, version=version, job_name=job_name, status="Failed",
            FailureReason=failure_reason, TrainingEndTime=datetime.now(UTC),
        )  # fmt: skip
    wait_for_status(config=config, project=project, version=version, statuses={status}, timeout_s=timeout_s)
    return version


# --- a local stack in a child process ------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def local_config(*, data_dir: Path) -> LocalConfig:
    """A stack configuration on free ports, saving its state rarely (seeding signals saves itself)."""
    return LocalConfig(
        data_dir=data_dir,
        api_port=free_port(),
        aws_port=free_port(),
        sagemaker_port=free_port(),
        snapshot_seconds=3600.0,
    )


def serve_stack() -> None:
    """Child-process entry: run the stack given as JSON in argv[1] until stdin closes."""
    from segpipe_local.stack import LocalStack

    config = LocalConfig.model_validate_json(sys.argv[1])
    with LocalStack(config):
        sys.stdin.read()


def _wait_until_serving(
    config: LocalConfig, process: subprocess.Popen[bytes], timeout_s: float, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the local stack exited with code {process.returncode}; see {log_path}")
        try:
            api_get(config, "/projects/none/models", timeout_s=2)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise TimeoutError(
        f"the local stack did not answer on {config.api_url} within {timeout_s} s; see {log_path}"
    )


@contextmanager
def local_stack_process(*, config: LocalConfig, start_timeout_s: float = 90.0) -> Iterator[LocalConfig]:
    """Run `LocalStack(config)` in a child process (its own session, so the moto server it starts
    goes with it); yields the config once the API answers. Its output goes to
    `{data_dir}/logs/stack.log`."""
    log_path = config.data_dir / "logs" / "stack.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from tests.helpers.seed import serve_stack; serve_stack()",
                config.model_dump_json(),
            ],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            },
            start_new_session=True,
        )
        try:
            _wait_until_serving(config, process, start_timeout_s, log_path)
            yield config
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.stdin:
        process.stdin.close()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        logger.warning("the local stack did not stop in time; killing its process group")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
