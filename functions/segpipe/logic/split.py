"""The frozen train/test split and its two COCO manifests.

A fraction split is decided per split key: the image's `group` when it has one (tiles of one
slide), else its `file_name`. The key and the seed are hashed with BLAKE2b into a number in
[0, 1); the key goes to the test set when that number is below the fraction. The decision
depends on nothing else, so:

- an image never moves when other images are added, removed or reordered, and keeps its side
  across versions that use the same seed;
- the images of one group always share a side;
- on large datasets the test share of keys converges to the fraction.

An explicit image list is taken exactly: those images (completed ones) are the test set. Other
images of a listed image's group are held out of both sets, so train and test never share a
group; the validation report warns about them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Literal, NotRequired

import orjson
from pydantic import BaseModel, ConfigDict, TypeAdapter, with_config
from typing_extensions import TypedDict

from segpipe.logic.memory import gc_paused
from segpipe.models.coco import CocoCategory, CocoImage, Polygons, Rle
from segpipe.models.common import SplitName
from segpipe.models.request import FractionTestSet, ImagesTestSet, TestSet
from segpipe.models.trainer_io import SplitInfo

#: Divisor that maps the first 8 bytes of a digest to [0, 1).
_UNIT = float(2**64)


@with_config(ConfigDict(extra="ignore"))
class AnnotationRecord(TypedDict):
    """`CocoAnnotation`'s fields as a plain dict.

    A million annotations parse about a fifth faster into dicts than into models, hold fewer
    objects for the garbage collector to walk, and serialise straight back into the manifests.
    """

    id: int
    image_id: int
    category_id: int
    segmentation: Polygons | Rle
    bbox: NotRequired[list[float] | None]
    area: NotRequired[float | None]
    iscrowd: NotRequired[int]


class PlannedAnnotation(TypedDict):
    """A valid included annotation as a manifest holds it (validation builds these).

    `area` and `bbox` are filled in where the file lacked them; the segmentation (polygon rings
    or an RLE) is already serialised, so writing the manifests copies its bytes.
    """

    id: int
    image_id: int
    category_id: int
    segmentation: orjson.Fragment
    bbox: list[float]
    area: float
    iscrowd: NotRequired[int]


@with_config(ConfigDict(extra="ignore"))
class DatasetDocument(TypedDict):
    """`CocoDataset` with `AnnotationRecord` annotations: how validation parses annotations.json."""

    images: list[CocoImage]
    categories: list[CocoCategory]
    annotations: NotRequired[list[AnnotationRecord]]
    info: NotRequired[dict[str, object] | None]


@cache
def document_adapter() -> TypeAdapter[DatasetDocument]:
    """Parses and serialises `DatasetDocument`s (built once, on first use)."""
    return TypeAdapter(DatasetDocument)


@dataclass(frozen=True)
class SplitAssignment:
    """Which included images go where (images keep their dataset order on each side)."""

    train: list[CocoImage]
    test: list[CocoImage]
    held_out: list[CocoImage] = field(default_factory=list)
    """Images left out of both sets because their group holds an explicitly listed test image."""
    unmatched: list[str] = field(default_factory=list)
    """Listed test file names that match no included image, in the order listed."""


@dataclass(frozen=True)
class SplitSide:
    """The images of one side and their valid, included annotations."""

    images: list[CocoImage]
    annotations: list[PlannedAnnotation]


@dataclass(frozen=True)
class SplitPlan:
    """Everything `render_manifests` needs; built by `validate_request` only when there are no errors."""

    dataset: str
    strategy: Literal["none", "fraction", "images"]
    seed: int | None
    classes: list[str]
    categories: list[CocoCategory]
    """The included categories, in the order of `classes`, with their original ids."""
    train: SplitSide
    test: SplitSide


def split_key(image: CocoImage) -> str:
    """The unit of a split decision: the image's group, else the image itself."""
    return f"group:{image.group}" if image.group else f"image:{image.file_name}"


def split_draw(*, key: str, seed: int) -> float:
    """A stable number in [0, 1) for (seed, key); a key is in the test set when it is below the fraction."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _UNIT


def assign_split(images: Sequence[CocoImage], *, test_set: TestSet) -> SplitAssignment:
    """Assign included images to train and test.

    `images` are the included (completed) images; file names are unique among them.
    """
    if isinstance(test_set, FractionTestSet):
        return _by_fraction(images, fraction=test_set.fraction, seed=test_set.seed)
    if isinstance(test_set, ImagesTestSet):
        return _by_list(images, names=test_set.images)
    return SplitAssignment(train=list(images), test=[])


def _by_fraction(images: Sequence[CocoImage], *, fraction: float, seed: int) -> SplitAssignment:
    decided: dict[str, bool] = {}
    train: list[CocoImage] = []
    test: list[CocoImage] = []
    for image in images:
        key = split_key(image)
        in_test = decided.get(key)
        if in_test is None:
            in_test = decided[key] = split_draw(key=key, seed=seed) < fraction
        (test if in_test else train).append(image)
    return SplitAssignment(train=train, test=test)


def _by_list(images: Sequence[CocoImage], *, names: Sequence[str]) -> SplitAssignment:
    wanted = set(names)
    test = [image for image in images if image.file_name in wanted]
    found = {image.file_name for image in test}
    test_groups = {image.group for image in test if image.group}
    train: list[CocoImage] = []
    held_out: list[CocoImage] = []
    for image in images:
        if image.file_name in found:
            continue
        (held_out if image.group and image.group in test_groups else train).append(image)
    unmatched = list(dict.fromkeys(name for name in names if name not in found))
    return SplitAssignment(train=train, test=test, held_out=held_out, unmatched=unmatched)


# --- Manifests ---------------------------------------------------------------------------------


def render_manifests(plan: SplitPlan, *, project: str, version: int) -> dict[SplitName, bytes]:
    """{"train": ..., "test": ...}: two COCO JSON documents (UTF-8 bytes).

    Each holds its images (status set to completed, group kept), the included categories only
    (original ids and names), the valid included annotations of those images only, and
    `info = {"segpipe": SplitInfo(...)}`. The test document exists, with no images, when there is
    no test set. The planned annotations are written as they are, without validating them again.
    """
    with gc_paused():
        return {
            "train": _render(plan, side=plan.train, split="train", project=project, version=version),
            "test": _render(plan, side=plan.test, split="test", project=project, version=version),
        }


class _Manifest(TypedDict):
    """A split manifest as written: `CocoDataset`'s fields, without null fields."""

    images: list[dict[str, object]]
    categories: list[dict[str, object]]
    annotations: list[PlannedAnnotation]
    info: dict[str, object]


def _render(plan: SplitPlan, *, side: SplitSide, split: SplitName, project: str, version: int) -> bytes:
    info = SplitInfo(
        split=split,
        project=project,
        version=version,
        dataset=plan.dataset,
        strategy=plan.strategy,
        seed=plan.seed,
        classes=list(plan.classes),
    )
    manifest = _Manifest(
        # Images and categories drop their null fields here; the annotations hold none (validation
        # fills in area and bbox), so the million of them need no `exclude_none` pass.
        images=[{**image.model_dump(exclude_none=True), "status": "completed"} for image in side.images],
        categories=[category.model_dump(exclude_none=True) for category in plan.categories],
        annotations=side.annotations,
        info={"segpipe": info.model_dump(mode="json", exclude_none=True)},
    )
    # orjson writes the annotations' pre-serialised segmentations as they are (about 4x faster
    # than pydantic's type inference over the same dicts).
    return orjson.dumps(manifest, default=_model_dump)


def _model_dump(value: object) -> object:
    """A pydantic model inside a manifest, as JSON-ready data (orjson's hook for unknown types)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
