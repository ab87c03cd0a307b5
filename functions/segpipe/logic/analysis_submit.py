"""Submit an analysis request: check, bind a number, freeze the item, start the processing job.

One use case for both entry points (HTTP and S3 upload), as for trainings (`submit.py`); the order
of writes and the handling of repeats are `submission.submit_once`'s. A request key (the uploaded
object and its ETag, or the HTTP Idempotency-Key) is bound to one analysis number and the job name
derives from it, so a repeated delivery yields the same analysis and one job.

Order of writes, each repeatable: claim (the counter moves only once the checks pass) -> the job's
`analyze.json` -> the item -> CreateProcessingJob. A report with errors writes nothing at all. A
retry after a stop half-way finds the claim and finishes what is missing: a claim without an item
runs the checks again and writes both; an item still queued without a job starts the job from the
frozen item (without checking again: what was accepted is what runs). A number is never reused,
so a claimed request that is never retried leaves a gap in the numbering, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from segpipe.dal.interfaces import AnalysisRegistry, Claim, ProcessingJobs
from segpipe.errors import IdempotencyKeyReused
from segpipe.logic.analysis_checks import AnalysisCheck, AnalysisSources, check_analysis
from segpipe.logic.analysis_job import analysis_job_name, analyze_config, build_processing_job
from segpipe.logic.jobspec import JobEnvironment
from segpipe.logic.submission import REUSED_KEY, Delivery, Rejected, fingerprint_of, start_job, submit_once
from segpipe.models import keys
from segpipe.models.analysis import (
    Analysis,
    AnalysisAccepted,
    AnalysisReport,
    AnalysisRequest,
    AnalysisStatus,
    AnalysisStatusChange,
)
from segpipe.models.version import ModelVersion

__all__ = [
    "AnalysisAccepted",
    "AnalysisOutcome",
    "AnalysisSubmitDeps",
    "RejectedAnalysis",
    "analysis_fingerprint",
    "preview_analysis",
    "submit_analysis",
]

#: A digest of the request body, to tell a retry from a different request under the same key.
analysis_fingerprint = fingerprint_of


@dataclass(frozen=True)
class AnalysisSubmitDeps:
    sources: AnalysisSources  # images, artifacts, versions, compute rules
    analyses: AnalysisRegistry
    jobs: ProcessingJobs
    env: JobEnvironment
    clock: Callable[[], datetime]


class RejectedAnalysis(Rejected[AnalysisReport]):
    """An analysis request whose checks found errors: the report; nothing was written."""


AnalysisOutcome = AnalysisAccepted | RejectedAnalysis


def preview_analysis(request: AnalysisRequest, *, project: str, deps: AnalysisSubmitDeps) -> AnalysisReport:
    """The report a submission would get; writes nothing."""
    return check_analysis(request, project=project, sources=deps.sources).report


def submit_analysis(
    request: AnalysisRequest, *, project: str, request_key: str, fingerprint: str, deps: AnalysisSubmitDeps
) -> AnalysisOutcome:
    """Check and start an analysis. A report with errors comes back with nothing written."""
    return submit_once(_Analysis(request, project, request_key, fingerprint, deps))


class _Analysis(Delivery[AnalysisRequest, AnalysisSubmitDeps]):
    """The `Submission` of one analysis request."""

    def find_claim(self) -> Claim | None:
        return self.deps.analyses.find_claim(self.project, self.request_key)

    def claim(self, now: datetime) -> Claim:
        return self.deps.analyses.claim(self.project, self.request_key, self.fingerprint, now)

    def reused(self, claim: Claim) -> IdempotencyKeyReused:
        return IdempotencyKeyReused(REUSED_KEY, analysis=claim.version)

    def stored(self, number: int) -> Analysis | None:
        return self.deps.analyses.get_analysis(self.project, number)

    def resume(self, record: Analysis) -> AnalysisAccepted:
        status = record.status
        if status is AnalysisStatus.QUEUED and self.deps.jobs.describe(record.job_name) is None:
            version = self.deps.sources.registry.get_version(self.project, record.version)
            if version is not None and version.model_artifact:
                # Recorded but its job was never started: start it from the frozen item.
                self._write_config(record)
                status = self._start(record, version)
        return _accepted(record, status=status, repeated=True)

    def check(self, earlier: Claim | None) -> AnalysisCheck:
        return check_analysis(self.request, project=self.project, sources=self.deps.sources)

    def refusal(self, check: AnalysisCheck) -> RejectedAnalysis | None:
        return None if check.ok and check.version is not None else RejectedAnalysis(report=check.report)

    def bind(self, check: AnalysisCheck, claim: Claim, now: datetime) -> AnalysisAccepted:
        assert check.version is not None  # `refusal` lets through only a check that found the version
        record = self._record(check, check.version, number=claim.version, now=now)
        self._write_config(record)
        self.deps.analyses.create_analysis(record)  # False when an earlier attempt wrote it: the same values
        stored = self.deps.analyses.get_analysis(self.project, record.analysis) or record
        return _accepted(stored, status=self._start(stored, check.version), repeated=not claim.fresh)

    def _record(self, check: AnalysisCheck, version: ModelVersion, *, number: int, now: datetime) -> Analysis:
        request, details, env = self.request, check.report.details, self.deps.env
        return Analysis(
            project=self.project,
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
            job_name=analysis_job_name(
                self.project, number, self.request_key, salt=f"{env.stack}/{env.bucket}"
            ),
            created_at=now,
            updated_at=now,
        )

    def _write_config(self, analysis: Analysis) -> None:
        self.deps.sources.artifacts.put_bytes(
            keys.analysis_config_key(analysis.project, analysis.analysis),
            analyze_config(analysis).model_dump_json(indent=2).encode(),
        )

    def _start(self, analysis: Analysis, version: ModelVersion) -> AnalysisStatus:
        assert version.model_artifact is not None  # the checks refuse versions without one
        job = build_processing_job(analysis, model_artifact=version.model_artifact, env=self.deps.env)
        started = start_job(
            lambda: self.deps.jobs.create(job),
            lambda reason: self.deps.analyses.transition_analysis(
                analysis.project, analysis.analysis, AnalysisStatus.FAILED, self.deps.clock(), reason=reason
            ),
        )
        return analysis.status if started else AnalysisStatus.FAILED


def _accepted(analysis: Analysis, *, status: AnalysisStatus, repeated: bool) -> AnalysisAccepted:
    """The answer for an analysis recorded now or before: its report is what the item froze."""
    bound = {"analysis": analysis.analysis, "job_name": analysis.job_name}
    report = AnalysisReport(ok=True, warnings=analysis.warnings, details=analysis.details, **bound)
    return AnalysisAccepted(
        project=analysis.project, status=status, repeated=repeated, report=report, **bound
    )
