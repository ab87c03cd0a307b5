"""The analyses' GET routes and stop, through the real API handler under moto, on analyses moved
by the real job-state handler."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

from segpipe.dal.analyses import DynamoAnalysisRegistry
from segpipe.dal.dynamodb import DynamoModelRegistry
from segpipe.models.analysis import OUTPUT_NAMES, AnalysisStatus
from tests.helpers.analysis_shards import CLASSES, NOW, config, put_progress, sample_images
from tests.helpers.versions import model_version
from tests.integration.analysis_seed import artifacts, processing_event, seed_analysis
from tests.integration.conftest import STACK, Aws

IMAGES = sample_images(5)
A = "/projects/lab/analyses"


def _job(number: int) -> str:
    return f"segpipe-lab-a{number}-0123abcd"


def _create_job(aws: Aws, name: str) -> None:
    """A processing job in moto, tagged like submit tags it (moto accepts any request shape)."""
    aws.sagemaker.create_processing_job(
        ProcessingJobName=name,
        ProcessingResources={
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.g5.xlarge", "VolumeSizeInGB": 30}
        },
        AppSpecification={"ImageUri": "image", "ContainerEntrypoint": ["analyze"]},
        RoleArn="arn:aws:iam::000000000000:role/segpipe-sagemaker",
        Tags=[{"Key": "segpipe:stack", "Value": STACK}],
    )


@pytest.fixture
def seeded(aws: Aws) -> Aws:
    """Analysis 1 completed over two instances, 2 running with progress, 3 queued."""
    seed_analysis(aws, {"algo-1": IMAGES[:2], "algo-2": IMAGES[2:]}, analysis=1, job_name=_job(1))
    processing_event(aws, _job(1), "InProgress")
    processing_event(aws, _job(1), "Completed")
    seed_analysis(
        aws, {"algo-1": IMAGES[:3], "algo-2": IMAGES[3:]}, analysis=2, job_name=_job(2), shards=False
    )
    _create_job(aws, _job(2))
    processing_event(aws, _job(2), "InProgress")
    put_progress(artifacts(aws), config(analysis=2), "algo-1", 2, 3)
    put_progress(artifacts(aws), config(analysis=2), "algo-2", 1, 2)
    seed_analysis(aws, {"algo-1": IMAGES}, analysis=3, job_name=_job(3), shards=False)
    return aws


def _get(aws: Aws, path: str, query: str = "") -> tuple[int, Any]:
    return aws.api("GET", path, query=query)


def test_the_table_lists_analyses_newest_first_with_progress_and_counts(seeded: Aws) -> None:
    status, table = _get(seeded, A)

    assert status == 200 and table["project"] == "lab"
    rows = {row["analysis"]: row for row in table["analyses"]}
    assert [row["analysis"] for row in table["analyses"]] == [3, 2, 1]
    assert (rows[3]["status"], rows[3]["images_done"]) == ("queued", None)
    assert (rows[2]["status"], rows[2]["images_done"], rows[2]["images"]) == ("running", 3, 5)
    expected = {name: sum(1 for i in IMAGES for o in i.objects if o.category == name) for name in CLASSES}
    assert rows[1]["status"] == "completed" and rows[1]["objects"] == expected
    assert rows[1]["images_done"] == 5 and rows[1]["thresholds"] == {"nucleus": 0.5, "mitotic cell": 0.3}


def test_an_analysis_shows_its_thresholds_counts_and_output_links_once_completed(seeded: Aws) -> None:
    status, view = _get(seeded, f"{A}/1")

    assert status == 200
    assert view["version"] == 2 and view["classes"] == CLASSES and view["pixel_size"] == 0.5
    assert view["summary"]["hosts"] == ["algo-1", "algo-2"]
    assert set(view["outputs"]) == set(OUTPUT_NAMES)
    for name, url in view["outputs"].items():
        assert urllib.parse.urlparse(url).path.endswith(f"/projects/lab/analyses/1/{name}")
        assert "Signature" in url
    running = _get(seeded, f"{A}/2")[1]
    assert running["outputs"] == {} and running["images_done"] == 3 and running["summary"] is None


BAD_PATHS = [
    (f"{A}/9", 404, "analysis_not_found"),
    (f"{A}/0", 422, "invalid_request"),
    (f"{A}/first", 422, "invalid_request"),
    (f"{A}/9/images", 404, "analysis_not_found"),
    (f"{A}/2/images", 409, "analysis_not_completed"),
    (f"{A}/3/images/sub_0__img-00", 409, "analysis_not_completed"),
    (f"{A}/1/images/nothing", 404, "object_not_found"),
    (f"{A}/1/images/.hidden", 422, "invalid_request"),
    (f"{A}/1/images/%2E%2E", 422, "invalid_request"),
]


def test_bad_paths_answer_stable_codes(seeded: Aws) -> None:
    answers = [(path, *_answer(seeded, path)) for path, *_ in BAD_PATHS]

    assert answers == BAD_PATHS


def _answer(aws: Aws, path: str) -> tuple[int, str]:
    status, body = _get(aws, path)
    return status, body["error"]["code"]


def test_the_analysed_images_are_paged_in_file_name_order_with_their_counts(seeded: Aws) -> None:
    status, page = _get(seeded, f"{A}/1/images")
    assert status == 200 and page["total"] == len(IMAGES)
    names = [image["file_name"] for image in page["images"]]
    assert names == sorted(i.file_name for i in IMAGES)
    by_name = {i.file_name: i for i in IMAGES}
    for entry in page["images"]:
        image = by_name[entry["file_name"]]
        assert entry["objects"] == len(image.objects) and entry["stem"] == image.stem
        assert entry["counts"] == {n: sum(1 for o in image.objects if o.category == n) for n in CLASSES}
        assert entry["objects_url"] == f"{A}/1/images/{image.stem}"
        assert urllib.parse.urlparse(entry["preview_url"]).path.endswith(f"/images/{image.stem}.png")
        assert urllib.parse.urlparse(entry["mask_url"]).path.endswith(f"/masks/{image.stem}.tif")

    second = _get(seeded, f"{A}/1/images", query="offset=2&limit=2")[1]
    assert [image["file_name"] for image in second["images"]] == names[2:4]


def test_an_analysed_image_has_its_objects_in_the_viewers_shape(seeded: Aws) -> None:
    image = next(i for i in IMAGES if len(i.objects) >= 2)

    status, body = _get(seeded, f"{A}/1/images/{image.stem}")

    assert status == 200
    assert body["file_name"] == image.file_name and len(body["objects"]) == len(image.objects)
    assert {o["label"] for o in body["objects"]} == {o.label for o in image.objects}
    assert all(o["category"] in CLASSES and o["segmentation"] for o in body["objects"])
    assert urllib.parse.urlparse(body["preview_url"]).path.endswith(f"/images/{image.stem}.png")
    assert "Signature" in body["mask_url"]


def test_a_running_analysis_is_stopped_then_ends_stopped(seeded: Aws) -> None:
    status, view = seeded.api("POST", f"{A}/2/stop")

    assert status == 202 and view["analysis"] == 2
    assert (
        seeded.sagemaker.describe_processing_job(ProcessingJobName=_job(2))["ProcessingJobStatus"]
        == "Stopped"
    )
    item = DynamoAnalysisRegistry(seeded.dynamodb, seeded.table).get_analysis("lab", 2)
    assert item is not None and item.stop_requested and item.status is AnalysisStatus.RUNNING

    processing_event(seeded, _job(2), "Stopped")

    assert _get(seeded, f"{A}/2")[1]["status"] == "stopped"
    again, body = seeded.api("POST", f"{A}/2/stop")
    assert (again, body["error"]["code"]) == (409, "analysis_not_running")


def test_a_queued_analysis_without_a_job_is_stopped_at_once(seeded: Aws) -> None:
    status, view = seeded.api("POST", f"{A}/3/stop")

    assert (status, view["status"]) == (202, "stopped")
    assert view["status_history"][-1]["reason"] == "Stopped before its processing job started."


def test_an_ended_or_unknown_analysis_cannot_be_stopped(seeded: Aws) -> None:
    assert seeded.api("POST", f"{A}/1/stop")[1]["error"]["code"] == "analysis_not_running"
    assert seeded.api("POST", f"{A}/9/stop")[0] == 404
    assert seeded.api("POST", f"{A}/1/stop", body="{}", headers={"content-type": "text/xml"})[0] == 415


def test_a_threshold_changed_after_an_analysis_leaves_it_unchanged(seeded: Aws) -> None:
    # Given the analysed version (2), completed, and analysis 1 done with its thresholds
    DynamoModelRegistry(seeded.dynamodb, seeded.table).create_version(
        model_version(
            2, label="l", classes=CLASSES, job_name="segpipe-lab-v2-x", analysis_threshold=0.5, at=NOW
        )
    )
    registry = DynamoAnalysisRegistry(seeded.dynamodb, seeded.table)
    before_item = registry.get_analysis("lab", 1)
    prefix = "projects/lab/analyses/1/"
    before_objects = {key: _bytes(seeded, key) for key in seeded.keys(prefix)}
    before_view = _get(seeded, f"{A}/1")[1]

    # When the version's threshold is locked anew
    status, version = seeded.api("PUT", "/projects/lab/models/2/threshold", body={"threshold": 0.9})
    assert status == 200 and version["analysis_threshold"] == 0.9

    # Then the analysis's item, outputs and view are as they were
    assert registry.get_analysis("lab", 1) == before_item
    assert {key: _bytes(seeded, key) for key in seeded.keys(prefix)} == before_objects
    after_view = _get(seeded, f"{A}/1")[1]
    assert after_view["thresholds"] == before_view["thresholds"] == {"nucleus": 0.5, "mitotic cell": 0.3}
    assert after_view["summary"] == before_view["summary"]


def _bytes(aws: Aws, key: str) -> bytes:
    data: bytes = aws.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read()
    return data
