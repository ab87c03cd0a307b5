"""`SageMaker Training Job State Change` (EventBridge): move the version, ingest results."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from segpipe.handlers.runtime import job_state_deps, logger, metrics, tracer
from segpipe.logic.job_state import apply_job_state
from segpipe.models.jobs import JobStateChangeEvent
from segpipe.settings import JobStateSettings, load_settings

settings = load_settings(JobStateSettings)


@logger.inject_lambda_context(correlation_id_path="id")
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=JobStateChangeEvent)
def lambda_handler(event: JobStateChangeEvent, context: LambdaContext) -> dict[str, Any]:
    outcome = apply_job_state(event.detail, deps=job_state_deps(settings))
    metrics.add_metric(
        name="JobEventsApplied" if outcome.applied else "JobEventsIgnored", unit=MetricUnit.Count, value=1
    )
    logger.info("job state handled", extra=outcome.model_dump(mode="json"))
    return outcome.model_dump(mode="json")
