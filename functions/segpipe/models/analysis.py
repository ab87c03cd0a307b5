"""Analyses: one completed, active version run over new images at its locked thresholds.

The request (HTTP body or uploaded `analysis-requests/{name}.json`), its report, the registry item,
the job configuration the `analyze` entry point reads (pinned by `tests/fixtures/analyze_config.json`,
parsed on both sides), the files it writes and the API's views of them. DESIGN.md, "Analysis".
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from segpipe.models.common import InstanceType, LifecycleStatus, ModelType, VersionNumber
from segpipe.models.contract import Contract
from segpipe.models.report import Estimate, Issue
from segpipe.models.trainer_io import PredictedObject

#: Image files an analysis reads from its folder (case-insensitive suffixes).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: An images folder: one or more `/`-separated segments of name characters, never `..`.
FOLDER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,127}){0,7}$"
_FOLDER_RE = re.compile(FOLDER_PATTERN)
MAX_ANALYSIS = 999_999


def is_images_folder(value: str) -> bool:
    """True when `value` may name an images folder (`fullmatch`: no trailing newline slips by)."""
    return bool(_FOLDER_RE.fullmatch(value)) and ".." not in value and len(value) <= 512


class _Strict(Contract):
    model_config = ConfigDict(extra="forbid")


class AnalysisCompute(_Strict):
    instance_type: InstanceType = Field(
        default="ml.g5.xlarge", description="SageMaker Processing instance type"
    )
    instance_count: int = Field(
        default=1, ge=1, le=16, description="Instances; the images are sharded across them by S3 key"
    )
    max_hours: float = Field(default=4.0, gt=0, le=48, description="Longest the job may run")


class AnalysisRequest(_Strict):
    """One body for `POST /projects/{project}/analyses` and for an uploaded analysis request."""

    name: str = Field(min_length=1, max_length=128, description="Shown in the analyses table")
    images: str = Field(
        description="A folder under projects/{project}/images/: every PNG/JPEG/TIFF in it, recursively"
    )
    version: VersionNumber | None = Field(
        default=None, description="The version to run; default the project's only active version"
    )
    thresholds: dict[str, float] | None = Field(
        default=None, description="Overrides of the version's locked analysis thresholds, by class"
    )
    pixel_size: float | None = Field(
        default=None, gt=0, le=1000, description="Micrometres per pixel, to report sizes in µm and µm² too"
    )
    compute: AnalysisCompute = Field(default_factory=AnalysisCompute)

    @field_validator("images")
    @classmethod
    def _folder(cls, value: str) -> str:
        value = value.strip("/")
        if not is_images_folder(value):
            raise ValueError(
                "images names a folder under projects/{project}/images/: segments of letters, digits, "
                "'.', '_' and '-', separated by '/', without '..'"
            )
        return value

    @field_validator("thresholds")
    @classmethod
    def _scores(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            for name, score in value.items():
                if not name or not 0 <= score <= 1:
                    raise ValueError(f"threshold of {name!r} must be a score between 0 and 1")
        return value


class AnalysisStatus(LifecycleStatus):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


# --- The job: configuration in, files out ---------------------------------------------------


#: What identifies an analysis run and how it keeps objects: the registry item, the job's
#: configuration and every summary carry these same fields.
RUN_FIELDS: frozenset[str] = frozenset(
    {"project", "analysis", "version", "model_type", "classes", "thresholds", "pixel_size"}
)


class _Run(Contract):
    """A model that carries the RUN_FIELDS (the registry item, the job's configuration)."""

    def run_fields(self) -> dict[str, Any]:
        """A copy of the RUN_FIELDS, to build another of these models or a summary from this one:
        `AnalysisSummary(**config.run_fields(), images=...)`."""
        return self.model_dump(include=set(RUN_FIELDS))


class AnalyzeConfig(_Strict, _Run):
    """`/opt/ml/processing/input/config/analyze.json`: what the `analyze` entry point runs."""

    project: str
    analysis: int = Field(ge=1, le=MAX_ANALYSIS)
    version: int = Field(ge=1, le=999_999)
    model_type: ModelType
    classes: list[str] = Field(min_length=1, description="The version's classes, in model order")
    thresholds: dict[str, float] = Field(
        description="The score threshold of every class, frozen at submission: objects below are dropped"
    )
    pixel_size: float | None = Field(default=None, gt=0, description="Micrometres per pixel")
    images_folder: str = Field(description="The analysed folder, as the request named it")
    image_count: int = Field(ge=1, description="Images in the folder, over all instances")

    @model_validator(mode="after")
    def _every_class_thresholded(self) -> AnalyzeConfig:
        missing = [name for name in self.classes if name not in self.thresholds]
        extra = [name for name in self.thresholds if name not in self.classes]
        if missing or extra:
            raise ValueError(f"thresholds must name exactly the classes (missing {missing}, unknown {extra})")
        return self


class AnalysisProgress(Contract):
    """`progress/{host}.json`, uploaded continuously while the job runs; the API sums the hosts."""

    host: str = "algo-1"
    images_done: int = Field(ge=0)
    images_total: int = Field(ge=0, description="Images this host was given")
    updated_at: str | None = None


class ClassTotals(Contract):
    objects: int = 0
    area: float = Field(default=0.0, description="Pixels")
    area_um2: float | None = None


class AnalysisSummary(Contract):
    """`summary.json` of one host (under `shards/{host}/`) or of the merged analysis."""

    project: str
    analysis: int
    version: int
    model_type: ModelType
    classes: list[str]
    thresholds: dict[str, float]
    pixel_size: float | None = None
    images: int = Field(description="Images analysed")
    megapixels: float = 0.0
    objects: int = Field(description="Kept objects, over all classes")
    per_class: dict[str, ClassTotals] = Field(default_factory=dict)
    hosts: list[str] = Field(default_factory=list, description="Instances whose results are merged here")
    seconds: float = Field(default=0.0, description="Wall time of the slowest host, model loading included")
    inference_seconds: float = Field(default=0.0, description="Summed over hosts")


class AnalysisObject(PredictedObject):
    """A kept object in an image's file: the predicted object plus its label in the mask."""

    label: int = Field(ge=1, description="Its value in masks/{stem}.tif (semantic: the class index)")


class AnalysedImage(Contract):
    """`images/{stem}.json`: the kept objects of one image, in the viewer's shape."""

    file_name: str = Field(description="Path relative to the images folder")
    stem: str
    width: int
    height: int
    channels: int = 1
    preview: str | None = Field(default=None, description="Preview PNG file name beside this file")
    objects: list[AnalysisObject] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict, description="Kept objects per class")


def object_columns(*, channels: int, pixel_size: float | None) -> list[str]:
    """The header of `objects.csv`, in order. `id` is the object's annotation id in `coco.json`."""
    columns = [
        "image", "stem", "id", "label", "class", "score", "area", "perimeter",
        "centroid_x", "centroid_y", "bbox_x", "bbox_y", "bbox_width", "bbox_height",
        "eccentricity", "solidity",
    ]  # fmt: skip
    if pixel_size is not None:
        columns += ["area_um2", "perimeter_um", "centroid_x_um", "centroid_y_um"]
    for channel in range(channels):
        columns += [f"mean_intensity_{channel}", f"max_intensity_{channel}"]
    return columns


def image_columns(classes: list[str]) -> list[str]:
    """The header of `images.csv`, in order (area in pixels; area_fraction of the image's pixels)."""
    columns = ["image", "stem", "width", "height", "objects", "area_fraction"]
    for name in classes:
        columns += [f"objects[{name}]", f"area[{name}]", f"area_fraction[{name}]"]
    return columns


#: The merged outputs under `projects/{p}/analyses/{n}/`.
OutputName = Literal["coco.json", "objects.csv", "images.csv", "summary.json"]
OUTPUT_NAMES: tuple[OutputName, ...] = ("coco.json", "objects.csv", "images.csv", "summary.json")


# --- Report, registry item and API views ------------------------------------------------------


class AnalysisDetails(Contract):
    """What a person sees before the job runs."""

    images_folder: str = ""
    images: int = Field(default=0, description="Images found in the folder")
    megapixels: float = 0.0
    formats: dict[str, int] = Field(default_factory=dict)
    channels: list[int] = Field(default_factory=list, description="Channel counts seen in sampled headers")
    min_width: int = 0
    max_width: int = 0
    min_height: int = 0
    max_height: int = 0
    version: int | None = None
    model_type: ModelType | None = None
    classes: list[str] = Field(default_factory=list)
    thresholds: dict[str, float] = Field(default_factory=dict, description="The thresholds the job will use")
    threshold_sources: dict[str, Literal["locked", "request", "suggested"]] = Field(
        default_factory=dict,
        description="Where each class's threshold comes from: the version's locked one, the request's "
        "override, or (a version without a locked threshold) the suggested one",
    )
    estimate: Estimate | None = None


class AnalysisReport(Contract):
    ok: bool
    errors: list[Issue] = Field(default_factory=list)
    warnings: list[Issue] = Field(default_factory=list)
    details: AnalysisDetails = Field(default_factory=AnalysisDetails)
    analysis: int | None = Field(default=None, description="The analysis created, once submitted")
    job_name: str | None = None


class AnalysisStatusChange(Contract):
    status: AnalysisStatus
    at: datetime
    reason: str | None = None


class Analysis(_Run):
    """The registry item `pk=PROJECT#{project}`, `sk=ANALYSIS#{n:06d}`: what was run, frozen."""

    project: str
    analysis: int = Field(ge=1, le=MAX_ANALYSIS)
    name: str
    images_folder: str
    request: AnalysisRequest
    version: int
    model_type: ModelType
    classes: list[str]
    thresholds: dict[str, float] = Field(description="Frozen at submission; never re-scored")
    pixel_size: float | None = None
    details: AnalysisDetails
    warnings: list[Issue] = Field(default_factory=list)
    status: AnalysisStatus = AnalysisStatus.QUEUED
    status_history: list[AnalysisStatusChange] = Field(default_factory=list)
    job_name: str
    failure_reason: str | None = None
    stop_requested: bool = False
    summary: AnalysisSummary | None = Field(default=None, description="Stored on completion")
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None


class AnalysisAccepted(Contract):
    project: str
    analysis: int
    job_name: str
    status: AnalysisStatus
    repeated: bool = Field(description="True when this request had already been submitted")
    report: AnalysisReport


class AnalysisRow(Contract):
    """One row of the analyses table."""

    project: str
    analysis: int
    name: str
    images_folder: str
    version: int
    status: AnalysisStatus
    images: int
    images_done: int | None = None
    objects: dict[str, int] = Field(default_factory=dict, description="Kept objects per class, once done")
    thresholds: dict[str, float]
    created_at: datetime
    ended_at: datetime | None = None


class AnalysisView(AnalysisRow):
    """`GET /projects/{p}/analyses/{n}`."""

    model_type: ModelType
    classes: list[str]
    pixel_size: float | None = None
    warnings: list[Issue] = Field(default_factory=list)
    failure_reason: str | None = None
    status_history: list[AnalysisStatusChange] = Field(default_factory=list)
    summary: AnalysisSummary | None = None
    outputs: dict[str, str] = Field(
        default_factory=dict, description="Presigned URLs of coco.json, objects.csv, images.csv, summary.json"
    )
    job_name: str
    details: AnalysisDetails
