"""Request bodies the API cannot read get a 4xx with a stable code, never a 500 or a traceback:
bodies that are not UTF-8, that are marked base64 but are not, that nest too deeply, that hold
NaN, or that come with a Content-Type other than JSON. The size limit counts the body's bytes,
whichever way API Gateway passed it (as text, or base64-encoded for non-text content types)."""

from __future__ import annotations

import base64
import importlib
import json
from typing import Any

import pytest

from segpipe_local.events import http_api_event
from segpipe_local.lambda_context import LocalLambdaContext
from tests.integration.conftest import Aws, request_body

#: The API function's default limit (settings.MAX_BODY_BYTES).
LIMIT = 256 * 1024
BODY_ROUTES = [
    ("POST", "/projects/lab/trainings"),
    ("POST", "/projects/lab/trainings/preview"),
    ("PUT", "/projects/lab/models/1/threshold"),
]


def _call(event: dict[str, Any]) -> tuple[int, Any]:
    handler = importlib.import_module("segpipe.handlers.handle_api_request")
    response = handler.lambda_handler(event, LocalLambdaContext("ApiFunction"))
    return response["statusCode"], json.loads(response["body"])


def _event(
    method: str,
    path: str,
    data: bytes,
    *,
    base64_encoded: bool,
    content_type: str | None = "application/json",
) -> dict[str, Any]:
    """An HTTP API event whose body is `data`, as text or base64-encoded, as API Gateway sends it."""
    headers = {"content-type": content_type} if content_type else {}
    event = http_api_event(method, path, headers=headers)
    event["body"] = base64.b64encode(data).decode() if base64_encoded else data.decode()
    event["isBase64Encoded"] = base64_encoded
    return event


def _nothing_written(aws: Aws) -> None:
    assert aws.keys("projects/lab/models/") == []
    assert aws.table_items() == []
    assert aws.jobs() == []


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize("data", [b"\xff\xfe{}", '{"label": "caf\u00e9"}'.encode("latin-1")])
def test_a_body_that_is_not_utf8_is_a_400(aws: Aws, method: str, path: str, data: bytes) -> None:
    status, answer = _call(_event(method, path, data, base64_encoded=True))

    assert status == 400, answer
    assert answer["error"]["code"] == "malformed_json"
    assert "UTF-8" in answer["error"]["message"]
    _nothing_written(aws)


def test_a_body_that_is_not_utf8_is_a_400_on_a_route_that_reads_no_body(aws: Aws) -> None:
    status, answer = _call(_event("POST", "/projects/lab/models/1/stop", b"\xff", base64_encoded=True))

    assert (status, answer["error"]["code"]) == (400, "malformed_json")


def test_a_body_marked_base64_that_is_not_base64_is_a_400(aws: Aws) -> None:
    event = http_api_event("POST", "/projects/lab/trainings/preview")
    event.update(body="not base64!", isBase64Encoded=True)

    status, answer = _call(event)

    assert (status, answer["error"]["code"]) == (400, "malformed_json")


def test_a_base64_encoded_json_body_is_read_like_a_text_one(with_dataset: Aws) -> None:
    data = json.dumps(request_body()).encode()

    encoded = _call(_event("POST", "/projects/lab/trainings/preview", data, base64_encoded=True))
    text = _call(_event("POST", "/projects/lab/trainings/preview", data, base64_encoded=False))

    assert encoded[0] == text[0] == 200
    assert encoded[1]["ok"] and encoded[1]["details"] == text[1]["details"]


def test_the_size_limit_is_on_the_decoded_bytes_of_a_base64_body(with_dataset: Aws) -> None:
    # 230 KB of JSON is under the limit; its base64 form (307 KB) is over it.
    data = json.dumps(request_body(label="x" * 200, classes=["nucleus"] * 20_000)).encode()
    assert len(data) < LIMIT < len(base64.b64encode(data))

    status, answer = _call(_event("POST", "/projects/lab/trainings/preview", data, base64_encoded=True))

    assert status == 422 and answer["error"]["code"] == "invalid_request", answer  # read, then validated


def test_the_size_limit_counts_bytes_not_characters(with_dataset: Aws) -> None:
    # 150,000 characters, 300,000 bytes of UTF-8.
    data = json.dumps(request_body(label="\u00e9" * 150_000), ensure_ascii=False).encode()
    assert len(data.decode()) < LIMIT < len(data)

    status, answer = _call(_event("POST", "/projects/lab/trainings", data, base64_encoded=False))

    assert (status, answer["error"]["code"]) == (413, "body_too_large")
    _nothing_written(with_dataset)


@pytest.mark.parametrize("base64_encoded", [False, True])
def test_an_oversized_base64_body_is_a_413(with_dataset: Aws, base64_encoded: bool) -> None:
    data = b'{"label": "' + b"x" * (LIMIT + 10) + b'"}'

    status, answer = _call(_event("POST", "/projects/lab/trainings", data, base64_encoded=base64_encoded))

    assert (status, answer["error"]["code"]) == (413, "body_too_large")


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize("depth", [100_000, 40])
def test_deeply_nested_json_is_a_400(aws: Aws, method: str, path: str, depth: int) -> None:
    data = b"[" * depth + b"]" * depth

    status, answer = aws.api(method, path, body=data)

    assert status == 400, answer
    assert answer["error"]["code"] == "json_too_deep"
    assert answer["error"]["context"] == {"limit": 32}
    _nothing_written(aws)


def test_json_nested_within_the_limit_is_validated_as_usual(aws: Aws) -> None:
    nested = {"a": [[[[{"b": [1]}]]]]}

    status, answer = aws.api("POST", "/projects/lab/trainings", body=request_body(training=nested))

    assert (status, answer["error"]["code"]) == (422, "invalid_request")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(aws: Aws, constant: str) -> None:
    status, answer = aws.api(
        "PUT", "/projects/lab/models/1/threshold", body='{"threshold": ' + constant + "}"
    )

    assert (status, answer["error"]["code"]) == (400, "malformed_json")
    assert answer["error"]["context"] == {"constant": constant}


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
@pytest.mark.parametrize(("method", "path"), [*BODY_ROUTES, ("POST", "/projects/lab/models/1/activate")])
def test_a_body_that_is_not_declared_json_is_a_415(
    with_dataset: Aws, method: str, path: str, content_type: str
) -> None:
    data = json.dumps(request_body()).encode()

    status, answer = _call(_event(method, path, data, base64_encoded=False, content_type=content_type))

    assert status == 415, answer
    assert answer["error"]["code"] == "unsupported_media_type"
    assert answer["error"]["context"] == {"content_type": content_type}
    _nothing_written(with_dataset)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", None])
def test_json_bodies_with_or_without_a_content_type_are_read(
    with_dataset: Aws, content_type: str | None
) -> None:
    data = json.dumps(request_body()).encode()

    event = _event(
        "POST", "/projects/lab/trainings/preview", data, base64_encoded=False, content_type=content_type
    )
    status, answer = _call(event)

    assert status == 200 and answer["ok"], answer


def test_a_get_ignores_its_body(aws: Aws) -> None:
    status, answer = _call(
        _event("GET", "/projects/lab/models", b"\xff", base64_encoded=True, content_type="x/y")
    )

    assert status == 200 and answer["models"] == []


@pytest.mark.parametrize(("depth", "code"), [(32, "invalid_request"), (33, "json_too_deep")])
def test_the_nesting_limit_is_32_levels(aws: Aws, depth: int, code: str) -> None:
    data = b"[" * depth + b"]" * depth

    _, answer = aws.api("POST", "/projects/lab/trainings/preview", body=data)

    assert answer["error"]["code"] == code
