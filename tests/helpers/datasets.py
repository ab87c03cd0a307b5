"""Realistic COCO datasets for tests: the annotations file and the image files themselves.

`DatasetBuilder` makes datasets the way an annotation tool exports them: images with `status`
and `group`, categories, and per image a number of objects per class as star-shaped polygons
(16 to 30 vertices, inside the image). The image files are real PNG, TIFF or JPEG files (Pillow
and tifffile write them) whose pixels show the objects, so headers parse and a trainer could
learn from them. Broken annotations of each kind the validator knows can be added on purpose.

    builder = DatasetBuilder(classes=["nucleus", "mitosis"], seed=1)
    builder.add_images(20, objects={"nucleus": 4, "mitosis": 1})
    builder.add_images(3, status="in_progress", objects={"nucleus": 2})
    builder.add_images(6, group="slide-7", objects={"nucleus": 3})
    builder.add_broken("zero_area", count=2)

    folder = builder.write(tmp_path / "dataset")      # annotations.json + image files
    store = builder.store()                           # an in-memory DatasetStore
    body = builder.to_bytes()                         # the annotations file alone (or .to_dict())
    request = builder.request(classes=["nucleus"])    # a TrainingRequest for it

Also here: `healthy_dataset()` (validates with no error or warning under `small_defaults()`),
`validate_dataset(builder, request)` (runs `validate_request` on it in memory),
`MemoryDatasetStore` (a `DatasetStore` over bytes), `box_rle` (an uncompressed RLE rectangle)
and `star_polygon`. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import io
import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from segpipe.errors import DatasetNotFound, DatasetTooLarge, ObjectNotFound
from segpipe.logic.validate import TrainingDefaults, Validation, validate_request
from segpipe.models.common import Preset
from segpipe.models.request import TrainingRequest
from segpipe.models.version import ModelVersion

ImageFormat = Literal["png", "tiff", "jpeg"]
Status = Literal["completed", "in_progress"] | None
BrokenKind = Literal["too_few_points", "outside_image", "zero_area", "unknown_image", "unknown_category"]

#: Extension written for each format.
EXTENSIONS: dict[str, str] = {"png": ".png", "tiff": ".tif", "jpeg": ".jpg"}
#: Image id used by `add_broken("unknown_image")`; category id used by `add_broken("unknown_category")`.
UNKNOWN_ID = 999_999


@dataclass
class ImageRecord:
    """One image as it appears in annotations.json, plus how its file is written."""

    id: int
    file_name: str
    width: int
    height: int
    status: Status
    group: str | None
    image_format: ImageFormat
    channels: int
    bit_depth: int

    def coco(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": self.id,
            "file_name": self.file_name,
            "width": self.width,
            "height": self.height,
        }
        if self.status is not None:
            entry["status"] = self.status
        if self.group is not None:
            entry["group"] = self.group
        return entry


@dataclass
class DatasetBuilder:
    """Builds a COCO instance-segmentation dataset with `status`, `group` and real image files.

    `classes` become categories with ids 1, 2, ... in order. Images default to `width` x `height`
    pixels, `image_format`, `channels` (1 grey, 3 RGB, or more for TIFF) and `bit_depth` (8 or 16).
    """

    classes: Sequence[str] = ("nucleus",)
    width: int = 128
    height: int = 128
    image_format: ImageFormat = "png"
    channels: int = 1
    bit_depth: int = 8
    seed: int = 0
    images: list[ImageRecord] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    # --- Building ---------------------------------------------------------------------------

    def category_id(self, name: str) -> int:
        """The id of class `name` (1-based position in `classes`)."""
        return list(self.classes).index(name) + 1

    def add_images(
        self,
        count: int,
        *,
        objects: Mapping[str, int] | None = None,
        status: Status = "completed",
        group: str | None = None,
        width: int | None = None,
        height: int | None = None,
        image_format: ImageFormat | None = None,
        channels: int | None = None,
        bit_depth: int | None = None,
        prefix: str = "img",
        radius: tuple[float, float] = (10.0, 16.0),
    ) -> list[int]:
        """Add `count` images, each with `objects[class]` polygon annotations per class.

        `status=None` writes no status key. Returns the new image ids.
        """
        ids = []
        for _ in range(count):
            record = self._new_image(
                status=status,
                group=group,
                width=width or self.width,
                height=height or self.height,
                image_format=image_format or self.image_format,
                channels=channels or self.channels,
                bit_depth=bit_depth or self.bit_depth,
                prefix=prefix,
            )
            for name, number in (objects or {}).items():
                for _ in range(number):
                    self.add_polygon(record.id, name, radius=radius)
            ids.append(record.id)
        return ids

    def add_polygon(
        self, image_id: int, class_name: str, *, radius: tuple[float, float] = (10.0, 16.0)
    ) -> int:
        """Add one star-shaped polygon (16 to 30 vertices) inside image `image_id`; returns its id."""
        image = self.image(image_id)
        size = self._random.uniform(*radius)
        margin = size * 1.3 + 1
        centre_x = self._random.uniform(margin, max(margin, image.width - margin))
        centre_y = self._random.uniform(margin, max(margin, image.height - margin))
        ring = star_polygon(centre_x, centre_y, size, vertices=self._random.randint(16, 30), rng=self._random)
        return self.add_annotation(image_id, class_name, [ring])

    def add_annotation(
        self,
        image_id: int,
        class_name: str | int,
        segmentation: list[list[float]] | dict[str, Any],
        **fields: Any,
    ) -> int:
        """Add an annotation with any segmentation (polygon rings or an RLE dict); returns its id.

        `class_name` may be a category id (an int) to write an id that no category has.
        """
        category = class_name if isinstance(class_name, int) else self.category_id(class_name)
        annotation = {
            "id": len(self.annotations) + 1,
            "image_id": image_id,
            "category_id": category,
            "segmentation": segmentation,
            "iscrowd": 0,
            **fields,
        }
        self.annotations.append(annotation)
        return int(annotation["id"])

    def add_broken(
        self, kind: BrokenKind, *, count: int = 1, class_name: str | None = None, image_id: int | None = None
    ) -> list[int]:
        """Add `count` broken annotations of one kind to `image_id` (default: the first completed
        image); returns their ids. Kinds: a ring of two points, a ring beside the image, a
        ring of collinear points, an unknown image id, an unknown category id."""
        target = image_id if image_id is not None else self._first_completed()
        image = self.image(target)
        category: str | int = UNKNOWN_ID if kind == "unknown_category" else class_name or self.classes[0]
        on_image = UNKNOWN_ID if kind == "unknown_image" else target
        return [
            self.add_annotation(on_image, category, self._broken_rings(kind, image)) for _ in range(count)
        ]

    def _broken_rings(self, kind: BrokenKind, image: ImageRecord) -> list[list[float]]:
        if kind == "too_few_points":
            return [[1.0, 1.0, 5.0, 5.0]]
        if kind == "outside_image":
            return [[image.width + 10.0, 0.0, image.width + 30.0, 0.0, image.width + 20.0, 20.0]]
        if kind == "zero_area":
            return [[2.0, 2.0, 6.0, 6.0, 10.0, 10.0]]
        # unknown ids: the outline itself is fine
        return [star_polygon(image.width / 2, image.height / 2, 12, vertices=16, rng=self._random)]

    def image(self, image_id: int) -> ImageRecord:
        return next(record for record in self.images if record.id == image_id)

    # --- Output -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """annotations.json as a dict."""
        document: dict[str, Any] = {
            "images": [record.coco() for record in self.images],
            "categories": [{"id": index + 1, "name": name} for index, name in enumerate(self.classes)],
            "annotations": self.annotations,
        }
        if self.info:
            document["info"] = self.info
        return document

    def to_bytes(self) -> bytes:
        """annotations.json as UTF-8 bytes."""
        return json.dumps(self.to_dict()).encode()

    def image_bytes(self, image_id: int) -> bytes:
        """The file of image `image_id`: a real PNG, TIFF or JPEG showing its objects."""
        record = self.image(image_id)
        rings = [ring for item in self.annotations if item["image_id"] == image_id for ring in _rings(item)]
        return encode_image(record, rings=rings)

    def files(self, *, without: Iterable[str] = ()) -> dict[str, bytes]:
        """Every file of the dataset folder: annotations.json and the images (less `without`)."""
        skipped = set(without)
        out = {"annotations.json": self.to_bytes()}
        out.update(
            {
                record.file_name: self.image_bytes(record.id)
                for record in self.images
                if record.file_name not in skipped
            }
        )
        return out

    def write(self, folder: Path, *, without: Iterable[str] = ()) -> Path:
        """Write the dataset folder (annotations.json and image files, less `without`); returns it."""
        for name, data in self.files(without=without).items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return folder

    def store(
        self, *, project: str = "lab", dataset: str = "cells", without: Iterable[str] = ()
    ) -> MemoryDatasetStore:
        """An in-memory `DatasetStore` holding this dataset as `project`/`dataset`."""
        return MemoryDatasetStore({(project, dataset): self.files(without=without)})

    def request(
        self, *, dataset: str = "cells", classes: Sequence[str] | None = None, **fields: Any
    ) -> TrainingRequest:
        """A training request for this dataset: every class (or `classes`), a 20% test fraction,
        and any other request fields given (`test_set`, `base`, `training`, `compute`, ...)."""
        body: dict[str, Any] = {
            "label": "test run",
            "dataset": dataset,
            "model_type": "instance",
            "classes": list(self.classes if classes is None else classes),
            "test_set": {"strategy": "fraction", "fraction": 0.2, "seed": 0},
            **fields,
        }
        return TrainingRequest.model_validate(body)

    # --- Internals --------------------------------------------------------------------------

    def _new_image(
        self,
        *,
        status: Status,
        group: str | None,
        width: int,
        height: int,
        image_format: ImageFormat,
        channels: int,
        bit_depth: int,
        prefix: str,
    ) -> ImageRecord:
        image_id = len(self.images) + 1
        name = f"{prefix}_{image_id:05d}{EXTENSIONS[image_format]}"
        record = ImageRecord(image_id, name, width, height, status, group, image_format, channels, bit_depth)
        self.images.append(record)
        return record

    def _first_completed(self) -> int:
        return next(record.id for record in self.images if record.status in ("completed", None))


def star_polygon(
    centre_x: float, centre_y: float, radius: float, *, vertices: int, rng: random.Random
) -> list[float]:
    """A flat [x0, y0, x1, y1, ...] ring around a centre, like an outlined nucleus."""
    ring: list[float] = []
    for index in range(vertices):
        angle = 2 * math.pi * index / vertices
        reach = radius * rng.uniform(0.8, 1.2)
        ring += [round(centre_x + reach * math.cos(angle), 2), round(centre_y + reach * math.sin(angle), 2)]
    return ring


def box_rle(
    x: int, y: int, width: int, height: int, *, image_width: int, image_height: int
) -> dict[str, Any]:
    """An uncompressed COCO RLE (column-major runs, background first) of a filled rectangle."""
    counts: list[int] = []
    current, run = False, 0
    for column in range(image_width):
        for row in range(image_height):
            inside = x <= column < x + width and y <= row < y + height
            if inside != current:
                counts.append(run)
                current, run = inside, 0
            run += 1
    counts.append(run)
    return {"size": [image_height, image_width], "counts": counts}


def encode_image(record: ImageRecord, *, rings: Sequence[list[float]] = ()) -> bytes:
    """Image bytes in `record`'s format, size, channels and bit depth, with `rings` drawn bright."""
    import numpy as np
    from PIL import Image, ImageDraw

    mask = Image.new("L", (record.width, record.height), 0)
    draw = ImageDraw.Draw(mask)
    for ring in rings:
        if len(ring) >= 6:
            draw.polygon(list(zip(ring[0::2], ring[1::2], strict=False)), fill=255)
    top = 65535 if record.bit_depth == 16 else 255
    pixels = (np.asarray(mask, dtype=np.float64) / 255 * 0.7 + 0.1) * top
    dtype = np.uint16 if record.bit_depth == 16 else np.uint8
    plane = pixels.astype(dtype)
    array = plane if record.channels == 1 else np.stack([plane] * record.channels, axis=-1)
    return _encode(array, record.image_format)


def _encode(array: Any, image_format: ImageFormat) -> bytes:
    buffer = io.BytesIO()
    if image_format == "tiff":
        import tifffile

        photometric = "rgb" if array.ndim == 3 and array.shape[-1] == 3 else "minisblack"
        planar = "contig" if array.ndim == 3 else None  # channels as samples of each pixel
        tifffile.imwrite(buffer, array, photometric=photometric, planarconfig=planar)
        return buffer.getvalue()
    from PIL import Image

    if array.dtype.itemsize == 2 and image_format == "png" and array.ndim == 2:
        Image.fromarray(array).save(buffer, format="PNG")  # 16-bit grey PNG
        return buffer.getvalue()
    Image.fromarray(array if array.dtype.itemsize == 1 else (array >> 8).astype("uint8")).save(
        buffer, format="PNG" if image_format == "png" else "JPEG"
    )
    return buffer.getvalue()


def _rings(annotation: Mapping[str, Any]) -> list[list[float]]:
    segmentation = annotation["segmentation"]
    return segmentation if isinstance(segmentation, list) else []


class MemoryDatasetStore:
    """A `DatasetStore` over {(project, dataset): {relative file name: bytes}}; counts head reads."""

    def __init__(self, datasets: dict[tuple[str, str], dict[str, bytes]] | None = None) -> None:
        self.datasets = datasets or {}
        self.head_reads: list[str] = []

    def read_annotations(
        self, project: str, dataset: str, file_name: str, *, max_bytes: int | None = None
    ) -> bytes:
        try:
            data = self.datasets[(project, dataset)][file_name]
        except KeyError as error:
            raise DatasetNotFound(f"No {file_name} in dataset {dataset!r} of project {project!r}.") from error
        if max_bytes is not None and len(data) > max_bytes:
            raise DatasetTooLarge(f"{file_name} is {len(data)} bytes.", size=len(data), limit=max_bytes)
        return data

    def list_files(self, project: str, dataset: str) -> set[str]:
        return set(self.datasets.get((project, dataset), {}))

    def read_head(self, project: str, dataset: str, file_name: str, nbytes: int) -> bytes:
        self.head_reads.append(file_name)
        try:
            return self.datasets[(project, dataset)][file_name][:nbytes]
        except KeyError as error:
            raise ObjectNotFound(f"No file {file_name!r}.") from error

    def put(self, project: str, dataset: str, file_name: str, data: bytes) -> None:
        """Add or replace one file."""
        self.datasets.setdefault((project, dataset), {})[file_name] = data


def healthy_dataset(*, seed: int = 0, images: int = 40, size: int = 128) -> DatasetBuilder:
    """A dataset that validates without errors or warnings under `small_defaults()`: `images`
    completed images of `size` pixels with 4 nuclei and 1 mitosis each."""
    builder = DatasetBuilder(classes=["nucleus", "mitosis"], width=size, height=size, seed=seed)
    builder.add_images(images, objects={"nucleus": 4, "mitosis": 1})
    return builder


def small_defaults() -> TrainingDefaults:
    """`TrainingDefaults` for small test datasets: the tiny preset, 5 epochs, 128 px tiles."""
    return TrainingDefaults(preset=Preset.TINY, epochs=5, tile_size=128)


def validate_dataset(
    builder: DatasetBuilder,
    request: TrainingRequest | None = None,
    *,
    store: MemoryDatasetStore | None = None,
    base_lookup: Callable[[int], ModelVersion | None] | None = None,
    defaults: TrainingDefaults | None = None,
) -> Validation:
    """`validate_request` for `builder`'s dataset (project "lab", dataset "cells", held in memory)."""
    return validate_request(
        request or builder.request(),
        project="lab",
        store=store or builder.store(),
        defaults=defaults or small_defaults(),
        base_lookup=base_lookup,
    )
