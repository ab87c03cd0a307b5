"""Submit a training request: validate, bind a version, freeze the split, start the job.

One use case serves both entry points (HTTP and S3 upload). A request is identified by a
request key (the uploaded object and its ETag, or the HTTP Idempotency-Key); the registry binds
each key to one version number, and the job name is derived from it, so a repeated delivery
yields the same version and never a second job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from segpipe.dal.interfaces import ArtifactStore, DatasetStore, ModelRegistry, TrainingJobs
from segpipe.errors import IdempotencyKeyReused, JobRefused
from segpipe.logic.jobspec import (
    JobEnvironment,
    ResolvedTraining,
    build_training_job,
    job_name,
    training_config,
)
from segpipe.logic.split import render_manifests
from segpipe.logic.validate import MAX_ANNOTATIONS_BYTES, ComputeRules, TrainingDefaults, validate_request
from segpipe.models import keys
from segpipe.models.common import Preset, VersionStatus
from segpipe.models.jobs import CreateTrainingJob
from segpipe.models.report import ValidationReport
from segpipe.models.request import TrainingRequest
from segpipe.models.version import ModelVersion, StatusChange


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


class SubmitOutcome(BaseModel):
    report: ValidationReport
    version: int | None = None
    job_name: str | None = None
    status: VersionStatus | None = None
    repeated: bool = Field(default=False, description="The request key was already bound to this version")


def fingerprint_of(request: TrainingRequest) -> str:
    """A digest of the request body, to tell a retry from a different request under the same key."""
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def preview(request: TrainingRequest, *, project: str, deps: SubmitDeps) -> ValidationReport:
    """The report a submission would get; writes nothing."""
    return validate_request(
        request,
        project=project,
        store=deps.store,
        defaults=deps.defaults,
        base_lookup=_base_lookup(project, deps),
        compute_rules=deps.compute_rules,
        running_trainings=lambda: deps.registry.running_versions(project),
        max_annotations_bytes=deps.max_annotations_bytes,
    ).report


def submit(
    request: TrainingRequest, *, project: str, request_key: str, fingerprint: str, deps: SubmitDeps
) -> SubmitOutcome:
    """Validate and start a training. A report with errors comes back with nothing written."""
    if repeated := _already_submitted(project, request_key, fingerprint, deps):
        return repeated

    validation = validate_request(
        request,
        project=project,
        store=deps.store,
        defaults=deps.defaults,
        base_lookup=_base_lookup(project, deps),
        compute_rules=deps.compute_rules,
        running_trainings=lambda: _running_besides(project, request_key, deps),
        max_annotations_bytes=deps.max_annotations_bytes,
    )
    if validation.plan is None:
        return SubmitOutcome(report=validation.report)

    now = deps.clock()
    claim = deps.registry.claim(project, request_key, fingerprint, now)
    if claim.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request body.", version=claim.version
        )
    version = claim.version
    location = request.dataset_location(project)
    assert location is not None  # validation refuses datasets of other projects
    dataset = location[0]
    resolved = _resolve(request, validation.report, project, deps)
    name = job_name(project, version, request_key, salt=f"{deps.env.stack}/{deps.env.bucket}")

    manifests = render_manifests(validation.plan, project=project, version=version)
    deps.artifacts.put_many(
        (keys.split_key(project, version, split), body, "application/json")
        for split, body in manifests.items()
    )
    config = training_config(request, resolved, project=project, version=version)
    base = request.base_version()
    base_version = deps.registry.get_version(project, base) if base else None
    job = build_training_job(
        request=request,
        config=config,
        project=project,
        dataset=dataset,
        version=version,
        name=name,
        env=deps.env,
        base_artifact=base_version.model_artifact if base_version else None,
    )
    details = validation.report.details.model_copy(
        update={"preset": resolved.preset.value, "epochs": resolved.epochs, "tile_size": resolved.tile_size}
    )
    record = ModelVersion(
        project=project,
        version=version,
        label=request.label,
        model_type=request.model_type,
        classes=list(request.classes),
        dataset=dataset,
        request=request,
        details=details,
        warnings=validation.report.warnings,
        status=VersionStatus.QUEUED,
        status_history=[StatusChange(status=VersionStatus.QUEUED, at=now)],
        job_name=name,
        created_at=now,
        updated_at=now,
    )
    deps.registry.create_version(record)
    status = _start_job(job, record, deps)
    report = validation.report.model_copy(update={"details": details, "version": version, "job_name": name})
    return SubmitOutcome(
        report=report, version=version, job_name=name, status=status, repeated=not claim.fresh
    )


def _start_job(job: CreateTrainingJob, record: ModelVersion, deps: SubmitDeps) -> VersionStatus:
    try:
        deps.jobs.create(job)
    except JobRefused as error:
        # The version exists and says why no job runs, rather than staying queued for ever.
        deps.registry.transition(
            record.project, record.version, VersionStatus.FAILED, deps.clock(), reason=error.message
        )
        return VersionStatus.FAILED
    return VersionStatus.QUEUED


def _already_submitted(
    project: str, request_key: str, fingerprint: str, deps: SubmitDeps
) -> SubmitOutcome | None:
    claim = deps.registry.find_claim(project, request_key)
    if claim is None:
        return None
    if claim.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request body.", version=claim.version
        )
    existing = deps.registry.get_version(project, claim.version)
    if existing is None:
        return None  # bound but never recorded (an earlier attempt stopped half-way): finish it now
    if existing.status is VersionStatus.QUEUED and deps.jobs.describe(existing.job_name) is None:
        return None  # recorded but its job was never started: start it now
    report = ValidationReport(
        ok=True,
        warnings=existing.warnings,
        details=existing.details,
        version=existing.version,
        job_name=existing.job_name,
    )
    return SubmitOutcome(
        report=report,
        version=existing.version,
        job_name=existing.job_name,
        status=existing.status,
        repeated=True,
    )


def _resolve(
    request: TrainingRequest, report: ValidationReport, project: str, deps: SubmitDeps
) -> ResolvedTraining:
    details = report.details
    preset = request.base_preset()
    if preset is None and (base := request.base_version()):
        base_version = deps.registry.get_version(project, base)
        if base_version and base_version.details.preset:
            preset = Preset(base_version.details.preset)
    if preset is None:
        preset = Preset(details.preset) if details.preset else deps.defaults.preset
    return ResolvedTraining(
        preset=preset,
        epochs=request.training.epochs or details.epochs or deps.defaults.epochs,
        tile_size=request.training.tile_size or details.tile_size or deps.defaults.tile_size,
    )


def _running_besides(project: str, request_key: str, deps: SubmitDeps) -> Sequence[int]:
    """The project's queued or training versions, except one already bound to this very request
    (an earlier attempt that stopped before its job started is finished, not counted)."""
    claim = deps.registry.find_claim(project, request_key)
    return [
        number
        for number in deps.registry.running_versions(project)
        if claim is None or number != claim.version
    ]


def _base_lookup(project: str, deps: SubmitDeps) -> Callable[[int], ModelVersion | None]:
    return lambda number: deps.registry.get_version(project, number)
