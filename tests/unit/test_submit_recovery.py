"""Submitting a training with the in-memory fakes: validation once, the typed outcome, repeats, the
recovery of attempts that stopped half-way, and SageMaker's permanent refusal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from segpipe.dal.interfaces import Claim
from segpipe.errors import IdempotencyKeyReused, JobRefused, ServiceUnavailable
from segpipe.logic.jobspec import JobEnvironment, ResolvedTraining
from segpipe.logic.submit import RejectedTraining, SubmitAccepted, SubmitDeps, fingerprint_of, submit
from segpipe.logic.validate import validate_request
from segpipe.models.common import Preset, VersionStatus
from segpipe.models.jobs import CreateTrainingJob
from segpipe.models.report import TrainingDetails
from segpipe.models.request import TrainingRequest
from segpipe.models.version import ModelVersion
from tests.helpers.datasets import DatasetBuilder, MemoryDatasetStore, healthy_dataset, small_defaults
from tests.unit.fakes import MemoryArtifacts, MemoryJobs, MemoryRegistry

NOW = datetime(2026, 11, 26, tzinfo=UTC)
BASE_ARTIFACT = "s3://data/projects/lab/models/1/output/model.tar.gz"


class CountingRegistry(MemoryRegistry):
    """Counts reads of each version, and can let another request take a key between read and claim."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[int, int] = {}
        self.rival: str | None = None  # fingerprint of a request that claims the key first

    def get_version(self, project: str, version: int) -> ModelVersion | None:
        self.reads[version] = self.reads.get(version, 0) + 1
        return super().get_version(project, version)

    def claim(self, project: str, request_key: str, fingerprint: str, now: datetime) -> Claim:
        if self.rival is not None:
            super().claim(project, request_key, self.rival, now)
        return super().claim(project, request_key, fingerprint, now)


class RefusingJobs(MemoryJobs):
    """`TrainingJobs` whose create raises `refuse` (a `JobRefused` or a transient error) while set."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse: Exception | None = None

    def create(self, request: CreateTrainingJob) -> bool:
        if self.refuse is not None:
            raise self.refuse
        return super().create(request)


class Lab:
    """Project "lab" with the healthy dataset "cells", an empty registry and no jobs."""

    def __init__(self, builder: DatasetBuilder | None = None) -> None:
        self.builder = builder or healthy_dataset()
        self.store: MemoryDatasetStore = self.builder.store()
        self.artifacts = MemoryArtifacts()
        self.registry = CountingRegistry()
        self.jobs = RefusingJobs()
        self.deps = SubmitDeps(
            store=self.store,
            artifacts=self.artifacts,
            registry=self.registry,
            jobs=self.jobs,
            env=JobEnvironment(image_uri="img", role_arn="arn:aws:iam::1:role/r", bucket="data"),
            defaults=small_defaults(),
            clock=lambda: NOW,
        )

    def request(self, **fields: Any) -> TrainingRequest:
        return self.builder.request(**fields)

    def submit(self, request: TrainingRequest | None = None, *, key: str = "http:lab:k1") -> Any:
        request = request or self.request()
        return submit(
            request, project="lab", request_key=key, fingerprint=fingerprint_of(request), deps=self.deps
        )

    def accepted(self, request: TrainingRequest | None = None, *, key: str = "http:lab:k1") -> SubmitAccepted:
        outcome = self.submit(request, key=key)
        assert isinstance(outcome, SubmitAccepted), outcome
        return outcome

    def completed_base(self, *, preset: Preset) -> None:
        """Version 1: completed, trained with `preset` on the same classes, with weights."""
        self.registry.counters["lab"] = 1
        self.registry.create_version(
            ModelVersion(
                project="lab", version=1, label="base", model_type="instance",
                classes=list(self.builder.classes), dataset="cells", request=self.request(),
                details=TrainingDetails(preset=preset.value, epochs=5, tile_size=128), job_name="job-1",
                status=VersionStatus.COMPLETED, model_artifact=BASE_ARTIFACT, created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip

    def forget_the_job(self) -> None:
        """The attempt stopped after the version was recorded, before its job was created."""
        self.jobs.created.clear()

    def split_keys(self) -> list[str]:
        return sorted(key for key in self.artifacts.objects if "/split/" in key)

    def remove_dataset(self) -> dict[str, bytes]:
        """Delete the dataset's files; returns them, to put back."""
        return self.store.datasets.pop(("lab", "cells"))


# --- the first submission ---------------------------------------------------------------------


def test_an_accepted_submission_records_a_queued_version_and_starts_one_job() -> None:
    lab = Lab()

    outcome = lab.accepted()

    assert (outcome.project, outcome.version, outcome.status, outcome.repeated) == (
        "lab", 1, VersionStatus.QUEUED, False,
    )  # fmt: skip
    record = lab.registry.get_version("lab", 1)
    assert record is not None and record.status is VersionStatus.QUEUED
    assert [job.TrainingJobName for job in lab.jobs.created] == [record.job_name] == [outcome.job_name]
    assert outcome.report.ok and outcome.report.version == 1 and outcome.report.job_name == record.job_name
    assert outcome.report.details == record.details and record.details.preset == Preset.TINY.value
    assert lab.split_keys() == [
        "projects/lab/models/1/split/test.json",
        "projects/lab/models/1/split/train.json",
    ]


def test_a_request_with_errors_is_rejected_with_nothing_written() -> None:
    lab = Lab()

    outcome = lab.submit(lab.request(classes=["no-such-class"]))

    assert isinstance(outcome, RejectedTraining) and not outcome.report.ok
    assert "unknown_class" in [issue.code for issue in outcome.report.errors]
    assert lab.registry.claims == {} and lab.registry.counters == {} and lab.registry.versions == {}
    assert lab.artifacts.objects == {} and lab.jobs.created == []


def test_the_base_version_is_read_once_and_gives_the_preset_and_the_weights() -> None:
    lab = Lab()
    lab.completed_base(preset=Preset.DINOV2_SMALL)
    lab.registry.reads.clear()

    outcome = lab.accepted(lab.request(base="v1"))

    assert lab.registry.reads == {1: 1}
    record = lab.registry.get_version("lab", outcome.version)
    assert record is not None and record.details.preset == Preset.DINOV2_SMALL.value
    (job,) = lab.jobs.created
    assert job.HyperParameters["preset"] == Preset.DINOV2_SMALL.value
    assert {channel.ChannelName: channel.DataSource.S3DataSource.S3Uri for channel in job.InputDataConfig}[
        "base"
    ] == BASE_ARTIFACT


def test_the_validation_hands_on_the_settings_and_the_base_it_used() -> None:
    lab = Lab()
    lab.completed_base(preset=Preset.DINOV2_SMALL)
    base = lab.registry.get_version("lab", 1)

    validation = validate_request(
        lab.request(base="v1", training={"epochs": 3}),
        project="lab",
        store=lab.store,
        defaults=small_defaults(),
        base_lookup=lambda number: lab.registry.get_version("lab", number),
    )

    assert validation.report.ok and validation.base == base
    assert validation.training == ResolvedTraining(preset=Preset.DINOV2_SMALL, epochs=3, tile_size=128)


def test_a_preset_base_reads_no_version() -> None:
    lab = Lab()

    outcome = lab.accepted(lab.request(base="sam-vit-base", compute={"max_hours": 48}))

    assert lab.registry.reads == {}
    assert outcome.report.details.preset == Preset.SAM_VIT_BASE.value
    assert "base" not in {channel.ChannelName for channel in lab.jobs.created[0].InputDataConfig}


# --- repeats ----------------------------------------------------------------------------------


def test_a_repeat_after_the_job_started_answers_from_the_record_without_validating_again() -> None:
    lab = Lab()
    first = lab.accepted()
    lab.remove_dataset()  # a second validation would fail

    again = lab.accepted()

    assert (again.version, again.job_name, again.repeated) == (first.version, first.job_name, True)
    assert again.report == first.report and len(lab.jobs.created) == 1 and lab.registry.counters == {"lab": 1}


def test_a_repeat_answers_the_status_the_record_has_now() -> None:
    lab = Lab()
    lab.accepted()
    lab.registry.transition("lab", 1, VersionStatus.TRAINING, NOW)

    assert lab.accepted().status is VersionStatus.TRAINING and len(lab.jobs.created) == 1


def test_the_same_key_with_another_body_is_refused_and_writes_nothing() -> None:
    lab = Lab()
    lab.accepted()
    written = dict(lab.artifacts.objects)

    with pytest.raises(IdempotencyKeyReused) as refused:
        lab.submit(lab.request(label="another"))

    assert refused.value.context == {"version": 1}
    assert lab.artifacts.objects == written and len(lab.jobs.created) == 1 and len(lab.registry.versions) == 1


def test_a_key_another_body_claims_between_the_read_and_the_claim_is_refused() -> None:
    lab = Lab()
    lab.registry.rival = "fingerprint of another body"

    with pytest.raises(IdempotencyKeyReused) as refused:
        lab.submit()

    assert refused.value.context == {"version": 1}
    assert lab.registry.versions == {} and lab.jobs.created == [] and lab.artifacts.objects == {}


def test_another_key_gets_the_next_version() -> None:
    lab = Lab()
    lab.accepted()

    assert lab.accepted(key="http:lab:k2").version == 2 and len(lab.jobs.created) == 2


# --- recovery of an attempt that stopped half-way ---------------------------------------------


def test_a_version_bound_but_never_recorded_is_finished_under_the_same_number() -> None:
    lab = Lab()
    request = lab.request()
    lab.registry.claim("lab", "http:lab:k1", fingerprint_of(request), NOW)  # the attempt stopped here

    outcome = lab.accepted(request)

    assert (outcome.version, outcome.status, outcome.repeated) == (1, VersionStatus.QUEUED, True)
    assert lab.registry.counters == {"lab": 1} and lab.registry.get_version("lab", 1) is not None
    assert [job.TrainingJobName for job in lab.jobs.created] == [outcome.job_name]


def test_a_version_recorded_whose_job_never_started_is_validated_again_and_started() -> None:
    lab = Lab()
    first = lab.accepted()
    lab.forget_the_job()
    files = lab.remove_dataset()  # validated again: the dataset as it is now decides

    refused = lab.submit()

    assert isinstance(refused, RejectedTraining) and lab.jobs.created == []
    lab.store.datasets[("lab", "cells")] = files

    again = lab.accepted()

    assert (again.version, again.job_name, again.repeated) == (first.version, first.job_name, True)
    assert [job.TrainingJobName for job in lab.jobs.created] == [first.job_name]
    assert lab.registry.counters == {"lab": 1} and len(lab.registry.versions) == 1


def test_a_job_creation_that_failed_for_a_moment_is_retried_under_the_same_name() -> None:
    lab = Lab()
    lab.jobs.refuse = ServiceUnavailable("SageMaker did not answer")
    with pytest.raises(ServiceUnavailable):
        lab.submit()
    recorded = lab.registry.get_version("lab", 1)
    assert recorded is not None and recorded.status is VersionStatus.QUEUED and lab.jobs.created == []

    lab.jobs.refuse = None
    outcome = lab.accepted()

    assert (outcome.version, outcome.status, outcome.repeated) == (1, VersionStatus.QUEUED, True)
    assert [job.TrainingJobName for job in lab.jobs.created] == [recorded.job_name]


def test_a_job_started_whose_status_was_never_written_is_not_started_again() -> None:
    lab = Lab()
    first = lab.accepted()  # the job runs; its state-change event has not been applied yet

    again = lab.accepted()

    assert again.status is VersionStatus.QUEUED and again.repeated
    assert [job.TrainingJobName for job in lab.jobs.created] == [first.job_name]


# --- SageMaker's permanent refusal ------------------------------------------------------------


def test_a_refused_job_marks_the_version_failed_with_the_reason() -> None:
    lab = Lab()
    lab.jobs.refuse = JobRefused("SageMaker refused the training job: ResourceLimitExceeded")

    outcome = lab.accepted()

    assert (outcome.version, outcome.status, outcome.repeated) == (1, VersionStatus.FAILED, False)
    record = lab.registry.get_version("lab", 1)
    assert record is not None and record.status is VersionStatus.FAILED
    assert record.failure_reason == "SageMaker refused the training job: ResourceLimitExceeded"
    assert [change.status for change in record.status_history] == [VersionStatus.QUEUED, VersionStatus.FAILED]


def test_a_repeat_of_a_refused_job_answers_failed_without_asking_again() -> None:
    lab = Lab()
    lab.jobs.refuse = JobRefused("SageMaker refused the training job: ResourceLimitExceeded")
    lab.accepted()
    lab.jobs.refuse = None

    again = lab.accepted()

    assert (again.status, again.repeated) == (VersionStatus.FAILED, True) and lab.jobs.created == []
