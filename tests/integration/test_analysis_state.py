"""Processing-job events through the real job-state handler under moto: merge, summary, failures."""

from __future__ import annotations

import json

from segpipe.dal.analyses import DynamoAnalysisRegistry
from segpipe.models import keys
from segpipe.models.analysis import OUTPUT_NAMES, AnalysisStatus
from tests.helpers.analysis_shards import sample_images
from tests.integration.analysis_seed import JOB, processing_event, seed_analysis
from tests.integration.conftest import Aws

IMAGES = sample_images(5)
START, END = 1795660000000, 1795660600000


def _stored(aws: Aws):  # type: ignore[no-untyped-def]
    item = DynamoAnalysisRegistry(aws.dynamodb, aws.table).get_analysis("lab", 1)
    assert item is not None
    return item


def test_events_in_any_order_complete_the_analysis_with_its_merged_outputs(aws: Aws) -> None:
    seed_analysis(aws, {"algo-1": IMAGES[:3], "algo-2": IMAGES[3:]})

    for status in ("Completed", "InProgress", "Completed", "InProgress"):
        processing_event(aws, JOB, status, ProcessingStartTime=START, ProcessingEndTime=END)

    item = _stored(aws)
    assert item.status is AnalysisStatus.COMPLETED
    assert [change.status for change in item.status_history] == ["running", "completed"]
    assert item.summary is not None and item.summary.images == len(IMAGES)
    assert item.summary.hosts == ["algo-1", "algo-2"]
    for name in OUTPUT_NAMES:
        aws.s3.head_object(Bucket=aws.bucket, Key=keys.analysis_output_key("lab", 1, name))
    coco = json.loads(
        aws.s3.get_object(Bucket=aws.bucket, Key=keys.analysis_output_key("lab", 1, "coco.json"))[
            "Body"
        ].read()
    )
    assert [image["file_name"] for image in coco["images"]] == sorted(i.file_name for i in IMAGES)


def test_a_completed_job_without_shards_fails_with_a_reason_and_is_not_retried(aws: Aws) -> None:
    seed_analysis(aws, {"algo-1": IMAGES}, shards=False)

    answer = processing_event(aws, JOB, "Completed", ProcessingEndTime=END)

    item = _stored(aws)
    assert answer["after"] == "failed" and answer["note"] == "analysis_shard_missing"
    assert item.status is AnalysisStatus.FAILED
    assert item.failure_reason is not None and "no instance wrote results" in item.failure_reason


def test_a_failed_job_keeps_the_containers_message(aws: Aws) -> None:
    seed_analysis(aws, {"algo-1": IMAGES})
    sentence = "Image 'sub 0/img-02.tif' could not be read: not a TIFF file."

    processing_event(aws, JOB, "Failed", FailureReason="AlgorithmError: exit 1", ExitMessage=sentence)

    assert _stored(aws).failure_reason == sentence


def test_a_failed_event_without_a_message_is_completed_from_describe(aws: Aws) -> None:
    seed_analysis(aws, {"algo-1": IMAGES})

    # moto has no such processing job: DescribeProcessingJob answers "not found", the event's reason stays
    processing_event(aws, JOB, "Failed", FailureReason="CapacityError: no ml.g5.xlarge capacity")

    assert _stored(aws).failure_reason == "CapacityError: no ml.g5.xlarge capacity"


def test_events_of_unknown_jobs_and_other_stacks_change_nothing(aws: Aws) -> None:
    seed_analysis(aws, {"algo-1": IMAGES})

    unknown = processing_event(aws, "segpipe-lab-a9-ffffffff", "Completed")
    other = processing_event(aws, JOB, "Completed", Tags={"segpipe:stack": "someone-else"})

    assert unknown["note"] == "no analysis has this job" and not unknown["applied"]
    assert other["note"] == "another stack's job"
    assert _stored(aws).status is AnalysisStatus.QUEUED


def test_training_events_still_reach_the_training_path(aws: Aws) -> None:
    answer = aws.job_event("segpipe-lab-v1-abcdef12", "InProgress")

    assert answer["note"] == "no version has this job"
