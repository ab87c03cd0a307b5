"""Apply a `SageMaker Processing Job State Change` to its analysis.

queued -> running -> completed | failed | stopped, by conditional writes that only go forward:
SageMaker may repeat an event or deliver it late, and neither moves an analysis backwards (a late
`Completed` after `stopped` does nothing; a second `Completed` finds it completed).

`Completed` merges the instances' shards first and stores the merged summary with the move; an
analysis is completed only once its outputs exist. Shards that can never be merged (missing,
malformed) fail the analysis with the merge's sentence: the event is handled, not retried forever.
A read that failed on the way (`ServiceUnavailable`) is raised, so EventBridge delivers again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from segpipe.dal.interfaces import AnalysisRegistry, ArtifactStore, ProcessingJobs
from segpipe.logic.analysis_merge import ShardsUnreadable, merge_shards
from segpipe.logic.state_outcome import StateOutcome, status_table
from segpipe.models.analysis import Analysis, AnalysisStatus
from segpipe.models.processing import ProcessingJobDescription

logger = logging.getLogger(__name__)

STATUS_OF_PROCESSING_JOB = status_table(AnalysisStatus.RUNNING)
STACK_TAG = "segpipe:stack"
NO_REASON = "The processing job failed without a reason."


@dataclass(frozen=True)
class AnalysisStateDeps:
    analyses: AnalysisRegistry
    artifacts: ArtifactStore
    clock: Callable[[], datetime]
    #: Asked for the container's exit message when a failure event does not carry it.
    jobs: ProcessingJobs | None = None
    #: This stack's name: events of jobs tagged with another stack are ignored.
    stack: str | None = None


class AnalysisStateOutcome(StateOutcome[AnalysisStatus]):
    analysis: int | None = None


def apply_processing_state(job: ProcessingJobDescription, *, deps: AnalysisStateDeps) -> AnalysisStateOutcome:
    outcome = AnalysisStateOutcome(job_name=job.ProcessingJobName)
    tagged = job.Tags.get(STACK_TAG)
    if deps.stack is not None and tagged is not None and tagged != deps.stack:
        logger.info("ignored: %s belongs to stack %s", job.ProcessingJobName, tagged)
        return outcome.model_copy(update={"note": "another stack's job"})
    located = deps.analyses.find_analysis_by_job(job.ProcessingJobName)
    if located is None:
        logger.info("ignored: no analysis has processing job %s", job.ProcessingJobName)
        return outcome.model_copy(update={"note": "no analysis has this job"})
    project, number = located
    outcome = outcome.model_copy(update={"project": project, "analysis": number})
    current = deps.analyses.get_analysis(project, number)
    target = STATUS_OF_PROCESSING_JOB[job.ProcessingJobStatus]
    if current is None or target.rank <= current.status.rank:
        return outcome.stale(current.status if current else None)

    now = deps.clock()
    outcome = outcome.model_copy(update={"before": current.status, "after": target})
    if target is AnalysisStatus.RUNNING:
        applied = deps.analyses.transition_analysis(project, number, target, job.ProcessingStartTime or now)
        return outcome.model_copy(update={"applied": applied})
    ended = job.ProcessingEndTime or now
    _record_start(job, current, ended, deps)
    if target is AnalysisStatus.COMPLETED:
        return _complete(current, ended, deps, outcome)
    reason = _failure_reason(job, deps) if target is AnalysisStatus.FAILED else None
    applied = deps.analyses.transition_analysis(project, number, target, ended, reason=reason)
    return outcome.model_copy(update={"applied": applied})


def _record_start(
    job: ProcessingJobDescription, current: Analysis, ended: datetime, deps: AnalysisStateDeps
) -> None:
    """A job that ended after it started was running, even when its `InProgress` event is late or
    lost: record that first, so every order of the same events leaves the same item. A completed
    job's event without a start time: it started, at the latest, when it ended."""
    ran = job.ProcessingStartTime is not None or job.ProcessingJobStatus == "Completed"
    if current.status is AnalysisStatus.QUEUED and ran:
        deps.analyses.transition_analysis(
            current.project, current.analysis, AnalysisStatus.RUNNING, job.ProcessingStartTime or ended
        )


def _complete(
    current: Analysis, ended: datetime, deps: AnalysisStateDeps, outcome: AnalysisStateOutcome
) -> AnalysisStateOutcome:
    try:
        summary = merge_shards(
            deps.artifacts,
            project=current.project,
            analysis=current.analysis,
            expected_hosts=current.request.compute.instance_count,
        )
    except ShardsUnreadable as error:
        logger.warning(
            "analysis %s/%s cannot be merged: %s", current.project, current.analysis, error.message
        )
        applied = deps.analyses.transition_analysis(
            current.project, current.analysis, AnalysisStatus.FAILED, ended, reason=error.message[:1024]
        )
        return outcome.model_copy(
            update={"after": AnalysisStatus.FAILED, "applied": applied, "note": error.code}
        )
    applied = deps.analyses.transition_analysis(
        current.project, current.analysis, AnalysisStatus.COMPLETED, ended, summary=summary
    )
    return outcome.model_copy(
        update={"applied": applied, "note": f"{summary.images} images, {summary.objects} objects"}
    )


def _failure_reason(job: ProcessingJobDescription, deps: AnalysisStateDeps) -> str:
    """The container's own sentence (`/opt/ml/output/message`, SageMaker's `ExitMessage`) when it
    left one, else SageMaker's `FailureReason`. An event without the exit message is completed
    from DescribeProcessingJob."""
    message, reason = job.ExitMessage, job.FailureReason
    if not message and deps.jobs is not None:
        described = deps.jobs.describe(job.ProcessingJobName)
        if described is not None:
            message, reason = described.ExitMessage, reason or described.FailureReason
    text = (message or "").strip() or (reason or "").strip()
    return text[:1024] or NO_REASON
