"""The compute guard: allowed instance types, instance-hours per request, running trainings per project."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from segpipe.logic.jobspec import JobEnvironment
from segpipe.logic.submit import RejectedTraining, SubmitDeps, preview, submit
from segpipe.logic.validate import ComputeRules, Validation, validate_request
from segpipe.models.common import VersionStatus
from segpipe.models.report import ErrorCode, TrainingDetails, WarningCode
from segpipe.models.request import TrainingRequest
from segpipe.models.version import ModelVersion
from segpipe.settings import DEFAULT_ALLOWED_INSTANCE_TYPES, SubmitSettings, load_settings
from tests.helpers.datasets import healthy_dataset, small_defaults
from tests.helpers.handlers import ENVIRONMENT
from tests.unit.fakes import MemoryArtifacts, MemoryJobs, MemoryRegistry
from tests.unit.test_validate_errors import error_codes, the_error

NOW = datetime(2026, 11, 26, tzinfo=UTC)
RULES = ComputeRules(
    allowed_instance_types=frozenset({"ml.g5.xlarge", "ml.g5.2xlarge", "ml.g6e.xlarge"}),
    max_instance_hours=48,
    max_running_trainings=2,
)


def _validate(compute: dict[str, Any], *, running: list[int] | None = None) -> Validation:
    builder = healthy_dataset()
    return validate_request(
        builder.request(compute=compute),
        project="lab",
        store=builder.store(),
        defaults=small_defaults(),
        compute_rules=RULES,
        running_trainings=None if running is None else lambda: running,
    )


def test_an_instance_type_off_the_allowlist_is_refused() -> None:
    validation = _validate({"instance_type": "ml.p4d.24xlarge"})

    issue = the_error(validation, ErrorCode.INSTANCE_TYPE_NOT_ALLOWED)
    assert issue.context == {
        "instance_type": "ml.p4d.24xlarge",
        "allowed": ["ml.g5.2xlarge", "ml.g5.xlarge", "ml.g6e.xlarge"],
    }
    assert not [w for w in validation.report.warnings if w.code == WarningCode.UNKNOWN_INSTANCE_TYPE]


def test_an_allowed_instance_type_without_a_price_only_warns() -> None:
    validation = _validate({"instance_type": "ml.g6e.xlarge"})

    assert validation.report.ok
    assert [w.code for w in validation.report.warnings] == [WarningCode.UNKNOWN_INSTANCE_TYPE.value]


@pytest.mark.parametrize(
    ("count", "hours", "refused"), [(1, 48, False), (4, 12, False), (4, 12.5, True), (16, 120, True)]
)
def test_instance_count_times_hours_is_capped(count: int, hours: float, refused: bool) -> None:
    validation = _validate({"instance_count": count, "max_hours": hours})

    if not refused:
        assert ErrorCode.COMPUTE_OVER_LIMIT.value not in error_codes(validation)
        return
    issue = the_error(validation, ErrorCode.COMPUTE_OVER_LIMIT)
    assert issue.context["instance_hours"] == count * hours
    assert issue.context["max_instance_hours"] == 48


def test_a_project_at_its_running_limit_is_refused() -> None:
    assert _validate({}, running=[3]).report.ok

    issue = the_error(_validate({}, running=[3, 5]), ErrorCode.TOO_MANY_RUNNING_JOBS)

    assert issue.context == {"running": [3, 5], "max_running": 2}


# --- through the submit use case, with the registry's own count ---------------------------------


def _deps(*statuses: VersionStatus) -> SubmitDeps:
    builder = healthy_dataset()
    registry = MemoryRegistry()
    request = TrainingRequest(label="l", dataset="cells", model_type="instance", classes=["nucleus"])
    for number, status in enumerate(statuses, start=1):
        registry.counters["lab"] = number
        registry.create_version(
            ModelVersion(
                project="lab", version=number, label="l", model_type="instance", classes=["nucleus"],
                dataset="cells", request=request, details=TrainingDetails(), job_name=f"job-{number}",
                status=status, created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
    return SubmitDeps(
        store=builder.store(),
        artifacts=MemoryArtifacts(),
        registry=registry,
        jobs=MemoryJobs(),
        env=JobEnvironment(image_uri="img", role_arn="arn:aws:iam::1:role/r", bucket="data"),
        defaults=small_defaults(),
        clock=lambda: NOW,
        compute_rules=RULES,
    )


def _request() -> TrainingRequest:
    return healthy_dataset().request(compute={"instance_type": "ml.g5.xlarge"})


def test_submit_counts_only_queued_and_training_versions() -> None:
    deps = _deps(VersionStatus.COMPLETED, VersionStatus.FAILED, VersionStatus.STOPPED, VersionStatus.TRAINING)

    outcome = submit(_request(), project="lab", request_key="k1", fingerprint="f", deps=deps)

    assert outcome.report.ok and outcome.version == 5


def test_a_refused_submission_leaves_nothing_behind() -> None:
    deps = _deps(VersionStatus.QUEUED, VersionStatus.TRAINING)
    assert isinstance(deps.registry, MemoryRegistry) and isinstance(deps.jobs, MemoryJobs)

    outcome = submit(_request(), project="lab", request_key="k1", fingerprint="f", deps=deps)
    previewed = preview(_request(), project="lab", deps=deps)

    assert isinstance(outcome, RejectedTraining) and error_codes_of(outcome.report) == [
        "too_many_running_jobs"
    ]
    assert error_codes_of(previewed) == ["too_many_running_jobs"]
    assert deps.registry.claims == {} and deps.jobs.created == [] and len(deps.registry.versions) == 2


def test_a_retry_of_a_request_whose_job_never_started_is_not_counted_against_itself() -> None:
    deps = _deps(VersionStatus.TRAINING)
    first = submit(_request(), project="lab", request_key="k1", fingerprint="f", deps=deps)
    assert first.version == 2
    assert isinstance(deps.jobs, MemoryJobs)
    deps.jobs.created.clear()  # the job of version 2 never started (the attempt stopped half-way)

    again = submit(_request(), project="lab", request_key="k1", fingerprint="f", deps=deps)

    assert again.report.ok and again.version == 2 and len(deps.jobs.created) == 1


def error_codes_of(report: Any) -> list[str]:
    return [issue.code for issue in report.errors]


# --- settings, checked at cold start ------------------------------------------------------------


def test_settings_read_the_compute_limits_from_the_environment() -> None:
    environ = {
        **ENVIRONMENT,
        "ALLOWED_INSTANCE_TYPES": " ml.g5.xlarge, ml.g6.xlarge ,",
        "MAX_INSTANCE_HOURS": "24",
        "MAX_RUNNING_TRAININGS": "3",
    }

    settings = load_settings(SubmitSettings, environ)

    assert settings.ALLOWED_INSTANCE_TYPES == ("ml.g5.xlarge", "ml.g6.xlarge")
    assert (settings.MAX_INSTANCE_HOURS, settings.MAX_RUNNING_TRAININGS) == (24, 3)
    assert load_settings(SubmitSettings, ENVIRONMENT).ALLOWED_INSTANCE_TYPES == DEFAULT_ALLOWED_INSTANCE_TYPES


@pytest.mark.parametrize(
    "change",
    [
        {"ALLOWED_INSTANCE_TYPES": "g5.xlarge"},
        {"ALLOWED_INSTANCE_TYPES": " , "},
        {"MAX_INSTANCE_HOURS": "0"},
        {"MAX_RUNNING_TRAININGS": "0"},
        {"MAX_ANNOTATIONS_BYTES": "-1"},
    ],
)
def test_bad_limits_fail_the_cold_start(change: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        load_settings(SubmitSettings, {**ENVIRONMENT, **change})


def test_the_function_wires_the_limits_into_the_use_case(monkeypatch: pytest.MonkeyPatch) -> None:
    from segpipe.handlers import runtime

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    runtime.reset()
    settings = load_settings(SubmitSettings, {**ENVIRONMENT, "MAX_RUNNING_TRAININGS": "7"})
    deps = runtime.submit_deps(settings)
    runtime.reset()

    assert deps.compute_rules == ComputeRules(
        allowed_instance_types=frozenset(DEFAULT_ALLOWED_INSTANCE_TYPES), max_instance_hours=48.0,
        max_running_trainings=7,
    )  # fmt: skip
    assert deps.max_annotations_bytes == settings.MAX_ANNOTATIONS_BYTES
