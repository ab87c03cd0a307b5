"""A training request uploaded to `projects/{p}/requests/{name}.json`: submit it and write the
report to `projects/{p}/reports/{name}.json` (a prefix that triggers nothing). An analysis request
uploaded to `projects/{p}/analysis-requests/{name}.json` takes the same path: its report goes to
`projects/{p}/analysis-reports/{name}.json`, then the analysis starts.

The file is read as the upload that the event announces wrote it: at the event's version id
(the data bucket is versioned) and only while it still has the event's ETag. So two quick uploads
of one key train each body once, under its own request key. Where the bucket keeps no versions
and a newer upload has replaced the file (S3 answers 412), this event is dropped: the newer
upload's own event reads and submits the newer body, and writes the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field, ValidationError

from segpipe.dal.interfaces import ArtifactStore
from segpipe.errors import ObjectChanged, ObjectNotFound
from segpipe.logic.analysis_submit import AnalysisOutcome, AnalysisSubmitDeps, submit_analysis
from segpipe.logic.submission import UseCase, fingerprint_of
from segpipe.logic.submit import RejectedTraining, SubmitDeps, SubmitOutcome, submit
from segpipe.models import keys
from segpipe.models.analysis import AnalysisAccepted, AnalysisReport, AnalysisRequest
from segpipe.models.api import SubmitAccepted
from segpipe.models.common import is_item_name
from segpipe.models.report import ErrorCode, Issue, ValidationReport
from segpipe.models.request import TrainingRequest

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

#: A request file is a few hundred bytes; anything this large is not one.
MAX_REQUEST_BYTES = 256 * 1024


class UploadedRequest(BaseModel):
    bucket: str
    key: str
    etag: str
    size: int | None = None
    version_id: str | None = Field(default=None, description="The object version the upload created")


class UploadOutcome(BaseModel):
    key: str
    project: str | None = None
    name: str | None = None
    report_key: str | None = None
    outcome: SubmitOutcome | None = None
    analysis: AnalysisOutcome | None = Field(default=None, description="An analysis request's outcome")
    ignored: str | None = None

    @property
    def accepted(self) -> bool:
        """A training or an analysis was created (or found, for a repeat)."""
        return isinstance(self.outcome, SubmitAccepted) or isinstance(self.analysis, AnalysisAccepted)


def _problems(error: ValidationError) -> tuple[str, list[dict[str, str]]]:
    problems = [
        {
            "location": ".".join(str(part) for part in item["loc"]),
            "message": item["msg"],
            "type": item["type"],
        }
        for item in error.errors(include_url=False)[:20]
    ]
    first = problems[0]
    where = f" at '{first['location']}'" if first["location"] else ""
    return f"{where}: {first['message']}", problems


def _invalid(message: str, **context: object) -> Issue:
    return Issue(code=ErrorCode.INVALID_REQUEST, message=message, context=dict(context))


_Result = SubmitOutcome | AnalysisOutcome | list[Issue]
_KindRequest = TypeVar("_KindRequest", TrainingRequest, AnalysisRequest)
_KindDeps = TypeVar("_KindDeps", SubmitDeps, AnalysisSubmitDeps)


def _parsed(model: type[M], data: bytes, noun: str) -> M | list[Issue]:
    try:
        return model.model_validate_json(data)
    except ValidationError as error:
        where, problems = _problems(error)
        return [
            _invalid(
                f"The request file is not a valid {noun}{where}. Fix the file and upload it again.",
                problems=problems,
            )
        ]


@dataclass(frozen=True)
class _Kind(Generic[_KindRequest, _KindDeps]):
    """What differs between a training request and an analysis request uploaded to S3."""

    noun: str
    model: type[_KindRequest]
    report_key: Callable[[str, str], str]
    report: type[ValidationReport | AnalysisReport]  # of a file that is no request of this kind
    use_case: UseCase[_KindRequest, _KindDeps, _Result]  # `submit` or `submit_analysis`
    deps: _KindDeps

    def submit(self, data: bytes, project: str, request_key: str) -> _Result:
        """Parse the file as this kind's request, then submit it."""
        request = _parsed(self.model, data, self.noun)
        if isinstance(request, list):
            return request
        fingerprint = fingerprint_of(request)
        return self.use_case(
            request, project=project, request_key=request_key, fingerprint=fingerprint, deps=self.deps
        )

    def invalid_report(self, issues: list[Issue]) -> BaseModel:
        return self.report(ok=False, errors=issues)


def _kind_of(
    key: str, deps: SubmitDeps, analysis_deps: AnalysisSubmitDeps | None
) -> tuple[_Kind[Any, Any], tuple[str, str]] | None:
    """The kind of request `key` holds, with its (project, name); None for any other key."""
    if (parsed := keys.parse_request_key(key)) is not None:
        return _Kind(
            "training request", TrainingRequest, keys.report_key, ValidationReport, submit, deps
        ), parsed
    if analysis_deps is not None and (parsed := keys.parse_analysis_request_key(key)) is not None:
        analysis = _Kind(
            "analysis request", AnalysisRequest, keys.analysis_report_key, AnalysisReport, submit_analysis,
            analysis_deps,
        )  # fmt: skip
        return analysis, parsed
    return None


def handle_uploaded_request(
    upload: UploadedRequest,
    *,
    artifacts: ArtifactStore,
    deps: SubmitDeps,
    analysis_deps: AnalysisSubmitDeps | None = None,
) -> UploadOutcome:
    """Submit an uploaded training request (`requests/`) or analysis request (`analysis-requests/`,
    when `analysis_deps` is given) and write its report beside it."""
    found = _kind_of(upload.key, deps, analysis_deps)
    if found is None:
        return UploadOutcome(key=upload.key, ignored="not a request key")
    kind, (project, name) = found
    if not (is_item_name(project) and "." not in project and is_item_name(name)):
        logger.warning("refusing request with an invalid project or name: %s", upload.key)
        return UploadOutcome(key=upload.key, ignored="invalid project or request name")

    report_key = kind.report_key(project, name)
    done = UploadOutcome(key=upload.key, project=project, name=name, report_key=report_key)
    if upload.size is not None and upload.size > MAX_REQUEST_BYTES:
        result: _Result = [
            _invalid(
                f"The request file is {upload.size} bytes; a {kind.noun} is at most {MAX_REQUEST_BYTES}.",
                size=upload.size,
            )
        ]
    else:
        try:
            data = artifacts.get_bytes_at(upload.key, version_id=upload.version_id, etag=upload.etag)
        except ObjectNotFound:
            return UploadOutcome(
                key=upload.key, project=project, name=name, ignored="deleted before it was read"
            )
        except ObjectChanged:
            logger.info(
                "%s was overwritten before its event was handled; the newer upload's event submits it",
                upload.key,
            )
            return UploadOutcome(
                key=upload.key, project=project, name=name, ignored="superseded by a newer upload"
            )
        request_key = f"s3://{upload.bucket}/{upload.key}#{upload.etag.strip(chr(34))}"
        result = kind.submit(data, project, request_key)

    if isinstance(result, list):
        artifacts.put_bytes(report_key, kind.invalid_report(result).model_dump_json(indent=2).encode())
        return done
    if isinstance(result, SubmitAccepted | RejectedTraining):
        done.outcome = result
    else:
        done.analysis = result
    artifacts.put_bytes(report_key, result.report.model_dump_json(indent=2).encode())
    return done
