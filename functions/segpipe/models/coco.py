"""The dataset contract: COCO instance-segmentation JSON plus `status` and `group` on images.

These models are used to read what users upload and to write the split manifests that the
trainer reads. Unknown COCO fields (licenses, info, flickr_url, ...) are ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from segpipe.models.contract import Contract


class _Coco(Contract):
    model_config = ConfigDict(extra="ignore", frozen=False)


def _relative(value: str) -> str:
    if value.startswith("/") or "\\" in value or "\x00" in value or ".." in value.split("/"):
        raise ValueError("file_name must be a path relative to the dataset folder, without '..'")
    return value


#: A file name relative to the dataset folder: no absolute paths, no backslashes, no "..".
RelativeFileName = Annotated[str, StringConstraints(min_length=1, max_length=1024), AfterValidator(_relative)]


class CocoImage(_Coco):
    id: int = Field(description="Image id, unique in the dataset")
    file_name: RelativeFileName = Field(description="Path of the image file relative to the dataset folder")
    width: int = Field(gt=0, description="Image width in pixels")
    height: int = Field(gt=0, description="Image height in pixels")
    status: Literal["completed", "in_progress"] | None = Field(
        default=None, description="Annotation status; only completed images are used"
    )
    group: str | None = Field(
        default=None,
        description="Images of one group (tiles of one slide) always land on the same side of a split",
    )


class CocoCategory(_Coco):
    id: int = Field(description="Category id")
    name: str = Field(min_length=1, description="Class name, as requests refer to it")
    supercategory: str | None = None


class Rle(_Coco):
    size: tuple[int, int] = Field(description="[height, width] of the mask")
    counts: str | list[int] = Field(description="Run lengths, compressed (string) or not (list)")


#: COCO polygons: a list of rings, each a flat [x0, y0, x1, y1, ...] list in image pixels.
Polygons = list[list[float]]


class CocoAnnotation(_Coco):
    id: int = Field(description="Annotation id")
    image_id: int
    category_id: int
    segmentation: Polygons | Rle = Field(description="Polygon rings or an RLE mask")
    bbox: list[float] | None = Field(default=None, description="[x, y, width, height]")
    area: float | None = None
    iscrowd: int = 0


class CocoDataset(_Coco):
    images: list[CocoImage]
    categories: list[CocoCategory]
    annotations: list[CocoAnnotation] = Field(default_factory=list)
    info: dict[str, object] | None = None


DATASET_FILE = "annotations.json"
