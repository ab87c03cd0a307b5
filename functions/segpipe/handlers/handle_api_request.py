"""The HTTP API: Powertools resolver with validation; OpenAPI at /openapi.json."""

from __future__ import annotations

import uuid
from functools import cache
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from segpipe import __version__, errors
from segpipe.handlers import http_errors, ui_assets
from segpipe.handlers.runtime import logger, metrics, models_deps, submit_deps, tracer
from segpipe.logic import models_api
from segpipe.logic.submit import fingerprint_of, preview, submit
from segpipe.models.api import MetricsView, ModelTable, PredictionsPage, SubmitAccepted, ThresholdUpdate
from segpipe.models.common import PROJECT_PATTERN
from segpipe.models.report import ValidationReport
from segpipe.models.request import TrainingRequest
from segpipe.models.trainer_io import ImagePredictions
from segpipe.models.version import ModelVersion
from segpipe.settings import ApiSettings, load_settings

settings = load_settings(ApiSettings)
app = APIGatewayHttpResolver(enable_validation=True)

ProjectParam = Annotated[str, Path(pattern=PROJECT_PATTERN, description="Project name")]
VersionParam = Annotated[int, Path(ge=1, le=999_999, description="Version number")]
StemParam = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$", description="Image stem")]
SplitParam = Literal["train", "test"]


@app.post("/projects/<project>/trainings", summary="Submit a training", responses={202: {}, 422: {}})
def submit_training(
    project: ProjectParam,
    request: Annotated[TrainingRequest, Body()],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="idempotency-key",
            max_length=200,
            description="Retries with the same key get the same version",
        ),
    ] = None,
) -> Response[SubmitAccepted]:
    key = f"http:{project}:{idempotency_key}" if idempotency_key else f"http:{uuid.uuid4()}"
    outcome = submit(
        request,
        project=project,
        request_key=key,
        fingerprint=fingerprint_of(request),
        deps=submit_deps(settings),
    )
    if outcome.version is None or outcome.job_name is None or outcome.status is None:
        metrics.add_metric(name="SubmissionsRejected", unit=MetricUnit.Count, value=1)
        raise errors.SubmissionRejected(outcome.report)
    metrics.add_metric(name="SubmissionsAccepted", unit=MetricUnit.Count, value=1)
    accepted = SubmitAccepted(
        project=project,
        version=outcome.version,
        job_name=outcome.job_name,
        status=outcome.status,
        repeated=outcome.repeated,
        report=outcome.report,
    )
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        body=accepted,
        headers={"Location": f"/projects/{project}/models/{outcome.version}"},
    )


@app.post("/projects/<project>/trainings/preview", summary="Validate a training request without side effects")
def preview_training(project: ProjectParam, request: Annotated[TrainingRequest, Body()]) -> ValidationReport:
    return preview(request, project=project, deps=submit_deps(settings))


@app.get("/projects/<project>/models", summary="The model table")
def list_models(project: ProjectParam, active: Annotated[bool, Query()] = False) -> ModelTable:
    return models_api.list_models(project, active_only=active, deps=models_deps(settings))


@app.get("/projects/<project>/models/<version>", summary="Training details, status and threshold")
def get_model(project: ProjectParam, version: VersionParam) -> ModelVersion:
    return models_api.get_model(project, version, deps=models_deps(settings))


@app.get(
    "/projects/<project>/models/<version>/metrics", summary="Statistics on train and test at a threshold"
)
def get_metrics(
    project: ProjectParam,
    version: VersionParam,
    threshold: Annotated[float | None, Query(ge=0, le=1)] = None,
    sweep: Annotated[bool, Query(description="Include every sweep point")] = False,
) -> MetricsView:
    return models_api.get_metrics(
        project, version, threshold=threshold, sweep=sweep, deps=models_deps(settings)
    )


@app.get("/projects/<project>/models/<version>/predictions", summary="Evaluated images with preview URLs")
def list_predictions(
    project: ProjectParam,
    version: VersionParam,
    split: Annotated[SplitParam, Query()] = "test",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> PredictionsPage:
    return models_api.predictions_page(
        project, version, split=split, offset=offset, limit=limit, deps=models_deps(settings)
    )


@app.get("/projects/<project>/models/<version>/predictions/<split>/<stem>", summary="Objects of one image")
def get_image_predictions(
    project: ProjectParam, version: VersionParam, split: Annotated[SplitParam, Path()], stem: StemParam
) -> ImagePredictions:
    return models_api.image_predictions(project, version, split=split, stem=stem, deps=models_deps(settings))


@app.put("/projects/<project>/models/<version>/threshold", summary="Lock the analysis threshold")
def put_threshold(
    project: ProjectParam, version: VersionParam, update: Annotated[ThresholdUpdate, Body()]
) -> ModelVersion:
    return models_api.set_threshold(project, version, update.threshold, deps=models_deps(settings))


@app.post("/projects/<project>/models/<version>/activate", summary="Make a completed version active")
def activate(project: ProjectParam, version: VersionParam) -> ModelVersion:
    return models_api.set_active(project, version, True, deps=models_deps(settings))


@app.post("/projects/<project>/models/<version>/deactivate", summary="Make a version inactive")
def deactivate(project: ProjectParam, version: VersionParam) -> ModelVersion:
    return models_api.set_active(project, version, False, deps=models_deps(settings))


@app.post("/projects/<project>/models/<version>/stop", summary="Stop a queued or running training")
def stop(project: ProjectParam, version: VersionParam) -> Response[ModelVersion]:
    stopped = models_api.stop_training(project, version, deps=models_deps(settings))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=stopped)


@app.get("/", include_in_schema=False)
def home() -> Response[Any]:
    return Response(status_code=302, headers={"Location": "/ui/"}, body="")


@app.get("/ui/", include_in_schema=False)
def review_page() -> Response[Any]:
    return ui_assets.response("index.html", image_source=ui_assets.image_origin(settings))


@app.get("/ui/<asset>", include_in_schema=False)
def review_asset(asset: Annotated[str, Path(pattern=ui_assets.ASSET_PATTERN)]) -> Response[Any]:
    return ui_assets.response(asset, image_source=ui_assets.image_origin(settings))


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> Response[Any]:
    return http_errors.json_response(200, _openapi_document())


@cache
def _openapi_document() -> str:
    return app.get_openapi_json_schema(title="segpipe", version=__version__)


@app.exception_handler(errors.SegpipeError)
def segpipe_error(error: errors.SegpipeError) -> Response[Any]:
    if http_errors.status_for(error) >= 500:
        logger.exception("upstream failure")
    return http_errors.response_for(error)


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response[Any]:
    return http_errors.validation_response(list(error.errors()))


@app.not_found
def not_found(_: Exception) -> Response[Any]:
    return http_errors.error_response(404, "route_not_found", "No such route; see /openapi.json.")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="ApiRequests", unit=MetricUnit.Count, value=1)
    if len(event.get("body") or "") > settings.MAX_BODY_BYTES:
        return http_errors.raw_error(
            413, errors.BodyTooLarge.code, f"The body is larger than {settings.MAX_BODY_BYTES} bytes."
        )
    return app.resolve(event, context)
