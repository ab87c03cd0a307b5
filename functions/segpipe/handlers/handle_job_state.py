"""SageMaker job state changes (EventBridge): `Training Job State Change` moves a version and ingests
its results; `Processing Job State Change` moves an analysis and merges its results."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from segpipe.handlers.runtime import analysis_state_deps, job_state_deps, logger, metrics, tracer
from segpipe.settings import JobStateSettings, load_settings

settings = load_settings(JobStateSettings)
PROCESSING = "SageMaker Processing Job State Change"


@logger.inject_lambda_context(correlation_id_path="id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outcome: BaseModel
    # Each kind of event imports only its own code: a training's ingestion or an analysis's merge.
    if event.get("detail-type") == PROCESSING:
        from segpipe.logic.analysis_state import apply_processing_state
        from segpipe.models.processing import ProcessingJobStateChangeEvent

        processing = parse(event=event, model=ProcessingJobStateChangeEvent)
        outcome = apply_processing_state(processing.detail, deps=analysis_state_deps(settings))
        name = "AnalysisEvents"
    else:
        from segpipe.logic.job_state import apply_job_state
        from segpipe.models.jobs import JobStateChangeEvent

        training = parse(event=event, model=JobStateChangeEvent)
        outcome = apply_job_state(training.detail, deps=job_state_deps(settings))
        name = "JobEvents"
    applied = bool(getattr(outcome, "applied", False))
    metrics.add_metric(name=f"{name}{'Applied' if applied else 'Ignored'}", unit=MetricUnit.Count, value=1)
    logger.info("job state handled", extra=outcome.model_dump(mode="json"))
    return outcome.model_dump(mode="json")
