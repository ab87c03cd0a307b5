"""Merge the per-instance results of an analysis into one set of outputs.

Each instance of the processing job writes `shards/{host}/coco.json, objects.csv, images.csv,
summary.json` for the images it was given. `merge_shards` reads every shard, checks it against the
contract (shard files are untrusted input: a container bug or a hand-edited prefix must not end in a
half-written or inconsistent merge), and only then writes the four merged outputs beside the shards.

The merge is deterministic whatever the instance count: images are sorted by file name and numbered
1..M in that order, annotations are numbered 1..N in (image order, then mask label order), the rows
of `objects.csv` (whose `id` is the annotation id of the merged `coco.json`) and of `images.csv`
follow the same order, and every cell is passed through as the container wrote it. One instance and
four instances over the same images therefore give the same `coco.json`, `objects.csv` and
`images.csv`, byte for byte; `summary.json` differs only in `hosts` and timing.

Pure Python (json, csv): it runs in the job-state Lambda.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from segpipe.dal.interfaces import ArtifactStore
from segpipe.errors import ObjectNotFound, SegpipeError
from segpipe.models import keys
from segpipe.models.analysis import (
    OUTPUT_NAMES,
    AnalysisSummary,
    AnalyzeConfig,
    ClassTotals,
    image_columns,
    object_columns,
)
from segpipe.models.coco import Polygons, RelativeFileName, Rle
from segpipe.models.trainer_io import prediction_stem

#: The files every instance writes under `shards/{host}/`.
SHARD_FILES: tuple[str, ...] = ("coco.json", "objects.csv", "images.csv", "summary.json")
#: A host name as SageMaker gives it (`algo-1`), or any plain name the local runner chooses.
HOST_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_HOST_RE = re.compile(HOST_PATTERN)
_INTENSITY_RE = re.compile(r"^mean_intensity_(\d+)$")
#: Columns of objects.csv whose cells are checked as integers; every other cell past `class` as a number.
_INTEGER_OBJECT_COLUMNS = frozenset({"id", "label"})
_TEXT_OBJECT_COLUMNS = frozenset({"image", "stem", "class"})
#: Summary figures are rounded so that they do not depend on the order floats were added in.
_DECIMALS = 6


class ShardsUnreadable(SegpipeError):
    """The job's per-instance results cannot be merged; the analysis fails with this message."""

    code = "analysis_shards_unreadable"


class ShardMissing(ShardsUnreadable):
    """No shard at all, fewer shards than instances, or a shard without one of its four files."""

    code = "analysis_shard_missing"


class ShardMalformed(ShardsUnreadable):
    """A shard file that does not parse, or that contradicts the job's configuration or itself."""

    code = "analysis_shard_malformed"


# --- the shard files, as the contract allows them -------------------------------------------


class _ShardModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ShardImage(_ShardModel):
    id: int = Field(ge=1, description="Image id, unique in the shard")
    file_name: RelativeFileName = Field(description="Path relative to the analysed folder")
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class ShardCategory(_ShardModel):
    id: int = Field(ge=0)
    name: str = Field(min_length=1)
    supercategory: str | None = None


class ShardAnnotation(_ShardModel):
    id: int = Field(ge=1, description="Annotation id, unique in the shard; objects.csv's `id`")
    image_id: int
    category_id: int
    segmentation: Polygons | Rle
    bbox: list[float] = Field(min_length=4, max_length=4)
    area: float = Field(ge=0, allow_inf_nan=False)
    score: float = Field(ge=0, le=1)
    iscrowd: Literal[0] = 0


class ShardCoco(_ShardModel):
    images: list[ShardImage]
    categories: list[ShardCategory] = Field(min_length=1)
    annotations: list[ShardAnnotation] = Field(default_factory=list)


@dataclass
class Shard:
    """One instance's results, parsed and checked."""

    host: str
    coco: ShardCoco
    objects_header: list[str]
    objects: dict[int, list[str]]
    """objects.csv rows by annotation id."""
    images: dict[str, list[str]]
    """images.csv rows by file name."""
    summary: AnalysisSummary
    labels: dict[int, int] = field(default_factory=dict)
    """Mask label of each annotation id (objects.csv's `label`)."""


# --- reading ---------------------------------------------------------------------------------


#: A problem quotes what it found (a header, a cell); cut so that the failure reason stays a sentence.
MAX_PROBLEM = 400


def _malformed(host: str, name: str, problem: str, **context: Any) -> ShardMalformed:
    if len(problem) > MAX_PROBLEM:
        problem = problem[: MAX_PROBLEM - 3] + "..."
    return ShardMalformed(
        f"The results of instance {host} cannot be merged: {name} {problem}.",
        host=host,
        file=name,
        **context,
    )


def _read(artifacts: ArtifactStore, key: str, host: str, name: str) -> bytes:
    try:
        return artifacts.get_bytes(key)
    except ObjectNotFound as error:
        raise ShardMissing(
            f"Instance {host} wrote no {name}; its results cannot be merged.", host=host, file=name, key=key
        ) from error


def _text(data: bytes, host: str, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _malformed(host, name, f"is not UTF-8 text (byte {error.start})") from None


def _csv_rows(data: bytes, host: str, name: str) -> tuple[list[str], list[list[str]]]:
    try:
        rows = list(csv.reader(io.StringIO(_text(data, host, name), newline="")))
    except csv.Error as error:
        raise _malformed(host, name, f"is not valid CSV ({error})") from None
    if not rows:
        raise _malformed(host, name, "is empty (it needs at least its header)")
    header, body = rows[0], [row for row in rows[1:] if row]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise _malformed(
                host, name, f"has {len(row)} cells on row {number}, its header {len(header)}", row=number
            )
    return header, body


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "the document"
    return f"breaks the contract at {where}: {first.get('msg')}"


def _parse_coco(data: bytes, host: str, config: AnalyzeConfig) -> ShardCoco:
    try:
        coco = ShardCoco.model_validate_json(data)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise _malformed(host, "coco.json", "is not valid JSON") from None
        raise _malformed(host, "coco.json", _problem(error)) from None
    names = [category.name for category in sorted(coco.categories, key=lambda c: c.id)]
    if names != config.classes:
        raise _malformed(host, "coco.json", f"has categories {names}, the job's classes are {config.classes}")
    image_ids = Counter(image.id for image in coco.images)
    annotation_ids = Counter(annotation.id for annotation in coco.annotations)
    if len(image_ids) != len(coco.images) or len(annotation_ids) != len(coco.annotations):
        raise _malformed(host, "coco.json", "repeats an image or annotation id")
    if len({image.file_name for image in coco.images}) != len(coco.images):
        raise _malformed(host, "coco.json", "lists an image twice")
    category_names = {category.id: category.name for category in coco.categories}
    if len(category_names) != len(coco.categories):
        raise _malformed(host, "coco.json", "repeats a category id")
    for annotation in coco.annotations:
        name = category_names.get(annotation.category_id)
        if annotation.image_id not in image_ids or name is None:
            raise _malformed(
                host, "coco.json", f"has annotation {annotation.id} of an unknown image or category"
            )
        if annotation.score < config.thresholds[name]:
            raise _malformed(
                host,
                "coco.json",
                f"keeps annotation {annotation.id} scored {annotation.score}, below the {name!r} "
                f"threshold {config.thresholds[name]}",
            )
    return coco


def _number(cell: str, *, integer: bool) -> bool:
    try:
        value = int(cell) if integer else float(cell)
    except ValueError:
        return cell == "" and not integer  # a measurement that does not apply (e.g. no µm) may be empty
    return integer or not math.isinf(value)


def _all_numbers(row: list[str], indices: list[int]) -> bool:
    """The fast path of the cell check: every measured cell a finite-or-NaN number (ids and labels
    are checked as integers where they are used)."""
    try:
        values = [float(row[index]) for index in indices]
    except ValueError:
        return False
    return math.inf not in values and -math.inf not in values


def _parse_objects(
    data: bytes, host: str, coco: ShardCoco, config: AnalyzeConfig
) -> tuple[list[str], dict[int, list[str]], dict[int, int]]:
    header, body = _csv_rows(data, host, "objects.csv")
    channels = sum(1 for column in header if _INTENSITY_RE.match(column))
    expected = object_columns(channels=channels, pixel_size=config.pixel_size)
    if header != expected:
        raise _malformed(host, "objects.csv", f"has the header {header}, the contract's is {expected}")
    at = {column: index for index, column in enumerate(header)}
    images = {image.id: image for image in coco.images}
    names = {category.id: category.name for category in coco.categories}
    annotations = {annotation.id: annotation for annotation in coco.annotations}
    rows: dict[int, list[str]] = {}
    labels: dict[int, int] = {}
    measured = [index for index, column in enumerate(header) if column not in _TEXT_OBJECT_COLUMNS]
    for number, row in enumerate(body, start=2):
        if not _all_numbers(row, measured):
            for column, cell in zip(header, row, strict=True):
                if column not in _TEXT_OBJECT_COLUMNS and not _number(
                    cell, integer=column in _INTEGER_OBJECT_COLUMNS
                ):
                    raise _malformed(host, "objects.csv", f"has {cell[:40]!r} as {column} on row {number}")
        ident = int(row[at["id"]])
        annotation = annotations.get(ident)
        if annotation is None or ident in rows:
            raise _malformed(
                host, "objects.csv", f"row {number} names annotation {ident}, unknown or repeated"
            )
        image = images[annotation.image_id]
        if row[at["image"]] != image.file_name or row[at["class"]] != names[annotation.category_id]:
            raise _malformed(
                host, "objects.csv", f"row {number} disagrees with coco.json about annotation {ident}"
            )
        label = int(row[at["label"]])
        if label < 1:
            raise _malformed(host, "objects.csv", f"row {number} has label {label}; labels start at 1")
        rows[ident] = row
        labels[ident] = label
    if len(rows) != len(annotations):
        raise _malformed(
            host, "objects.csv", f"has {len(rows)} rows for the {len(annotations)} annotations of coco.json"
        )
    return header, rows, labels


def _parse_images(data: bytes, host: str, coco: ShardCoco, config: AnalyzeConfig) -> dict[str, list[str]]:
    header, body = _csv_rows(data, host, "images.csv")
    expected = image_columns(config.classes)
    if header != expected:
        raise _malformed(host, "images.csv", f"has the header {header}, the contract's is {expected}")
    names = {category.id: category.name for category in coco.categories}
    counted: dict[tuple[int, str], int] = Counter(
        (annotation.image_id, names[annotation.category_id]) for annotation in coco.annotations
    )
    by_name = {image.file_name: image for image in coco.images}
    rows: dict[str, list[str]] = {}
    for number, row in enumerate(body, start=2):
        cells = dict(zip(header, row, strict=True))
        image = by_name.get(cells["image"])
        if image is None or cells["image"] in rows:
            raise _malformed(
                host, "images.csv", f"row {number} names an image coco.json lacks, or repeats one"
            )
        if cells["stem"] != prediction_stem(image.file_name):
            raise _malformed(
                host, "images.csv", f"row {number} has the stem {cells['stem'][:80]!r}, not the file's"
            )
        numbers = [cell for column, cell in cells.items() if column not in ("image", "stem")]
        if not all(_number(cell, integer=False) and cell for cell in numbers):
            raise _malformed(host, "images.csv", f"row {number} holds a cell that is not a number")
        if (cells["width"], cells["height"]) != (str(image.width), str(image.height)):
            raise _malformed(host, "images.csv", f"row {number} gives {image.file_name!r} another size")
        for name in config.classes:
            if cells[f"objects[{name}]"] != str(counted.get((image.id, name), 0)):
                raise _malformed(
                    host, "images.csv", f"row {number} counts {name!r} objects unlike coco.json", row=number
                )
        rows[image.file_name] = row
    if len(rows) != len(coco.images):
        raise _malformed(host, "images.csv", f"has {len(rows)} rows for the {len(coco.images)} images")
    return rows


def _parse_summary(data: bytes, host: str, coco: ShardCoco, config: AnalyzeConfig) -> AnalysisSummary:
    try:
        summary = AnalysisSummary.model_validate_json(data)
    except ValidationError as error:
        raise _malformed(host, "summary.json", _problem(error)) from None
    ours = (config.project, config.analysis, config.version)
    if (summary.project, summary.analysis, summary.version) != ours:
        raise _malformed(
            host,
            "summary.json",
            f"belongs to project {summary.project!r}, analysis {summary.analysis}, version {summary.version}",
        )
    if (summary.images, summary.objects) != (len(coco.images), len(coco.annotations)):
        raise _malformed(host, "summary.json", "counts other images or objects than coco.json")
    return summary


def read_shard(artifacts: ArtifactStore, *, project: str, config: AnalyzeConfig, host: str) -> Shard:
    """Parse and check the four files of one instance. Raises `ShardMissing` or `ShardMalformed`."""
    prefix = f"{keys.analysis_shards_prefix(project, config.analysis)}{host}/"
    raw = {name: _read(artifacts, f"{prefix}{name}", host, name) for name in SHARD_FILES}
    coco = _parse_coco(raw["coco.json"], host, config)
    header, objects, labels = _parse_objects(raw["objects.csv"], host, coco, config)
    images = _parse_images(raw["images.csv"], host, coco, config)
    summary = _parse_summary(raw["summary.json"], host, coco, config)
    return Shard(host, coco, header, objects, images, summary, labels)


def shard_hosts(artifacts: ArtifactStore, project: str, analysis: int) -> list[str]:
    """The hosts that left anything under `shards/`, sorted."""
    prefix = keys.analysis_shards_prefix(project, analysis)
    hosts: set[str] = set()
    for key in artifacts.list_keys(prefix):
        host, _, rest = key[len(prefix) :].partition("/")
        if rest:
            if not _HOST_RE.fullmatch(host):
                raise ShardMalformed(
                    f"The job's results hold a folder {host[:80]!r} under shards/ that no instance writes.",
                    host=host[:80],
                )
            hosts.add(host)
    return sorted(hosts)


# --- merging ---------------------------------------------------------------------------------


def _config(artifacts: ArtifactStore, project: str, analysis: int) -> AnalyzeConfig:
    key = keys.analysis_config_key(project, analysis)
    try:
        return AnalyzeConfig.model_validate_json(artifacts.get_bytes(key))
    except ObjectNotFound as error:
        raise ShardMissing(f"The analysis has no job configuration at {key}.", key=key) from error
    except ValidationError as error:
        raise ShardMalformed(f"The job configuration at {key} {_problem(error)}.", key=key) from None


def _csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


@dataclass
class _Placed:
    shard: Shard
    image: ShardImage


def merge_shards(
    artifacts: ArtifactStore,
    *,
    project: str,
    analysis: int,
    config: AnalyzeConfig | None = None,
    expected_hosts: int | None = None,
) -> AnalysisSummary:
    """Merge every `shards/{host}/` of the analysis into `coco.json`, `objects.csv`, `images.csv`
    and `summary.json` under its prefix, and return the merged summary.

    `config` defaults to the job's own `analyze.json`; `expected_hosts` (the instance count) makes a
    missing instance an error rather than a silently smaller analysis. Nothing is written unless
    every shard parsed and agreed with the others. Raises `ShardMissing` or `ShardMalformed` (the
    analysis can never be merged) and lets a failed read (`ServiceUnavailable`) through (try again).
    """
    config = config or _config(artifacts, project, analysis)
    hosts = shard_hosts(artifacts, project, analysis)
    if not hosts:
        raise ShardMissing(
            "The job finished but no instance wrote results under "
            f"{keys.analysis_shards_prefix(project, analysis)}.",
        )
    if expected_hosts is not None and len(hosts) < expected_hosts:
        raise ShardMissing(
            f"Only {len(hosts)} of the job's {expected_hosts} instances wrote results ({', '.join(hosts)}).",
            hosts=len(hosts),
            expected=expected_hosts,
        )
    shards = [read_shard(artifacts, project=project, config=config, host=host) for host in hosts]
    summary, outputs = _merge(shards, config)
    artifacts.put_many(
        (keys.analysis_output_key(project, analysis, name), outputs[name], _CONTENT_TYPES[name])
        for name in OUTPUT_NAMES
    )
    return summary


_CONTENT_TYPES = {
    "coco.json": "application/json",
    "summary.json": "application/json",
    "objects.csv": "text/csv",
    "images.csv": "text/csv",
}


def _place_images(shards: list[Shard]) -> list[_Placed]:
    placed: dict[str, _Placed] = {}
    stems: dict[str, str] = {}
    for shard in shards:
        for image in shard.coco.images:
            other = placed.get(image.file_name)
            if other is not None:
                raise ShardMalformed(
                    f"Instances {other.shard.host} and {shard.host} both analysed {image.file_name!r}.",
                    file_name=image.file_name,
                )
            stem = prediction_stem(image.file_name)
            if stems.setdefault(stem, image.file_name) != image.file_name:
                raise ShardMalformed(
                    f"Images {stems[stem]!r} and {image.file_name!r} share the stem {stem!r}.", stem=stem
                )
            placed[image.file_name] = _Placed(shard, image)
    return [placed[name] for name in sorted(placed)]


def _merge(shards: list[Shard], config: AnalyzeConfig) -> tuple[AnalysisSummary, dict[str, bytes]]:
    """The merged outputs of `shards` (their images renumbered in file-name order) and summary."""
    _check_alike(shards)
    merged = _Merged(shards=shards, classes=config.classes)
    for image_id, place in enumerate(_place_images(shards), start=1):
        merged.add(image_id, place)
    coco = {
        "info": {
            "description": f"segpipe analysis {config.analysis} of project {config.project}, "
            f"version {config.version}: kept objects, to correct and train on",
            "version": str(config.version),
        },
        "images": merged.coco_images,
        "categories": [
            category.model_dump(mode="json", exclude_none=True) for category in shards[0].coco.categories
        ],
        "annotations": merged.coco_annotations,
    }
    summary = _summary(config, merged)
    outputs = {
        "coco.json": json.dumps(coco, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        "objects.csv": _csv_bytes(shards[0].objects_header, merged.object_rows),
        "images.csv": _csv_bytes(image_columns(config.classes), merged.image_rows),
        "summary.json": summary.model_dump_json(indent=2).encode("utf-8"),
    }
    return summary, outputs


def _check_alike(shards: list[Shard]) -> None:
    if len({tuple(shard.objects_header) for shard in shards}) > 1:
        raise ShardMalformed("The instances wrote objects.csv with different channel counts.")
    categories = shards[0].coco.categories
    if any(shard.coco.categories != categories for shard in shards):
        raise ShardMalformed("The instances wrote coco.json with different categories.")


@dataclass
class _Merged:
    """The merged rows, built one placed image at a time; annotation ids count from 1 over all."""

    shards: list[Shard]
    classes: list[str]
    coco_images: list[dict[str, Any]] = field(default_factory=list)
    coco_annotations: list[dict[str, Any]] = field(default_factory=list)
    object_rows: list[list[str]] = field(default_factory=list)
    image_rows: list[list[str]] = field(default_factory=list)
    totals: dict[str, list[float]] = field(default_factory=dict)
    pixels: int = 0

    def __post_init__(self) -> None:
        self.totals = {name: [0, 0.0] for name in self.classes}
        self._names = {category.id: category.name for category in self.shards[0].coco.categories}
        self._id_column = self.shards[0].objects_header.index("id")
        self._by_image: dict[tuple[str, int], list[ShardAnnotation]] = defaultdict(list)
        for shard in self.shards:
            for annotation in shard.coco.annotations:
                self._by_image[(shard.host, annotation.image_id)].append(annotation)

    def add(self, image_id: int, place: _Placed) -> None:
        shard, image = place.shard, place.image
        self.pixels += image.width * image.height
        self.coco_images.append(
            {
                "id": image_id,
                "file_name": image.file_name,
                "width": image.width,
                "height": image.height,
                "status": "in_progress",
            }
        )
        self.image_rows.append(shard.images[image.file_name])
        found = self._by_image.get((shard.host, image.id), [])
        for annotation in sorted(found, key=lambda a: (shard.labels[a.id], a.id)):
            self._add_object(image_id, shard, annotation)

    def _add_object(self, image_id: int, shard: Shard, annotation: ShardAnnotation) -> None:
        ident = len(self.coco_annotations) + 1
        self.coco_annotations.append(
            {
                "id": ident,
                "image_id": image_id,
                "category_id": annotation.category_id,
                "segmentation": (
                    annotation.segmentation.model_dump(mode="json")
                    if isinstance(annotation.segmentation, Rle)
                    else annotation.segmentation
                ),
                "bbox": annotation.bbox,
                "area": annotation.area,
                "score": annotation.score,
                "iscrowd": 0,
            }
        )
        row = list(shard.objects[annotation.id])
        row[self._id_column] = str(ident)
        self.object_rows.append(row)
        total = self.totals[self._names[annotation.category_id]]
        total[0] += 1
        total[1] += annotation.area


def _summary(config: AnalyzeConfig, merged: _Merged) -> AnalysisSummary:
    area_scale = config.pixel_size**2 if config.pixel_size is not None else None
    return AnalysisSummary(
        **config.run_fields(),
        images=len(merged.coco_images),
        megapixels=round(merged.pixels / 1e6, _DECIMALS),
        objects=len(merged.coco_annotations),
        per_class={
            name: ClassTotals(
                objects=int(count),
                area=round(area, _DECIMALS),
                area_um2=round(area * area_scale, _DECIMALS) if area_scale is not None else None,
            )
            for name, (count, area) in merged.totals.items()
        },
        hosts=[shard.host for shard in merged.shards],
        seconds=round(max(shard.summary.seconds for shard in merged.shards), 3),
        inference_seconds=round(sum(shard.summary.inference_seconds for shard in merged.shards), 3),
    )
