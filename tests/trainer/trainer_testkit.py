"""Synthetic datasets and `/opt/ml` folders for the trainer's tests.

Two classes of ellipses on a noisy background: "round" (bright, nearly circular) and "long"
(dimmer, elongated). Some objects touch a neighbour. Ground truth is rasterised from the same
polygons the annotations carry, so the label image and the COCO file agree exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage as ndi

CLASSES = ("round", "long")
CATEGORIES = [{"id": 1, "name": "round"}, {"id": 2, "name": "long"}, {"id": 7, "name": "ignored"}]
#: model.json as the first trainers wrote it: only the fields every card has had.
OLDER_CARD: dict[str, Any] = {
    "preset": "tiny",
    "model_type": "instance",
    "classes": ["a"],
    "tile_size": 64,
    "in_channels": 1,
    "suggested_threshold": 0.5,
}


def ellipse_ring(
    *, cx: float, cy: float, rx: float, ry: float, angle: float, vertices: int = 40
) -> list[float]:
    """A closed polygon around an ellipse, flat [x0, y0, x1, y1, ...]."""
    t = np.linspace(0, 2 * math.pi, vertices, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    xs, ys = cx + ca * x - sa * y, cy + sa * x + ca * y
    return [float(v) for pair in zip(xs, ys, strict=True) for v in pair]


def ring_mask(ring: list[float], *, height: int, width: int) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([ring], height, width))).astype(bool)


def disc(shape: tuple[int, int], *, center: tuple[float, float], radius: float) -> np.ndarray:
    """bool H x W: the pixels closer than `radius` to `center` (row, column)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 < radius**2


def mask_bbox(mask: np.ndarray) -> list[int]:
    """COCO's `[x, y, width, height]` of a non-empty boolean H x W mask's pixels."""
    rows, cols = np.nonzero(mask)
    left, top = int(cols.min()), int(rows.min())
    return [left, top, int(cols.max()) - left + 1, int(rows.max()) - top + 1]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (0 when both are empty)."""
    return float(np.count_nonzero(a & b) / max(int(np.count_nonzero(a | b)), 1))


@dataclass
class SyntheticImage:
    """labels int32 H x W, classes int64 [N+1], rings one polygon per object, pixels C x H x W."""

    labels: np.ndarray
    classes: np.ndarray
    rings: list[list[float]]
    pixels: np.ndarray


def _shape(rng: np.random.Generator, kind: int, scale: float) -> tuple[float, float]:
    if kind == 1:
        radius = rng.uniform(8, 11) * scale
        return radius, radius * rng.uniform(0.85, 1.0)
    return rng.uniform(13, 16) * scale, rng.uniform(5.5, 6.5) * scale


def synthetic_image(
    *,
    size: tuple[int, int] = (128, 128),
    objects: int = 7,
    seed: int = 0,
    channels: int = 1,
    scale: float = 1.0,
) -> SyntheticImage:
    """Ellipses that do not overlap; some are pushed against the previous one, in touching pairs."""
    rng = np.random.default_rng(seed)
    height, width = size
    labels = np.zeros(size, dtype=np.int32)
    classes: list[int] = [0]
    rings: list[list[float]] = []
    paired: list[bool] = []
    for _ in range(objects * 30):
        if len(rings) >= objects:
            break
        kind = int(rng.integers(1, 3))
        rx, ry = _shape(rng, kind, scale)
        angle = float(rng.uniform(0, math.pi))
        # Pairs, not chains: an object is pushed against the previous one only if that one stands alone.
        pair = rings and not paired[-1] and rng.random() < 0.5
        placed = _place_touching(rng, labels=labels, rx=rx, ry=ry, angle=angle) if pair else None
        touching = placed is not None
        if placed is None:
            cx, cy = rng.uniform(rx, width - rx), rng.uniform(rx, height - rx)
            placed = ellipse_ring(cx=cx, cy=cy, rx=rx, ry=ry, angle=angle)
        xs, ys = placed[0::2], placed[1::2]
        if min(xs) < 1 or min(ys) < 1 or max(xs) > width - 1 or max(ys) > height - 1:
            continue  # whole objects only
        mask = ring_mask(placed, height=height, width=width)
        if (labels[mask] > 0).any():
            continue
        rings.append(placed)
        paired.append(touching)
        classes.append(kind)
        labels[mask] = len(rings)
    return SyntheticImage(
        labels=labels,
        classes=np.asarray(classes, dtype=np.int64),
        rings=rings,
        pixels=render(labels, np.asarray(classes), rng=rng, channels=channels),
    )


def _place_touching(
    rng: np.random.Generator, *, labels: np.ndarray, rx: float, ry: float, angle: float
) -> list[float] | None:
    """A ring pushed out from the last object, one pixel at a time, until it no longer overlaps it."""
    last = labels == labels.max()
    boundary = np.argwhere(last & ~ndi.binary_erosion(last))
    row, col = boundary[rng.integers(len(boundary))]
    centre = np.argwhere(last).mean(axis=0)
    direction = np.array([row, col], dtype=float) - centre
    direction /= max(float(np.linalg.norm(direction)), 1e-6)
    height, width = labels.shape
    for reach in np.arange(ry * 0.5, rx + 4, 1.0):
        cy, cx = row + direction[0] * reach, col + direction[1] * reach
        ring = ellipse_ring(cx=float(cx), cy=float(cy), rx=rx, ry=ry, angle=angle)
        mask = ring_mask(ring, height=height, width=width)
        if not (labels[mask] > 0).any():
            return ring
    return None


def render(
    labels: np.ndarray, classes: np.ndarray, *, rng: np.random.Generator, channels: int = 1
) -> np.ndarray:
    """uint16 C x H x W: dim textured background, bright round objects, dimmer long ones, darker rims."""
    intensity = np.array([0.0, 1.0, 0.55])[classes][labels]
    inner = ndi.binary_erosion(labels > 0) & (
        ndi.grey_erosion(labels, size=3) == ndi.grey_dilation(labels, size=3)
    )
    picture = ndi.gaussian_filter(intensity * (0.75 + 0.25 * inner), 0.7)
    planes = []
    for c in range(channels):
        noise = rng.normal(0, 0.05, size=labels.shape)
        planes.append(np.clip((0.1 + picture * (1.0 - 0.3 * c) + noise) * 20000, 0, 65535))
    return np.stack(planes).astype(np.uint16)


@dataclass
class DatasetSpec:
    """What `write_dataset` writes: image count, size, channels, file format, groups."""

    images: int = 4
    size: tuple[int, int] = (128, 128)
    objects: int = 7
    channels: int = 1
    suffix: str = ".tif"
    seed: int = 0
    groups: int | None = None
    folder: str = "img"
    extra: dict[str, Any] = field(default_factory=dict)


def save_pixels(path: Path, pixels: np.ndarray) -> None:
    """C x H x W uint16 as TIFF (all channels), or as 8-bit PNG/JPEG (grey or RGB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in {".tif", ".tiff"}:
        tifffile.imwrite(path, pixels if pixels.shape[0] > 1 else pixels[0])
        return
    eight = (pixels // 257).astype(np.uint8)
    picture = (
        Image.fromarray(eight[0]) if eight.shape[0] == 1 else Image.fromarray(np.moveaxis(eight[:3], 0, -1))
    )
    picture.save(path)


def write_dataset(dataset_dir: Path, *, spec: DatasetSpec, first_id: int = 1) -> dict[str, Any]:
    """Write images under `dataset_dir` and return their COCO dict (images, categories, annotations)."""
    images, annotations = [], []
    for number in range(spec.images):
        image_id = first_id + number
        synthetic = synthetic_image(
            size=spec.size, objects=spec.objects, seed=spec.seed * 1000 + number, channels=spec.channels
        )
        file_name = f"{spec.folder}/image_{image_id:03d}{spec.suffix}"
        save_pixels(dataset_dir / file_name, synthetic.pixels)
        entry: dict[str, Any] = {
            "id": image_id,
            "file_name": file_name,
            "height": spec.size[0],
            "width": spec.size[1],
            "status": "completed",
        }
        if spec.groups:
            entry["group"] = f"slide-{number % spec.groups}"
        images.append(entry)
        for n, ring in enumerate(synthetic.rings, start=1):
            annotations.append(
                {
                    "id": image_id * 1000 + n,
                    "image_id": image_id,
                    "category_id": int(synthetic.classes[n]),
                    "segmentation": [ring],
                    "iscrowd": 0,
                }
            )
    return {"images": images, "categories": CATEGORIES, "annotations": annotations}


def hyperparameters(**overrides: Any) -> dict[str, str]:
    """A hyperparameter map as SageMaker writes it (every value a string)."""
    values: dict[str, Any] = {
        "model_type": "instance",
        "classes": json.dumps(list(CLASSES)),
        "preset": "tiny",
        "epochs": 1,
        "tile_size": 64,
        "seed": 3,
        "batch_size": 4,
        "steps_per_epoch": 3,
        "validation_fraction": 0.0,
        "early_stopping_patience": 0,
        "min_object_area": 12,
    }
    values.update(overrides)
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def make_ml_root(
    root: Path,
    *,
    params: dict[str, str],
    train: DatasetSpec | None = None,
    test: Sequence[DatasetSpec] = (),
) -> Path:
    """An /opt/ml-like folder: hyperparameters, a dataset channel and a split channel."""
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(params))
    dataset = root / "input" / "data" / "dataset"
    split = root / "input" / "data" / "split"
    split.mkdir(parents=True, exist_ok=True)
    train_coco = write_dataset(dataset, spec=train or DatasetSpec())
    (split / "train.json").write_text(json.dumps(train_coco))
    test_coco: dict[str, Any] = {"images": [], "categories": CATEGORIES, "annotations": []}
    for number, spec in enumerate(test):
        part = write_dataset(dataset, spec=spec, first_id=500 + 100 * number)
        test_coco["images"] += part["images"]
        test_coco["annotations"] += part["annotations"]
    (split / "test.json").write_text(json.dumps(test_coco))
    return root


def read_coco(root: Path, split: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "input" / "data" / "split" / f"{split}.json").read_text())
    return data


def object_count(coco: dict[str, Any], *, classes: Sequence[int] = (1, 2)) -> int:
    return sum(1 for a in coco["annotations"] if a["category_id"] in classes)
