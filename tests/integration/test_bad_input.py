"""Bad input never produces a 500 or a traceback, and nothing is written (`with_dataset`, the valid
dataset `cells` of tests/integration/conftest.py, is there to be submitted)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from segpipe.handlers import runtime
from tests.integration.conftest import Aws, request_body


def _nothing_written(aws: Aws) -> None:
    assert aws.keys("projects/lab/models/") == []
    assert aws.keys("projects/lab/reports/") == []
    assert aws.table_items() == []
    assert aws.jobs() == []


VALID = json.dumps(request_body())


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ('{"label": "x", "dataset": "cells", ', 400, "malformed_json"),  # truncated
        ("not json at all", 400, "malformed_json"),
        (VALID[: len(VALID) // 2], 400, "malformed_json"),
        (json.dumps(request_body(classes="nucleus")), 422, "invalid_request"),  # wrong type
        (json.dumps(request_body(model_type="panoptic")), 422, "invalid_request"),
        (json.dumps(request_body(epochs=3)), 422, "invalid_request"),  # unknown field
        (json.dumps(request_body(training={"epochs": -1})), 422, "invalid_request"),
        (
            json.dumps(request_body(test_set={"strategy": "fraction", "fraction": 1.5})),
            422,
            "invalid_request",
        ),
        (json.dumps(request_body(dataset="../../other/datasets/x")), 422, "invalid_request"),
        (json.dumps({**request_body(), "label": None}), 422, "invalid_request"),
        ("[]", 422, "invalid_request"),
        ("", 422, "invalid_request"),
    ],
)
def test_malformed_bodies_get_a_clear_4xx(with_dataset: Aws, body: str, status: int, code: str) -> None:
    got, answer = with_dataset.api("POST", "/projects/lab/trainings", body=body)

    assert (got, answer["error"]["code"]) == (status, code), answer
    assert answer["error"]["message"]
    _nothing_written(with_dataset)


def test_an_oversized_body_is_refused(with_dataset: Aws) -> None:
    huge = json.dumps(request_body(label="x" * 100, classes=["c" * 100] * 3000))

    got, answer = with_dataset.api("POST", "/projects/lab/trainings", body=huge)

    assert got == 413 and answer["error"]["code"] == "body_too_large"
    _nothing_written(with_dataset)


@pytest.mark.parametrize(
    "project",
    ["..", "lab..x", "lab.x", "la%24b", "-lab", "l" * 64, "lab%2F..%2Fother", "%00", "caf%C3%A9"],
)
def test_odd_project_names_are_refused_before_any_key_is_built(with_dataset: Aws, project: str) -> None:
    got, answer = with_dataset.api("POST", f"/projects/{project}/trainings", body=request_body())

    assert 400 <= got < 500, answer
    _nothing_written(with_dataset)


@pytest.mark.parametrize(
    "path",
    [
        "/projects/lab/models/0",
        "/projects/lab/models/abc",
        "/projects/lab/models/1234567",
        "/projects/lab/models/1/predictions/test/..%2F..%2Fsecret",
        "/projects/lab/models/1/predictions/valid/x",
        "/projects/lab/models/1/metrics?threshold=2",
    ],
)
def test_odd_path_and_query_values_are_refused(with_dataset: Aws, path: str) -> None:
    route, _, query = path.partition("?")

    got, answer = with_dataset.api("GET", route, query=query)

    assert 400 <= got < 500, answer
    assert "error" in answer


def test_a_dataset_that_does_not_exist_gets_a_report_code(with_dataset: Aws) -> None:
    got, answer = with_dataset.api("POST", "/projects/lab/trainings", body=request_body(dataset="nowhere"))

    assert got == 422
    assert [e["code"] for e in answer["report"]["errors"]] == ["dataset_not_found"]
    _nothing_written(with_dataset)


def test_a_dataset_key_of_another_project_is_refused(with_dataset: Aws) -> None:
    body = request_body(dataset="projects/other/datasets/cells/annotations.json")

    got, _ = with_dataset.api("POST", "/projects/lab/trainings", body=body)

    assert got == 422
    _nothing_written(with_dataset)


@pytest.mark.parametrize(
    "content", [b"{", b'{"images": "many"}', b'{"images": [], "categories": []', b"\xff\xfe"]
)
def test_an_unreadable_dataset_gets_a_report_code(aws: Aws, content: bytes) -> None:
    aws.s3.put_object(Bucket=aws.bucket, Key="projects/lab/datasets/cells/annotations.json", Body=content)

    got, answer = aws.api("POST", "/projects/lab/trainings", body=request_body())

    assert got == 422
    assert [e["code"] for e in answer["report"]["errors"]] == ["dataset_unreadable"]
    _nothing_written(aws)


def test_unknown_routes_and_methods_are_404_not_500(with_dataset: Aws) -> None:
    assert with_dataset.api("GET", "/nothing/here")[0] == 404
    assert with_dataset.api("DELETE", "/projects/lab/models")[0] in {404, 405}


def test_openapi_document_lists_every_route(with_dataset: Aws) -> None:
    got, document = with_dataset.api("GET", "/openapi.json")

    assert got == 200 and document["openapi"].startswith("3.")
    paths = set(document["paths"])
    assert {
        "/projects/{project}/trainings",
        "/projects/{project}/trainings/preview",
        "/projects/{project}/models",
        "/projects/{project}/models/{version}",
        "/projects/{project}/models/{version}/metrics",
        "/projects/{project}/models/{version}/predictions",
        "/projects/{project}/models/{version}/threshold",
        "/projects/{project}/models/{version}/activate",
        "/projects/{project}/models/{version}/deactivate",
        "/projects/{project}/models/{version}/stop",
    } <= paths


def _failing(code: str, status: int) -> Any:
    def fail(**kwargs: Any) -> None:
        raise ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Query")

    return fail


@pytest.mark.parametrize(
    ("code", "status"), [("ProvisionedThroughputExceededException", 400), ("InternalServerError", 500)]
)
def test_a_transient_aws_failure_answers_503_with_its_code(with_dataset: Aws, code: str, status: int) -> None:
    # Given a table that keeps refusing after the SDK's retries
    runtime._client("dynamodb").meta.events.register("before-call.dynamodb.Query", _failing(code, status))

    got, body = with_dataset.api("GET", "/projects/lab/models")

    assert got == 503
    assert body["error"]["code"] == "service_unavailable"
    assert body["error"]["context"] == {"aws_code": code, "operation": "Query"}


def test_any_other_aws_failure_is_raised_and_counts_as_the_function_s_error(with_dataset: Aws) -> None:
    runtime._client("dynamodb").meta.events.register(
        "before-call.dynamodb.Query", _failing("ValidationException", 400)
    )

    with pytest.raises(ClientError, match="ValidationException"):
        with_dataset.api("GET", "/projects/lab/models")
