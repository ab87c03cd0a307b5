"""The one table from typed errors to HTTP statuses, and the error body every 4xx/5xx carries."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from segpipe import errors
from segpipe.models.api import (
    AnalysisRefusal,
    ErrorBody,
    ErrorDetail,
    RejectedAnalysis,
    RejectedSubmission,
    SubmissionRefusal,
)

STATUS_BY_ERROR: dict[type[errors.SegpipeError], int] = {
    errors.BodyTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.InvalidInput: 400,
    errors.NotFoundError: 404,
    errors.ConflictError: 409,
    errors.SubmissionRejected: 422,
    errors.ServiceUnavailable: 503,
    errors.UpstreamError: 502,
}


def status_for(error: errors.SegpipeError) -> int:
    """The status of the nearest class in the error's MRO that the table names."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def json_response(status: int, body: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers
    )


def error_response(
    status: int, code: str, message: str, context: dict[str, Any] | None = None
) -> Response[Any]:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, context=context or {}))
    return json_response(status, body.model_dump_json())


def raw_error(status: int, code: str, message: str, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """An API Gateway v2 response for refusals made before the resolver runs."""
    body = ErrorBody(error=ErrorDetail(code=code, message=message, context=_jsonable(context or {})))
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": body.model_dump_json(),
        "isBase64Encoded": False,
    }


def response_for(error: errors.SegpipeError) -> Response[Any]:
    if isinstance(error, errors.AnalysisRejected):
        rejected = RejectedAnalysis(
            error=ErrorDetail(code=error.code, message=error.message), report=error.report
        )
        return json_response(422, rejected.model_dump_json())
    if isinstance(error, errors.SubmissionRejected):
        body = RejectedSubmission(
            error=ErrorDetail(code=error.code, message=error.message), report=error.report
        )
        return json_response(422, body.model_dump_json())
    return error_response(status_for(error), error.code, error.message, _jsonable(error.context))


def _jsonable(context: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value if isinstance(value, str | int | float | bool | None) else str(value)
        for key, value in context.items()
    }


def validation_response(details: list[dict[str, Any]]) -> Response[Any]:
    """Powertools' request validation errors, in segpipe's error body."""
    problems = [
        {
            "location": ".".join(str(part) for part in item.get("loc", ())),
            "type": item.get("type"),
            "message": item.get("msg"),
        }
        for item in details
    ]
    if any(item["type"] == "json_invalid" for item in problems):
        return error_response(
            400, errors.MalformedBody.code, "The request body is not valid JSON.", {"problems": problems}
        )
    summary = "; ".join(f"{p['location']}: {p['message']}" for p in problems[:5])
    return error_response(
        422, "invalid_request", f"The request does not match the API: {summary}.", {"problems": problems}
    )


# --- what /openapi.json says each status means ---------------------------------------------------

#: Every error status a documented route can answer, and the codes its body may carry.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: (
        "The body is not JSON: `malformed_json` (unparseable, not UTF-8, NaN or Infinity) or "
        "`json_too_deep` (arrays and objects nested too deeply); or it names a class the version lacks "
        "(`unknown_class`)."
    ),
    404: (
        "`version_not_found`, `analysis_not_found` or `object_not_found`; `route_not_found` when a path "
        "segment holds characters no route accepts."
    ),
    409: (
        "The version or analysis is not in a state that allows this (`version_not_completed`, "
        "`version_not_running`, `analysis_not_completed`, `analysis_not_running`), "
        "or an Idempotency-Key was reused for another body (`idempotency_key_reused`)."
    ),
    413: "`body_too_large`: the body is larger than the API accepts.",
    415: "`unsupported_media_type`: a body whose Content-Type is not application/json.",
    422: "`invalid_request`: a path, query, header or body value does not match this document.",
    503: (
        "`service_unavailable`: an AWS service kept throttling or failing after the SDK's retries; "
        "the same request may be retried."
    ),
}
SUBMISSION_REFUSED = (
    "`validation_failed` with the validation report when the request has errors (nothing is created), "
    "or `invalid_request` when it does not match this document."
)


def documented(status: int, description: str, **extra: Any) -> dict[int, OpenAPIResponse]:
    """The success answer of a route; its schema is the route's return annotation."""
    return {status: {"description": description, **extra}}  # type: ignore[typeddict-item]


def documented_errors(
    *statuses: int, submission: bool = False, analysis: bool = False
) -> dict[int, OpenAPIResponse]:
    """The error answers of a route, each with the error envelope's schema; `submission` and
    `analysis` document the 422 of a submission of a training or an analysis with its report."""
    answers: dict[int, OpenAPIResponse] = {
        status: {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {content_types.APPLICATION_JSON: {"model": ErrorBody}},
        }
        for status in statuses
    }
    if submission:
        answers[422] = {
            "description": SUBMISSION_REFUSED,
            "content": {content_types.APPLICATION_JSON: {"model": SubmissionRefusal}},
        }
    if analysis:
        answers[422] = {
            "description": SUBMISSION_REFUSED.replace("validation report", "analysis report"),
            "content": {content_types.APPLICATION_JSON: {"model": AnalysisRefusal}},
        }
    return answers
