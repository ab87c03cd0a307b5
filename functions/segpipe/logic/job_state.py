"""Apply a `SageMaker Training Job State Change` to its version.

Events may repeat and arrive out of order: every move is a conditional write that only goes
forward (queued -> training -> completed | failed | stopped), so a late `InProgress` after
`Completed`, or a second `Completed`, changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from segpipe.dal.interfaces import ArtifactStore, ModelRegistry
from segpipe.logic.ingest import IngestLimits, OutputsUnreadable, ingest_outputs
from segpipe.logic.state_outcome import StateOutcome, status_table
from segpipe.models import keys
from segpipe.models.common import SplitName, VersionStatus
from segpipe.models.jobs import JobDescription
from segpipe.models.trainer_io import Evaluation, SplitEvaluation
from segpipe.models.version import Headline

logger = logging.getLogger(__name__)

STATUS_OF_JOB = status_table(VersionStatus.TRAINING)

#: DynamoDB items are limited to 400 KB; larger metrics go to S3 with a pointer in the item.
METRICS_INLINE_LIMIT = 300_000


@dataclass(frozen=True)
class JobStateDeps:
    registry: ModelRegistry
    artifacts: ArtifactStore
    clock: Callable[[], datetime]
    limits: IngestLimits = field(default_factory=IngestLimits)


class JobStateOutcome(StateOutcome[VersionStatus]):
    version: int | None = None


def apply_job_state(job: JobDescription, *, deps: JobStateDeps) -> JobStateOutcome:
    outcome = JobStateOutcome(job_name=job.TrainingJobName)
    located = deps.registry.find_by_job(job.TrainingJobName)
    if located is None:
        return outcome.model_copy(update={"note": "no version has this job"})
    project, number = located
    current = deps.registry.get_version(project, number)
    target = STATUS_OF_JOB[job.TrainingJobStatus]
    outcome = outcome.model_copy(update={"project": project, "version": number})
    if current is None or target.rank <= current.status.rank:
        return outcome.stale(current.status if current else None)

    now = deps.clock()
    if target is VersionStatus.COMPLETED:
        outcome = outcome.model_copy(update={"before": current.status})
        return _complete(job, project, number, now=now, deps=deps, outcome=outcome)
    fields: dict[str, Any] = {}
    if target is VersionStatus.TRAINING:
        fields["started_at"] = (job.TrainingStartTime or now).isoformat()
    else:
        fields["ended_at"] = (job.TrainingEndTime or now).isoformat()
    reason = job.FailureReason if target is VersionStatus.FAILED else None
    if target is VersionStatus.FAILED and not reason:
        reason = "The training job failed without a reason."
    applied = deps.registry.transition(project, number, target, now, reason=reason, fields=fields)
    return outcome.model_copy(update={"before": current.status, "after": target, "applied": applied})


def _complete(
    job: JobDescription,
    project: str,
    number: int,
    *,
    now: datetime,
    deps: JobStateDeps,
    outcome: JobStateOutcome,
) -> JobStateOutcome:
    """Ingest the job's outputs and complete the version; unreadable outputs fail it instead.
    `outcome` already carries the status before."""
    try:
        ingested = ingest_outputs(
            project=project,
            version=number,
            job_name=job.TrainingJobName,
            artifacts=deps.artifacts,
            limits=deps.limits,
        )
    except OutputsUnreadable as error:
        logger.warning("outputs of %s unreadable: %s", job.TrainingJobName, error.message)
        applied = deps.registry.transition(
            project,
            number,
            VersionStatus.FAILED,
            now,
            reason=error.message,
            fields={"ended_at": now.isoformat()},
        )
        return outcome.model_copy(update={"after": VersionStatus.FAILED, "applied": applied})

    evaluation = ingested.evaluation
    results: tuple[tuple[SplitName, SplitEvaluation | None], ...] = (
        ("train", evaluation.train),
        ("test", evaluation.test),
    )
    for split, result in results:
        if result is not None:
            _store_metrics(project, number, split, result, deps)
    fields = _completed_fields(job, project, number, evaluation=evaluation, now=now)
    applied = deps.registry.transition(project, number, VersionStatus.COMPLETED, now, fields=fields)
    return outcome.model_copy(
        update={
            "after": VersionStatus.COMPLETED,
            "applied": applied,
            "note": f"{len(ingested.images)} images",
        }
    )


def _completed_fields(
    job: JobDescription, project: str, number: int, *, evaluation: Evaluation, now: datetime
) -> dict[str, Any]:
    """What completing a version writes on its item: thresholds, headline, intervals, the model."""
    fallback = keys.job_output_key(project, number, job.TrainingJobName, "model.tar.gz")
    artifact = (
        job.ModelArtifacts.S3ModelArtifacts if job.ModelArtifacts else f"s3://{_bucket_of(job)}/{fallback}"
    )
    return {
        "suggested_threshold": evaluation.suggested_threshold,
        "suggested_thresholds": evaluation.suggested_thresholds,
        "analysis_threshold": evaluation.suggested_threshold,
        "headline": headline(evaluation).model_dump(mode="json"),
        "intervals": evaluation.intervals.model_dump(mode="json") if evaluation.intervals else None,
        "selection": evaluation.selection.model_dump(mode="json") if evaluation.selection else None,
        "model_artifact": artifact,
        "ended_at": (job.TrainingEndTime or now).isoformat(),
    }


def _bucket_of(job: JobDescription) -> str:
    path = job.OutputDataConfig.S3OutputPath if job.OutputDataConfig else "s3://unknown/"
    return path.removeprefix("s3://").split("/", 1)[0]


def _store_metrics(
    project: str, version: int, split: SplitName, result: SplitEvaluation, deps: JobStateDeps
) -> None:
    data = result.model_dump(mode="json", exclude_none=True)
    body = json.dumps(data).encode()
    if len(body) > METRICS_INLINE_LIMIT:
        key = keys.metrics_key(project, version, split)
        deps.artifacts.put_bytes(key, body)
        deps.registry.put_metrics(project, version, split, {"s3_key": key})
    else:
        deps.registry.put_metrics(project, version, split, data)


def headline(evaluation: Evaluation) -> Headline:
    """The table's numbers: test split when there is one, at the suggested threshold."""
    split, result = ("test", evaluation.test) if evaluation.test else ("train", evaluation.train)
    point = result.at(evaluation.suggested_threshold)
    overall = point.overall
    if evaluation.model_type == "semantic":
        return Headline(split=split, threshold=point.threshold, mean_iou=overall.iou)
    return Headline(
        split=split,
        threshold=point.threshold,
        f1=overall.f1,
        precision=overall.precision,
        recall=overall.recall,
        ap50=result.ap_overall.ap50 if result.ap_overall else None,
    )
