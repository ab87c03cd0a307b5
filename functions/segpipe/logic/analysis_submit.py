"""Submit an analysis request: check, bind a number, freeze the item, start the processing job.

One use case for both entry points (HTTP and S3 upload), as for trainings (`submit.py`). A request
key (the uploaded object and its ETag, or the HTTP Idempotency-Key) is bound to one analysis number
and the job name derives from it, so a repeated delivery yields the same analysis and one job.

Order of writes, each repeatable: claim (the counter moves only once the checks pass) -> the job's
`analyze.json` -> the item -> CreateProcessingJob. A report with errors writes nothing at all. A
retry after a stop half-way finds the claim and finishes what is missing: a claim without an item
runs the checks again and writes both; an item still queued without a job starts the job from the
frozen item (without checking again: what was accepted is what runs). A number is never reused,
so a claimed request that is never retried leaves a gap in the numbering, nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from segpipe.dal.interfaces import AnalysisRegistry, ProcessingJobs
from segpipe.errors import IdempotencyKeyReused, JobRefused
from segpipe.logic.analysis_checks import AnalysisCheck, AnalysisSources, check_analysis
from segpipe.logic.analysis_job import analysis_job_name, analyze_config, build_processing_job
from segpipe.logic.jobspec import JobEnvironment
from segpipe.models import keys
from segpipe.models.analysis import (
    Analysis,
    AnalysisReport,
    AnalysisRequest,
    AnalysisStatus,
    AnalysisStatusChange,
)
from segpipe.models.version import ModelVersion


@dataclass(frozen=True)
class AnalysisSubmitDeps:
    sources: AnalysisSources  # images, artifacts, versions, compute rules
    analyses: AnalysisRegistry
    jobs: ProcessingJobs
    env: JobEnvironment
    clock: Callable[[], datetime]


class AnalysisOutcome(BaseModel):
    report: AnalysisReport
    analysis: int | None = None
    job_name: str | None = None
    status: AnalysisStatus | None = None
    repeated: bool = Field(default=False, description="The request key was already bound to this analysis")


def analysis_fingerprint(request: AnalysisRequest) -> str:
    """A digest of the request body, to tell a retry from a different request under the same key."""
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def preview_analysis(request: AnalysisRequest, *, project: str, deps: AnalysisSubmitDeps) -> AnalysisReport:
    """The report a submission would get; writes nothing."""
    return check_analysis(request, project=project, sources=deps.sources).report


def submit_analysis(
    request: AnalysisRequest, *, project: str, request_key: str, fingerprint: str, deps: AnalysisSubmitDeps
) -> AnalysisOutcome:
    """Check and start an analysis. A report with errors comes back with nothing written."""
    if (earlier := _already_submitted(project, request_key, fingerprint, deps)) is not None:
        return earlier
    check = check_analysis(request, project=project, sources=deps.sources)
    if not check.ok or check.version is None:
        return AnalysisOutcome(report=check.report)

    now = deps.clock()
    claim = deps.analyses.claim_analysis(project, request_key, fingerprint, now)
    if claim.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request body.", analysis=claim.version
        )
    number = claim.version
    record = _record(
        request, check=check, project=project, number=number, request_key=request_key, now=now, deps=deps
    )
    deps.sources.artifacts.put_bytes(
        keys.analysis_config_key(project, number), analyze_config(record).model_dump_json(indent=2).encode()
    )
    deps.analyses.create_analysis(record)  # False when an earlier attempt wrote it: the same frozen values
    stored = deps.analyses.get_analysis(project, number) or record
    status = _start_job(stored, check.version, deps)
    return _accepted(stored, status=status, repeated=not claim.fresh)


def _record(
    request: AnalysisRequest,
    *,
    check: AnalysisCheck,
    project: str,
    number: int,
    request_key: str,
    now: datetime,
    deps: AnalysisSubmitDeps,
) -> Analysis:
    version = check.version
    assert version is not None  # checked by the caller
    details = check.report.details
    name = analysis_job_name(project, number, request_key, salt=f"{deps.env.stack}/{deps.env.bucket}")
    return Analysis(
        project=project,
        analysis=number,
        name=request.name,
        images_folder=request.images,
        request=request,
        version=version.version,
        model_type=version.model_type,
        classes=list(version.classes),
        thresholds=dict(details.thresholds),
        pixel_size=request.pixel_size,
        details=details,
        warnings=check.report.warnings,
        status=AnalysisStatus.QUEUED,
        status_history=[AnalysisStatusChange(status=AnalysisStatus.QUEUED, at=now)],
        job_name=name,
        created_at=now,
        updated_at=now,
    )


def _start_job(analysis: Analysis, version: ModelVersion, deps: AnalysisSubmitDeps) -> AnalysisStatus:
    assert version.model_artifact is not None  # the checks refuse versions without one
    job = build_processing_job(analysis, model_artifact=version.model_artifact, env=deps.env)
    try:
        deps.jobs.create(job)  # False: an earlier attempt started it (the same deterministic name)
    except JobRefused as error:
        # The analysis exists and says why no job runs, rather than staying queued for ever.
        deps.analyses.transition_analysis(
            analysis.project, analysis.analysis, AnalysisStatus.FAILED, deps.clock(), reason=error.message
        )
        return AnalysisStatus.FAILED
    return analysis.status


def _already_submitted(
    project: str, request_key: str, fingerprint: str, deps: AnalysisSubmitDeps
) -> AnalysisOutcome | None:
    claim = deps.analyses.find_analysis_claim(project, request_key)
    if claim is None:
        return None
    if claim.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different request body.", analysis=claim.version
        )
    existing = deps.analyses.get_analysis(project, claim.version)
    if existing is None:
        return None  # bound but never recorded (an earlier attempt stopped half-way): finish it now
    status = existing.status
    if status is AnalysisStatus.QUEUED and deps.jobs.describe(existing.job_name) is None:
        version = deps.sources.registry.get_version(project, existing.version)
        if version is not None and version.model_artifact:
            # Recorded but its job was never started: start it from the frozen item.
            deps.sources.artifacts.put_bytes(
                keys.analysis_config_key(project, existing.analysis),
                analyze_config(existing).model_dump_json(indent=2).encode(),
            )
            status = _start_job(existing, version, deps)
    return _accepted(existing, status=status, repeated=True)


def _accepted(analysis: Analysis, *, status: AnalysisStatus, repeated: bool) -> AnalysisOutcome:
    report = AnalysisReport(
        ok=True,
        warnings=analysis.warnings,
        details=analysis.details,
        analysis=analysis.analysis,
        job_name=analysis.job_name,
    )
    return AnalysisOutcome(
        report=report,
        analysis=analysis.analysis,
        job_name=analysis.job_name,
        status=status,
        repeated=repeated,
    )
