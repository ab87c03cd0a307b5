"""Events in AWS's documented shapes, for delivering to the real handlers in-process."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

ACCOUNT = "000000000000"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def http_api_event(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | str | None = None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event, as the real API's `$default` stage passes
    to the function."""
    lowered = {key.lower(): value for key, value in (headers or {}).items()}
    text, encoded = _body_text(body)
    query_pairs = parse_qsl(query, keep_blank_values=True)
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "domainName": lowered.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if query_pairs:
        event["queryStringParameters"] = dict(query_pairs)
    if text is not None:
        event["body"] = text
    return event


def _body_text(body: bytes | str | None) -> tuple[str | None, bool]:
    """The event's `body` and `isBase64Encoded`: text as it is, other bytes in base 64."""
    data = body.encode() if isinstance(body, str) else body
    if not data:
        return None, False
    try:
        return data.decode(), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode(), True


def s3_object_created_event(
    *, bucket: str, key: str, etag: str, size: int, region: str = "us-east-1", sequencer: str | None = None
) -> dict[str, Any]:
    """S3 `Object Created` as the bucket's EventBridge integration sends it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": _now(),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": size,
                "etag": etag.strip('"'),
                "sequencer": sequencer or uuid.uuid4().hex[:18].upper(),
            },
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": ACCOUNT,
            "source-ip-address": "127.0.0.1",
            "reason": "PutObject",
        },
    }


def _millis(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return value


def with_datetimes(description: dict[str, Any]) -> dict[str, Any]:
    """A Describe*Job answer as the JSON API sends it (times as epoch seconds) with its times as
    datetimes, so the event carries them as epoch milliseconds like SageMaker's own."""
    return {
        key: datetime.fromtimestamp(value, tz=UTC)
        if key.endswith("Time") and isinstance(value, int | float)
        else value
        for key, value in description.items()
    }


def _sagemaker_state_change(
    description: dict[str, Any], *, kind: str, resource: str, region: str
) -> dict[str, Any]:
    """A SageMaker job state change: the detail resembles the Describe*Job answer, with times as
    epoch milliseconds and Tags as a {key: value} map."""
    detail = {key: _millis(value) for key, value in description.items() if key != "ResponseMetadata"}
    tags = detail.get("Tags", {})
    if isinstance(tags, list):
        detail["Tags"] = {item["Key"]: item["Value"] for item in tags}
    name = detail[f"{kind}JobName"]
    arn = detail.get(f"{kind}JobArn") or f"arn:aws:sagemaker:{region}:{ACCOUNT}:{resource}/{name}"
    detail[f"{kind}JobArn"] = arn
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": f"SageMaker {kind} Job State Change",
        "source": "aws.sagemaker",
        "account": ACCOUNT,
        "time": _now(),
        "region": region,
        "resources": [arn],
        "detail": detail,
    }


def job_state_change_event(description: dict[str, Any], *, region: str = "us-east-1") -> dict[str, Any]:
    """`SageMaker Training Job State Change`, from a DescribeTrainingJob answer (plus Tags)."""
    return _sagemaker_state_change(description, kind="Training", resource="training-job", region=region)


def processing_job_state_change_event(
    description: dict[str, Any], *, region: str = "us-east-1"
) -> dict[str, Any]:
    """`SageMaker Processing Job State Change`, from a DescribeProcessingJob answer (plus Tags)."""
    return _sagemaker_state_change(description, kind="Processing", resource="processing-job", region=region)


def event_bus_entry(event: dict[str, Any]) -> dict[str, Any]:
    """A PutEvents entry that EventBridge turns back into `event` (less the fields it sets itself:
    id, time, account, region)."""
    return {
        "Source": event["source"],
        "DetailType": event["detail-type"],
        "Detail": json.dumps(event["detail"]),
        "Resources": event["resources"],
    }
