"""A training request uploaded to `projects/{p}/requests/{name}.json`: submit it and write the
report to `projects/{p}/reports/{name}.json` (a prefix that triggers nothing).

The file is read as the upload that the event announces wrote it: at the event's version id
(the data bucket is versioned) and only while it still has the event's ETag. So two quick uploads
of one key train each body once, under its own request key. Where the bucket keeps no versions
and a newer upload has replaced the file (S3 answers 412), this event is dropped: the newer
upload's own event reads and submits the newer body, and writes the report.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, Field, ValidationError

from segpipe.dal.interfaces import ArtifactStore
from segpipe.errors import ObjectChanged, ObjectNotFound
from segpipe.logic.submit import SubmitDeps, SubmitOutcome, fingerprint_of, submit
from segpipe.models import keys
from segpipe.models.common import is_item_name
from segpipe.models.report import ErrorCode, Issue, ValidationReport
from segpipe.models.request import TrainingRequest

logger = logging.getLogger(__name__)

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
    ignored: str | None = None


def _invalid_request(message: str, **context: object) -> ValidationReport:
    issue = Issue(code=ErrorCode.INVALID_REQUEST, message=message, context=dict(context))
    return ValidationReport(ok=False, errors=[issue])


def _parse(data: bytes) -> TrainingRequest | ValidationReport:
    try:
        return TrainingRequest.model_validate_json(data)
    except ValidationError as error:
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
        return _invalid_request(
            f"The request file is not a valid training request{where}: {first['message']}. "
            "Fix the file and upload it again.",
            problems=problems,
        )


def handle_uploaded_request(
    upload: UploadedRequest, *, artifacts: ArtifactStore, deps: SubmitDeps
) -> UploadOutcome:
    parsed_key = keys.parse_request_key(upload.key)
    if parsed_key is None:
        return UploadOutcome(key=upload.key, ignored="not a request key")
    project, name = parsed_key
    if not (is_item_name(project) and "." not in project and is_item_name(name)):
        logger.warning("refusing request with an invalid project or name: %s", upload.key)
        return UploadOutcome(key=upload.key, ignored="invalid project or request name")

    report_key = keys.report_key(project, name)
    if upload.size is not None and upload.size > MAX_REQUEST_BYTES:
        report: ValidationReport | TrainingRequest = _invalid_request(
            f"The request file is {upload.size} bytes; a training request is at most {MAX_REQUEST_BYTES}.",
            size=upload.size,
        )
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
        report = _parse(data)

    if isinstance(report, ValidationReport):
        artifacts.put_bytes(report_key, report.model_dump_json(indent=2).encode())
        return UploadOutcome(key=upload.key, project=project, name=name, report_key=report_key)

    request = report
    request_key = f"s3://{upload.bucket}/{upload.key}#{upload.etag.strip(chr(34))}"
    outcome = submit(
        request, project=project, request_key=request_key, fingerprint=fingerprint_of(request), deps=deps
    )
    artifacts.put_bytes(report_key, outcome.report.model_dump_json(indent=2).encode())
    return UploadOutcome(key=upload.key, project=project, name=name, report_key=report_key, outcome=outcome)
