"""Submitting analyses through the real handlers (HTTP and S3 upload) under moto: one analysis and one
processing job per request, reports with stable codes, and nothing written when a request is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from segpipe.models import keys
from segpipe.models.common import VersionStatus
from tests.helpers.analysis_inputs import analysis_body, png, put_images, seed_version
from tests.integration.conftest import Aws


@pytest.fixture
def lab(aws: Aws) -> Aws:
    """Project `lab` with one completed, active version and three images under `images/plate-1/`."""
    seed_version(aws)
    put_images(aws)
    return aws


@pytest.fixture
def processing_jobs(aws: Aws) -> list[dict[str, Any]]:
    """The CreateProcessingJob requests the handlers send (moto keeps too little of them)."""
    from segpipe.handlers import runtime

    created: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        created.append(json.loads(json.dumps(params, default=str)))

    runtime._client("sagemaker").meta.events.register(
        "provide-client-params.sagemaker.CreateProcessingJob", capture
    )
    return created


def analysis_items(aws: Aws) -> list[dict[str, Any]]:
    """The analyses (not their counter or request claims)."""
    return [item for item in aws.table_items() if item["sk"]["S"].startswith("ANALYSIS#")]


def analysis_traces(aws: Aws) -> list[dict[str, Any]]:
    """Analyses, request claims and the analysis counter."""
    return [item for item in aws.table_items() if item["sk"]["S"].startswith("ANALYSIS")]


def jobs(aws: Aws) -> list[str]:
    summaries = aws.sagemaker.list_processing_jobs()["ProcessingJobSummaries"]
    return sorted(job["ProcessingJobName"] for job in summaries)


def nothing_written(aws: Aws) -> None:
    assert analysis_traces(aws) == []  # no item, no claim, no counter
    assert aws.keys("projects/lab/analyses/") == []
    assert jobs(aws) == []


# --- HTTP ----------------------------------------------------------------------------------------


def test_http_submit_creates_the_analysis_its_config_and_one_job(
    lab: Aws, processing_jobs: list[dict[str, Any]]
) -> None:
    status, body = lab.api(
        "POST", "/projects/lab/analyses", body=analysis_body(thresholds={"mitosis": 0.8}, pixel_size=0.25)
    )

    assert status == 202, body
    assert (body["analysis"], body["status"], body["repeated"]) == (1, "queued", False)
    assert body["report"]["ok"] and body["report"]["analysis"] == 1
    assert body["report"]["details"]["threshold_sources"] == {"nucleus": "locked", "mitosis": "request"}
    config = lab.get_json(keys.analysis_config_key("lab", 1))
    assert config["thresholds"] == {"nucleus": 0.5, "mitosis": 0.8} and config["image_count"] == 3
    assert config["pixel_size"] == 0.25 and config["images_folder"] == "plate-1"
    assert jobs(lab) == [body["job_name"]]
    (job,) = processing_jobs
    assert job["AppSpecification"]["ContainerEntrypoint"] == ["analyze"]
    assert {item["InputName"]: item["S3Input"]["S3Uri"] for item in job["ProcessingInputs"]} == {
        "model": f"s3://{lab.bucket}/projects/lab/models/1/output/segpipe-lab-v1-seeded0/output/model.tar.gz",
        "images": f"s3://{lab.bucket}/projects/lab/images/plate-1/",
        "config": f"s3://{lab.bucket}/projects/lab/analyses/1/job/",
    }
    assert {tag["Key"] for tag in job["Tags"]} == {
        "segpipe:stack", "segpipe:project", "segpipe:analysis", "segpipe:version",
    }  # fmt: skip
    (item,) = analysis_items(lab)
    assert item["status"] == {"S": "queued"} and item["job_name"] == {"S": body["job_name"]}


def test_an_http_retry_with_the_same_idempotency_key_gets_the_same_analysis_and_one_job(lab: Aws) -> None:
    headers = {"idempotency-key": "retry-1"}
    first = lab.api("POST", "/projects/lab/analyses", body=analysis_body(), headers=headers)
    again = lab.api("POST", "/projects/lab/analyses", body=analysis_body(), headers=headers)

    assert first[0] == again[0] == 202
    assert again[1]["analysis"] == first[1]["analysis"] == 1 and again[1]["repeated"] is True
    assert jobs(lab) == [first[1]["job_name"]]
    assert len(analysis_items(lab)) == 1

    status, reused = lab.api(
        "POST", "/projects/lab/analyses", body=analysis_body(name="other"), headers=headers
    )
    assert status == 409 and reused["error"]["code"] == "idempotency_key_reused"
    assert lab.api("POST", "/projects/lab/analyses", body=analysis_body())[1]["analysis"] == 2


def test_preview_reports_without_side_effects(lab: Aws) -> None:
    status, report = lab.api("POST", "/projects/lab/analyses/preview", body=analysis_body())

    assert status == 200 and report["ok"] is True and report["analysis"] is None
    assert report["details"]["images"] == 3 and report["details"]["estimate"]["hours"] > 0
    nothing_written(lab)


def test_a_permanent_refusal_leaves_the_analysis_failed_with_the_reason(lab: Aws) -> None:
    from botocore.exceptions import ClientError

    from segpipe.handlers import runtime

    def refuse(**_: Any) -> None:
        error = {"Error": {"Code": "ResourceLimitExceeded", "Message": "no ml.g5.xlarge left for processing"}}
        raise ClientError(error, "CreateProcessingJob")  # type: ignore[arg-type]

    runtime._client("sagemaker").meta.events.register("before-call.sagemaker.CreateProcessingJob", refuse)

    status, body = lab.api("POST", "/projects/lab/analyses", body=analysis_body())

    assert status == 202 and body["status"] == "failed"
    (item,) = analysis_items(lab)
    assert item["status"] == {"S": "failed"}
    assert "no ml.g5.xlarge left" in item["failure_reason"]["S"]


# --- S3 uploads ------------------------------------------------------------------------------------


def upload(aws: Aws, name: str, body: bytes | str) -> dict[str, Any]:
    key = keys.analysis_request_key("lab", name)
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=body)
    return aws.deliver_object_created(key)


def test_an_uploaded_request_writes_its_report_then_starts_the_analysis(lab: Aws) -> None:
    result = upload(lab, "plate-one", json.dumps(analysis_body()))

    assert result["report_key"] == "projects/lab/analysis-reports/plate-one.json"
    report = lab.get_json("projects/lab/analysis-reports/plate-one.json")
    assert report["ok"] is True and report["analysis"] == 1
    assert result["analysis"]["job_name"] == report["job_name"]
    assert jobs(lab) == [report["job_name"]]


def test_the_same_s3_event_twice_gives_one_analysis_and_one_job(lab: Aws) -> None:
    first = upload(lab, "plate-one", json.dumps(analysis_body()))
    again = lab.deliver_object_created(keys.analysis_request_key("lab", "plate-one"))

    assert again["analysis"]["analysis"] == first["analysis"]["analysis"] == 1
    assert again["analysis"]["repeated"] is True
    assert jobs(lab) == [first["analysis"]["job_name"]]


BAD_UPLOADS: list[tuple[bytes | str, str]] = [
    (b"{not json", "invalid_request"),
    (json.dumps({"name": "x"}), "invalid_request"),
    (json.dumps(analysis_body(images="../datasets/cells")), "invalid_request"),
    (json.dumps(analysis_body(images="plate-404")), "no_images"),
    (json.dumps(analysis_body(version=9)), "unknown_version"),
]


def test_uploaded_requests_with_errors_get_a_report_and_nothing_else(lab: Aws) -> None:
    for index, (body, code) in enumerate(BAD_UPLOADS):
        upload(lab, f"bad-{index}", body)

        report = lab.get_json(f"projects/lab/analysis-reports/bad-{index}.json")
        assert report["ok"] is False and [issue["code"] for issue in report["errors"]] == [code], body
    nothing_written(lab)


def test_a_training_request_upload_still_goes_to_the_training_path(lab: Aws) -> None:
    lab.s3.put_object(Bucket=lab.bucket, Key="projects/lab/requests/t.json", Body=b"{}")
    answer = lab.deliver_object_created("projects/lab/requests/t.json")
    assert answer["report_key"] == "projects/lab/reports/t.json" and answer["analysis"] is None
    nothing_written(lab)


# --- bad input over HTTP: a stable 4xx, never a 500, nothing written -----------------------------------


MALFORMED: list[tuple[str, int, str]] = [
    ("{not json", 400, "malformed_json"),
    ("[]", 422, "invalid_request"),
    (json.dumps({"images": "plate-1"}), 422, "invalid_request"),
    (json.dumps(analysis_body(images="../datasets/cells")), 422, "invalid_request"),
    (json.dumps(analysis_body(images="plate-1/../../x")), 422, "invalid_request"),
    (json.dumps(analysis_body(images="plate 1")), 422, "invalid_request"),
    (json.dumps(analysis_body(images="plate-1\n")), 422, "invalid_request"),
    (json.dumps(analysis_body(images="p/" * 9 + "p")), 422, "invalid_request"),
    (json.dumps(analysis_body(images="x" * 129)), 422, "invalid_request"),
    (json.dumps(analysis_body(thresholds={"nucleus": 2})), 422, "invalid_request"),
    (json.dumps(analysis_body(compute={"instance_count": 0})), 422, "invalid_request"),
    (json.dumps(analysis_body(extra=1)), 422, "invalid_request"),
]


def test_malformed_bodies_get_a_clear_4xx(lab: Aws) -> None:
    for body, status, code in MALFORMED:
        for path in ("/projects/lab/analyses", "/projects/lab/analyses/preview"):
            answer = lab.api("POST", path, body=body, headers={"content-type": "application/json"})
            assert answer[0] == status, (body, answer)
            assert answer[1]["error"]["code"] == code
    nothing_written(lab)


def _report_codes(answer: tuple[int, Any]) -> list[str]:
    status, body = answer
    assert status == 422, body
    assert body["error"]["code"] == "validation_failed"
    return [issue["code"] for issue in body["report"]["errors"]]


def test_a_version_that_is_not_active_is_refused(aws: Aws) -> None:
    seed_version(aws, 1, active=False)
    put_images(aws)
    assert _report_codes(aws.api("POST", "/projects/lab/analyses", body=analysis_body(version=1))) == [
        "version_not_active"
    ]
    assert _report_codes(aws.api("POST", "/projects/lab/analyses", body=analysis_body())) == [
        "no_active_version"
    ]
    nothing_written(aws)


def test_a_version_that_is_not_completed_is_refused(aws: Aws) -> None:
    put_images(aws)
    statuses = [VersionStatus.QUEUED, VersionStatus.TRAINING, VersionStatus.FAILED, VersionStatus.STOPPED]
    for number, status in enumerate(statuses, start=1):
        seed_version(aws, number, status=status, active=False)
        body = analysis_body(version=number)
        codes = _report_codes(aws.api("POST", "/projects/lab/analyses", body=body))
        assert codes == ["version_not_usable", "version_not_active"], status
    nothing_written(aws)


def test_an_empty_or_missing_folder_is_refused_and_names_the_prefix(lab: Aws) -> None:
    lab.s3.put_object(Bucket=lab.bucket, Key="projects/lab/images/empty/", Body=b"")  # a console "folder"
    lab.s3.put_object(Bucket=lab.bucket, Key="projects/lab/images/notes/readme.txt", Body=b"hi")
    for folder in ("empty", "missing", "notes"):
        status, body = lab.api("POST", "/projects/lab/analyses", body=analysis_body(images=folder))
        assert status == 422 and [issue["code"] for issue in body["report"]["errors"]] == ["no_images"]
        assert body["report"]["errors"][0]["context"]["prefix"] == f"projects/lab/images/{folder}/"
    nothing_written(lab)


def test_images_of_another_channel_count_are_refused(lab: Aws) -> None:
    lab.s3.put_object(Bucket=lab.bucket, Key="projects/lab/images/rgb/a.png", Body=png(mode="RGB"))
    codes = _report_codes(lab.api("POST", "/projects/lab/analyses", body=analysis_body(images="rgb")))
    assert codes == ["channels_differ"]
    nothing_written(lab)


def test_odd_project_names_are_refused_before_any_key_is_built(lab: Aws) -> None:
    for project in ("..", "a%2Fb", "x" * 200):
        status, body = lab.api("POST", f"/projects/{project}/analyses", body=analysis_body())
        assert status in {404, 422} and body["error"]["code"] in {"route_not_found", "invalid_request"}
    nothing_written(lab)


# --- thresholds per class ---------------------------------------------------------------------------


def test_per_class_thresholds_are_locked_shown_and_frozen_by_an_analysis(lab: Aws) -> None:
    status, version = lab.api("PUT", "/projects/lab/models/1/threshold", body={"threshold": {"mitosis": 0.7}})
    assert status == 200, version
    assert version["analysis_thresholds"] == {"nucleus": 0.5, "mitosis": 0.7}
    assert version["analysis_threshold"] is None  # the classes no longer share one
    table = lab.api("GET", "/projects/lab/models")[1]
    assert table["models"][0]["analysis_thresholds"] == {"nucleus": 0.5, "mitosis": 0.7}

    accepted = lab.api("POST", "/projects/lab/analyses", body=analysis_body())[1]
    assert accepted["report"]["details"]["thresholds"] == {"nucleus": 0.5, "mitosis": 0.7}

    # A later lock (one value, as older clients send it) changes the version, not the analysis
    status, version = lab.api("PUT", "/projects/lab/models/1/threshold", body={"threshold": 0.3})
    assert status == 200 and version["analysis_threshold"] == 0.3
    assert version["analysis_thresholds"] == {"nucleus": 0.3, "mitosis": 0.3}
    assert lab.get_json(keys.analysis_config_key("lab", 1))["thresholds"] == {"nucleus": 0.5, "mitosis": 0.7}
    (item,) = [i for i in analysis_items(lab) if i["sk"]["S"] == "ANALYSIS#000001"]
    assert item["thresholds"]["M"] == {"nucleus": {"N": "0.5"}, "mitosis": {"N": "0.7"}}


def test_thresholds_of_classes_the_version_lacks_or_out_of_range_are_refused(lab: Aws) -> None:
    refused: list[tuple[Any, int, str]] = [
        ({"threshold": {"cytoplasm": 0.3}}, 400, "unknown_class"),
        ({"threshold": {}}, 422, "invalid_request"),
        ({"threshold": {"nucleus": 1.5}}, 422, "invalid_request"),
        ({"threshold": "high"}, 422, "invalid_request"),
    ]
    for body, status, code in refused:
        answer = lab.api("PUT", "/projects/lab/models/1/threshold", body=body)
        assert answer[0] == status and answer[1]["error"]["code"] == code, body
    version = lab.api("GET", "/projects/lab/models/1")[1]
    assert version["analysis_threshold"] == 0.5 and version["analysis_thresholds"] == {}
