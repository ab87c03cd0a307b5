"""Job-state events through the real handler under moto, and the results read back over HTTP."""

from __future__ import annotations

import random

import pytest

from segpipe.models import keys
from tests.helpers.datasets import DatasetBuilder
from tests.helpers.outputs import evaluation, output_archive, prediction
from tests.integration.conftest import Aws, request_body, upload_dataset


@pytest.fixture
def submitted(aws: Aws) -> tuple[Aws, str]:
    builder = DatasetBuilder(classes=["nucleus"], seed=5)
    builder.add_images(16, objects={"nucleus": 4})
    upload_dataset(aws, builder)
    status, body = aws.api("POST", "/projects/lab/trainings", body=request_body())
    assert status == 202
    return aws, body["job_name"]


def _put_outputs(aws: Aws, job: str) -> None:
    predictions = [prediction(f"img_{n:05d}.png", "test", ["nucleus"], count=5) for n in (1, 2)]
    predictions += [prediction(f"img_{n:05d}.png", "train", ["nucleus"], count=4) for n in range(3, 9)]
    archive = output_archive(evaluation(["nucleus"]), predictions)
    aws.s3.put_object(
        Bucket=aws.bucket, Key=keys.job_output_key("lab", 1, job, "output.tar.gz"), Body=archive
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_and_repeated_events_end_completed(submitted: tuple[Aws, str], seed: int) -> None:
    aws, job = submitted
    _put_outputs(aws, job)
    events = ["InProgress", "InProgress", "Completed", "Completed", "InProgress"]
    random.Random(seed).shuffle(events)

    for status in events:
        aws.job_event(job, status, TrainingStartTime=1795660000000, TrainingEndTime=1795660600000)

    code, version = aws.api("GET", "/projects/lab/models/1")
    assert code == 200
    assert version["status"] == "completed"
    history = [change["status"] for change in version["status_history"]]
    assert history[0] == "queued" and history[-1] == "completed"
    assert len(history) == len(set(history))  # each status recorded once, never backwards


def test_a_completed_job_can_be_reviewed_thresholded_and_activated(submitted: tuple[Aws, str]) -> None:
    aws, job = submitted
    _put_outputs(aws, job)
    aws.job_event(job, "InProgress")
    aws.job_event(job, "Completed")

    _, version = aws.api("GET", "/projects/lab/models/1")
    assert version["analysis_threshold"] == version["suggested_threshold"] == 0.45
    assert version["headline"]["split"] == "test" and version["headline"]["f1"] == pytest.approx(0.9)
    assert version["model_artifact"].endswith(f"/{job}/output/model.tar.gz")

    code, metrics = aws.api("GET", "/projects/lab/models/1/metrics", query="sweep=true")
    assert code == 200
    assert metrics["threshold"] == 0.45
    assert metrics["test"]["at"]["overall"]["f1"] == pytest.approx(0.9)
    assert len(metrics["test"]["sweep"]) == 19 and metrics["train"]["images"] == 8
    higher = aws.api("GET", "/projects/lab/models/1/metrics", query="threshold=0.8")[1]
    assert higher["test"]["at"]["threshold"] == 0.8
    assert (
        higher["test"]["at"]["overall"]["predicted_objects"]
        < metrics["test"]["at"]["overall"]["predicted_objects"]
    )

    code, page = aws.api("GET", "/projects/lab/models/1/predictions", query="split=test")
    assert code == 200 and page["total"] == 2
    first = page["images"][0]
    assert first["file_name"] == "img_00001.png" and first["objects"] == 5
    assert "X-Amz-Signature" in first["preview_url"] or "Signature" in first["preview_url"]
    code, objects = aws.api("GET", first["predictions_url"])
    assert code == 200 and len(objects["objects"]) == 5 and objects["objects"][0]["category"] == "nucleus"
    assert aws.api("GET", "/projects/lab/models/1/predictions", query="split=train")[1]["total"] == 6

    code, updated = aws.api("PUT", "/projects/lab/models/1/threshold", body={"threshold": 0.6})
    assert code == 200 and updated["analysis_threshold"] == 0.6
    assert aws.api("GET", "/projects/lab/models/1/metrics")[1]["threshold"] == 0.6

    code, active = aws.api("POST", "/projects/lab/models/1/activate")
    assert code == 200 and active["active"] is True
    assert [
        m["version"] for m in aws.api("GET", "/projects/lab/models", query="active=true")[1]["models"]
    ] == [1]
    aws.api("POST", "/projects/lab/models/1/deactivate")
    assert aws.api("GET", "/projects/lab/models", query="active=true")[1]["models"] == []

    # A late InProgress event after completion changes nothing.
    aws.job_event(job, "InProgress")
    assert aws.api("GET", "/projects/lab/models/1")[1]["status"] == "completed"


def test_a_failed_job_shows_its_reason(submitted: tuple[Aws, str]) -> None:
    aws, job = submitted
    aws.job_event(job, "InProgress")

    aws.job_event(job, "Failed", FailureReason="AlgorithmError: Image 'img_00003.png' could not be read")
    aws.job_event(job, "Completed")  # a confused late event cannot resurrect it

    _, version = aws.api("GET", "/projects/lab/models/1")
    assert version["status"] == "failed"
    assert version["failure_reason"] == "AlgorithmError: Image 'img_00003.png' could not be read"
    code, error = aws.api("GET", "/projects/lab/models/1/metrics")
    assert code == 409 and error["error"]["code"] == "version_not_completed"


def test_versions_that_are_not_completed_refuse_review_actions(submitted: tuple[Aws, str]) -> None:
    aws, _ = submitted

    activate = aws.api("POST", "/projects/lab/models/1/activate")
    threshold = aws.api("PUT", "/projects/lab/models/1/threshold", body={"threshold": 0.5})
    missing = aws.api("GET", "/projects/lab/models/7")

    assert activate[0] == 409 and activate[1]["error"]["code"] == "version_not_completed"
    assert threshold[0] == 409
    assert missing[0] == 404 and missing[1]["error"]["code"] == "version_not_found"


def test_events_of_other_stacks_jobs_are_ignored(submitted: tuple[Aws, str]) -> None:
    aws, _ = submitted

    result = aws.job_event("someone-elses-job", "Completed")

    assert result["applied"] is False and result["note"] == "no version has this job"


def test_the_bootstrap_intervals_and_the_selection_reach_the_api(submitted: tuple[Aws, str]) -> None:
    # Given a job whose evaluation carries bootstrap intervals and says how its choices were made
    from segpipe.models.trainer_io import Bootstrap, Interval, Selection, ThresholdIntervals

    aws, job = submitted
    result = evaluation(["nucleus"])
    result.selection = Selection(
        method="refit",
        validation_images=["img_00003.png"],
        validation_groups=1,
        epochs_from="validation",
        chosen_epoch=7,
        final_images=8,
        final_epochs=7,
        threshold_from="validation",
        summary="Chosen on 1 held-out training image, then refit on all 8.",
    )
    result.intervals = Bootstrap(
        split="test",
        draws=1000,
        seed=0,
        confidence=0.95,
        images=2,
        headline=ThresholdIntervals(
            threshold=0.45, metrics={"f1": Interval(estimate=0.9, low=0.81, high=0.97)}
        ),
    )
    predictions = [prediction(f"img_{n:05d}.png", "test", ["nucleus"], count=5) for n in (1, 2)]
    archive = output_archive(result, predictions)
    aws.s3.put_object(
        Bucket=aws.bucket, Key=keys.job_output_key("lab", 1, job, "output.tar.gz"), Body=archive
    )

    # When it completes
    aws.job_event(job, "Completed")

    # Then the statistics show the interval beside the figure, and how the threshold was chosen
    code, metrics = aws.api("GET", "/projects/lab/models/1/metrics")
    assert code == 200
    assert metrics["intervals"]["headline"]["metrics"]["f1"] == {"estimate": 0.9, "low": 0.81, "high": 0.97}
    assert metrics["intervals"]["draws"] == 1000
    assert (
        metrics["selection"]["method"] == "refit" and metrics["selection"]["threshold_from"] == "validation"
    )
