"""/openapi.json tells the truth: every status a route answers is documented for it, and every
answer's body matches the schema documented for its status (the error envelope for errors, the
report envelope for a rejected submission)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from jsonschema import Draft202012Validator

from segpipe.models import keys
from tests.helpers.analysis_inputs import analysis_body, put_images
from tests.helpers.datasets import DatasetBuilder
from tests.helpers.outputs import evaluation, output_archive, prediction
from tests.integration.conftest import Aws, request_body, upload_dataset

ROUTES = {
    ("post", "/projects/{project}/trainings"),
    ("post", "/projects/{project}/trainings/preview"),
    ("get", "/projects/{project}/models"),
    ("get", "/projects/{project}/models/{version}"),
    ("get", "/projects/{project}/models/{version}/metrics"),
    ("get", "/projects/{project}/models/{version}/predictions"),
    ("get", "/projects/{project}/models/{version}/predictions/{split}/{stem}"),
    ("put", "/projects/{project}/models/{version}/threshold"),
    ("post", "/projects/{project}/models/{version}/activate"),
    ("post", "/projects/{project}/models/{version}/deactivate"),
    ("post", "/projects/{project}/models/{version}/stop"),
    ("post", "/projects/{project}/analyses"),
    ("post", "/projects/{project}/analyses/preview"),
    ("get", "/projects/{project}/analyses"),
    ("get", "/projects/{project}/analyses/{analysis}"),
    ("get", "/projects/{project}/analyses/{analysis}/images"),
    ("get", "/projects/{project}/analyses/{analysis}/images/{stem}"),
    ("post", "/projects/{project}/analyses/{analysis}/stop"),
}


def _document(aws: Aws) -> dict[str, Any]:
    status, document = aws.api("GET", "/openapi.json")
    assert status == 200
    return document  # type: ignore[no-any-return]


def _schema(document: dict[str, Any], method: str, route: str, status: int) -> dict[str, Any]:
    answer = document["paths"][route][method]["responses"][str(status)]
    schema: dict[str, Any] = answer["content"]["application/json"]["schema"]
    return schema


def _mismatch(document: dict[str, Any], method: str, route: str, status: int, body: Any) -> str | None:
    """Why an answer disagrees with the document, or None when it agrees."""
    documented = document["paths"][route][method]["responses"]
    if str(status) not in documented:
        return f"{method.upper()} {route}: {status} is not documented (only {sorted(documented)})"
    schema = _schema(document, method, route, status)
    validator = Draft202012Validator({**schema, "components": document["components"]})
    problems = [error.message for error in validator.iter_errors(body)]
    return f"{method.upper()} {route} {status}: {problems[:3]}" if problems else None


@pytest.fixture
def session(aws: Aws) -> Iterator[Aws]:
    """Version 1 completed with predictions; version 2 queued (its job may be stopped)."""
    builder = DatasetBuilder(classes=["nucleus"], seed=5)
    builder.add_images(16, objects={"nucleus": 4})
    upload_dataset(aws, builder)
    first = aws.api("POST", "/projects/lab/trainings", body=request_body())
    second = aws.api("POST", "/projects/lab/trainings", body=request_body(label="second"))
    assert first[0] == second[0] == 202
    job = first[1]["job_name"]
    predictions = [
        prediction("img_00001.png", "test", ["nucleus"]),
        prediction("img_00003.png", "train", ["nucleus"]),
    ]
    archive = output_archive(evaluation(["nucleus"]), predictions)
    aws.s3.put_object(
        Bucket=aws.bucket, Key=keys.job_output_key("lab", 1, job, "output.tar.gz"), Body=archive
    )
    aws.job_event(job, "InProgress")
    aws.job_event(job, "Completed")
    assert aws.api("GET", "/projects/lab/models/1")[1]["status"] == "completed"
    assert aws.api("POST", "/projects/lab/models/1/activate")[0] == 200  # analyses use it
    put_images(aws, "plate-1")
    _seed_analyses(aws)

    from segpipe.handlers import runtime

    def stopped(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:  # moto cannot stop a training job
        return AWSResponse("https://sagemaker", 200, {}, None), {}  # type: ignore[arg-type]

    events = runtime._client("sagemaker").meta.events
    events.register("before-call.sagemaker.StopTrainingJob", stopped)
    yield aws
    events.unregister("before-call.sagemaker.StopTrainingJob", stopped)


def _seed_analyses(aws: Aws) -> None:
    """Analysis 7 completed (merged by the job-state handler), analysis 8 running (its job stoppable);
    numbers the session's submissions over HTTP do not reach."""
    from tests.helpers.analysis_shards import sample_images
    from tests.integration.analysis_seed import processing_event, seed_analysis

    images = sample_images(3)
    seed_analysis(aws, {"algo-1": images}, analysis=7, job_name="segpipe-lab-a7-00000007")
    processing_event(aws, "segpipe-lab-a7-00000007", "Completed")
    seed_analysis(aws, {"algo-1": images}, analysis=8, job_name="segpipe-lab-a8-00000008", shards=False)
    aws.sagemaker.create_processing_job(
        ProcessingJobName="segpipe-lab-a8-00000008",
        ProcessingResources={
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.g5.xlarge", "VolumeSizeInGB": 30}
        },
        AppSpecification={"ImageUri": "image", "ContainerEntrypoint": ["analyze"]},
        RoleArn="arn:aws:iam::000000000000:role/segpipe-sagemaker",
        Tags=[{"Key": "segpipe:stack", "Value": "segpipe-test"}],
    )
    processing_event(aws, "segpipe-lab-a8-00000008", "InProgress")


M = "/projects/{project}/models/{version}"
A = "/projects/{project}/analyses"
AN = "/projects/{project}/analyses/{analysis}"
#: (method, route, concrete path, body or raw text, headers, the status the API answers)
CALLS: list[tuple[str, str, str, Any, dict[str, str], int]] = [
    ("post", A, "/projects/lab/analyses", analysis_body(), {}, 202),
    ("post", A, "/projects/lab/analyses", analysis_body(), {"idempotency-key": "a"}, 202),
    ("post", A, "/projects/lab/analyses", analysis_body(name="b"), {"idempotency-key": "a"}, 409),
    ("post", A, "/projects/lab/analyses", analysis_body(images="plate-404"), {}, 422),
    ("post", A, "/projects/lab/analyses", analysis_body(images="../x"), {}, 422),
    ("post", A, "/projects/lab/analyses", "{", {}, 400),
    ("post", A, "/projects/lab/analyses", "x" * 300_000, {}, 413),
    ("post", A, "/projects/lab/analyses", "{}", {"content-type": "text/plain"}, 415),
    ("post", A + "/preview", "/projects/lab/analyses/preview", analysis_body(), {}, 200),
    ("post", A + "/preview", "/projects/lab/analyses/preview", analysis_body(version=0), {}, 422),
    ("post", A + "/preview", "/projects/lab/analyses/preview", "[" * 50 + "]" * 50, {}, 400),
    ("post", A + "/preview", "/projects/-lab/analyses/preview", analysis_body(), {}, 422),
    (
        "post",
        "/projects/{project}/trainings",
        "/projects/lab/trainings",
        request_body(label="third"),
        {},
        202,
    ),
    (
        "post",
        "/projects/{project}/trainings",
        "/projects/lab/trainings",
        request_body(dataset="nowhere"),
        {},
        422,
    ),
    ("post", "/projects/{project}/trainings", "/projects/lab/trainings", request_body(classes="x"), {}, 422),
    ("post", "/projects/{project}/trainings", "/projects/lab/trainings", "{", {}, 400),
    ("post", "/projects/{project}/trainings", "/projects/lab/trainings", "x" * 300_000, {}, 413),
    (
        "post",
        "/projects/{project}/trainings",
        "/projects/lab/trainings",
        "{}",
        {"content-type": "text/plain"},
        415,
    ),
    (
        "post",
        "/projects/{project}/trainings",
        "/projects/lab/trainings",
        request_body(),
        {"idempotency-key": "k"},
        202,
    ),
    (
        "post",
        "/projects/{project}/trainings",
        "/projects/lab/trainings",
        request_body(label="y"),
        {"idempotency-key": "k"},
        409,
    ),
    (
        "post",
        "/projects/{project}/trainings/preview",
        "/projects/lab/trainings/preview",
        request_body(),
        {},
        200,
    ),
    (
        "post",
        "/projects/{project}/trainings/preview",
        "/projects/lab/trainings/preview",
        "[" * 50 + "]" * 50,
        {},
        400,
    ),
    (
        "post",
        "/projects/{project}/trainings/preview",
        "/projects/\x84/trainings/preview",
        request_body(),
        {},
        404,
    ),
    ("get", "/projects/{project}/models", "/projects/lab/models", None, {}, 200),
    ("get", "/projects/{project}/models", "/projects/-lab/models", None, {}, 422),
    ("get", M, "/projects/lab/models/1", None, {}, 200),
    ("get", M, "/projects/lab/models/9", None, {}, 404),
    ("get", M, "/projects/lab/models/0", None, {}, 422),
    ("get", M + "/metrics", "/projects/lab/models/1/metrics", None, {}, 200),
    ("get", M + "/metrics", "/projects/lab/models/2/metrics", None, {}, 409),
    ("get", M + "/metrics", "/projects/lab/models/9/metrics", None, {}, 404),
    ("get", M + "/predictions", "/projects/lab/models/1/predictions", None, {}, 200),
    ("get", M + "/predictions", "/projects/lab/models/2/predictions", None, {}, 409),
    (
        "get",
        M + "/predictions/{split}/{stem}",
        "/projects/lab/models/1/predictions/test/img_00001",
        None,
        {},
        200,
    ),
    (
        "get",
        M + "/predictions/{split}/{stem}",
        "/projects/lab/models/1/predictions/test/nothing",
        None,
        {},
        404,
    ),
    (
        "get",
        M + "/predictions/{split}/{stem}",
        "/projects/lab/models/2/predictions/test/img_00001",
        None,
        {},
        409,
    ),
    ("put", M + "/threshold", "/projects/lab/models/1/threshold", {"threshold": 0.3}, {}, 200),
    ("put", M + "/threshold", "/projects/lab/models/1/threshold", {"threshold": {"nucleus": 0.4}}, {}, 200),
    ("put", M + "/threshold", "/projects/lab/models/1/threshold", {"threshold": {"cell": 0.4}}, {}, 400),
    ("put", M + "/threshold", "/projects/lab/models/2/threshold", {"threshold": 0.3}, {}, 409),
    ("put", M + "/threshold", "/projects/lab/models/1/threshold", {"threshold": 3}, {}, 422),
    ("put", M + "/threshold", "/projects/lab/models/1/threshold", b"\xff", {}, 400),
    ("post", M + "/activate", "/projects/lab/models/1/activate", None, {}, 200),
    ("post", M + "/activate", "/projects/lab/models/2/activate", None, {}, 409),
    ("post", M + "/deactivate", "/projects/lab/models/1/deactivate", None, {}, 200),
    ("post", M + "/deactivate", "/projects/lab/models/9/deactivate", None, {}, 404),
    ("post", M + "/stop", "/projects/lab/models/2/stop", None, {}, 202),
    ("post", M + "/stop", "/projects/lab/models/1/stop", None, {}, 409),
    ("post", M + "/stop", "/projects/lab/models/1/stop", "{}", {"content-type": "application/xml"}, 415),
    ("get", "/projects/{project}/analyses", "/projects/lab/analyses", None, {}, 200),
    ("get", "/projects/{project}/analyses", "/projects/-lab/analyses", None, {}, 422),
    ("get", AN, "/projects/lab/analyses/7", None, {}, 200),
    ("get", AN, "/projects/lab/analyses/8", None, {}, 200),
    ("get", AN, "/projects/lab/analyses/9", None, {}, 404),
    ("get", AN, "/projects/lab/analyses/0", None, {}, 422),
    ("get", AN + "/images", "/projects/lab/analyses/7/images", None, {}, 200),
    ("get", AN + "/images", "/projects/lab/analyses/8/images", None, {}, 409),
    ("get", AN + "/images", "/projects/lab/analyses/9/images", None, {}, 404),
    ("get", AN + "/images/{stem}", "/projects/lab/analyses/7/images/sub_0__img-00", None, {}, 200),
    ("get", AN + "/images/{stem}", "/projects/lab/analyses/7/images/nothing", None, {}, 404),
    ("get", AN + "/images/{stem}", "/projects/lab/analyses/8/images/sub_0__img-00", None, {}, 409),
    ("post", AN + "/stop", "/projects/lab/analyses/8/stop", None, {}, 202),
    ("post", AN + "/stop", "/projects/lab/analyses/7/stop", None, {}, 409),
    ("post", AN + "/stop", "/projects/lab/analyses/9/stop", None, {}, 404),
    ("post", AN + "/stop", "/projects/lab/analyses/7/stop", "{}", {"content-type": "text/plain"}, 415),
]


def test_every_answer_of_a_session_is_documented_with_its_schema(session: Aws) -> None:
    document = _document(session)
    mismatches = []
    answered = []

    for method, route, path, body, headers, expected in CALLS:
        raw = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
        status, answer = session.api(method.upper(), path, body=raw, headers=headers)
        answered.append((method, path, status))
        if status != expected:
            mismatches.append(f"{method.upper()} {path}: expected {expected}, got {status}: {answer}")
        elif problem := _mismatch(document, method, route, status, answer):
            mismatches.append(problem)

    assert not mismatches, "\n".join(mismatches)
    assert {(method, route) for method, route, *_ in CALLS} == ROUTES  # every route was called


def test_every_route_documents_each_error_status_with_the_error_envelope(aws: Aws) -> None:
    document = _document(aws)
    operations = {
        (method, route): operation
        for route, item in document["paths"].items()
        for method, operation in item.items()
    }

    assert set(operations) == ROUTES
    for (method, route), operation in operations.items():
        statuses = {int(status) for status in operation["responses"]}
        expected = {404, 413, 422} | ({400, 415} if method in {"post", "put"} else set())
        assert expected <= statuses, (method, route, sorted(statuses))
        for status in statuses - {200, 202, 422}:
            assert _schema(document, method, route, status) == {"$ref": "#/components/schemas/ErrorBody"}
        assert all(answer["description"] for answer in operation["responses"].values())


@pytest.mark.parametrize(
    ("route", "rejected", "accepted", "report"),
    [
        ("/projects/{project}/trainings", "RejectedSubmission", "SubmitAccepted", "ValidationReport"),
        ("/projects/{project}/analyses", "RejectedAnalysis", "AnalysisAccepted", "AnalysisReport"),
    ],
    ids=["training", "analysis"],
)
def test_a_submission_documents_its_422_as_its_report_envelope_or_the_error_envelope(
    aws: Aws, route: str, rejected: str, accepted: str, report: str
) -> None:
    document = _document(aws)

    refused = _schema(document, "post", route, 422)
    created = _schema(document, "post", route, 202)

    assert [option["$ref"] for option in refused["anyOf"]] == [
        f"#/components/schemas/{rejected}",
        "#/components/schemas/ErrorBody",
    ]
    assert created == {"$ref": f"#/components/schemas/{accepted}"}
    envelope = document["components"]["schemas"][rejected]
    assert set(envelope["required"]) == {"error", "report"}
    assert envelope["properties"]["report"] == {
        "$ref": f"#/components/schemas/{report}",
        "description": "Every error and warning found, with the details",
    }
    responses = document["paths"][route]["post"]["responses"]
    assert set(responses["202"]["headers"]) == {"Location"} and "503" in responses


def test_stopping_is_documented_as_the_202_it_answers(aws: Aws) -> None:
    document = _document(aws)

    responses = document["paths"]["/projects/{project}/models/{version}/stop"]["post"]["responses"]

    assert "202" in responses and "200" not in responses
    assert responses["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ModelVersion"
    }
