"""S3 `Object Created` (through EventBridge) for `projects/*/requests/*.json` (a training request)
and `projects/*/analysis-requests/*.json` (an analysis request): submit the request."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from segpipe.handlers.runtime import analysis_submit_deps, logger, metrics, submit_deps, tracer
from segpipe.logic.s3_request import UploadedRequest, handle_uploaded_request
from segpipe.settings import SubmitSettings, load_settings

settings = load_settings(SubmitSettings)


@logger.inject_lambda_context(correlation_id_path="id")
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=S3EventNotificationEventBridgeModel)
def lambda_handler(event: S3EventNotificationEventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    upload = UploadedRequest(
        bucket=event.detail.bucket.name,
        key=event.detail.object.key,
        etag=event.detail.object.etag,
        size=int(event.detail.object.size) if event.detail.object.size is not None else None,
        version_id=event.detail.object.version_id,
    )
    deps = submit_deps(settings)
    result = handle_uploaded_request(
        upload, artifacts=deps.artifacts, deps=deps, analysis_deps=analysis_submit_deps(settings)
    )
    metrics.add_metric(name="UploadedRequests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name="SubmissionsAccepted" if result.accepted else "SubmissionsRejected",
        unit=MetricUnit.Count,
        value=1,
    )
    logger.info(
        "request handled", extra={"key": upload.key, "report": result.report_key, "ignored": result.ignored}
    )
    return result.model_dump(mode="json")
