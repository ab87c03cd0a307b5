"""A small synthetic fluorescence-microscopy dataset, made at run time: nuclei and mitotic cells
(some touching, some in clusters) on an unevenly lit, noisy background, as 16-bit TIFF tiles of a
few slides, with COCO polygon annotations, a few unfinished images and an extra class that the
demo leaves out."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from scipy import ndimage

CATEGORIES = [
    {"id": 1, "name": "nucleus", "supercategory": "cell"},
    {"id": 2, "name": "mitotic", "supercategory": "cell"},
    {"id": 3, "name": "debris", "supercategory": "artifact"},
]


@dataclass(frozen=True)
class Blob:
    category: int
    cx: float
    cy: float
    rx: float
    ry: float
    angle: float
    brightness: float

    def polygon(self, points: int = 28) -> list[float]:
        ring: list[float] = []
        cos_a, sin_a = math.cos(self.angle), math.sin(self.angle)
        for index in range(points):
            t = 2 * math.pi * index / points
            x, y = self.rx * math.cos(t), self.ry * math.sin(t)
            ring += [round(self.cx + x * cos_a - y * sin_a, 2), round(self.cy + x * sin_a + y * cos_a, 2)]
        return ring

    def window(self, size: int) -> tuple[slice, slice]:
        reach = math.ceil(max(self.rx, self.ry)) + 1
        x0, y0 = max(0, int(self.cx) - reach), max(0, int(self.cy) - reach)
        return slice(y0, min(size, int(self.cy) + reach + 1)), slice(x0, min(size, int(self.cx) + reach + 1))

    def mask(self, size: int) -> tuple[tuple[slice, slice], np.ndarray]:
        """(window, bool mask inside the window) of the pixels whose centres fall inside."""
        rows, cols = self.window(size)
        yy, xx = np.mgrid[rows, cols] + 0.5
        dx, dy = xx - self.cx, yy - self.cy
        cos_a, sin_a = math.cos(self.angle), math.sin(self.angle)
        u, v = dx * cos_a + dy * sin_a, -dx * sin_a + dy * cos_a
        return (rows, cols), np.asarray((u / self.rx) ** 2 + (v / self.ry) ** 2 <= 1.0)


def _place(
    rng: np.random.Generator, size: int, taken: np.ndarray, category: int, near: Blob | None
) -> Blob | None:
    shapes = {1: ((8.0, 14.0), 0.55), 2: ((5.0, 7.5), 0.85), 3: ((2.5, 4.5), 0.4)}
    (low, high), ratio_low = shapes[category]
    for _ in range(40):
        r = rng.uniform(low, high)
        rx, ry = r, r * rng.uniform(ratio_low, 1.0)
        if near is not None:  # touch a neighbour: centres about one radius sum apart
            direction = rng.uniform(0, 2 * math.pi)
            distance = near.rx * 0.9 + rx * 0.95
            cx, cy = near.cx + distance * math.cos(direction), near.cy + distance * math.sin(direction)
        else:
            cx, cy = rng.uniform(rx, size - rx), rng.uniform(rx, size - rx)
        if not (rx <= cx <= size - rx and rx <= cy <= size - rx):
            continue
        brightness = {1: rng.uniform(0.45, 0.75), 2: rng.uniform(0.9, 1.0), 3: rng.uniform(0.3, 0.5)}[
            category
        ]
        blob = Blob(category, cx, cy, rx, ry, rng.uniform(0, math.pi), brightness)
        window, mask = blob.mask(size)
        if not (mask & taken[window]).any():
            taken[window] |= mask
            return blob
    return None


def make_tile(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[Blob]]:
    """One 16-bit tile and the objects drawn in it."""
    taken = np.zeros((size, size), dtype=bool)
    blobs: list[Blob] = []
    for _ in range(int(rng.integers(8, 16))):
        if (blob := _place(rng, size, taken, 1, None)) is not None:
            blobs.append(blob)
            if rng.random() < 0.45 and (buddy := _place(rng, size, taken, 1, blob)) is not None:
                blobs.append(buddy)  # a touching pair
    for _ in range(int(rng.integers(1, 4))):
        if (blob := _place(rng, size, taken, 2, None)) is not None:
            blobs.append(blob)
    for _ in range(int(rng.integers(0, 3))):
        if (blob := _place(rng, size, taken, 3, None)) is not None:
            blobs.append(blob)

    yy, xx = np.mgrid[0:size, 0:size] / size
    illumination = 0.08 + 0.06 * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))
    signal = np.zeros((size, size))
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 2.0)
    for blob in blobs:
        window, mask = blob.mask(size)
        grain = 1 + (0.25 if blob.category == 1 else 0.1) * texture[window]
        signal[window][mask] = blob.brightness * grain[mask]
    signal = ndimage.gaussian_filter(signal, 1.2)
    photons = rng.poisson(np.clip(illumination + signal, 0, None) * 900) + rng.normal(0, 12, (size, size))
    image = np.clip(photons * 40 + 1500, 0, 65535).astype(np.uint16)
    return image, blobs


def make_dataset(
    folder: Path, *, slides: int = 8, tiles_per_slide: int = 4, size: int = 256, seed: int = 7
) -> dict[str, Any]:
    """Write `annotations.json` and the TIFF tiles into `folder`; returns the COCO document."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for slide in range(slides):
        for tile in range(tiles_per_slide):
            image_id = len(images) + 1
            pixels, blobs = make_tile(rng, size)
            file_name = f"images/slide{slide + 1:02d}_tile{tile + 1}.tif"
            tifffile.imwrite(folder / file_name, pixels, compression="zlib")
            unfinished = slide == slides - 1 and tile == tiles_per_slide - 1
            images.append(
                {
                    "id": image_id,
                    "file_name": file_name,
                    "width": size,
                    "height": size,
                    "status": "in_progress" if unfinished else "completed",
                    "group": f"slide{slide + 1:02d}",
                }
            )
            for blob in blobs:
                ring = blob.polygon()
                xs, ys = ring[0::2], ring[1::2]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": blob.category,
                        "segmentation": [ring],
                        "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                        "area": round(math.pi * blob.rx * blob.ry, 1),
                        "iscrowd": 0,
                    }
                )
    document = {
        "info": {"description": "segpipe demo: synthetic fluorescence nuclei", "version": "1"},
        "images": images,
        "categories": CATEGORIES,
        "annotations": annotations,
    }
    (folder / "annotations.json").write_text(json.dumps(document))
    return document


def make_images(folder: Path, *, count: int = 3, size: int = 256, seed: int = 2024) -> dict[str, int]:
    """Write `count` new 16-bit TIFF tiles (a seed the dataset never uses: images the model never
    saw) into `folder`; returns the objects drawn in each, by class name, over all images."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = {int(str(category["id"])): str(category["name"]) for category in CATEGORIES}
    drawn: dict[str, int] = {}
    for index in range(count):
        pixels, blobs = make_tile(rng, size)
        tifffile.imwrite(folder / f"new_tile{index + 1}.tif", pixels, compression="zlib")
        for blob in blobs:
            drawn[names[blob.category]] = drawn.get(names[blob.category], 0) + 1
    return drawn
