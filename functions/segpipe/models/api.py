"""Bodies of the HTTP API (requests and responses)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, field_validator

from segpipe.models.analysis import AnalysedImage, AnalysisReport, AnalysisRow
from segpipe.models.common import ModelType, SplitName, VersionStatus
from segpipe.models.contract import Contract
from segpipe.models.report import ValidationReport
from segpipe.models.trainer_io import AveragePrecision, Bootstrap, Progress, Selection, ThresholdPoint
from segpipe.models.version import Headline


class ErrorDetail(Contract):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable snake_case error code")
    message: str = Field(description="What went wrong and what to do")
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="Values that locate the problem (names, numbers, validation problems)",
    )


class ErrorBody(Contract):
    """The body of every 4xx and 5xx answer of the API."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail = Field(description="What went wrong")


class RejectedSubmission(ErrorBody):
    """A 422 of a submission whose request was read but failed validation: nothing was created."""

    report: ValidationReport = Field(description="Every error and warning found, with the details")


class RejectedAnalysis(ErrorBody):
    """A 422 of an analysis submission whose request was read but failed its checks: nothing was created."""

    report: AnalysisReport = Field(description="Every error and warning found, with the details")


#: What a 422 of an analysis submission carries (as `SubmissionRefusal`, with the analysis report).
AnalysisRefusal = RejectedAnalysis | ErrorBody


#: What a 422 of a submission carries: the report envelope when validation found errors, the plain
#: error envelope when the request does not match the API (`invalid_request`).
SubmissionRefusal = RejectedSubmission | ErrorBody


class SubmitAccepted(Contract):
    project: str
    version: int
    job_name: str
    status: VersionStatus
    repeated: bool = Field(
        description="True when this request had already been submitted (same version, one job)"
    )
    report: ValidationReport


class ModelSummary(Contract):
    """One row of the model table."""

    project: str
    version: int
    label: str
    status: VersionStatus
    progress: Progress | None = None
    model_type: ModelType
    classes: list[str]
    headline: Headline | None = None
    active: bool
    analysis_threshold: float | None = None
    analysis_thresholds: dict[str, float] = Field(
        default_factory=dict, description="The locked analysis threshold of each class"
    )
    created_at: datetime
    updated_at: datetime


class ModelTable(Contract):
    project: str
    models: list[ModelSummary]


#: Decimal places a locked threshold keeps: finer is meaningless for scores, and DynamoDB refuses
#: numbers under 1e-130 (a threshold of 1e-200 is stored as 0).
THRESHOLD_DECIMALS = 6


Score = Annotated[float, Field(ge=0, le=1)]


class ThresholdUpdate(Contract):
    """`PUT .../threshold`: one threshold for every class, or some classes' own thresholds."""

    model_config = ConfigDict(extra="forbid")

    threshold: Score | Annotated[dict[Annotated[str, Field(min_length=1)], Score], Field(min_length=1)] = (
        Field(
            description="Objects scored below it are left out of analyses: one score for every class, or "
            "{class: score} for the classes named (the others keep theirs); "
            f"{THRESHOLD_DECIMALS} decimals kept",
        )
    )

    @field_validator("threshold")
    @classmethod
    def _rounded(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        if isinstance(value, dict):
            return {name: round(score, THRESHOLD_DECIMALS) for name, score in value.items()}
        return round(value, THRESHOLD_DECIMALS)


class SplitMetrics(Contract):
    images: int
    objects: int
    at: ThresholdPoint = Field(description="Metrics at the requested threshold (nearest sweep point)")
    ap_overall: AveragePrecision | None = None
    ap_per_class: dict[str, AveragePrecision] = Field(default_factory=dict)
    sweep: list[ThresholdPoint] | None = Field(default=None, description="Every sweep point, when asked for")


class MetricsView(Contract):
    project: str
    version: int
    model_type: ModelType
    classes: list[str]
    threshold: float = Field(description="The threshold these figures are at")
    analysis_threshold: float | None
    analysis_thresholds: dict[str, float] = Field(
        default_factory=dict, description="The locked analysis threshold of each class"
    )
    suggested_threshold: float | None
    suggested_thresholds: dict[str, float] = Field(default_factory=dict)
    thresholds: list[float]
    train: SplitMetrics | None = None
    test: SplitMetrics | None = None
    intervals: Bootstrap | None = Field(
        default=None,
        description="Bootstrap confidence intervals of the test metrics: at the suggested threshold "
        "(headline) and at every threshold (sweep, for bands); None without a test set",
    )
    selection: Selection | None = Field(
        default=None, description="How the epochs and thresholds were chosen (never on the test set)"
    )


class PredictionImage(Contract):
    file_name: str
    split: SplitName
    stem: str
    width: int
    height: int
    objects: int = Field(description="Objects scored at least the score floor")
    preview_url: str | None = Field(default=None, description="A URL for the image's preview PNG")
    predictions_url: str = Field(description="API path of this image's objects")


class PredictionsPage(Contract):
    project: str
    version: int
    split: SplitName
    total: int
    offset: int
    images: list[PredictionImage]


class PredictionIndexEntry(Contract):
    """One line of `predictions/index.json`, written when a job's outputs are ingested."""

    file_name: str
    split: SplitName
    stem: str
    width: int
    height: int
    objects: int
    preview: str | None = None


class PredictionIndex(Contract):
    images: list[PredictionIndexEntry]


# --- Analyses (GET routes) ---------------------------------------------------------------------


class AnalysisTable(Contract):
    """`GET /projects/{p}/analyses`: newest first."""

    project: str
    analyses: list[AnalysisRow]


class AnalysedImageEntry(Contract):
    """One analysed image in a page of them (a row of the merged `images.csv`)."""

    file_name: str = Field(description="Path relative to the analysed folder")
    stem: str
    width: int
    height: int
    objects: int = Field(description="Kept objects, over all classes")
    counts: dict[str, int] = Field(default_factory=dict, description="Kept objects per class")
    preview_url: str | None = Field(default=None, description="A URL for the image's preview PNG")
    mask_url: str | None = Field(default=None, description="A URL for the image's label TIFF")
    objects_url: str = Field(description="API path of this image's objects")


class AnalysedImagesPage(Contract):
    project: str
    analysis: int
    total: int
    offset: int
    images: list[AnalysedImageEntry]


class AnalysedImageView(AnalysedImage):
    """`GET /projects/{p}/analyses/{n}/images/{stem}`: the kept objects, in the viewer's shape."""

    preview_url: str | None = Field(default=None, description="A URL for the image's preview PNG")
    mask_url: str | None = Field(default=None, description="A URL for the image's label TIFF")
