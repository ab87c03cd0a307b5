"""The DynamoDB analysis registry under moto, on the table template.yaml defines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from segpipe.dal.analyses import DynamoAnalysisRegistry
from segpipe.dal.dynamodb import DynamoModelRegistry
from segpipe.models.analysis import (
    Analysis,
    AnalysisDetails,
    AnalysisRequest,
    AnalysisStatus,
    AnalysisSummary,
)
from tests.integration.conftest import Aws

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _analysis(number: int, *, project: str = "lab", job: str | None = None) -> Analysis:
    request = AnalysisRequest(name=f"run {number}", images="plate-1")
    return Analysis(
        project=project, analysis=number, name=request.name, images_folder="plate-1", request=request,
        version=2, model_type="instance", classes=["nucleus"], thresholds={"nucleus": 0.4},
        details=AnalysisDetails(images_folder="plate-1", images=3),
        job_name=job or f"segpipe-lab-a{number}-x", created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def _summary(number: int) -> AnalysisSummary:
    return AnalysisSummary(
        project="lab", analysis=number, version=2, model_type="instance", classes=["nucleus"],
        thresholds={"nucleus": 0.4}, images=3, objects=7, hosts=["algo-1"],
    )  # fmt: skip


def test_analysis_numbers_come_from_their_own_counter_and_claims_are_idempotent(aws: Aws) -> None:
    analyses = DynamoAnalysisRegistry(aws.dynamodb, aws.table)
    versions = DynamoModelRegistry(aws.dynamodb, aws.table)
    # Given a project whose trainings have taken version numbers 1 and 2
    versions.claim("lab", "training-a", "f", NOW)
    versions.claim("lab", "training-b", "f", NOW)

    # When two analysis requests are claimed, one of them twice, and one with a training's key
    first = analyses.claim("lab", "s3://b/k1#etag", "fp1", NOW)
    again = analyses.claim("lab", "s3://b/k1#etag", "other", NOW)
    second = analyses.claim("lab", "training-a", "fp2", NOW)

    # Then analyses count from 1, a repeated key keeps its number and first fingerprint, and the
    # trainings' claims are a namespace apart
    assert (first.version, first.fresh) == (1, True)
    assert (again.version, again.fresh, again.fingerprint) == (1, False, "fp1")
    assert (second.version, second.fresh) == (2, True)
    assert analyses.find_claim("lab", "never") is None
    assert versions.claim("lab", "training-c", "f", NOW).version == 3


def test_an_analysis_is_written_once_and_read_back_as_it_was(aws: Aws) -> None:
    registry = DynamoAnalysisRegistry(aws.dynamodb, aws.table)
    analysis = _analysis(1)

    assert registry.create_analysis(analysis) is True
    assert registry.create_analysis(analysis.model_copy(update={"name": "changed"})) is False

    assert registry.get_analysis("lab", 1) == analysis
    assert registry.get_analysis("lab", 2) is None
    item = aws.dynamodb.get_item(
        TableName=aws.table, Key={"pk": {"S": "PROJECT#lab"}, "sk": {"S": "ANALYSIS#000001"}}
    )["Item"]
    # Readable in the console: plain attributes, not a blob
    assert item["name"] == {"S": "run 1"} and item["thresholds"] == {"M": {"nucleus": {"N": "0.4"}}}


def test_analyses_are_listed_newest_first_and_found_by_job_name(aws: Aws) -> None:
    registry = DynamoAnalysisRegistry(aws.dynamodb, aws.table)
    for number in (1, 2, 3):
        registry.create_analysis(_analysis(number))
    registry.create_analysis(_analysis(1, project="other", job="segpipe-other-a1-x"))

    assert [a.analysis for a in registry.list_analyses("lab")] == [3, 2, 1]
    assert registry.find_analysis_by_job("segpipe-lab-a2-x") == ("lab", 2)
    assert registry.find_analysis_by_job("segpipe-other-a1-x") == ("other", 1)
    assert registry.find_analysis_by_job("segpipe-lab-a9-x") is None


def test_a_job_name_lookup_never_returns_a_version(aws: Aws) -> None:
    from segpipe.models.common import VersionStatus
    from tests.integration.test_compute_guard import _version

    DynamoModelRegistry(aws.dynamodb, aws.table).create_version(_version(1, VersionStatus.QUEUED))

    assert DynamoAnalysisRegistry(aws.dynamodb, aws.table).find_analysis_by_job("job-1") is None


def test_transitions_only_move_forward_and_keep_their_history(aws: Aws) -> None:
    registry = DynamoAnalysisRegistry(aws.dynamodb, aws.table)
    registry.create_analysis(_analysis(1))
    later = NOW + timedelta(minutes=5)

    assert registry.transition_analysis("lab", 1, AnalysisStatus.RUNNING, NOW) is True
    assert registry.transition_analysis("lab", 1, AnalysisStatus.RUNNING, NOW) is False
    assert registry.transition_analysis("lab", 1, AnalysisStatus.COMPLETED, later, summary=_summary(1))
    # A late failure or a repeated start after completion changes nothing
    assert registry.transition_analysis("lab", 1, AnalysisStatus.FAILED, later, reason="late") is False
    assert registry.transition_analysis("lab", 1, AnalysisStatus.QUEUED, later) is False

    stored = registry.get_analysis("lab", 1)
    assert stored is not None
    assert stored.status is AnalysisStatus.COMPLETED
    assert [change.status for change in stored.status_history] == ["running", "completed"]
    assert (stored.started_at, stored.ended_at) == (NOW, later)
    assert stored.summary == _summary(1) and stored.failure_reason is None


def test_a_failure_keeps_its_reason_and_a_missing_analysis_is_not_created(aws: Aws) -> None:
    registry = DynamoAnalysisRegistry(aws.dynamodb, aws.table)
    registry.create_analysis(_analysis(1))

    assert registry.transition_analysis("lab", 1, AnalysisStatus.FAILED, NOW, reason="quota") is True
    assert registry.transition_analysis("lab", 2, AnalysisStatus.RUNNING, NOW) is False

    stored = registry.get_analysis("lab", 1)
    assert stored is not None and stored.failure_reason == "quota"
    assert stored.started_at is None and stored.ended_at == NOW  # refused: it never ran
    assert registry.get_analysis("lab", 2) is None


def test_running_analyses_and_stop_requests(aws: Aws) -> None:
    registry = DynamoAnalysisRegistry(aws.dynamodb, aws.table)
    for number in (1, 2, 3):
        registry.create_analysis(_analysis(number))
    registry.transition_analysis("lab", 2, AnalysisStatus.RUNNING, NOW)
    registry.transition_analysis("lab", 3, AnalysisStatus.STOPPED, NOW)
    calls: list[str] = []
    aws.dynamodb.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))

    assert registry.running_analyses("lab") == [1, 2]
    assert "Scan" not in calls
    assert registry.request_analysis_stop("lab", 2) is True
    assert registry.request_analysis_stop("lab", 3) is False
    assert registry.request_analysis_stop("lab", 9) is False
    stored = registry.get_analysis("lab", 2)
    assert stored is not None and stored.stop_requested is True
