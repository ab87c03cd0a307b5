"""Submit a training request: validate once, bind a version, freeze the split, start the job.

One use case serves both entry points (HTTP and S3 upload). The order of writes and the handling
of repeats and retries are `submission.submit_once`'s, shared with analyses: the request key is
bound to one version number and the job name derives from it, so a repeated delivery yields the
same version and never a second job. A version recorded whose job never started is validated
again and its job started (what the dataset holds now is what trains).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from segpipe.dal.interfaces import ArtifactStore, Claim, DatasetStore, ModelRegistry, TrainingJobs
from segpipe.errors import IdempotencyKeyReused
from segpipe.logic.jobspec import JobEnvironment, build_training_job, job_name, training_config
from segpipe.logic.split import render_manifests
from segpipe.logic.submission import REUSED_KEY, Delivery, Rejected, fingerprint_of, start_job, submit_once
from segpipe.logic.validate import (
    MAX_ANNOTATIONS_BYTES,
    ComputeRules,
    TrainingDefaults,
    Validation,
    validate_request,
)
from segpipe.models import keys
from segpipe.models.api import SubmitAccepted
from segpipe.models.common import VersionStatus
from segpipe.models.jobs import CreateTrainingJob
from segpipe.models.report import ValidationReport
from segpipe.models.request import TrainingRequest
from segpipe.models.version import ModelVersion, StatusChange

__all__ = [
    "RejectedTraining",
    "SubmitAccepted",
    "SubmitDeps",
    "SubmitOutcome",
    "fingerprint_of",
    "preview",
    "submit",
]


@dataclass(frozen=True)
class SubmitDeps:
    store: DatasetStore
    artifacts: ArtifactStore
    registry: ModelRegistry
    jobs: TrainingJobs
    env: JobEnvironment
    defaults: TrainingDefaults
    clock: Callable[[], datetime]
    compute_rules: ComputeRules | None = None  # None: no compute guard (offline use)
    max_annotations_bytes: int = MAX_ANNOTATIONS_BYTES


class RejectedTraining(Rejected[ValidationReport]):
    """A training request whose validation found errors: the report; nothing was written."""


SubmitOutcome = SubmitAccepted | RejectedTraining


def preview(request: TrainingRequest, *, project: str, deps: SubmitDeps) -> ValidationReport:
    """The report a submission would get; writes nothing."""
    return _validate(request, project=project, deps=deps, earlier=None).report


def submit(
    request: TrainingRequest, *, project: str, request_key: str, fingerprint: str, deps: SubmitDeps
) -> SubmitOutcome:
    """Validate and start a training. A report with errors comes back with nothing written."""
    return submit_once(_Training(request, project, request_key, fingerprint, deps))


def _validate(
    request: TrainingRequest, *, project: str, deps: SubmitDeps, earlier: Claim | None
) -> Validation:
    return validate_request(
        request,
        project=project,
        store=deps.store,
        defaults=deps.defaults,
        base_lookup=lambda number: deps.registry.get_version(project, number),
        compute_rules=deps.compute_rules,
        running_trainings=lambda: _running_besides(project, earlier, deps),
        max_annotations_bytes=deps.max_annotations_bytes,
    )


def _running_besides(project: str, earlier: Claim | None, deps: SubmitDeps) -> Sequence[int]:
    """The project's queued or training versions, except one already bound to this very request
    (an earlier attempt that stopped before its job started is finished, not counted)."""
    return [
        number
        for number in deps.registry.running_versions(project)
        if earlier is None or number != earlier.version
    ]


class _Training(Delivery[TrainingRequest, SubmitDeps]):
    """The `Submission` of one training request."""

    def find_claim(self) -> Claim | None:
        return self.deps.registry.find_claim(self.project, self.request_key)

    def claim(self, now: datetime) -> Claim:
        return self.deps.registry.claim(self.project, self.request_key, self.fingerprint, now)

    def reused(self, claim: Claim) -> IdempotencyKeyReused:
        return IdempotencyKeyReused(REUSED_KEY, version=claim.version)

    def stored(self, number: int) -> ModelVersion | None:
        return self.deps.registry.get_version(self.project, number)

    def resume(self, record: ModelVersion) -> SubmitAccepted | None:
        if record.status is VersionStatus.QUEUED and self.deps.jobs.describe(record.job_name) is None:
            return None  # recorded but its job was never started: validate and start it now
        return _accepted(record, status=record.status, repeated=True)

    def check(self, earlier: Claim | None) -> Validation:
        return _validate(self.request, project=self.project, deps=self.deps, earlier=earlier)

    def refusal(self, validation: Validation) -> RejectedTraining | None:
        return None if validation.plan is not None else RejectedTraining(report=validation.report)

    def bind(self, validation: Validation, claim: Claim, now: datetime) -> SubmitAccepted:
        assert validation.plan is not None  # `refusal` lets through only a validation with a split plan
        version, deps = claim.version, self.deps
        name = job_name(self.project, version, self.request_key, salt=f"{deps.env.stack}/{deps.env.bucket}")
        manifests = render_manifests(validation.plan, project=self.project, version=version)
        deps.artifacts.put_many(
            (keys.split_key(self.project, version, split), body, "application/json")
            for split, body in manifests.items()
        )
        record = self._record(validation, version=version, name=name, now=now)
        job = self._job(validation, record)
        deps.registry.create_version(record)  # False when an earlier attempt wrote it
        started = start_job(
            lambda: deps.jobs.create(job),
            lambda reason: deps.registry.transition(
                self.project, version, VersionStatus.FAILED, deps.clock(), reason=reason
            ),
        )
        status = VersionStatus.QUEUED if started else VersionStatus.FAILED
        return _accepted(record, status=status, repeated=not claim.fresh)

    def _record(self, validation: Validation, *, version: int, name: str, now: datetime) -> ModelVersion:
        request = self.request
        return ModelVersion(
            project=self.project,
            version=version,
            label=request.label,
            model_type=request.model_type,
            classes=list(request.classes),
            dataset=_dataset_name(request, self.project),
            request=request,
            details=validation.report.details,
            warnings=validation.report.warnings,
            status=VersionStatus.QUEUED,
            status_history=[StatusChange(status=VersionStatus.QUEUED, at=now)],
            job_name=name,
            created_at=now,
            updated_at=now,
        )

    def _job(self, validation: Validation, record: ModelVersion) -> CreateTrainingJob:
        config = training_config(
            self.request, validation.training, project=self.project, version=record.version
        )
        base_artifact = validation.base.model_artifact if validation.base else None
        return build_training_job(record, config=config, env=self.deps.env, base_artifact=base_artifact)


def _dataset_name(request: TrainingRequest, project: str) -> str:
    location = request.dataset_location(project)
    assert location is not None  # validation refuses datasets of other projects
    return location[0]


def _accepted(record: ModelVersion, *, status: VersionStatus, repeated: bool) -> SubmitAccepted:
    """The answer for a version recorded now or before: its report is what the record froze."""
    bound = {"version": record.version, "job_name": record.job_name}
    report = ValidationReport(ok=True, warnings=record.warnings, details=record.details, **bound)
    return SubmitAccepted(project=record.project, status=status, repeated=repeated, report=report, **bound)
