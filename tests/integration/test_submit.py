"""Submitting trainings through the real handlers (HTTP and S3 upload) under moto."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers.datasets import DatasetBuilder
from tests.integration.conftest import Aws, request_body, upload_dataset

JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def _dataset(included: int = 60) -> DatasetBuilder:
    """`included` nucleus annotations on completed images, plus annotations that do not count."""
    builder = DatasetBuilder(classes=["nucleus", "debris"], seed=3)
    per_image, images = 4, included // 4
    builder.add_images(images, objects={"nucleus": per_image, "debris": 1}, group=None)
    if remainder := included - images * per_image:
        builder.add_images(1, objects={"nucleus": remainder})
    builder.add_images(2, status="in_progress", objects={"nucleus": 5})  # unfinished: not included
    builder.add_images(2, objects={})  # negatives
    return builder


@pytest.fixture
def with_dataset(aws: Aws) -> Aws:
    upload_dataset(aws, _dataset())
    return aws


def test_http_submit_creates_version_split_and_job(with_dataset: Aws) -> None:
    aws = with_dataset

    status, body = aws.api("POST", "/projects/lab/trainings", body=request_body())

    assert status == 202, body
    assert body["version"] == 1 and body["status"] == "queued" and not body["repeated"]
    assert body["report"]["ok"] is True
    assert aws.keys("projects/lab/models/1/split/") == [
        "projects/lab/models/1/split/test.json",
        "projects/lab/models/1/split/train.json",
    ]
    train = aws.get_json("projects/lab/models/1/split/train.json")
    test = aws.get_json("projects/lab/models/1/split/test.json")
    assert {c["name"] for c in train["categories"]} == {"nucleus"}
    assert not {i["id"] for i in train["images"]} & {i["id"] for i in test["images"]}
    assert train["info"]["segpipe"]["version"] == 1

    (job,) = aws.created_jobs
    assert job["TrainingJobName"] == body["job_name"]
    assert JOB_NAME.match(job["TrainingJobName"]) and len(job["TrainingJobName"]) <= 63
    assert job["EnableManagedSpotTraining"] is True
    stopping = job["StoppingCondition"]
    assert stopping["MaxWaitTimeInSeconds"] > stopping["MaxRuntimeInSeconds"]
    assert job["CheckpointConfig"]["S3Uri"] == f"s3://{aws.bucket}/projects/lab/models/1/checkpoints/"
    channels = {c["ChannelName"]: c for c in job["InputDataConfig"]}
    assert set(channels) == {"dataset", "split"}
    assert channels["dataset"]["InputMode"] == "FastFile"
    assert (
        channels["dataset"]["DataSource"]["S3DataSource"]["S3Uri"]
        == f"s3://{aws.bucket}/projects/lab/datasets/cells/"
    )
    assert (
        channels["split"]["DataSource"]["S3DataSource"]["S3Uri"]
        == f"s3://{aws.bucket}/projects/lab/models/1/split/"
    )
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{aws.bucket}/projects/lab/models/1/output/"
    tags = {t["Key"]: t["Value"] for t in job["Tags"]}
    assert tags == {
        "segpipe:project": "lab",
        "segpipe:version": "1",
        "segpipe:label": "first try",
        "segpipe:stack": "segpipe-test",
    }
    metric_names = {m["Name"] for m in job["AlgorithmSpecification"]["MetricDefinitions"]}
    assert {"train:loss", "validation:score"} <= metric_names
    assert json.loads(job["HyperParameters"]["classes"]) == ["nucleus"]
    assert aws.jobs() == [body["job_name"]]

    status, table = aws.api("GET", "/projects/lab/models")
    assert status == 200
    assert [(m["version"], m["status"], m["label"]) for m in table["models"]] == [(1, "queued", "first try")]


def test_versions_are_numbered_per_project(with_dataset: Aws) -> None:
    aws = with_dataset
    upload_dataset(aws, _dataset(), project="other")

    first = aws.api("POST", "/projects/lab/trainings", body=request_body())[1]["version"]
    second = aws.api("POST", "/projects/lab/trainings", body=request_body(label="second"))[1]["version"]
    elsewhere = aws.api("POST", "/projects/other/trainings", body=request_body())[1]["version"]

    assert (first, second, elsewhere) == (1, 2, 1)
    assert len(set(aws.jobs())) == 3


def test_an_http_retry_with_the_same_idempotency_key_gets_the_same_version_and_one_job(
    with_dataset: Aws,
) -> None:
    aws = with_dataset
    headers = {"Idempotency-Key": "8c1f0d2e-retry"}

    first = aws.api("POST", "/projects/lab/trainings", body=request_body(), headers=headers)
    again = aws.api("POST", "/projects/lab/trainings", body=request_body(), headers=headers)
    other_body = aws.api(
        "POST", "/projects/lab/trainings", body=request_body(label="changed"), headers=headers
    )

    assert first[0] == again[0] == 202
    assert again[1]["version"] == first[1]["version"] == 1 and again[1]["repeated"] is True
    assert len(aws.created_jobs) == 1 and len(aws.jobs()) == 1
    assert other_body[0] == 409 and other_body[1]["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(("included", "accepted"), [(50, False), (51, True)])
def test_more_than_50_included_annotations_are_needed(aws: Aws, included: int, accepted: bool) -> None:
    upload_dataset(aws, _dataset(included))

    status, body = aws.api("POST", "/projects/lab/trainings", body=request_body())

    if accepted:
        assert status == 202, body
        assert aws.keys("projects/lab/models/") and aws.jobs()
        return
    assert status == 422
    assert body["error"]["code"] == "validation_failed"
    assert [e["code"] for e in body["report"]["errors"]] == ["too_few_annotations"]
    assert body["report"]["details"]["included_annotations"] == 50
    assert aws.keys("projects/lab/models/") == []  # no split
    assert aws.table_items() == []  # no version, no claim, no counter
    assert aws.jobs() == [] and aws.created_jobs == []


def test_preview_reports_without_side_effects(with_dataset: Aws) -> None:
    aws = with_dataset

    status, report = aws.api("POST", "/projects/lab/trainings/preview", body=request_body())

    assert status == 200
    assert report["ok"] is True
    assert report["details"]["included_annotations"] == 60
    assert "annotations_ignored" in {w["code"] for w in report["warnings"]}
    assert report["version"] is None
    assert aws.keys("projects/lab/models/") == [] and aws.table_items() == [] and aws.jobs() == []


def test_s3_upload_submits_and_writes_the_report(with_dataset: Aws) -> None:
    aws = with_dataset

    result = aws.upload_request("lab", "nuclei-v1", json.dumps(request_body()))

    report = aws.get_json("projects/lab/reports/nuclei-v1.json")
    assert result["report_key"] == "projects/lab/reports/nuclei-v1.json"
    assert report["ok"] is True and report["version"] == 1
    assert report["job_name"] == aws.jobs()[0]
    assert aws.keys("projects/lab/models/1/split/")
    (job,) = aws.created_jobs
    assert job["EnableManagedSpotTraining"] is True
    assert job["CheckpointConfig"]["S3Uri"].endswith("/projects/lab/models/1/checkpoints/")


def test_a_duplicated_s3_event_starts_one_job(with_dataset: Aws) -> None:
    aws = with_dataset
    aws.upload_request("lab", "nuclei-v1", json.dumps(request_body()))

    again = aws.deliver_object_created("projects/lab/requests/nuclei-v1.json")

    assert again["outcome"]["repeated"] is True and again["outcome"]["version"] == 1
    assert len(aws.created_jobs) == 1 and len(aws.jobs()) == 1
    assert aws.get_json("projects/lab/reports/nuclei-v1.json")["version"] == 1


def test_an_uploaded_request_with_errors_gets_a_report_and_nothing_else(aws: Aws) -> None:
    upload_dataset(aws, _dataset(20))

    aws.upload_request("lab", "too-small", json.dumps(request_body()))
    aws.upload_request("lab", "broken", b'{"label": "x", "dataset": ')

    small = aws.get_json("projects/lab/reports/too-small.json")
    broken = aws.get_json("projects/lab/reports/broken.json")
    assert [e["code"] for e in small["errors"]] == ["too_few_annotations"]
    assert [e["code"] for e in broken["errors"]] == ["invalid_request"]
    assert aws.keys("projects/lab/models/") == [] and aws.table_items() == [] and aws.jobs() == []


def test_uploads_outside_the_request_layout_are_ignored(with_dataset: Aws) -> None:
    aws = with_dataset
    aws.s3.put_object(Bucket=aws.bucket, Key="projects/lab/requests/nested/deeper.json", Body=b"{}")

    result = aws.deliver_object_created("projects/lab/requests/nested/deeper.json")

    assert result["ignored"] == "not a request key"
    assert aws.keys("projects/lab/reports/") == []
