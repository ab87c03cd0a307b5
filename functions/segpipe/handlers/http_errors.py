"""The one table from typed errors to HTTP statuses, and the error body every 4xx/5xx carries."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from segpipe import errors
from segpipe.models.api import ErrorBody, ErrorDetail

STATUS_BY_ERROR: dict[type[errors.SegpipeError], int] = {
    errors.BodyTooLarge: 413,
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


def raw_error(status: int, code: str, message: str) -> dict[str, Any]:
    """An API Gateway v2 response for refusals made before the resolver runs."""
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": body.model_dump_json(),
        "isBase64Encoded": False,
    }


def response_for(error: errors.SegpipeError) -> Response[Any]:
    if isinstance(error, errors.SubmissionRejected):
        detail = ErrorDetail(code=error.code, message=error.message)
        body = '{"error":' + detail.model_dump_json() + ',"report":' + error.report.model_dump_json() + "}"
        return json_response(422, body)
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
