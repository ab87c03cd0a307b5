"""A model version as the registry stores it and the API shows it."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from segpipe.models.common import ModelType, SplitName, VersionNumber, VersionStatus
from segpipe.models.contract import Contract
from segpipe.models.report import Issue, TrainingDetails
from segpipe.models.request import TrainingRequest
from segpipe.models.trainer_io import Bootstrap, Progress, Selection


class StatusChange(Contract):
    status: VersionStatus
    at: datetime
    reason: str | None = None


class Headline(Contract):
    """The few numbers the model table shows (test split when there is one, else train)."""

    split: SplitName
    threshold: float
    f1: float | None = None
    precision: float | None = None
    recall: float | None = None
    ap50: float | None = None
    mean_iou: float | None = None


class ModelVersion(Contract):
    project: str
    version: VersionNumber
    label: str
    model_type: ModelType
    classes: list[str]
    dataset: str
    request: TrainingRequest
    details: TrainingDetails
    warnings: list[Issue] = Field(default_factory=list)
    status: VersionStatus = VersionStatus.QUEUED
    status_history: list[StatusChange] = Field(default_factory=list)
    job_name: str
    failure_reason: str | None = None
    stop_requested: bool = False
    analysis_threshold: float | None = Field(
        default=None, ge=0, le=1, description="The locked analysis threshold, when every class shares one"
    )
    analysis_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="The locked analysis threshold of each class (empty until one is locked)",
    )
    suggested_threshold: float | None = Field(default=None, ge=0, le=1)
    suggested_thresholds: dict[str, float] = Field(default_factory=dict)
    active: bool = False
    headline: Headline | None = None
    intervals: Bootstrap | None = Field(
        default=None, description="Bootstrap confidence intervals of the test metrics (evaluation.json)"
    )
    selection: Selection | None = Field(
        default=None, description="How the epochs and thresholds were chosen, on held-out training images"
    )
    model_artifact: str | None = Field(default=None, description="s3:// URI of model.tar.gz once completed")
    progress: Progress | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
