"""Model versions as the registry holds them, built for tests that need one without training it:
a completed base to start a training from, a model to analyse, or a version in any other status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from segpipe.models.common import ModelType, VersionStatus
from segpipe.models.report import ImageStats, TrainingDetails
from segpipe.models.request import TrainingRequest
from segpipe.models.version import ModelVersion

BUILT_AT = datetime(2026, 1, 1, tzinfo=UTC)
CLASSES = ("nucleus", "mitosis")


def model_version(
    number: int = 1,
    *,
    project: str = "lab",
    status: VersionStatus = VersionStatus.COMPLETED,
    classes: Sequence[str] = CLASSES,
    label: str | None = None,
    model_type: ModelType = "instance",
    dataset: str = "cells",
    request: TrainingRequest | None = None,
    details: TrainingDetails | None = None,
    at: datetime = BUILT_AT,
    **fields: Any,
) -> ModelVersion:
    """Version `number` of `project` (label `v{number}`, job `segpipe-{project}-v{number}`), in
    `status`: completed unless told otherwise. `fields` sets any other ModelVersion field (an
    artifact, thresholds, the active flag, progress...); `at` is when it was created and updated."""
    label = label if label is not None else f"v{number}"
    values: dict[str, Any] = {
        "project": project,
        "version": number,
        "label": label,
        "model_type": model_type,
        "classes": list(classes),
        "dataset": dataset,
        "request": request
        or TrainingRequest(label=label, dataset=dataset, model_type=model_type, classes=list(classes)),
        "details": details or TrainingDetails(),
        "status": status,
        "job_name": f"segpipe-{project}-v{number}",
        "created_at": at,
        "updated_at": at,
        **fields,
    }
    return ModelVersion(**values)


def small_model_details(*, dataset: str = "cells") -> TrainingDetails:
    """A tiny-preset instance model trained (on paper) on ten grey 64 x 64 images."""
    return TrainingDetails(
        dataset=dataset,
        model_type="instance",
        preset="tiny",
        included_images=10,
        images=ImageStats(megapixels=10 * 64 * 64 / 1e6, channels=[1], min_width=64, max_width=64),
    )
