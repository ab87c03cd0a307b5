"""Synthetic fluorescence-like images and a model's predictions on them, for seeding versions.

The images look like fluorescence microscopy: a dark background with bright blobs where the
objects are. Predicted objects are wobbly polygons in image pixels, scored over 0.05..1, of several
classes; a predicted object is a true positive with a probability that grows with its score, and a
few ground-truth objects are missed. `synthetic_evaluation` computes the evaluation from exactly
these objects, so the statistics table and the viewer agree.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from segpipe.models.common import SplitName
from segpipe.models.trainer_io import ImagePredictions, prediction_stem

VERTICES = 18


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


@dataclass
class SyntheticImage:
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


def _preview_png(*, image: SyntheticImage, scale: float, background: np.ndarray) -> bytes:
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


def _object_counts(*, images: int, objects: int, rng: np.random.Generator) -> np.ndarray:
    """Objects per image, summing to `objects`, at least one per image when there are enough."""
    floor = 1 if objects >= images else 0
    return floor + rng.multinomial(objects - floor * images, [1 / images] * images)


def _synthetic_image(
    *, index: int, split: SplitName, count: int, spec: SeedSpec, rng: np.random.Generator
) -> SyntheticImage:
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
    return SyntheticImage(
        predictions=predictions, truth=truth, ious=ious, missed=missed, blobs=rings, brightness=brightness
    )


def synthetic_images(*, spec: SeedSpec) -> list[SyntheticImage]:
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


def by_split(images: list[SyntheticImage]) -> dict[SplitName, list[SyntheticImage]]:
    """The images of each side of the split, in their order."""
    sides: dict[SplitName, list[SyntheticImage]] = {"train": [], "test": []}
    for image in images:
        sides[image.predictions.split or "train"].append(image)
    return sides
