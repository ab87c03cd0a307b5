"""Typed domain errors. `handlers/http_errors.py` maps them to HTTP statuses in one table."""

from __future__ import annotations

from typing import Any


class SegpipeError(Exception):
    """Base of every error a user can cause; `code` is stable and documented."""

    code = "error"

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context


class NotFoundError(SegpipeError):
    code = "not_found"


class VersionNotFound(NotFoundError):
    code = "version_not_found"


class AnalysisNotFound(NotFoundError):
    code = "analysis_not_found"


class ObjectNotFound(NotFoundError):
    code = "object_not_found"


class ObjectChanged(SegpipeError):
    """The object no longer has the ETag the caller asked for (S3 answered 412): it was overwritten."""

    code = "object_changed"


class DatasetNotFound(NotFoundError):
    code = "dataset_not_found"


class InvalidInput(SegpipeError):
    code = "invalid_input"


class DatasetTooLarge(InvalidInput):
    """The annotations file is larger than this deployment validates; nothing of it was read."""

    code = "dataset_too_large"


class MalformedBody(InvalidInput):
    """The body is not JSON: unparseable, not UTF-8 (RFC 8259 requires UTF-8), or NaN/Infinity."""

    code = "malformed_json"


class JsonTooDeep(MalformedBody):
    """The JSON body nests arrays and objects deeper than any request of the API needs."""

    code = "json_too_deep"


class UnknownClass(InvalidInput):
    """A body names a class the version does not have."""

    code = "unknown_class"


class UnsupportedMediaType(InvalidInput):
    """A request body whose Content-Type is not JSON."""

    code = "unsupported_media_type"


class BodyTooLarge(InvalidInput):
    code = "body_too_large"


class ConflictError(SegpipeError):
    code = "conflict"


class VersionNotCompleted(ConflictError):
    code = "version_not_completed"


class VersionNotRunning(ConflictError):
    code = "version_not_running"


class AnalysisNotRunning(ConflictError):
    """The analysis (its processing job) has already ended or never started."""

    code = "analysis_not_running"


class AnalysisNotCompleted(ConflictError):
    """The analysis has no merged results to show (it is queued, running, failed or stopped)."""

    code = "analysis_not_completed"


class IdempotencyKeyReused(ConflictError):
    code = "idempotency_key_reused"


class SubmissionRejected(SegpipeError):
    """Validation found errors; the report says which."""

    code = "validation_failed"

    def __init__(
        self, report: Any, message: str = "The training request has errors; see the report."
    ) -> None:
        super().__init__(message)
        self.report = report


class AnalysisRejected(SubmissionRejected):
    """An analysis request's checks found errors; the report (an `AnalysisReport`) says which."""

    def __init__(self, report: Any) -> None:
        super().__init__(report, "The analysis request has errors; see the report.")


class UpstreamError(SegpipeError):
    """An AWS service refused or failed in a way the caller cannot fix by changing the request."""

    code = "upstream_error"


class JobRefused(UpstreamError):
    """SageMaker refused to start the job for good (quota, validation, permissions)."""

    code = "job_refused"


class ServiceUnavailable(UpstreamError):
    """A transient failure that outlasted the SDK's retries; the same request may be retried."""

    code = "service_unavailable"
