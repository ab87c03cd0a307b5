"""Validate a training request against its dataset, and plan the train/test split.

`validate_request` returns one report (errors block, warnings advise) and, when nothing blocks,
the `SplitPlan` that `split.render_manifests` writes. It reads the dataset through a
`DatasetStore` only: the annotations file, the folder's file list and the first bytes of a few
images. Pure Python and pydantic; no AWS, no environment.

Rules worth knowing (the rule table is in docs/ARCHITECTURE.md, "Validation rules"):

- Status. When no image carries a `status`, every image counts as completed. As soon as one
  image carries one, only images marked `"completed"` are used: an image without a status in
  such a dataset is treated as unfinished (training on half-annotated images teaches the model
  that unannotated objects are background), and the report warns with
  `images_without_status`.
- Included annotations are the annotations of requested classes on completed images. A
  completed image without included annotations is kept as a negative example.
- Broken annotations (a ring with fewer than 3 points or an odd number of coordinates, zero
  area, a vertex more than `EDGE_TOLERANCE_PX` outside the image, a malformed RLE or one of
  another size, an unknown image or category id) are dropped with a warning, unless more than
  `MAX_BROKEN_SHARE` of the candidates are broken: then the dataset is refused, because so much
  breakage means the export is wrong rather than a few slips. Candidates are the annotations
  that are neither of an excluded class nor on an unfinished image.
- A sampled image header whose size differs from the COCO `width`/`height` is an error
  (`image_size_mismatch`): the polygons are in the COCO coordinate system, so the masks the
  trainer draws would not line up with the pixels, and the job would spend GPU hours learning
  from misplaced labels. The fix (re-export with the right sizes) is cheap; a wasted job is not.
- Missing `area` and `bbox` fields of valid annotations are filled in (shoelace area of the
  rings, bounds of the vertices), so the manifests work with COCO evaluators.

Performance: the annotations file is parsed once by pydantic-core's Rust JSON parser and
validated into plain dicts for annotations (`split.AnnotationRecord`); the work per annotation is
a few dictionary look-ups and, per ring, C-level `map`, `sum` and `sort` over slices; the
manifests are serialised from those dicts by pydantic without validating them again. The
garbage collector is paused while validating: the parse creates millions of acyclic objects,
and collections triggered on the way would walk all of them again and again.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter, mul
from typing import Any, Protocol

import pydantic_core
from pydantic import ValidationError

from segpipe.dal.interfaces import DatasetStore
from segpipe.errors import DatasetNotFound, DatasetTooLarge, NotFoundError
from segpipe.logic import estimate
from segpipe.logic.image_headers import (
    HEADER_BYTES,
    HeaderBeyondHead,
    ImageHeader,
    UnreadableHeader,
    UnsupportedFormat,
    read_header,
)
from segpipe.logic.jobspec import ResolvedTraining
from segpipe.logic.memory import gc_paused
from segpipe.logic.split import (
    AnnotationRecord,
    DatasetDocument,
    SplitAssignment,
    SplitPlan,
    SplitSide,
    assign_split,
    document_adapter,
)
from segpipe.models.coco import CocoCategory, CocoImage, Polygons, Rle
from segpipe.models.common import Preset, VersionStatus
from segpipe.models.presets import PRESETS
from segpipe.models.report import (
    ClassCounts,
    ErrorCode,
    Estimate,
    IgnoredCounts,
    ImageStats,
    Issue,
    TrainingDetails,
    ValidationReport,
    WarningCode,
)
from segpipe.models.request import FractionTestSet, ImagesTestSet, NoTestSet, TrainingRequest
from segpipe.models.trainer_io import MAX_STEM_LENGTH, prediction_stem
from segpipe.models.version import ModelVersion

logger = logging.getLogger(__name__)

# --- Thresholds --------------------------------------------------------------------------------

#: A training needs MORE than this many valid included annotations (a product rule).
MIN_ANNOTATIONS = 50
#: More than this share of broken candidate annotations refuses the dataset; fewer are dropped.
MAX_BROKEN_SHARE = 0.2
#: A vertex may lie this far outside the image (pixel-edge conventions differ between tools).
EDGE_TOLERANCE_PX = 1.0
#: Classes with fewer valid annotations than this get `few_annotations_for_class`.
FEW_ANNOTATIONS_PER_CLASS = 30
#: `class_imbalance` when the most frequent class has this many times the annotations of the rarest.
CLASS_IMBALANCE_RATIO = 10.0
#: `small_test_set` below either of these.
MIN_TEST_IMAGES = 5
MIN_TEST_ANNOTATIONS = 30
#: `tiny_objects` when more than this share of a class is narrower than half a ViT patch.
TINY_OBJECT_SHARE = 0.1
#: `images_without_annotations` when more than this share of included images has no object.
NEGATIVE_IMAGE_SHARE = 0.5
#: Image headers read per request, and how many names an issue lists at most.
HEADER_SAMPLE = 16
EXAMPLES = 10
#: Class medians are computed over at most this many areas (evenly spread) to keep sorting cheap.
MEDIAN_SAMPLE = 100_001
#: Largest annotations.json read when the caller sets no limit (settings: MAX_ANNOTATIONS_BYTES).
MAX_ANNOTATIONS_BYTES = 512 * 1024 * 1024
#: File extensions the trainer reads, and their format names.
IMAGE_FORMATS: dict[str, str] = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
}


# --- Public interface --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingDefaults:
    preset: Preset  # used when the request names none
    epochs: int
    tile_size: int


@dataclass(frozen=True)
class ComputeRules:
    """What a deployment lets one request spend (template parameters, through settings)."""

    allowed_instance_types: frozenset[str]
    max_instance_hours: float  # instance_count x max_hours of one request
    max_running_trainings: int  # versions queued or training at once in one project


@dataclass(frozen=True)
class Validation:
    report: ValidationReport  # ok, errors, warnings, details (TrainingDetails filled in)
    plan: SplitPlan | None  # None exactly when the report has errors
    training: ResolvedTraining  # the preset, epochs and tile size a job of this request runs with
    base: ModelVersion | None  # the version named in `base`, read once (None: a preset or no base)


def validate_request(
    request: TrainingRequest,
    *,
    project: str,
    store: DatasetStore,
    defaults: TrainingDefaults,
    base_lookup: Callable[[int], ModelVersion | None] | None = None,
    compute_rules: ComputeRules | None = None,
    running_trainings: Callable[[], Sequence[int]] | None = None,
    max_annotations_bytes: int = MAX_ANNOTATIONS_BYTES,
) -> Validation:
    """Check `request` against its dataset in `store` and plan the split.

    `base_lookup` finds a previous version of the project; None (offline) skips checking a
    version named in `base`. `compute_rules` limits what the request may spend (None: no
    limits, for offline use); `running_trainings` lists the project's versions that are queued
    or training (None skips that limit).
    """
    issues = Issues()
    number = request.base_version()
    base = base_lookup(number) if base_lookup is not None and number is not None and number >= 1 else None
    read_base = None if base_lookup is None else lambda _: base  # the checks see the version read here
    plan: SplitPlan | None = None
    with gc_paused():
        training = _resolve_training(request, defaults=defaults, base_lookup=read_base, issues=issues)
        if compute_rules is not None:
            _check_compute(request, rules=compute_rules, running=running_trainings, issues=issues)
        loaded = _load_dataset(
            request, project=project, store=store, max_bytes=max_annotations_bytes, issues=issues
        )
        if loaded is None:
            if not request.classes:
                _no_classes(issues, available=None)
            details = TrainingDetails(
                dataset=request.dataset, model_type=request.model_type, **training.details()
            )
            report = issues.report(details)
        else:
            name, dataset = loaded
            report, plan = _validate_dataset(
                request,
                dataset=dataset,
                name=name,
                source=_Source(store, project, name),
                training=training,
                issues=issues,
            )
    resolved = ResolvedTraining(preset=training.preset, epochs=training.epochs, tile_size=training.tile_size)
    return Validation(report=report, plan=plan, training=resolved, base=base)


# --- Issues and small helpers ------------------------------------------------------------------


class Issues:
    """Errors and warnings in the order found."""

    def __init__(self) -> None:
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []

    def error(self, code: ErrorCode, message: str, **context: Any) -> None:
        self.errors.append(Issue(code=code.value, message=message, context=context))

    def warn(self, code: WarningCode, message: str, **context: Any) -> None:
        self.warnings.append(Issue(code=code.value, message=message, context=context))

    def report(self, details: TrainingDetails) -> ValidationReport:
        return ValidationReport.from_issues(self.errors, self.warnings, details)


@dataclass(frozen=True)
class _Source:
    store: DatasetStore
    project: str
    dataset: str


def examples(names: Sequence[str]) -> list[str]:
    return list(names[:EXAMPLES])


def listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:EXAMPLES])
    return shown + (f" and {len(names) - EXAMPLES} more" if len(names) > EXAMPLES else "")


def _extension(file_name: str) -> str:
    """The lower-case extension with its dot ("" when there is none)."""
    base = file_name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[dot:].lower() if dot > 0 else ""


def _format_name(file_name: str) -> str:
    """The format, or the extension of an unsupported file ("bmp"; "none" without one)."""
    return _format_of(file_name) or _extension(file_name).lstrip(".") or "none"


def _format_of(file_name: str) -> str | None:
    """ "png", "jpeg" or "tiff" by extension; None for anything the trainer does not read."""
    return IMAGE_FORMATS.get(_extension(file_name))


# --- Training settings and base ----------------------------------------------------------------


@dataclass(frozen=True)
class _Training:
    preset: Preset
    epochs: int
    tile_size: int

    @property
    def patch(self) -> int:
        return PRESETS[self.preset].patch_size  # tiles are fed at native resolution

    def details(self) -> dict[str, Any]:
        return {"preset": self.preset.value, "epochs": self.epochs, "tile_size": self.tile_size}


def _resolve_training(
    request: TrainingRequest,
    *,
    defaults: TrainingDefaults,
    base_lookup: Callable[[int], ModelVersion | None] | None,
    issues: Issues,
) -> _Training:
    preset = _check_base(request, base_lookup=base_lookup, issues=issues) or defaults.preset
    return _Training(
        preset=preset,
        epochs=request.training.epochs or defaults.epochs,
        tile_size=request.training.tile_size or defaults.tile_size,
    )


def _check_base(
    request: TrainingRequest, *, base_lookup: Callable[[int], ModelVersion | None] | None, issues: Issues
) -> Preset | None:
    """The preset implied by `base` (None: use the default), reporting an unusable base."""
    if request.base is None:
        return None
    if (preset := request.base_preset()) is not None:
        return preset
    number = request.base_version()
    if number is None or number < 1:
        presets = [preset.value for preset in Preset]
        issues.error(
            ErrorCode.UNKNOWN_BASE,
            f"`base` {request.base!r} is neither a preset ({', '.join(presets)}) nor a version such as 3 or "
            "'v3'.",
            base=request.base,
            presets=presets,
        )
        return None
    if base_lookup is None:
        return None  # offline: the version cannot be checked here
    base = base_lookup(number)
    if base is None:
        issues.error(
            ErrorCode.UNKNOWN_BASE,
            f"Version {number} does not exist in this project. Name an existing version or a preset in "
            "`base`.",
            base=request.base,
            version=number,
        )
        return None
    _check_base_version(request, base=base, issues=issues)
    named = base.details.preset
    return Preset(named) if named is not None and named in Preset._value2member_map_ else None


def _check_base_version(request: TrainingRequest, *, base: ModelVersion, issues: Issues) -> None:
    if base.status is not VersionStatus.COMPLETED:
        issues.error(
            ErrorCode.BASE_NOT_USABLE,
            f"Version {base.version} is {base.status.value}, so it has no weights to start from. "
            "Choose a completed version as `base`.",
            version=base.version,
            status=base.status.value,
        )
    if base.model_type != request.model_type:
        issues.error(
            ErrorCode.BASE_NOT_USABLE,
            f"Version {base.version} is a {base.model_type} model; this request trains a "
            f"{request.model_type} "
            "model. Choose a base of the same model type, or a preset.",
            version=base.version,
            base_model_type=base.model_type,
            model_type=request.model_type,
        )
    if list(base.classes) != list(request.classes):
        issues.warn(
            WarningCode.BASE_CLASSES_DIFFER,
            f"Version {base.version} was trained on other classes (or in another order); its class head is "
            "re-initialised and only the encoder and decoder carry over.",
            base_classes=list(base.classes),
            classes=list(request.classes),
            added=[name for name in request.classes if name not in base.classes],
            removed=[name for name in base.classes if name not in request.classes],
        )


# --- Compute guard -----------------------------------------------------------------------------


class ComputeAsk(Protocol):
    """What a request asks to spend: `compute` of a training or of an analysis request."""

    @property
    def instance_type(self) -> str: ...
    @property
    def instance_count(self) -> int: ...
    @property
    def max_hours(self) -> float: ...


def _check_compute(
    request: TrainingRequest,
    *,
    rules: ComputeRules,
    running: Callable[[], Sequence[int]] | None,
    issues: Issues,
) -> None:
    check_compute(request.compute, rules=rules, issues=issues, noun="training")
    if running is None:
        return
    versions = sorted(running())
    if len(versions) >= rules.max_running_trainings:
        issues.error(
            ErrorCode.TOO_MANY_RUNNING_JOBS,
            f"The project already has {len(versions)} trainings queued or running (versions "
            f"{', '.join(map(str, versions[:EXAMPLES]))}); this deployment runs at most "
            f"{rules.max_running_trainings} at once per project. Wait for one to end, or stop one.",
            running=versions[:100],
            max_running=rules.max_running_trainings,
        )


def check_compute(compute: ComputeAsk, *, rules: ComputeRules, issues: Issues, noun: str) -> None:
    """The deployment's limits on one request's instance type and instance-hours (`noun`: what
    the request runs, for the messages)."""
    if compute.instance_type not in rules.allowed_instance_types:
        allowed = sorted(rules.allowed_instance_types)
        issues.error(
            ErrorCode.INSTANCE_TYPE_NOT_ALLOWED,
            f"{compute.instance_type} is not an instance type this deployment allows ({listing(allowed)}). "
            "Choose one of them, or ask the operator to add it to the AllowedInstanceTypes parameter.",
            instance_type=compute.instance_type,
            allowed=allowed,
        )
    instance_hours = compute.instance_count * compute.max_hours
    if instance_hours > rules.max_instance_hours:
        issues.error(
            ErrorCode.COMPUTE_OVER_LIMIT,
            f"The request asks for up to {compute.instance_count} x {compute.max_hours:g} h = "
            f"{instance_hours:g} instance-hours; this deployment allows at most {rules.max_instance_hours:g} "
            f"per {noun}. Lower compute.instance_count or compute.max_hours.",
            instance_count=compute.instance_count,
            max_hours=compute.max_hours,
            instance_hours=instance_hours,
            max_instance_hours=rules.max_instance_hours,
        )


# --- Loading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dataset:
    """annotations.json, parsed."""

    images: list[CocoImage]
    categories: list[CocoCategory]
    annotations: list[AnnotationRecord]


def _load_dataset(
    request: TrainingRequest, *, project: str, store: DatasetStore, max_bytes: int, issues: Issues
) -> tuple[str, _Dataset] | None:
    location = request.dataset_location(project)
    if location is None:
        issues.error(
            ErrorCode.DATASET_NOT_FOUND,
            f"The dataset key {request.dataset!r} belongs to another project. Use a dataset of project "
            f"{project!r}.",
            dataset=request.dataset,
            project=project,
        )
        return None
    name, file_name = location
    try:
        raw = store.read_annotations(project, name, file_name, max_bytes=max_bytes)
    except DatasetTooLarge as error:
        size = error.context.get("size")
        issues.error(
            ErrorCode.DATASET_TOO_LARGE,
            f"{file_name} of dataset {name!r} is {size} bytes; this deployment validates annotation files of "
            f"at most {max_bytes} bytes. Split the dataset into smaller ones, or ask the operator to raise "
            "the limit (and the function's memory).",
            dataset=name,
            file=file_name,
            bytes=size,
            max_bytes=max_bytes,
        )
        return None
    except DatasetNotFound as error:
        issues.error(
            ErrorCode.DATASET_NOT_FOUND,
            f"Dataset {name!r} has no {file_name} in project {project!r}. Upload it, or check the dataset "
            "name.",
            dataset=name,
            file=file_name,
            detail=error.message,
        )
        return None
    try:
        document = _parse(raw)
    except ValueError as error:  # invalid JSON, or a ValidationError (a ValueError too): not COCO
        problems = _problems(error)
        issues.error(
            ErrorCode.DATASET_UNREADABLE,
            f"{file_name} of dataset {name!r} is not valid COCO JSON "
            f"({problems[0]['location']}: {problems[0]['problem']}). Fix or re-export the file; `problems` "
            "lists where.",
            dataset=name,
            file=file_name,
            bytes=len(raw),
            problem_count=error.error_count() if isinstance(error, ValidationError) else 1,
            problems=problems,
        )
        return None
    return name, _Dataset(document["images"], document["categories"], document.get("annotations", []))


def _parse(raw: bytes) -> DatasetDocument:
    """Parse annotations.json with pydantic-core's Rust JSON parser, then validate the objects.

    Two steps rather than `validate_json`: for a million annotations this takes about 40% less
    memory and time, because `validate_json` first builds a complete JSON tree of its own.
    NaN and Infinity are not JSON and are refused.
    """
    return document_adapter().validate_python(pydantic_core.from_json(raw, allow_inf_nan=False))


def _problems(error: ValueError) -> list[dict[str, str]]:
    if not isinstance(error, ValidationError):
        return [{"location": "(document)", "problem": f"invalid JSON: {error}"}]
    return [
        {
            "location": ".".join(str(part) for part in problem["loc"]) or "(document)",
            "problem": problem["msg"],
        }
        for problem in error.errors(include_url=False, include_input=False)[:EXAMPLES]
    ]


# --- Geometry ----------------------------------------------------------------------------------

#: (area, x0, y0, x1, y1): area in pixels, bounds in image coordinates.
Geometry = tuple[float, float, float, float, float]


def polygon_geometry(rings: list[list[float]]) -> Geometry | None:
    """Shoelace area (summed over rings) and vertex bounds of COCO polygon rings.

    Each ring is a flat [x0, y0, x1, y1, ...] list. None when there is no ring, or a ring has
    fewer than 3 points or an odd number of coordinates.
    """
    if len(rings) == 1:
        return _ring_geometry(rings[0])
    parts = [_ring_geometry(ring) for ring in rings]
    if not parts or None in parts:
        return None
    known = [part for part in parts if part is not None]
    return (
        sum(part[0] for part in known),
        min(part[1] for part in known),
        min(part[2] for part in known),
        max(part[3] for part in known),
        max(part[4] for part in known),
    )


def _ring_geometry(ring: list[float]) -> Geometry | None:
    if len(ring) < 6 or len(ring) & 1:
        return None
    xs = ring[0::2]
    ys = ring[1::2]
    twice = sum(map(mul, xs, ys[1:])) - sum(map(mul, ys, xs[1:])) + xs[-1] * ys[0] - ys[-1] * xs[0]
    xs.sort()  # list.sort compares floats faster than min() and max() together
    ys.sort()
    return abs(twice) / 2, xs[0], ys[0], xs[-1], ys[-1]


def rle_counts(counts: str | list[int]) -> list[int]:
    """Run lengths of a COCO RLE; a compressed string is decoded (pycocotools' LEB128-like code).

    Raises ValueError on a malformed string.
    """
    if isinstance(counts, list):
        return counts
    runs: list[int] = []
    position, length = 0, len(counts)
    while position < length:
        value, shift, more = 0, 0, True
        while more:
            if position >= length:
                raise ValueError("RLE string ends inside a number")
            chunk = ord(counts[position]) - 48
            if not 0 <= chunk < 64:
                raise ValueError("RLE string holds a character outside its alphabet")
            value |= (chunk & 0x1F) << shift
            more = bool(chunk & 0x20)
            position += 1
            shift += 5
            if not more and chunk & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def rle_geometry(rle: Rle) -> Geometry | None:
    """Area and pixel-edge bounds of an RLE mask (column-major runs, background first).

    None when the counts are malformed, negative, or do not cover the mask exactly.
    """
    height, width = rle.size
    try:
        runs = rle_counts(rle.counts)
    except ValueError:
        return None
    if sum(runs) != height * width or (runs and min(runs) < 0):
        return None
    area = sum(runs[1::2])
    if area == 0:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    x0 = y0 = math.inf
    x1 = y1 = -math.inf
    position = 0
    for index, run in enumerate(runs):
        if index & 1 and run:
            first, last = divmod(position, height), divmod(position + run - 1, height)
            x0, x1 = min(x0, first[0]), max(x1, last[0] + 1)
            spans_columns = first[0] != last[0]
            y0 = min(y0, 0 if spans_columns else first[1])
            y1 = max(y1, height if spans_columns else last[1] + 1)
        position += run
    return float(area), float(x0), float(y0), float(x1), float(y1)


# --- The annotation scan -----------------------------------------------------------------------


class _Slot:
    """A completed image and its valid included annotations."""

    __slots__ = ("annotations", "bottom", "height", "right", "width")

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.right = width + EDGE_TOLERANCE_PX  # the furthest a vertex may lie
        self.bottom = height + EDGE_TOLERANCE_PX
        self.annotations: list[AnnotationRecord] = []


@dataclass
class _Scan:
    slots: dict[int, _Slot]
    areas: dict[int, list[float]] = field(default_factory=dict)
    """Per included category id: the area of each valid annotation."""
    image_ids: dict[int, list[int]] = field(default_factory=dict)
    """Per included category id: the image id of each valid annotation."""
    tiny: Counter[int] = field(default_factory=Counter)
    excluded: Counter[int] = field(default_factory=Counter)
    broken: Counter[str] = field(default_factory=Counter)
    broken_examples: list[int] = field(default_factory=list)
    unfinished: int = 0

    @property
    def valid(self) -> int:
        return sum(len(areas) for areas in self.areas.values())

    def reject(self, annotation: AnnotationRecord, reason: str) -> None:
        self.broken[reason] += 1
        if len(self.broken_examples) < EXAMPLES:
            self.broken_examples.append(annotation["id"])


def _scan_annotations(
    annotations: list[AnnotationRecord],
    *,
    completed: Sequence[CocoImage],
    unfinished_ids: set[int],
    included_ids: set[int],
    excluded_ids: set[int],
    patch: int,
) -> _Scan:
    """Sort every annotation into valid (per image), broken (per reason) or ignored."""
    scan = _Scan(slots={image.id: _Slot(image.width, image.height) for image in completed})
    scan.areas = {category: [] for category in included_ids}
    scan.image_ids = {category: [] for category in included_ids}
    slots, areas, image_ids, tiny, excluded = scan.slots, scan.areas, scan.image_ids, scan.tiny, scan.excluded
    for annotation in annotations:
        category = annotation["category_id"]
        if category in excluded_ids:
            excluded[category] += 1
            continue
        image_id = annotation["image_id"]
        slot = slots.get(image_id)
        if slot is None:
            if image_id in unfinished_ids:
                scan.unfinished += 1
            else:
                scan.reject(annotation, "unknown_image")
            continue
        if category not in included_ids:
            scan.reject(annotation, "unknown_category")
            continue
        geometry = _geometry(annotation["segmentation"], slot)
        if isinstance(geometry, str):
            scan.reject(annotation, geometry)
            continue
        area, x0, y0, x1, y1 = geometry
        slot.annotations.append(annotation)
        areas[category].append(area)
        image_ids[category].append(image_id)
        if min(x1 - x0, y1 - y0) < patch / 2:  # the DPT decoder resolves objects down to half a patch
            tiny[category] += 1
        if annotation.get("area") is None:
            annotation["area"] = area
        if annotation.get("bbox") is None:
            annotation["bbox"] = [x0, y0, x1 - x0, y1 - y0]
    return scan


def _geometry(segmentation: Polygons | Rle, slot: _Slot) -> Geometry | str:
    """The annotation's geometry, or why it is broken."""
    if type(segmentation) is list:
        geometry = (
            _ring_geometry(segmentation[0]) if len(segmentation) == 1 else polygon_geometry(segmentation)
        )
        if geometry is None:
            return "too_few_points"
    else:
        assert isinstance(segmentation, Rle)
        if tuple(segmentation.size) != (slot.height, slot.width):
            return "rle_size_mismatch"
        geometry = rle_geometry(segmentation)
        if geometry is None:
            return "malformed_rle"
    area, x0, y0, x1, y1 = geometry
    if area <= 0:
        return "zero_area"
    if x0 < -EDGE_TOLERANCE_PX or y0 < -EDGE_TOLERANCE_PX or x1 > slot.right or y1 > slot.bottom:
        return "outside_image"
    return geometry


# --- The dataset -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Classes:
    """The request's classes resolved against the dataset's categories."""

    included: list[CocoCategory]  # in request order
    excluded: list[CocoCategory]
    unknown: list[str]

    @property
    def included_ids(self) -> set[int]:
        return {category.id for category in self.included}


@dataclass(frozen=True)
class _Images:
    completed: list[CocoImage]
    unfinished: list[CocoImage]
    without_status: int  # unfinished only because the dataset mixes images with and without status


def _validate_dataset(
    request: TrainingRequest,
    *,
    dataset: _Dataset,
    name: str,
    source: _Source,
    training: _Training,
    issues: Issues,
) -> tuple[ValidationReport, SplitPlan | None]:
    _check_duplicates(dataset, classes=request.classes, issues=issues)
    classes = _resolve_classes(request.classes, dataset.categories, issues=issues)
    images = _split_by_status(dataset.images, issues=issues)
    scan = _scan_annotations(
        dataset.annotations,
        completed=images.completed,
        unfinished_ids={image.id for image in images.unfinished},
        included_ids=classes.included_ids,
        excluded_ids={category.id for category in classes.excluded},
        patch=training.patch,
    )
    _check_annotations(scan, classes=classes, images=images, dataset=dataset, issues=issues)
    stats = _check_image_files(images.completed, source=source, tile_size=training.tile_size, issues=issues)
    _check_output_names(images.completed, issues=issues)
    assignment = assign_split(images.completed, test_set=request.test_set)
    _check_assignment(assignment, test_set=request.test_set, dataset=dataset, images=images, issues=issues)
    class_counts = _class_counts(classes, scan=scan, assignment=assignment)
    _check_classes(class_counts, assignment=assignment, issues=issues, has_test=bool(assignment.test))
    _check_tiny_objects(classes, scan=scan, patch=training.patch, issues=issues)
    details = _details(
        request,
        name=name,
        dataset=dataset,
        classes=classes,
        images=images,
        scan=scan,
        stats=stats,
        assignment=assignment,
        class_counts=class_counts,
        training=training,
    )
    _check_estimate(request, details=details, issues=issues)
    report = issues.report(details)
    if not report.ok:
        return report, None
    return report, _plan(request, name=name, classes=classes, scan=scan, assignment=assignment)


def _duplicates(values: Sequence[Any]) -> list[Any]:
    if len(set(values)) == len(values):  # the common case: no Counter over a million ids
        return []
    return [value for value, count in Counter(values).items() if count > 1]


def _check_duplicates(dataset: _Dataset, *, classes: Sequence[str], issues: Issues) -> None:
    found = {
        "image ids": _duplicates([image.id for image in dataset.images]),
        "image file names": _duplicates([image.file_name for image in dataset.images]),
        "category ids": _duplicates([category.id for category in dataset.categories]),
        "category names": [
            name
            for name in _duplicates([category.name for category in dataset.categories])
            if name in classes
        ],
        "annotation ids": _duplicates(list(map(itemgetter("id"), dataset.annotations))),
    }
    found = {kind: values for kind, values in found.items() if values}
    if found:
        kinds = ", ".join(f"{len(values)} {kind}" for kind, values in found.items())
        issues.error(
            ErrorCode.DUPLICATE_IDS,
            f"The dataset repeats {kinds}. Each id, file name and requested class name must be unique; "
            "re-export the dataset or renumber the duplicates.",
            **{kind.replace(" ", "_"): values[:EXAMPLES] for kind, values in found.items()},
            counts={kind.replace(" ", "_"): len(values) for kind, values in found.items()},
        )


def _no_classes(issues: Issues, *, available: list[str] | None) -> None:
    names = f": {listing(available)}" if available else ""
    issues.error(
        ErrorCode.NO_CLASSES_SELECTED,
        f"The request selects no classes. List the category names to train on in `classes`{names}.",
        classes=[],
        available=available[:100] if available else [],
    )


def _resolve_classes(
    requested: Sequence[str], categories: Sequence[CocoCategory], *, issues: Issues
) -> _Classes:
    by_name: dict[str, CocoCategory] = {}
    for category in categories:
        by_name.setdefault(category.name, category)
    if not requested:
        _no_classes(issues, available=sorted(by_name))
    included = [by_name[name] for name in requested if name in by_name]
    included_ids = {category.id for category in included}
    unknown = [name for name in requested if name not in by_name]
    if unknown:
        available = sorted(by_name)
        issues.error(
            ErrorCode.UNKNOWN_CLASS,
            f"The dataset has no class {listing(unknown)}. Use category names from the dataset: "
            f"{listing(available)}.",
            unknown=unknown,
            available=available[:100],
            suggestions={name: difflib.get_close_matches(name, available, n=3) for name in unknown},
        )
    excluded = [category for category in categories if category.id not in included_ids]
    return _Classes(included=included, excluded=excluded, unknown=unknown)


def _split_by_status(images: Sequence[CocoImage], *, issues: Issues) -> _Images:
    if all(image.status is None for image in images):
        return _Images(completed=list(images), unfinished=[], without_status=0)
    completed = [image for image in images if image.status == "completed"]
    unfinished = [image for image in images if image.status != "completed"]
    without_status = sum(1 for image in unfinished if image.status is None)
    if without_status:
        issues.warn(
            WarningCode.IMAGES_WITHOUT_STATUS,
            f"{without_status} images have no status while others do; they are treated as unfinished and not "
            'used. Set "status": "completed" on the ones that are fully annotated.',
            images=without_status,
            examples=examples([image.file_name for image in unfinished if image.status is None]),
        )
    if not completed:
        issues.error(
            ErrorCode.NO_COMPLETED_IMAGES,
            f"None of the {len(images)} images is completed. Finish annotating images and set their status "
            "to "
            '"completed" (only completed images are used for training).',
            images=len(images),
            statuses=dict(Counter(image.status or "none" for image in images)),
        )
    return _Images(completed=completed, unfinished=unfinished, without_status=without_status)


def _check_annotations(
    scan: _Scan, *, classes: _Classes, images: _Images, dataset: _Dataset, issues: Issues
) -> None:
    if not dataset.images:
        issues.error(
            ErrorCode.NO_COMPLETED_IMAGES,
            "The dataset has no images. Add images and their annotations to annotations.json.",
            images=0,
        )
    broken = sum(scan.broken.values())
    candidates = scan.valid + broken
    if broken:
        _report_broken(scan, broken=broken, candidates=candidates, issues=issues)
    if classes.included and images.completed and scan.valid <= MIN_ANNOTATIONS:
        issues.error(
            ErrorCode.TOO_FEW_ANNOTATIONS,
            f"A training needs more than {MIN_ANNOTATIONS} valid annotations of the requested classes on "
            f"completed images; this request has {scan.valid}. Annotate more objects, mark more images as "
            "completed, or include more classes.",
            included_annotations=scan.valid,
            required_more_than=MIN_ANNOTATIONS,
            broken_annotations=broken,
            annotations_on_unfinished_images=scan.unfinished,
        )
    for category in classes.included:
        if images.completed and not scan.areas.get(category.id):
            issues.error(
                ErrorCode.CLASS_WITHOUT_ANNOTATIONS,
                f"Class {category.name!r} has no valid annotation on a completed image. Annotate it, or "
                "remove it from `classes`.",
                class_name=category.name,
                category_id=category.id,
            )
    _report_ignored(scan, classes=classes, issues=issues)
    negatives = sum(1 for slot in scan.slots.values() if not slot.annotations)
    if images.completed and negatives / len(images.completed) > NEGATIVE_IMAGE_SHARE:
        issues.warn(
            WarningCode.IMAGES_WITHOUT_ANNOTATIONS,
            f"{negatives} of {len(images.completed)} completed images hold no annotation of the requested "
            "classes. They are used as negatives (everything in them is background); if some are not fully "
            "annotated, set their status to in_progress.",
            images=negatives,
            included_images=len(images.completed),
        )


def _report_broken(scan: _Scan, *, broken: int, candidates: int, issues: Issues) -> None:
    share = broken / candidates
    context = {
        "broken": broken,
        "candidates": candidates,
        "share": round(share, 4),
        "max_share": MAX_BROKEN_SHARE,
        "reasons": dict(scan.broken),
        "examples": scan.broken_examples,
    }
    reasons = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in scan.broken.most_common())
    if share > MAX_BROKEN_SHARE:
        issues.error(
            ErrorCode.INVALID_ANNOTATIONS,
            f"{broken} of {candidates} annotations ({share:.0%}) are broken ({reasons}); more than "
            f"{MAX_BROKEN_SHARE:.0%} suggests a faulty export. Fix the export; `examples` lists annotation "
            "ids.",
            **context,
        )
    else:
        issues.warn(
            WarningCode.INVALID_ANNOTATIONS_DROPPED,
            f"{broken} of {candidates} annotations ({share:.1%}) are broken ({reasons}) and are left out. "
            "Fix them to use them; `examples` lists annotation ids.",
            **context,
        )


def _report_ignored(scan: _Scan, *, classes: _Classes, issues: Issues) -> None:
    excluded = _excluded_counts(classes, scan=scan)
    if not (excluded or scan.unfinished):
        return
    issues.warn(
        WarningCode.ANNOTATIONS_IGNORED,
        f"{sum(excluded.values())} annotations of classes not requested and {scan.unfinished} annotations on "
        "unfinished images are not used. Add classes to `classes`, or complete the images, to use them.",
        excluded_classes=excluded,
        annotations_on_unfinished_images=scan.unfinished,
    )


def _excluded_counts(classes: _Classes, *, scan: _Scan) -> dict[str, int]:
    return {
        category.name: scan.excluded[category.id]
        for category in classes.excluded
        if scan.excluded[category.id]
    }


# --- Image files and headers -------------------------------------------------------------------


def _check_image_files(
    completed: Sequence[CocoImage], *, source: _Source, tile_size: int, issues: Issues
) -> ImageStats:
    stats = _image_stats(completed)
    if not completed:
        return stats
    unsupported = [image.file_name for image in completed if _format_of(image.file_name) is None]
    if unsupported:
        issues.error(
            ErrorCode.UNSUPPORTED_IMAGE_FORMAT,
            f"{len(unsupported)} completed images are not PNG, JPEG or TIFF files: {listing(unsupported)}. "
            "Convert them to PNG or TIFF and update their file names.",
            images=len(unsupported),
            examples=examples(unsupported),
        )
    files = source.store.list_files(source.project, source.dataset)
    missing = [image.file_name for image in completed if image.file_name not in files]
    if missing:
        issues.error(
            ErrorCode.MISSING_IMAGE_FILE,
            f"{len(missing)} of {len(completed)} completed images have no file in the dataset folder: "
            f"{listing(missing)}. Upload them next to annotations.json (file_name is relative to that "
            "folder).",
            missing=len(missing),
            examples=examples(missing),
        )
    if len(set(stats.formats) & set(IMAGE_FORMATS.values())) > 1:
        issues.warn(
            WarningCode.MIXED_IMAGE_FORMATS,
            f"Completed images come in several formats ({', '.join(sorted(stats.formats))}). Mixed formats "
            "often mean mixed bit depths or channel orders; convert them to one format if they come from one "
            "microscope.",
            formats=stats.formats,
        )
    small = [image for image in completed if image.width < tile_size or image.height < tile_size]
    if small:
        smallest = min(small, key=lambda image: image.width * image.height)
        issues.warn(
            WarningCode.IMAGES_SMALLER_THAN_TILE,
            f"{len(small)} completed images are smaller than the {tile_size} px training tile and will be "
            "padded "
            f"(smallest: {smallest.width}x{smallest.height}). Choose a smaller `training.tile_size` to "
            "waste less.",
            images=len(small),
            tile_size=tile_size,
            smallest=[smallest.width, smallest.height],
        )
    present = [image for image in completed if image.file_name in files and _format_of(image.file_name)]
    _check_headers(_spread_sample(present), source=source, stats=stats, issues=issues)
    return stats


def _check_output_names(completed: Sequence[CocoImage], *, issues: Issues) -> None:
    """The trainer writes predictions/{split}/{stem}.json and previews/{stem}.png per image."""
    check_output_names(
        [image.file_name for image in completed],
        issues=issues,
        what="completed images",
        outputs="predictions",
    )


def check_output_names(file_names: Sequence[str], *, issues: Issues, what: str, outputs: str) -> None:
    """Per-image outputs are named by `prediction_stem`: images whose stems are equal would overwrite
    each other's outputs, and a stem longer than the API's `{stem}` parameter could not be read back.
    `what` names the images and `outputs` their per-image files, for the messages."""
    by_stem: dict[str, list[str]] = {}
    for file_name in file_names:
        by_stem.setdefault(prediction_stem(file_name), []).append(file_name)
    collisions = [
        {"stem": stem, "files": sorted(files)[:EXAMPLES]} for stem, files in by_stem.items() if len(files) > 1
    ]
    if collisions:
        collisions.sort(key=itemgetter("stem"))
        first = collisions[0]
        issues.error(
            ErrorCode.OUTPUT_NAMES_COLLIDE,
            f"{len(collisions)} groups of {what} would get the same output names (for example "
            f"{listing(first['files'])} all become {first['stem']!r}): names that differ only in their "
            "extension or in characters other than letters, digits, '.', '_' and '-' would overwrite each "
            f"other's {outputs} and previews. Rename the files so that they differ in those characters.",
            groups=len(collisions),
            examples=collisions[:EXAMPLES],
        )
    too_long = sorted(
        name for stem, names in by_stem.items() if len(stem) > MAX_STEM_LENGTH for name in names
    )
    if too_long:
        issues.error(
            ErrorCode.OUTPUT_NAME_TOO_LONG,
            f"{len(too_long)} {what} have names whose output name would be longer than "
            f"{MAX_STEM_LENGTH} characters (folders joined with '__'): {listing(too_long)}. Use shorter "
            "file or folder names.",
            images=len(too_long),
            examples=examples(too_long),
            max_length=MAX_STEM_LENGTH,
        )


def _image_stats(completed: Sequence[CocoImage]) -> ImageStats:
    if not completed:
        return ImageStats()
    widths = [image.width for image in completed]
    heights = [image.height for image in completed]
    return ImageStats(
        min_width=min(widths),
        max_width=max(widths),
        min_height=min(heights),
        max_height=max(heights),
        distinct_sizes=len(set(zip(widths, heights, strict=True))),
        megapixels=round(sum(map(mul, widths, heights)) / 1e6, 3),
        formats=dict(Counter(_format_name(image.file_name) for image in completed)),
    )


def _spread_sample(images: Sequence[CocoImage]) -> list[CocoImage]:
    """Up to `HEADER_SAMPLE` images evenly spread over the file names (independent of file order)."""
    ordered = sorted(images, key=attrgetter("file_name"))
    return [ordered[index] for index in spread_indices(len(ordered), HEADER_SAMPLE)]


def spread_indices(count: int, sample: int) -> list[int]:
    """Up to `sample` indices evenly spread over `range(count)`, first and last included."""
    if count <= sample:
        return list(range(count))
    step = (count - 1) / (sample - 1)
    return [round(index * step) for index in range(sample)]


@dataclass
class HeaderFindings:
    """What reading the first bytes of some image files found."""

    headers: dict[str, ImageHeader] = field(default_factory=dict)
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    unsupported: list[dict[str, str]] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    not_read: list[str] = field(default_factory=list)


def read_headers(file_names: Sequence[str], *, read_head: Callable[[str, int], bytes]) -> HeaderFindings:
    """Parse the header of each file, read through `read_head(file_name, nbytes)`."""
    findings = HeaderFindings()
    for file_name in file_names:
        try:
            header = read_header(read_head(file_name, HEADER_BYTES))
        except UnsupportedFormat as error:
            findings.unsupported.append({"file": file_name, "format": error.format_name})
        except HeaderBeyondHead:
            findings.not_read.append(file_name)
        except UnreadableHeader as error:
            findings.unreadable.append({"file": file_name, "problem": str(error)})
        except NotFoundError:  # listed a moment ago, gone now
            logger.warning("image %s vanished before its header was read", file_name)
            findings.not_read.append(file_name)
        except Exception:  # any other read failure (a throttled or empty object) only costs this sample
            logger.warning("could not read the head of %s", file_name, exc_info=True)
            findings.not_read.append(file_name)
        else:
            findings.headers[file_name] = header
    return findings


def _read_sample(sample: Sequence[CocoImage], *, source: _Source) -> HeaderFindings:
    findings = read_headers(
        [image.file_name for image in sample],
        read_head=lambda name, nbytes: source.store.read_head(source.project, source.dataset, name, nbytes),
    )
    for image in sample:
        header = findings.headers.get(image.file_name)
        if header is not None and (header.width, header.height) != (image.width, image.height):
            findings.mismatched.append(
                {
                    "file": image.file_name,
                    "coco": [image.width, image.height],
                    "file_size": [header.width, header.height],
                }
            )
    return findings


def _check_headers(
    sample: Sequence[CocoImage], *, source: _Source, stats: ImageStats, issues: Issues
) -> None:
    findings = _read_sample(sample, source=source)
    stats.channels = sorted({header.channels for header in findings.headers.values()})
    stats.bit_depths = sorted({header.bit_depth for header in findings.headers.values()})
    stats.sampled = len(findings.headers)
    if findings.mismatched:
        issues.error(
            ErrorCode.IMAGE_SIZE_MISMATCH,
            f"{len(findings.mismatched)} of {len(sample)} sampled images are not the size annotations.json "
            "gives "
            "them, so their annotations would not line up with the pixels. Re-export the dataset with each "
            "image's real width and height.",
            sampled=len(sample),
            mismatched=findings.mismatched,
        )
    report_unreadable(findings, sampled=len(sample), issues=issues)
    if len(stats.channels) > 1:
        issues.warn(
            WarningCode.MIXED_CHANNEL_COUNTS,
            f"Sampled images have different channel counts ({', '.join(map(str, stats.channels))}); the "
            "model "
            "takes one channel count, so images are converted to it. Convert them yourself to control how.",
            channels=stats.channels,
        )
    if findings.not_read:
        issues.warn(
            WarningCode.IMAGE_HEADERS_NOT_READ,
            f"The headers of {len(findings.not_read)} of {len(sample)} sampled images could not be read "
            "from their first bytes, so their sizes were not checked.",
            examples=findings.not_read,
        )


def report_unreadable(findings: HeaderFindings, *, sampled: int, issues: Issues) -> None:
    """`unsupported_image_format` and `unreadable_image` for the sampled files that need them."""
    if findings.unsupported:
        issues.error(
            ErrorCode.UNSUPPORTED_IMAGE_FORMAT,
            f"{len(findings.unsupported)} sampled images hold another format than their name says "
            f"({', '.join(sorted({item['format'] for item in findings.unsupported}))}). Convert them to PNG "
            "or TIFF.",
            sampled=sampled,
            examples=findings.unsupported,
        )
    if findings.unreadable:
        issues.error(
            ErrorCode.UNREADABLE_IMAGE,
            f"{len(findings.unreadable)} of {sampled} sampled image files are not readable images "
            f"({findings.unreadable[0]['problem']}). Upload them again; `examples` lists them.",
            sampled=sampled,
            examples=findings.unreadable,
        )


# --- Split checks ------------------------------------------------------------------------------


def _check_assignment(
    assignment: SplitAssignment,
    *,
    test_set: NoTestSet | FractionTestSet | ImagesTestSet,
    dataset: _Dataset,
    images: _Images,
    issues: Issues,
) -> None:
    if isinstance(test_set, NoTestSet):
        issues.warn(
            WarningCode.NO_TEST_SET,
            "There is no test set, so the model is judged on its own training images only. That is fine for "
            'early versions; use {"strategy": "fraction"} once the dataset grows.',
            strategy="none",
        )
    elif isinstance(test_set, ImagesTestSet):
        _check_listed_images(assignment, dataset=dataset, issues=issues)
    elif images.completed and not assignment.test:
        issues.warn(
            WarningCode.NO_TEST_SET,
            f"The fraction {test_set.fraction} drew no test image from {len(images.completed)} completed "
            "images "
            "(groups go to one side as a whole). Raise the fraction, change the seed, or list test images.",
            strategy="fraction",
            fraction=test_set.fraction,
            seed=test_set.seed,
        )
    if images.completed and not assignment.train:
        issues.error(
            ErrorCode.EMPTY_TRAINING_SET,
            f"The test set takes all {len(images.completed)} completed images, leaving nothing to train on. "
            "Lower the fraction, change the seed, add images or groups, or list fewer test images.",
            test_images=len(assignment.test),
            held_out=len(assignment.held_out),
        )
    if assignment.held_out:
        issues.warn(
            WarningCode.GROUP_MEMBERS_HELD_OUT,
            f"{len(assignment.held_out)} images share a group with listed test images but are not listed; "
            "they are left out of both sets so no group is split. List the whole groups to test on them.",
            images=len(assignment.held_out),
            groups=sorted({image.group for image in assignment.held_out if image.group})[:EXAMPLES],
        )


def _check_listed_images(assignment: SplitAssignment, *, dataset: _Dataset, issues: Issues) -> None:
    all_names = {image.file_name for image in dataset.images}
    unfinished = [name for name in assignment.unmatched if name in all_names]
    unknown = [name for name in assignment.unmatched if name not in all_names]
    if unknown:
        issues.error(
            ErrorCode.UNKNOWN_TEST_IMAGE,
            f"{len(unknown)} listed test images are not in the dataset: {listing(unknown)}. Use file_name "
            "values from annotations.json.",
            unknown=examples(unknown),
            count=len(unknown),
            suggestions={name: difflib.get_close_matches(name, all_names, n=3) for name in unknown[:3]},
        )
    if unfinished:
        issues.warn(
            WarningCode.TEST_IMAGES_NOT_COMPLETED,
            f"{len(unfinished)} listed test images are not completed and are left out: "
            f"{listing(unfinished)}. "
            'Finish them and set "status": "completed" to test on them.',
            images=examples(unfinished),
            count=len(unfinished),
        )


def _class_counts(classes: _Classes, *, scan: _Scan, assignment: SplitAssignment) -> list[ClassCounts]:
    train = _side_counts(assignment.train, scan=scan)
    test = _side_counts(assignment.test, scan=scan)
    return [
        ClassCounts(
            name=category.name,
            annotations=len(scan.areas.get(category.id, [])),
            train=train[category.id],
            test=test[category.id],
            images=len(set(scan.image_ids.get(category.id, []))),
            median_area=_median(scan.areas.get(category.id, [])),
        )
        for category in classes.included
    ]


def _side_counts(images: Sequence[CocoImage], *, scan: _Scan) -> Counter[int]:
    """Valid annotations per category id on `images`."""
    counts: Counter[int] = Counter()
    for image in images:
        counts.update(map(_category_of, scan.slots[image.id].annotations))
    return counts


_category_of = itemgetter("category_id")


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    if len(values) > MEDIAN_SAMPLE:
        step = len(values) / MEDIAN_SAMPLE
        values = [values[int(index * step)] for index in range(MEDIAN_SAMPLE)]
    ordered = sorted(values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return round(median, 2)


def _check_classes(
    counts: list[ClassCounts], *, assignment: SplitAssignment, issues: Issues, has_test: bool
) -> None:
    present = [item for item in counts if item.annotations]
    for item in present:
        if assignment.train and not item.train:
            issues.error(
                ErrorCode.CLASS_MISSING_FROM_TRAINING_SET,
                f"Every annotation of class {item.name!r} is in the test set, so the model cannot learn it. "
                "Move some of its images to training (another seed, or fewer listed test images).",
                class_name=item.name,
                test=item.test,
            )
        if has_test and not item.test:
            issues.warn(
                WarningCode.CLASS_MISSING_FROM_TEST_SET,
                f"The test set holds no annotation of class {item.name!r}, so it will not be measured on "
                "unseen images. Change the seed or list test images that show it.",
                class_name=item.name,
                train=item.train,
            )
        if item.annotations < FEW_ANNOTATIONS_PER_CLASS:
            issues.warn(
                WarningCode.FEW_ANNOTATIONS_FOR_CLASS,
                f"Class {item.name!r} has only {item.annotations} annotations; fewer than "
                f"{FEW_ANNOTATIONS_PER_CLASS} rarely train a reliable model. Annotate more examples of it.",
                class_name=item.name,
                annotations=item.annotations,
                recommended_at_least=FEW_ANNOTATIONS_PER_CLASS,
            )
    _check_balance(present, issues=issues)
    _check_test_size(counts, assignment=assignment, issues=issues)


def _check_balance(present: list[ClassCounts], *, issues: Issues) -> None:
    if len(present) < 2:
        return
    rarest = min(present, key=attrgetter("annotations"))
    commonest = max(present, key=attrgetter("annotations"))
    ratio = commonest.annotations / rarest.annotations
    if ratio > CLASS_IMBALANCE_RATIO:
        issues.warn(
            WarningCode.CLASS_IMBALANCE,
            f"Class {commonest.name!r} has {ratio:.0f} times as many annotations as {rarest.name!r}; the "
            f"model will favour {commonest.name!r}. Annotate more {rarest.name!r} objects if it matters.",
            commonest=commonest.name,
            rarest=rarest.name,
            ratio=round(ratio, 1),
            max_ratio=CLASS_IMBALANCE_RATIO,
        )


def _check_test_size(counts: list[ClassCounts], *, assignment: SplitAssignment, issues: Issues) -> None:
    test_images = len(assignment.test)
    test_annotations = sum(item.test for item in counts)
    if test_images and (test_images < MIN_TEST_IMAGES or test_annotations < MIN_TEST_ANNOTATIONS):
        issues.warn(
            WarningCode.SMALL_TEST_SET,
            f"The test set holds {test_images} images and {test_annotations} annotations; metrics on so few "
            f"vary a lot between versions. Aim for at least {MIN_TEST_IMAGES} images and "
            f"{MIN_TEST_ANNOTATIONS} annotations.",
            test_images=test_images,
            test_annotations=test_annotations,
            min_images=MIN_TEST_IMAGES,
            min_annotations=MIN_TEST_ANNOTATIONS,
        )


def _check_tiny_objects(classes: _Classes, *, scan: _Scan, patch: int, issues: Issues) -> None:
    shares = {
        category.name: round(scan.tiny[category.id] / len(scan.areas[category.id]), 3)
        for category in classes.included
        if scan.areas.get(category.id)
        and scan.tiny[category.id] / len(scan.areas[category.id]) > TINY_OBJECT_SHARE
    }
    if shares:
        issues.warn(
            WarningCode.TINY_OBJECTS,
            f"Many objects of {', '.join(map(repr, shares))} are narrower than half a {patch} px ViT patch "
            f"({patch / 2:g} px), which the model resolves poorly. Upsample the images, or choose a preset "
            "with smaller patches.",
            patch_size=patch,
            tiny_share=shares,
            max_share=TINY_OBJECT_SHARE,
        )


# --- Details, estimate and plan ----------------------------------------------------------------


def _details(
    request: TrainingRequest,
    *,
    name: str,
    dataset: _Dataset,
    classes: _Classes,
    images: _Images,
    scan: _Scan,
    stats: ImageStats,
    assignment: SplitAssignment,
    class_counts: list[ClassCounts],
    training: _Training,
) -> TrainingDetails:
    valid = scan.valid
    train = sum(item.train for item in class_counts)
    test = sum(item.test for item in class_counts)
    return TrainingDetails(
        dataset=name,
        model_type=request.model_type,
        total_images=len(dataset.images),
        completed_images=len(images.completed),
        included_images=len(images.completed),
        train_images=len(assignment.train),
        test_images=len(assignment.test),
        total_annotations=len(dataset.annotations),
        included_annotations=valid,
        train_annotations=train,
        test_annotations=test,
        images_without_annotations=sum(1 for slot in scan.slots.values() if not slot.annotations),
        average_annotations_per_image=round(valid / len(images.completed), 2) if images.completed else 0.0,
        classes=class_counts,
        ignored=IgnoredCounts(
            excluded_classes=_excluded_counts(classes, scan=scan),
            unfinished_images=len(images.unfinished),
            annotations_on_unfinished_images=scan.unfinished,
            invalid_annotations=sum(scan.broken.values()),
            images_held_out=len(assignment.held_out),
        ),
        images=stats,
        estimate=estimate.estimate_training(
            preset=training.preset,
            epochs=training.epochs,
            train_megapixels=_padded_megapixels(assignment.train, tile=training.tile_size),
            eval_megapixels=_padded_megapixels([*assignment.train, *assignment.test], tile=0),
            compute=request.compute,
        ),
        **training.details(),
    )


def _padded_megapixels(images: Sequence[CocoImage], *, tile: int) -> float:
    return sum(max(image.width, tile) * max(image.height, tile) for image in images) / 1e6


def _check_estimate(request: TrainingRequest, *, details: TrainingDetails, issues: Issues) -> None:
    check_estimate(
        request.compute,
        details.estimate,
        issues=issues,
        noun="training",
        fix="Raise max_hours, lower epochs, or choose a faster instance.",
    )


def check_estimate(
    compute: ComputeAsk, estimated: Estimate | None, *, issues: Issues, noun: str, fix: str
) -> None:
    """`unknown_instance_type` for an allowed type the price table lacks, and
    `estimate_exceeds_max_hours` when the estimate would outlast `compute.max_hours`."""
    refused = any(issue.code == ErrorCode.INSTANCE_TYPE_NOT_ALLOWED for issue in issues.errors)
    if not refused and not estimate.is_known_instance(compute.instance_type):  # allowed, but not priced
        issues.warn(
            WarningCode.UNKNOWN_INSTANCE_TYPE,
            f"{compute.instance_type} is not in segpipe's price table, so the cost is unknown and the time a "
            "guess. Check the name; GPU instances such as ml.g5.xlarge are known.",
            instance_type=compute.instance_type,
        )
    if estimated is not None and estimated.hours > compute.max_hours:
        issues.warn(
            WarningCode.ESTIMATE_EXCEEDS_MAX_HOURS,
            f"The {noun} is estimated to take {estimated.hours:.1f} h, more than compute.max_hours "
            f"({compute.max_hours:g} h); it would be stopped before it ends. {fix}",
            estimated_hours=estimated.hours,
            max_hours=compute.max_hours,
        )


def _plan(
    request: TrainingRequest, *, name: str, classes: _Classes, scan: _Scan, assignment: SplitAssignment
) -> SplitPlan:
    test_set = request.test_set
    return SplitPlan(
        dataset=name,
        strategy=test_set.strategy,
        seed=test_set.seed if isinstance(test_set, FractionTestSet) else None,
        classes=[category.name for category in classes.included],
        categories=classes.included,
        train=_side(assignment.train, scan=scan),
        test=_side(assignment.test, scan=scan),
    )


def _side(images: list[CocoImage], *, scan: _Scan) -> SplitSide:
    annotations: list[AnnotationRecord] = []
    for image in images:
        annotations.extend(scan.slots[image.id].annotations)
    return SplitSide(images=images, annotations=annotations)
