"""The HTTP API: Powertools resolver with validation; OpenAPI at /openapi.json."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from segpipe import __version__, errors
from segpipe.handlers import http_errors, ui_assets
from segpipe.handlers.http_errors import documented, documented_errors
from segpipe.handlers.runtime import (
    analyses_deps,
    analysis_submit_deps,
    logger,
    metrics,
    models_deps,
    submit_deps,
    tracer,
    transient_failure,
)
from segpipe.logic import analyses_api, models_api
from segpipe.logic.submission import Rejected, UseCase, fingerprint_of
from segpipe.models.analysis import (
    MAX_ANALYSIS,
    AnalysisAccepted,
    AnalysisReport,
    AnalysisRequest,
    AnalysisView,
)
from segpipe.models.api import (
    AnalysedImagesPage,
    AnalysedImageView,
    AnalysisTable,
    MetricsView,
    ModelTable,
    PredictionsPage,
    SubmitAccepted,
    ThresholdUpdate,
)
from segpipe.models.common import PROJECT_PATTERN, SplitName
from segpipe.models.report import ValidationReport
from segpipe.models.request import TrainingRequest
from segpipe.models.trainer_io import STEM_PATTERN, ImagePredictions
from segpipe.models.version import ModelVersion
from segpipe.settings import ApiSettings, load_settings

if TYPE_CHECKING:
    # The submission use cases (and the validation package behind them) load with the first
    # submission or preview, not at cold start: most requests only read.
    from segpipe.logic.analysis_submit import AnalysisOutcome, AnalysisSubmitDeps
    from segpipe.logic.submit import SubmitDeps, SubmitOutcome

#: Request bodies nest at most this deep: a request needs 4 levels; RecursionError lies far beyond.
MAX_JSON_DEPTH = 32
#: Methods whose body is read; other methods' bodies are ignored (only their size is checked).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _refuse_constant(name: str) -> Any:
    raise errors.MalformedBody(f"The body holds {name}, which JSON does not allow.", constant=name)


def _nests_deeper_than(value: Any, limit: int) -> bool:
    """True when arrays and objects in `value` nest more than `limit` levels deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def json_body(text: str | bytes | bytearray) -> Any:
    """The resolver's JSON parser: strict JSON (no NaN/Infinity), nested at most MAX_JSON_DEPTH deep."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        value = None
        deep = True
    else:
        deep = isinstance(value, dict | list) and _nests_deeper_than(value, MAX_JSON_DEPTH)
    if deep:
        raise errors.JsonTooDeep(
            f"The body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep.", limit=MAX_JSON_DEPTH
        )
    return value


settings = load_settings(ApiSettings)
app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=json_body)

ProjectParam = Annotated[str, Path(pattern=PROJECT_PATTERN, description="Project name")]
VersionParam = Annotated[int, Path(ge=1, le=999_999, description="Version number")]
StemParam = Annotated[str, Path(pattern=STEM_PATTERN, description="Image stem")]
AnalysisParam = Annotated[int, Path(ge=1, le=MAX_ANALYSIS, description="Analysis number")]

#: Error statuses every documented route can answer: a path segment no route accepts, a body over the
#: size limit (checked before routing, whatever the method), a value that does not match the document,
#: an AWS service still throttling or failing after the SDK's retries.
ANY_ROUTE = (404, 413, 422, 503)
#: ... and those of a route that reads or refuses a body.
WITH_BODY = (*ANY_ROUTE, 400, 415)
LOCATION = {
    "Location": {"description": "API path of the new version", "schema": {"type": "string"}},
}
ANALYSIS_LOCATION = {
    "Location": {"description": "API path of the new analysis", "schema": {"type": "string"}},
}


def _key_header(description: str) -> Header:
    return Header(alias="idempotency-key", max_length=200, description=description)


TrainingKey = Annotated[str | None, _key_header("Retries with the same key get the same version")]
AnalysisKey = Annotated[
    str | None, _key_header("Retries with the same key get the same analysis and one job")
]
Accepted = TypeVar("Accepted", SubmitAccepted, AnalysisAccepted)
Request = TypeVar("Request", TrainingRequest, AnalysisRequest)
Deps = TypeVar("Deps", "SubmitDeps", "AnalysisSubmitDeps")


def _request_key(project: str, idempotency_key: str | None) -> str:
    """The request key of an HTTP submission: its Idempotency-Key, or a fresh one without."""
    return f"http:{project}:{idempotency_key}" if idempotency_key else f"http:{uuid.uuid4()}"


@dataclass(frozen=True)
class _Starts(Generic[Request, Deps, Accepted]):
    """What the POST routes that start a job (trainings, analyses) differ in."""

    use_case: UseCase[Request, Deps, Accepted | Rejected[Any]]
    deps: Callable[[ApiSettings], Deps]
    metric: str  # "{metric}Accepted" and "{metric}Rejected" count the outcomes
    refusal: type[errors.SubmissionRejected]  # raised (422) with the report of a request with errors
    location: Callable[[Accepted], str]  # API path of what was started

    def answer(self, request: Request, *, project: str, idempotency_key: str | None) -> Response[Accepted]:
        """202 with the accepted submission and its Location; a rejected one raises `refusal`."""
        outcome = self.use_case(
            request,
            project=project,
            request_key=_request_key(project, idempotency_key),
            fingerprint=fingerprint_of(request),
            deps=self.deps(settings),
        )
        if isinstance(outcome, Rejected):
            metrics.add_metric(name=f"{self.metric}Rejected", unit=MetricUnit.Count, value=1)
            raise self.refusal(outcome.report)
        metrics.add_metric(name=f"{self.metric}Accepted", unit=MetricUnit.Count, value=1)
        return Response(
            status_code=202,
            content_type=content_types.APPLICATION_JSON,
            body=outcome,
            headers={"Location": self.location(outcome)},
        )


def _submit_training(
    request: TrainingRequest, *, project: str, request_key: str, fingerprint: str, deps: SubmitDeps
) -> SubmitOutcome:
    from segpipe.logic.submit import submit

    return submit(request, project=project, request_key=request_key, fingerprint=fingerprint, deps=deps)


def _submit_analysis(
    request: AnalysisRequest, *, project: str, request_key: str, fingerprint: str, deps: AnalysisSubmitDeps
) -> AnalysisOutcome:
    from segpipe.logic.analysis_submit import submit_analysis

    return submit_analysis(
        request, project=project, request_key=request_key, fingerprint=fingerprint, deps=deps
    )


TRAININGS: _Starts[TrainingRequest, SubmitDeps, SubmitAccepted] = _Starts(
    use_case=_submit_training,
    deps=submit_deps,
    metric="Submissions",
    refusal=errors.SubmissionRejected,
    location=lambda accepted: f"/projects/{accepted.project}/models/{accepted.version}",
)
ANALYSES: _Starts[AnalysisRequest, AnalysisSubmitDeps, AnalysisAccepted] = _Starts(
    use_case=_submit_analysis,
    deps=analysis_submit_deps,
    metric="Analyses",
    refusal=errors.AnalysisRejected,
    location=lambda accepted: f"/projects/{accepted.project}/analyses/{accepted.analysis}",
)


@app.post(
    "/projects/<project>/trainings",
    summary="Submit a training",
    responses={
        **documented(
            202,
            "Accepted: a version was created (or found, for a repeat) and its job started",
            headers=LOCATION,
        ),
        **documented_errors(*WITH_BODY, 409, submission=True),
    },
)
def submit_training(
    project: ProjectParam, request: Annotated[TrainingRequest, Body()], idempotency_key: TrainingKey = None
) -> Response[SubmitAccepted]:
    return TRAININGS.answer(request, project=project, idempotency_key=idempotency_key)


@app.post(
    "/projects/<project>/trainings/preview",
    summary="Validate a training request without side effects",
    responses={**documented(200, "The validation report"), **documented_errors(*WITH_BODY)},
)
def preview_training(project: ProjectParam, request: Annotated[TrainingRequest, Body()]) -> ValidationReport:
    from segpipe.logic.submit import preview

    return preview(request, project=project, deps=submit_deps(settings))


@app.post(
    "/projects/<project>/analyses",
    summary="Run the active version (or a named one) on a folder of images",
    responses={
        **documented(
            202,
            "Accepted: an analysis was created (or found, for a repeat) and its processing job started",
            headers=ANALYSIS_LOCATION,
        ),
        **documented_errors(*WITH_BODY, 409, analysis=True),
    },
)
def submit_analysis(
    project: ProjectParam, request: Annotated[AnalysisRequest, Body()], idempotency_key: AnalysisKey = None
) -> Response[AnalysisAccepted]:
    return ANALYSES.answer(request, project=project, idempotency_key=idempotency_key)


@app.post(
    "/projects/<project>/analyses/preview",
    summary="Check an analysis request without side effects",
    responses={**documented(200, "The analysis report"), **documented_errors(*WITH_BODY)},
)
def preview_analysis(project: ProjectParam, request: Annotated[AnalysisRequest, Body()]) -> AnalysisReport:
    from segpipe.logic.analysis_submit import preview_analysis as preview

    return preview(request, project=project, deps=analysis_submit_deps(settings))


@app.get(
    "/projects/<project>/models",
    summary="The model table",
    responses={**documented(200, "Every version of the project"), **documented_errors(*ANY_ROUTE)},
)
def list_models(project: ProjectParam, active: Annotated[bool, Query()] = False) -> ModelTable:
    return models_api.list_models(project, active_only=active, deps=models_deps(settings))


@app.get(
    "/projects/<project>/models/<version>",
    summary="Training details, status and threshold",
    responses={**documented(200, "The version"), **documented_errors(*ANY_ROUTE)},
)
def get_model(project: ProjectParam, version: VersionParam) -> ModelVersion:
    return models_api.get_model(project, version, deps=models_deps(settings))


@app.get(
    "/projects/<project>/models/<version>/metrics",
    summary="Statistics on train and test at a threshold",
    responses={**documented(200, "Statistics of a completed version"), **documented_errors(*ANY_ROUTE, 409)},
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


@app.get(
    "/projects/<project>/models/<version>/predictions",
    summary="Evaluated images with preview URLs",
    responses={**documented(200, "A page of evaluated images"), **documented_errors(*ANY_ROUTE, 409)},
)
def list_predictions(
    project: ProjectParam,
    version: VersionParam,
    split: Annotated[SplitName, Query()] = "test",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> PredictionsPage:
    return models_api.predictions_page(
        project, version, split=split, offset=offset, limit=limit, deps=models_deps(settings)
    )


@app.get(
    "/projects/<project>/models/<version>/predictions/<split>/<stem>",
    summary="Objects of one image",
    responses={**documented(200, "The image's predicted objects"), **documented_errors(*ANY_ROUTE, 409)},
)
def get_image_predictions(
    project: ProjectParam, version: VersionParam, split: Annotated[SplitName, Path()], stem: StemParam
) -> ImagePredictions:
    return models_api.image_predictions(project, version, split=split, stem=stem, deps=models_deps(settings))


@app.put(
    "/projects/<project>/models/<version>/threshold",
    summary="Lock the analysis threshold (one score, or {class: score})",
    responses={
        **documented(200, "The version, with its new threshold"),
        **documented_errors(*WITH_BODY, 409),
    },
)
def put_threshold(
    project: ProjectParam, version: VersionParam, update: Annotated[ThresholdUpdate, Body()]
) -> ModelVersion:
    return models_api.set_threshold(project, version, update.threshold, deps=models_deps(settings))


@app.post(
    "/projects/<project>/models/<version>/activate",
    summary="Make a completed version active",
    responses={**documented(200, "The version, now active"), **documented_errors(*WITH_BODY, 409)},
)
def activate(project: ProjectParam, version: VersionParam) -> ModelVersion:
    return models_api.set_active(project, version, True, deps=models_deps(settings))


@app.post(
    "/projects/<project>/models/<version>/deactivate",
    summary="Make a version inactive",
    responses={**documented(200, "The version, now inactive"), **documented_errors(*WITH_BODY, 409)},
)
def deactivate(project: ProjectParam, version: VersionParam) -> ModelVersion:
    return models_api.set_active(project, version, False, deps=models_deps(settings))


@app.post(
    "/projects/<project>/models/<version>/stop",
    summary="Stop a queued or running training",
    responses={
        **documented(202, "Stopping: the job was asked to stop"),
        **documented_errors(*WITH_BODY, 409),
    },
)
def stop(project: ProjectParam, version: VersionParam) -> Response[ModelVersion]:
    stopped = models_api.stop_training(project, version, deps=models_deps(settings))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=stopped)


@app.get(
    "/projects/<project>/analyses",
    summary="The analyses table",
    responses={
        **documented(200, "Every analysis of the project, newest first"),
        **documented_errors(*ANY_ROUTE),
    },
)
def list_analyses(project: ProjectParam) -> AnalysisTable:
    return analyses_api.list_analyses(project, deps=analyses_deps(settings))


@app.get(
    "/projects/<project>/analyses/<analysis>",
    summary="Status, progress, version and thresholds used, counts and outputs of an analysis",
    responses={**documented(200, "The analysis"), **documented_errors(*ANY_ROUTE)},
)
def get_analysis(project: ProjectParam, analysis: AnalysisParam) -> AnalysisView:
    return analyses_api.get_analysis(project, analysis, deps=analyses_deps(settings))


@app.get(
    "/projects/<project>/analyses/<analysis>/images",
    summary="Analysed images with their counts and preview URLs",
    responses={**documented(200, "A page of analysed images"), **documented_errors(*ANY_ROUTE, 409)},
)
def list_analysed_images(
    project: ProjectParam,
    analysis: AnalysisParam,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> AnalysedImagesPage:
    return analyses_api.images_page(
        project, analysis, offset=offset, limit=limit, deps=analyses_deps(settings)
    )


@app.get(
    "/projects/<project>/analyses/<analysis>/images/<stem>",
    summary="Kept objects of one analysed image",
    responses={**documented(200, "The image's kept objects"), **documented_errors(*ANY_ROUTE, 409)},
)
def get_analysed_image(project: ProjectParam, analysis: AnalysisParam, stem: StemParam) -> AnalysedImageView:
    return analyses_api.analysed_image(project, analysis, stem, deps=analyses_deps(settings))


@app.post(
    "/projects/<project>/analyses/<analysis>/stop",
    summary="Stop a queued or running analysis",
    responses={
        **documented(202, "Stopping: the processing job was asked to stop"),
        **documented_errors(*WITH_BODY, 409),
    },
)
def stop_analysis(project: ProjectParam, analysis: AnalysisParam) -> Response[AnalysisView]:
    stopping = analyses_api.stop_analysis(project, analysis, deps=analyses_deps(settings))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=stopping)


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


@app.exception_handler(Exception)
def unexpected(error: Exception) -> Response[Any]:
    """A transient AWS failure no adapter named answers 503 (retry); anything else is raised, so the
    invocation fails and counts among the function's errors."""
    typed = transient_failure(error)
    if typed is None:
        raise error
    logger.exception("AWS failure after the SDK's retries")
    return http_errors.response_for(typed)


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
    try:
        checked = _with_text_body(event, limit=settings.MAX_BODY_BYTES)
    except errors.SegpipeError as refusal:
        return http_errors.raw_error(
            http_errors.status_for(refusal), refusal.code, refusal.message, refusal.context
        )
    return app.resolve(checked, context)


def _with_text_body(event: dict[str, Any], *, limit: int) -> dict[str, Any]:
    """The event with a body the resolver can read as text, or a typed refusal of the body.

    API Gateway base64-encodes bodies of non-text content types (`isBase64Encoded`); the limit is
    on the body's bytes, whichever way it came. A body that is read must be JSON, hence UTF-8."""
    body = event.get("body")
    if not body:
        return event
    encoded = bool(event.get("isBase64Encoded"))
    # Cheap bounds first: base64 takes 4 characters per 3 bytes, UTF-8 at least 1 byte per character.
    if (len(body) // 4 * 3 - 2 if encoded else len(body)) > limit:
        raise errors.BodyTooLarge(f"The body is larger than {limit} bytes.", limit=limit)
    data = _body_bytes(body, encoded=encoded)
    if len(data) > limit:
        raise errors.BodyTooLarge(f"The body is larger than {limit} bytes.", limit=limit)
    if event.get("requestContext", {}).get("http", {}).get("method") not in BODY_METHODS:
        return event  # no route of these methods reads a body
    content_type = (event.get("headers") or {}).get("content-type", "")
    if content_type and content_type.split(";")[0].strip().lower() != content_types.APPLICATION_JSON:
        raise errors.UnsupportedMediaType(
            f"The body's Content-Type is {content_type!r}; send it as application/json.",
            content_type=content_type[:100],
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise errors.MalformedBody(
            f"The body is not UTF-8 text (byte {error.start}); JSON must be sent as UTF-8.", byte=error.start
        ) from None
    return {**event, "body": text, "isBase64Encoded": False}


def _body_bytes(body: str, *, encoded: bool) -> bytes:
    if not encoded:
        return body.encode("utf-8", "surrogatepass")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise errors.MalformedBody("The body is marked base64-encoded but is not base64.") from None
