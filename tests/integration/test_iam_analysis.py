"""Least privilege for the analyses' job state, GET routes and stop: every call of their life cycle
is granted by template.yaml and these are the actions in use; the grants reach no further than the
analysis prefixes they name, and stopping is bound to this stack's tag."""

from __future__ import annotations

import pytest

from segpipe_local.template import load_template
from tests.helpers.analysis_shards import config, put_progress, sample_images
from tests.helpers.iam import Access, Statement, actions_in_use, check_calls, decision, function_statements
from tests.integration.analysis_seed import artifacts, processing_event, seed_analysis
from tests.integration.conftest import ARNS, BUCKET, STACK, Aws, function_policies, template_refs

IMAGES = sample_images(3)
A = "/projects/lab/analyses"
OBJECT = f"{ARNS.bucket(BUCKET)}/projects/lab/analyses/1"

#: What the job-state events, the GET routes and stop of analyses were seen to need.
ACTIONS_IN_USE = {
    "ApiFunction": [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "s3:GetObject",
        "s3:ListBucket",
        "sagemaker:DescribeProcessingJob",
        "sagemaker:StopProcessingJob",
    ],
    "JobStateFunction": [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "sagemaker:DescribeProcessingJob",
    ],
}


def _job(number: int) -> str:
    return f"segpipe-lab-a{number}-0123abcd"


def _life_cycle(aws: Aws) -> None:
    # Given a completed analysis over two instances, a running one and one that fails without a message
    seed_analysis(aws, {"algo-1": IMAGES[:1], "algo-2": IMAGES[1:]}, analysis=1, job_name=_job(1))
    processing_event(aws, _job(1), "InProgress")
    processing_event(aws, _job(1), "Completed")
    seed_analysis(aws, {"algo-1": IMAGES}, analysis=2, job_name=_job(2), shards=False)
    aws.sagemaker.create_processing_job(
        ProcessingJobName=_job(2),
        ProcessingResources={
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.g5.xlarge", "VolumeSizeInGB": 30}
        },
        AppSpecification={"ImageUri": "image", "ContainerEntrypoint": ["analyze"]},
        RoleArn="arn:aws:iam::000000000000:role/segpipe-sagemaker",
        Tags=[{"Key": "segpipe:stack", "Value": STACK}],
    )
    processing_event(aws, _job(2), "InProgress")
    put_progress(artifacts(aws), config(analysis=2), "algo-1", 1, 3)
    seed_analysis(aws, {"algo-1": IMAGES}, analysis=3, job_name=_job(3), shards=False)
    processing_event(aws, _job(3), "Failed")  # no ExitMessage: DescribeProcessingJob is asked

    # When every GET route is read and the running analysis is stopped
    assert aws.api("GET", A)[0] == 200
    assert aws.api("GET", f"{A}/1")[0] == 200
    assert aws.api("GET", f"{A}/2")[0] == 200
    assert aws.api("GET", f"{A}/1/images")[0] == 200
    assert aws.api("GET", f"{A}/1/images/{IMAGES[0].stem}")[0] == 200
    assert aws.api("GET", f"{A}/1/images/absent")[0] == 404
    assert aws.api("POST", f"{A}/2/stop")[0] == 202
    seed_analysis(aws, {"algo-1": IMAGES}, analysis=4, job_name=_job(4), shards=False)
    assert aws.api("POST", f"{A}/4/stop")[1]["status"] == "stopped"  # its job never started
    processing_event(aws, _job(2), "Stopped")


def test_every_call_of_an_analysis_life_cycle_is_granted_and_the_actions_in_use_are_these(aws: Aws) -> None:
    _life_cycle(aws)

    found = actions_in_use(aws.recorder.calls, ARNS, aws.recorder.job_tags)
    findings = check_calls(aws.recorder.calls, function_policies(), ARNS, aws.recorder.job_tags)

    assert [str(finding) for finding in findings] == []
    assert found == ACTIONS_IN_USE


def _function(name: str) -> list[Statement]:
    return function_statements(load_template(), name, template_refs())


@pytest.mark.parametrize(
    ("key", "allowed"),
    [
        ("coco.json", True),
        ("objects.csv", True),
        ("images.csv", True),
        ("summary.json", True),
        ("shards/algo-1/coco.json", False),
        ("job/analyze.json", False),
        ("images/a.json", False),
        ("masks/a.tif", False),
        ("progress/algo-1.json", False),
    ],
)
def test_the_job_state_function_writes_only_the_merged_outputs(key: str, allowed: bool) -> None:
    verdict = decision(_function("JobStateFunction"), Access("s3:PutObject", f"{OBJECT}/{key}"))
    assert (verdict == "allowed") is allowed


@pytest.mark.parametrize(
    ("function", "key", "allowed"),
    [
        ("JobStateFunction", "shards/algo-1/objects.csv", True),
        ("JobStateFunction", "job/analyze.json", True),
        ("JobStateFunction", "images/a.json", False),
        ("ApiFunction", "coco.json", True),
        ("ApiFunction", "images/a.png", True),
        ("ApiFunction", "masks/a.tif", True),
        ("ApiFunction", "progress/algo-1.json", True),
        ("ApiFunction", "shards/algo-1/coco.json", False),
        ("ApiFunction", "job/analyze.json", False),
    ],
)
def test_reads_of_an_analysis_stay_within_what_each_function_shows(
    function: str, key: str, allowed: bool
) -> None:
    verdict = decision(_function(function), Access("s3:GetObject", f"{OBJECT}/{key}"))
    assert (verdict == "allowed") is allowed


@pytest.mark.parametrize(
    ("tags", "allowed"),
    [
        ({"aws:ResourceTag/segpipe:stack": STACK}, True),
        ({"aws:ResourceTag/segpipe:stack": "other"}, False),
        ({}, False),
    ],
)
def test_only_processing_jobs_tagged_with_this_stack_can_be_stopped(
    tags: dict[str, str], allowed: bool
) -> None:
    job = ARNS.processing_job(_job(2))
    for function in ("ApiFunction", "SubmitFunction", "JobStateFunction"):
        verdict = decision(_function(function), Access("sagemaker:StopProcessingJob", job, tags))
        assert (verdict == "allowed") is (allowed and function == "ApiFunction")
    foreign = ARNS.processing_job("someone-elses-job")
    assert (
        decision(_function("ApiFunction"), Access("sagemaker:StopProcessingJob", foreign, tags)) != "allowed"
    )


def test_processing_job_events_reach_the_job_state_function_filtered_on_this_stack() -> None:
    events = load_template()["Resources"]["JobStateFunction"]["Properties"]["Events"]
    rule = events["ProcessingJobStateChange"]["Properties"]

    assert rule["Pattern"]["source"] == ["aws.sagemaker"]
    assert rule["Pattern"]["detail-type"] == ["SageMaker Processing Job State Change"]
    assert set(rule["Pattern"]["detail"]["Tags"]) == {"segpipe:stack"}
    assert rule["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert rule["DeadLetterConfig"]["Type"] == "SQS"
