"""Uploaded request files are read at the version (or ETag) of the event that announced them, so
two quick uploads of one key train each body once, and odd files get a report, not a crash."""

from __future__ import annotations

import json
from typing import Any

from segpipe_local.events import s3_object_created_event
from segpipe_local.lambda_context import LocalLambdaContext
from tests.integration.conftest import Aws, _handler, request_body

KEY = "projects/lab/requests/nightly.json"


def _put(aws: Aws, body: Any) -> dict[str, Any]:
    """Upload a request file; returns the `Object Created` event S3 sends for this very upload."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    put = aws.s3.put_object(Bucket=aws.bucket, Key=KEY, Body=data)
    event = s3_object_created_event(bucket=aws.bucket, key=KEY, etag=put["ETag"], size=len(data))
    if put.get("VersionId"):
        event["detail"]["object"]["version-id"] = put["VersionId"]
    return event


def _deliver(event: dict[str, Any]) -> dict[str, Any]:
    handler = _handler("segpipe.handlers.handle_training_request")
    result: dict[str, Any] = handler.lambda_handler(event, LocalLambdaContext("SubmitFunction"))
    return result


def _trained_labels(aws: Aws) -> list[str]:
    return sorted(job["Tags"][2]["Value"] for job in aws.created_jobs)


def test_two_quick_uploads_to_a_versioned_bucket_train_each_body_once(with_dataset: Aws) -> None:
    aws = with_dataset
    aws.s3.put_bucket_versioning(Bucket=aws.bucket, VersioningConfiguration={"Status": "Enabled"})

    # Given two uploads of the same key before either event is handled
    first = _put(aws, request_body(label="first"))
    second = _put(aws, request_body(label="second"))

    # When their events arrive
    answers = [_deliver(first), _deliver(second)]

    # Then each body trained once
    assert [answer["outcome"]["version"] for answer in answers] == [1, 2]
    assert _trained_labels(aws) == ["first", "second"]


def test_an_event_whose_upload_was_overwritten_leaves_it_to_the_newer_event(with_dataset: Aws) -> None:
    aws = with_dataset  # an unversioned bucket: the first body is gone once the second lands

    first = _put(aws, request_body(label="first"))
    second = _put(aws, request_body(label="second"))

    stale = _deliver(first)
    fresh = _deliver(second)

    assert stale["outcome"] is None and stale["ignored"] == "superseded by a newer upload"
    assert stale["report_key"] is None
    assert fresh["outcome"]["version"] == 1
    assert _trained_labels(aws) == ["second"]
    assert aws.get_json("projects/lab/reports/nightly.json")["version"] == 1


def test_a_repeated_event_of_one_upload_still_starts_one_job(with_dataset: Aws) -> None:
    aws = with_dataset
    aws.s3.put_bucket_versioning(Bucket=aws.bucket, VersioningConfiguration={"Status": "Enabled"})
    event = _put(aws, request_body(label="first"))

    answers = [_deliver(event), _deliver(event)]

    assert [answer["outcome"]["version"] for answer in answers] == [1, 1]
    assert _trained_labels(aws) == ["first"]


def test_a_deeply_nested_request_file_gets_a_report(with_dataset: Aws) -> None:
    aws = with_dataset
    nested = b"[" * 100_000 + b"]" * 100_000

    answer = _deliver(_put(aws, b'{"label": "x", "training": ' + nested + b"}"))

    report = aws.get_json("projects/lab/reports/nightly.json")
    assert answer["outcome"] is None and report["ok"] is False
    assert report["errors"][0]["code"] == "invalid_request"
    assert aws.created_jobs == []
