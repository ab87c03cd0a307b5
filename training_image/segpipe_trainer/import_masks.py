"""`segpipe import-masks`: turn a folder of label masks into a segpipe dataset.

The folder follows the Cellpose/StarDist convention, either `img.tif` beside `img_masks.tif` (also
`_mask`, `_cp_masks`, `_label` and `_labels`) or `images/` and `masks/` folders with matching stems;
images are PNG, JPEG or TIFF, masks PNG or TIFF. An instance mask gives each object its own pixel
value; a semantic mask gives each pixel its class's value, named by a small JSON file
(`{"1": "nucleus", "2": "cytoplasm"}`), and every connected region of a class becomes one object.

The result is `annotations.json` (COCO, every image `completed`) with the images copied beside it.
Objects are written as polygons, or as RLE where a polygon cannot keep them (holes).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage as ndi

from segpipe.errors import InvalidInput, SegpipeError
from segpipe.models.coco import DATASET_FILE, CocoAnnotation, CocoCategory, CocoDataset, CocoImage, Rle
from segpipe_trainer import atomic
from segpipe_trainer.geometry import annotation_mask, bounding_box, mask_to_polygons

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
MASK_SUFFIXES = (".png", ".tif", ".tiff")
#: Stem endings that mark a mask beside its image, longest first.
MASK_MARKERS = ("_cp_masks", "_masks", "_mask", "_labels", "_label")
#: A polygon is written only when it re-rasterises to the object at this IoU or better.
POLYGON_MIN_IOU = 0.98
_EIGHT = np.ones((3, 3), dtype=bool)


# --- Errors ------------------------------------------------------------------------------------


class MaskImportError(InvalidInput):
    """The mask folder cannot be converted; the message says which file and why."""

    code = "mask_import_failed"


class NoImagesFound(MaskImportError):
    code = "no_images_found"


class UnreadableFile(MaskImportError):
    code = "unreadable_file"


class MaskSizeMismatch(MaskImportError):
    code = "mask_size_mismatch"


class InvalidMask(MaskImportError):
    code = "invalid_mask"


class InvalidClassMapping(MaskImportError):
    code = "invalid_class_mapping"


# --- Result ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportSummary:
    """What `import_masks` wrote."""

    annotations_file: Path
    images: int
    annotations: int
    categories: tuple[str, ...]
    rle_annotations: int = 0
    images_without_masks: tuple[str, ...] = ()

    def line(self) -> str:
        """One line for people."""
        text = (
            f"Wrote {self.annotations_file}: {self.images} images, {self.annotations} annotations "
            f"({self.rle_annotations} as RLE), classes: {', '.join(self.categories)}"
        )
        if self.images_without_masks:
            text += f"; skipped {len(self.images_without_masks)} images without a mask"
        return text


# --- Finding image and mask pairs --------------------------------------------------------------


@dataclass(frozen=True)
class MaskPair:
    image: Path
    mask: Path


def find_pairs(source: Path) -> tuple[list[MaskPair], list[str]]:
    """(image and mask pairs sorted by image name, names of images without a mask) in `source`.

    Uses `source/images` and `source/masks` when both exist, else the files of `source` itself.
    Raises NoImagesFound when there is no pair, and MaskImportError for a mask without an image or
    two files that claim the same image.
    """
    if not source.is_dir():
        raise NoImagesFound(f"The source folder '{source}' does not exist.", source=str(source))
    images_dir, masks_dir = source / "images", source / "masks"
    if images_dir.is_dir() and masks_dir.is_dir():
        images = _by_stem(_files(images_dir, IMAGE_SUFFIXES), what="image")
        masks = _by_stem(_files(masks_dir, MASK_SUFFIXES), what="mask", strip_marker=True)
    else:
        files = _files(source, IMAGE_SUFFIXES)
        marked = [path for path in files if _marker_of(path) and path.suffix.lower() in MASK_SUFFIXES]
        images = _by_stem([path for path in files if path not in marked], what="image")
        masks = _by_stem(marked, what="mask", strip_marker=True)
    orphans = sorted(masks.keys() - images.keys())
    if orphans:
        raise MaskImportError(
            f"The mask '{masks[orphans[0]].name}' has no image with the stem '{orphans[0]}'"
            f"{f' (and {len(orphans) - 1} more masks)' if len(orphans) > 1 else ''}.",
            masks=[masks[stem].name for stem in orphans],
        )
    pairs = [MaskPair(image=images[stem], mask=masks[stem]) for stem in images if stem in masks]
    if not pairs:
        raise NoImagesFound(
            f"No image with a mask was found in '{source}': expected 'name.tif' beside 'name_masks.tif' "
            "(or _mask, _cp_masks, _label, _labels; PNG or TIFF), "
            "or images/ and masks/ folders with matching names.",
            source=str(source),
        )
    without = sorted(images[stem].name for stem in images if stem not in masks)
    return sorted(pairs, key=lambda pair: pair.image.name), without


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in suffixes
    )


def _marker_of(path: Path) -> str | None:
    stem = path.stem.lower()
    return next(
        (marker for marker in MASK_MARKERS if stem.endswith(marker) and len(stem) > len(marker)), None
    )


def _by_stem(paths: list[Path], *, what: str, strip_marker: bool = False) -> dict[str, Path]:
    """Paths by image stem; two paths with one stem raise MaskImportError."""
    found: dict[str, Path] = {}
    for path in paths:
        marker = _marker_of(path) if strip_marker else None
        stem = path.stem[: -len(marker)] if marker else path.stem
        if stem in found:
            raise MaskImportError(
                f"Two {what} files, '{found[stem].name}' and '{path.name}', belong to the image '{stem}'; "
                "keep one.",
                files=[found[stem].name, path.name],
            )
        found[stem] = path
    return found


# --- Reading -----------------------------------------------------------------------------------


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, read in full so that a damaged file is found now.

    A TIFF's Y and X axes give its size (other axes are channels, planes or time points).
    """
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, axes = series.asarray().shape, series.axes.upper()
            if "Y" in axes and "X" in axes:
                return int(shape[axes.index("Y")]), int(shape[axes.index("X")])
            return int(shape[0]), int(shape[1])
        with Image.open(path) as image:
            image.load()
            return int(image.height), int(image.width)
    except Exception as exc:  # each decoder raises its own types; all mean "cannot be read"
        raise UnreadableFile(f"The image '{path.name}' cannot be read: {exc}", file=path.name) from exc


def read_mask(path: Path) -> np.ndarray:
    """int64 H x W label mask; raises UnreadableFile or InvalidMask with the reason."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            pixels = tifffile.imread(path)
        else:
            with Image.open(path) as image:
                pixels = np.asarray(image)
    except Exception as exc:  # each decoder raises its own types; all mean "cannot be read"
        raise UnreadableFile(f"The mask '{path.name}' cannot be read: {exc}", file=path.name) from exc
    pixels = np.squeeze(pixels)
    if pixels.ndim != 2:
        raise InvalidMask(
            f"The mask '{path.name}' has shape {pixels.shape}; a label mask is one 2-D image of integers "
            "(a colour image or a stack is not).",
            file=path.name,
        )
    return _integer_labels(pixels, name=path.name)


def _integer_labels(pixels: np.ndarray, *, name: str) -> np.ndarray:
    if pixels.dtype.kind == "f" and np.all(np.isfinite(pixels)) and np.all(pixels == np.round(pixels)):
        pixels = pixels.astype(np.int64)
    if pixels.dtype.kind not in "uib":
        raise InvalidMask(f"The mask '{name}' holds {pixels.dtype} values, not integer labels.", file=name)
    labels = pixels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise InvalidMask(f"The mask '{name}' holds negative labels.", file=name)
    return labels


def read_class_mapping(path: Path) -> dict[int, str]:
    """Pixel value -> class name from a JSON object such as `{"1": "nucleus", "2": "cytoplasm"}`."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidClassMapping(f"The class mapping '{path}' cannot be read as JSON: {exc}") from exc
    example = '{"1": "nucleus", "2": "cytoplasm"}'
    if not isinstance(raw, dict) or not raw:
        raise InvalidClassMapping(f"The class mapping '{path}' must be a JSON object such as {example}.")
    mapping: dict[int, str] = {}
    for key, name in raw.items():
        if not str(key).isdigit() or int(key) < 1 or not isinstance(name, str) or not name.strip():
            raise InvalidClassMapping(
                f"The class mapping '{path}' maps {key!r} to {name!r}; keys are pixel values from 1 up "
                f"and values are class names, as in {example}."
            )
        mapping[int(key)] = name.strip()
    return mapping


# --- Objects -----------------------------------------------------------------------------------


def instance_regions(mask: np.ndarray) -> Iterator[tuple[int, np.ndarray, tuple[slice, slice]]]:
    """(value, bool crop, bounding box) of each object of an H x W instance mask, by value."""
    values = np.unique(mask)
    values = values[values != 0]
    labels = np.where(mask != 0, np.searchsorted(values, mask) + 1, 0).astype(np.int32)
    for index, box in enumerate(ndi.find_objects(labels)):
        if box is not None:
            yield int(values[index]), labels[box] == index + 1, box


def class_regions(mask: np.ndarray, *, values: list[int]) -> Iterator[tuple[np.ndarray, tuple[slice, slice]]]:
    """(bool crop, bounding box) of each 8-connected region where the mask holds one of `values`."""
    regions, _ = ndi.label(np.isin(mask, values), structure=_EIGHT)
    for index, box in enumerate(ndi.find_objects(regions), start=1):
        if box is not None:
            yield regions[box] == index, box


def segmentation_of(
    crop: np.ndarray, *, box: tuple[slice, slice], height: int, width: int
) -> list[list[float]] | Rle:
    """Polygon rings of one object (bool crop at `box` of an H x W image), or RLE when rings
    would lose part of it (a hole) or add to it."""
    rows, cols = box
    rings = mask_to_polygons(crop)
    drawn = annotation_mask(rings, height=crop.shape[0], width=crop.shape[1])
    overlap = np.count_nonzero(drawn & crop) / max(int(np.count_nonzero(drawn | crop)), 1)
    if rings and overlap >= POLYGON_MIN_IOU:
        return [_offset(ring, x=cols.start, y=rows.start) for ring in rings]
    full = np.zeros((height, width), dtype=np.uint8, order="F")
    full[box] = crop
    encoded = mask_utils.encode(full)
    return Rle(size=(height, width), counts=encoded["counts"].decode("ascii"))


def _offset(ring: list[float], *, x: int, y: int) -> list[float]:
    return [value + (x if i % 2 == 0 else y) for i, value in enumerate(ring)]


@dataclass
class _Builder:
    """Collects the COCO records of the images converted so far."""

    categories: dict[str, int]
    images: list[CocoImage]
    annotations: list[CocoAnnotation]
    rle: int = 0

    def add_image(self, *, file_name: str, height: int, width: int) -> int:
        image_id = len(self.images) + 1
        self.images.append(
            CocoImage(id=image_id, file_name=file_name, width=width, height=height, status="completed")
        )
        return image_id

    def add_object(
        self, *, image: CocoImage, category: str, crop: np.ndarray, box: tuple[slice, slice]
    ) -> None:
        segmentation = segmentation_of(crop, box=box, height=image.height, width=image.width)
        self.rle += isinstance(segmentation, Rle)
        self.annotations.append(
            CocoAnnotation(
                id=len(self.annotations) + 1,
                image_id=image.id,
                category_id=self.categories[category],
                segmentation=segmentation,
                bbox=bounding_box(*box),
                area=float(np.count_nonzero(crop)),
            )
        )


def import_masks(
    source: Path, destination: Path, *, semantic_classes: Path | None = None, class_name: str = "object"
) -> ImportSummary:
    """Convert the mask folder `source` into the dataset folder `destination`.

    Instance masks (no `semantic_classes`): each nonzero pixel value is one object of `class_name`.
    Semantic masks: each connected region of a class named in the `semantic_classes` JSON file is one
    object. Every file is read and checked before anything is written; then the images are copied
    into `destination` and `destination/annotations.json` is written (replacing one that is there).
    """
    if destination.resolve() == source.resolve():
        raise MaskImportError("The destination must be another folder than the source.")
    mapping = read_class_mapping(semantic_classes) if semantic_classes is not None else None
    if mapping is None and not class_name.strip():
        raise MaskImportError("The class name must not be empty.")
    names = (
        list(dict.fromkeys(mapping[value] for value in sorted(mapping))) if mapping else [class_name.strip()]
    )
    pairs, without = find_pairs(source)
    builder = _Builder(
        categories={name: index for index, name in enumerate(names, start=1)}, images=[], annotations=[]
    )
    for pair in pairs:
        _convert_pair(pair, builder=builder, mapping=mapping)
    for name in without:
        logger.warning("Skipped the image '%s': it has no mask", name)
    dataset = CocoDataset(
        images=builder.images,
        categories=[
            CocoCategory(id=category_id, name=name) for name, category_id in builder.categories.items()
        ],
        annotations=builder.annotations,
        info={"description": f"Converted from label masks in '{source.name}' by segpipe import-masks"},
    )
    annotations_file = _write(dataset, pairs=pairs, destination=destination)
    return ImportSummary(
        annotations_file=annotations_file,
        images=len(builder.images),
        annotations=len(builder.annotations),
        categories=tuple(names),
        rle_annotations=builder.rle,
        images_without_masks=tuple(without),
    )


def _convert_pair(pair: MaskPair, *, builder: _Builder, mapping: dict[int, str] | None) -> None:
    """Check one image and its mask and add their records."""
    height, width = image_size(pair.image)
    mask = read_mask(pair.mask)
    if mask.shape != (height, width):
        raise MaskSizeMismatch(
            f"The mask '{pair.mask.name}' is {mask.shape[1]} x {mask.shape[0]} pixels but its image "
            f"'{pair.image.name}' is {width} x {height}.",
            image=pair.image.name,
            mask=pair.mask.name,
        )
    image_id = builder.add_image(file_name=pair.image.name, height=height, width=width)
    image = builder.images[image_id - 1]
    if mapping is None:
        category = next(iter(builder.categories))
        for _, crop, box in instance_regions(mask):
            builder.add_object(image=image, category=category, crop=crop, box=box)
        return
    unknown = sorted(set(np.unique(mask).tolist()) - set(mapping) - {0})
    if unknown:
        raise InvalidMask(
            f"The mask '{pair.mask.name}' holds pixel values {unknown[:10]} "
            "that the class mapping does not name.",
            file=pair.mask.name,
        )
    for category in builder.categories:
        values = [value for value, name in mapping.items() if name == category]
        for crop, box in class_regions(mask, values=values):
            builder.add_object(image=image, category=category, crop=crop, box=box)


def _write(dataset: CocoDataset, *, pairs: list[MaskPair], destination: Path) -> Path:
    """Copy the images and write annotations.json (last, and atomically)."""
    destination.mkdir(parents=True, exist_ok=True)
    for pair in pairs:
        shutil.copyfile(pair.image, destination / pair.image.name)
    path = destination / DATASET_FILE
    atomic.write_text(path, dataset.model_dump_json(exclude_none=True))
    return path


# --- Command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`segpipe import-masks SOURCE DEST [--semantic-classes FILE] [--class-name NAME]`.

    Prints a one-line summary and returns 0, or prints the error (or the usage) and returns 1.
    """
    parser = argparse.ArgumentParser(
        prog="segpipe import-masks",
        description="Convert a folder of label masks (Cellpose/StarDist layout) into a segpipe dataset.",
    )
    parser.add_argument("source", type=Path, help="folder with images and their masks")
    parser.add_argument(
        "destination", type=Path, help="dataset folder to write (annotations.json and images)"
    )
    parser.add_argument(
        "--semantic-classes",
        type=Path,
        default=None,
        help='JSON file naming the classes of a semantic mask, such as {"1": "nucleus", "2": "cytoplasm"}',
    )
    parser.add_argument("--class-name", default="object", help="class of every object of an instance mask")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage or the help
        return 0 if exc.code in (0, None) else 1
    try:
        summary = import_masks(
            args.source, args.destination, semantic_classes=args.semantic_classes, class_name=args.class_name
        )
    except SegpipeError as exc:
        sys.stderr.write(f"segpipe import-masks: {exc.message}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"segpipe import-masks: {exc.strerror or exc}: {exc.filename or ''}\n")
        return 1
    sys.stdout.write(summary.line() + "\n")
    return 0
