"""The compute guard through the real handlers and the DynamoDB registry, under moto."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from segpipe.dal.dynamodb import DynamoModelRegistry
from segpipe.models.common import VersionStatus
from segpipe.models.report import TrainingDetails
from segpipe.models.request import TrainingRequest
from segpipe.models.version import ModelVersion
from tests.integration.conftest import Aws, request_body

NOW = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.mark.parametrize(
    ("compute", "code"),
    [
        ({"instance_type": "ml.p5.48xlarge"}, "instance_type_not_allowed"),
        ({"instance_type": "ml.g5.xlarge", "instance_count": 16, "max_hours": 120}, "compute_over_limit"),
    ],
)
def test_the_deployed_defaults_refuse_expensive_requests(
    with_dataset: Aws, compute: dict[str, Any], code: str
) -> None:
    aws = with_dataset

    status, body = aws.api("POST", "/projects/lab/trainings", body=request_body(compute=compute))

    assert status == 422, body
    assert [issue["code"] for issue in body["report"]["errors"]] == [code]
    assert aws.created_jobs == [] and aws.keys("projects/lab/models/") == []


def _version(number: int, status: VersionStatus) -> ModelVersion:
    request = TrainingRequest(label="l", dataset="cells", model_type="instance", classes=["nucleus"])
    return ModelVersion(
        project="lab", version=number, label="l", model_type="instance", classes=["nucleus"], dataset="cells",
        request=request, details=TrainingDetails(), job_name=f"job-{number}", status=status,
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def test_running_versions_are_counted_by_a_query_of_the_project(aws: Aws) -> None:
    registry = DynamoModelRegistry(aws.dynamodb, aws.table)
    for number, status in enumerate(
        [VersionStatus.QUEUED, VersionStatus.COMPLETED, VersionStatus.QUEUED, VersionStatus.FAILED], start=1
    ):
        registry.create_version(_version(number, status))
    registry.transition("lab", 3, VersionStatus.TRAINING, NOW)
    registry.transition("lab", 1, VersionStatus.STOPPED, NOW)
    registry.create_version(_version(9, VersionStatus.QUEUED).model_copy(update={"project": "other"}))
    calls: list[str] = []
    aws.dynamodb.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))

    running = registry.running_versions("lab")

    assert running == [3]
    assert calls and set(calls) == {"Query"}
