"""template.yaml's policies, judged with the IAM evaluator: nothing deletes, scans or touches
lifecycle and ACLs; a training writes only its outputs and checkpoints; stopping and creating jobs
is bound to this stack's tag; the execution role pulls one repository. And the dead-letter alarm
tells someone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from segpipe_local.template import load_template
from tests.helpers.iam import (
    FORBIDDEN_ACTIONS,
    Access,
    Statement,
    decision,
    evaluate,
    function_statements,
    granted_actions,
    role_statements,
)
from tests.integration.conftest import ACCOUNT, ARNS, BUCKET, REGION, ROLE, STACK, template_refs

FUNCTIONS = ("ApiFunction", "SubmitFunction", "JobStateFunction")
OBJECT = f"{ARNS.bucket(BUCKET)}/projects/lab"
JOB = ARNS.training_job("segpipe-lab-v3-0123abcd")
PROCESSING_JOB = ARNS.processing_job("segpipe-lab-a3-0123abcd")


def _function(name: str) -> list[Statement]:
    return function_statements(load_template(), name, template_refs())


def _training_role(**refs: str) -> list[Statement]:
    return role_statements(load_template(), "SageMakerExecutionRole", {**template_refs(), **refs})


@pytest.mark.parametrize("principal", [*FUNCTIONS, "SageMakerExecutionRole"])
def test_no_principal_may_delete_scan_or_touch_lifecycle_and_acls(principal: str) -> None:
    statements = _training_role() if principal == "SageMakerExecutionRole" else _function(principal)

    assert granted_actions(statements, FORBIDDEN_ACTIONS) == []


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_carry_only_inline_statements(function: str) -> None:
    """No SAM policy template (S3CrudPolicy, DynamoDBCrudPolicy...) nor managed policy: each
    function's grants are spelled out where a reviewer reads them."""
    policies = load_template()["Resources"][function]["Properties"]["Policies"]

    assert [sorted(entry) for entry in policies] == [["Statement"]]


@pytest.mark.parametrize(
    "key",
    [
        "models/1/predictions/test/img_00001.json",
        "models/1/predictions/index.json",
        "models/1/previews/img_00001.png",
        "models/1/metrics/test.json",
        "models/1/evaluation.json",
        "models/1/config.json",
        "models/1/model.json",
        "models/1/split/train.json",
        "datasets/cells/annotations.json",
        "datasets/cells/models/2/output/x",  # a dataset file name that looks like an output prefix
        "requests/nuclei.json",
        "reports/nuclei.json",
    ],
)
def test_a_training_cannot_write_what_submission_ingestion_or_users_stored(key: str) -> None:
    assert decision(_training_role(), Access("s3:PutObject", f"{OBJECT}/{key}")) != "allowed"


@pytest.mark.parametrize(
    "key",
    [
        "models/3/output/segpipe-lab-v3-0123abcd/output/model.tar.gz",
        "models/3/output/segpipe-lab-v3-0123abcd/output/output.tar.gz",
        "models/3/checkpoints/last.pt",
        "models/3/checkpoints/progress.json",
    ],
)
def test_a_training_writes_its_archives_and_checkpoints(key: str) -> None:
    assert decision(_training_role(), Access("s3:PutObject", f"{OBJECT}/{key}")) == "allowed"


@pytest.mark.parametrize(
    ("key", "readable"),
    [
        ("datasets/cells/annotations.json", True),
        ("datasets/cells/images/a.tif", True),
        ("models/3/split/train.json", True),
        ("models/1/output/segpipe-lab-v1-0123abcd/output/model.tar.gz", True),  # the base channel
        ("models/3/checkpoints/last.pt", True),  # resuming a spot job
        ("models/1/output/segpipe-lab-v1-0123abcd/output/output.tar.gz", False),
        ("models/1/predictions/test/img_00001.json", False),
        ("models/1/evaluation.json", False),
        ("requests/nuclei.json", False),
        ("reports/nuclei.json", False),
    ],
)
def test_a_training_reads_only_its_inputs(key: str, readable: bool) -> None:
    verdict = decision(_training_role(), Access("s3:GetObject", f"{OBJECT}/{key}"))

    assert (verdict == "allowed") is readable


@pytest.mark.parametrize(
    ("prefix", "listable"),
    [
        ("projects/lab/datasets/cells/", True),
        ("projects/lab/models/3/split/", True),
        ("projects/lab/models/3/checkpoints/", True),
        ("projects/lab/models/1/output/segpipe-lab-v1-0123abcd/output/model.tar.gz", True),
        ("projects/lab/requests/", False),
        ("projects/", False),
        (None, False),
    ],
)
def test_a_training_lists_only_its_channel_prefixes(prefix: str | None, listable: bool) -> None:
    context = {} if prefix is None else {"s3:prefix": prefix}
    verdict = decision(_training_role(), Access("s3:ListBucket", ARNS.bucket(BUCKET), context))

    assert (verdict == "allowed") is listable


@pytest.mark.parametrize(
    ("tags", "allowed"),
    [
        ({"aws:ResourceTag/segpipe:stack": STACK}, True),
        ({"aws:ResourceTag/segpipe:stack": "other"}, False),
        ({}, False),
    ],
)
def test_only_jobs_tagged_with_this_stack_can_be_stopped(tags: dict[str, str], allowed: bool) -> None:
    for function in FUNCTIONS:
        verdict = decision(_function(function), Access("sagemaker:StopTrainingJob", JOB, tags))
        assert (verdict == "allowed") is (allowed and function == "ApiFunction")


def _create(tags: dict[str, str]) -> dict[str, Any]:
    context: dict[str, Any] = {f"aws:RequestTag/{key}": value for key, value in tags.items()}
    context["aws:TagKeys"] = sorted(tags)
    return context


@dataclass(frozen=True)
class JobKind:
    create: str
    job: str
    foreign: str
    label: dict[str, str]  # the tag that names what the job is for


JOB_KINDS = {
    "training": JobKind(
        "sagemaker:CreateTrainingJob", JOB, ARNS.training_job("someone-elses-job"), {"segpipe:project": "lab"}
    ),
    "processing": JobKind(
        "sagemaker:CreateProcessingJob",
        PROCESSING_JOB,
        ARNS.processing_job("someone-elses-job"),
        {"segpipe:analysis": "3"},
    ),
}


@pytest.mark.parametrize("kind", list(JOB_KINDS))
@pytest.mark.parametrize("function", ["ApiFunction", "SubmitFunction"])
@pytest.mark.parametrize(
    ("stack", "labelled", "allowed"),
    [(STACK, True, True), ("other", True, False), (None, True, False), (STACK, False, False)],
    ids=["this-stack", "other-stack", "no-stack-tag", "no-label"],
)
def test_jobs_start_only_with_this_stacks_tag(
    kind: str, function: str, stack: str | None, labelled: bool, allowed: bool
) -> None:
    job = JOB_KINDS[kind]
    tags = ({"segpipe:stack": stack} if stack else {}) | (job.label if labelled else {"owner": "me"})
    statements = _function(function)
    for action in (job.create, "sagemaker:AddTags"):
        assert (decision(statements, Access(action, job.job, _create(tags))) == "allowed") is allowed
    assert decision(statements, Access(job.create, job.foreign, _create(tags))) != "allowed"
    assert decision(_function("JobStateFunction"), Access(job.create, job.job, _create(tags))) != "allowed"


@pytest.mark.parametrize("function", ["ApiFunction", "SubmitFunction"])
def test_the_execution_role_is_passed_to_sagemaker_only(function: str) -> None:
    statements = _function(function)

    assert decision(
        statements, Access("iam:PassRole", ROLE, {"iam:PassedToService": "sagemaker.amazonaws.com"})
    ) == ("allowed")
    assert (
        decision(statements, Access("iam:PassRole", ROLE, {"iam:PassedToService": "ec2.amazonaws.com"}))
        != "allowed"
    )
    other = f"arn:aws:iam::{ACCOUNT}:role/admin"
    assert decision(
        statements, Access("iam:PassRole", other, {"iam:PassedToService": "sagemaker.amazonaws.com"})
    ) != ("allowed")


@pytest.mark.parametrize(
    "uri",
    [
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/segpipe-trainer:0.1.0",
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/segpipe-trainer@sha256:{'ab' * 32}",
    ],
)
def test_the_execution_role_pulls_only_the_training_image_repository(uri: str) -> None:
    statements = _training_role(TrainingImageUri=uri)
    repository = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/"

    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
        assert decision(statements, Access(action, repository + "segpipe-trainer")) == "allowed"
        assert decision(statements, Access(action, repository + "another-repository")) != "allowed"
        assert decision(statements, Access(action, repository + "segpipe-trainer-old")) != "allowed"


@pytest.mark.parametrize(
    ("uri", "valid"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/segpipe-trainer:latest", True),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/segpipe-trainer:0.1.0", True),
        (f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/segpipe-trainer@sha256:{'0' * 64}", True),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/segpipe-trainer:1", False),
        ("docker.io/library/python:3.11", False),
        ("segpipe-trainer:local", False),
    ],
)
def test_the_image_parameter_takes_only_uris_the_repository_can_be_derived_from(
    uri: str, valid: bool
) -> None:
    pattern = load_template()["Parameters"]["TrainingImageUri"]["AllowedPattern"]

    assert (re.fullmatch(pattern, uri) is not None) is valid


@pytest.mark.parametrize(
    ("function", "key"),
    [
        ("JobStateFunction", "models/1/split/train.json"),
        ("JobStateFunction", "datasets/cells/annotations.json"),
        ("JobStateFunction", "requests/nuclei.json"),
        ("ApiFunction", "models/1/predictions/test/img_00001.json"),
        ("ApiFunction", "datasets/cells/annotations.json"),
        ("SubmitFunction", "models/1/evaluation.json"),
        ("SubmitFunction", "requests/nuclei.json"),
    ],
)
def test_functions_write_only_what_they_own(function: str, key: str) -> None:
    assert decision(_function(function), Access("s3:PutObject", f"{OBJECT}/{key}")) != "allowed"


# --- the dead-letter alarm tells someone ----------------------------------------------------------


def _condition(name: str, email: str) -> bool:
    template = load_template()
    raw = template["Conditions"][name]
    return _truth(raw, {**template_refs(), "AlarmEmail": email})


def _truth(value: Any, refs: dict[str, str]) -> bool:
    name, arg = value.name, value.value
    if name == "Not":
        return not _truth(arg[0], refs)
    if name == "Equals":
        left, right = (evaluate(item, refs) for item in arg)
        return bool(left == right)
    raise KeyError(name)


def test_the_dead_letter_alarm_notifies_the_alarm_topic() -> None:
    resources = load_template()["Resources"]
    actions = evaluate(
        resources["DeadLetterAlarm"]["Properties"]["AlarmActions"], {"AlarmTopic": "topic-arn"}
    )

    assert actions == ["topic-arn"]
    assert resources["AlarmTopic"]["Type"] == "AWS::SNS::Topic"


@pytest.mark.parametrize(("email", "subscribed"), [("ops@example.org", True), ("", False)])
def test_an_email_subscription_exists_only_when_an_address_is_given(email: str, subscribed: bool) -> None:
    template = load_template()
    subscription = template["Resources"]["AlarmEmailSubscription"]
    refs = {**template_refs(), "AlarmEmail": email, "AlarmTopic": "topic-arn"}

    assert _condition(subscription["Condition"], email) is subscribed
    assert evaluate(subscription["Properties"], refs) == {
        "TopicArn": "topic-arn",
        "Protocol": "email",
        "Endpoint": email,
    }
    pattern = template["Parameters"]["AlarmEmail"]["AllowedPattern"]
    assert re.fullmatch(pattern, email)
    assert not re.fullmatch(pattern, "not an address")


# --- checkov's skips are justified where they are made ----------------------------------------------


def test_every_skipped_checkov_check_says_why() -> None:
    skips = [
        (name, skip)
        for name, body in load_template()["Resources"].items()
        for skip in ((body.get("Metadata") or {}).get("checkov") or {}).get("skip", [])
    ]

    assert skips, "template.yaml skips no checkov check: drop this test or the Makefile's comment"
    for name, skip in skips:
        assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), (name, skip)
        assert len(skip.get("comment", "").split()) >= 8, f"{name} skips {skip['id']} without a reason"


@pytest.mark.parametrize(
    ("function", "key", "allowed"),
    [
        ("SubmitFunction", "requests/nuclei.json", True),
        ("SubmitFunction", "datasets/cells/annotations.json", False),
        ("ApiFunction", "requests/nuclei.json", False),
        ("JobStateFunction", "requests/nuclei.json", False),
    ],
)
def test_only_uploaded_requests_are_read_at_a_version(function: str, key: str, allowed: bool) -> None:
    verdict = decision(_function(function), Access("s3:GetObjectVersion", f"{OBJECT}/{key}"))

    assert (verdict == "allowed") is allowed


# --- analyses: processing jobs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "readable"),
    [
        ("images/plate-1/a.tif", True),
        ("images/plate-1/day 2/b.png", True),
        ("analyses/3/job/analyze.json", True),
        ("models/1/output/segpipe-lab-v1-0123abcd/output/model.tar.gz", True),
        ("analyses/3/coco.json", False),
        ("analysis-requests/run.json", False),
        ("analysis-reports/run.json", False),
    ],
)
def test_an_analysis_reads_only_its_inputs(key: str, readable: bool) -> None:
    verdict = decision(_training_role(), Access("s3:GetObject", f"{OBJECT}/{key}"))

    assert (verdict == "allowed") is readable


@pytest.mark.parametrize(
    ("key", "writable"),
    [
        ("analyses/3/shards/algo-1/coco.json", True),
        ("analyses/3/images/well-1.json", True),
        ("analyses/3/masks/well-1.tif", True),
        ("analyses/3/progress/algo-1.json", True),
        ("analyses/3/job/analyze.json", False),  # what the job was told to do stays as it was
        ("analyses/3/coco.json", False),  # merged by the job-state Lambda
        ("analyses/3/summary.json", False),
        ("images/plate-1/a.tif", False),
        ("analysis-requests/run.json", False),
        ("analysis-reports/run.json", False),
    ],
)
def test_an_analysis_writes_only_its_shards_images_masks_and_progress(key: str, writable: bool) -> None:
    verdict = decision(_training_role(), Access("s3:PutObject", f"{OBJECT}/{key}"))

    assert (verdict == "allowed") is writable


@pytest.mark.parametrize(
    ("prefix", "listable"),
    [
        ("projects/lab/images/plate-1/", True),
        ("projects/lab/analyses/3/job/", True),
        ("projects/lab/analyses/3/", False),
        ("projects/lab/analysis-requests/", False),
    ],
)
def test_an_analysis_lists_only_its_input_prefixes(prefix: str, listable: bool) -> None:
    verdict = decision(_training_role(), Access("s3:ListBucket", ARNS.bucket(BUCKET), {"s3:prefix": prefix}))

    assert (verdict == "allowed") is listable


@pytest.mark.parametrize(
    ("function", "key", "allowed"),
    [
        ("ApiFunction", "analyses/3/job/analyze.json", True),
        ("SubmitFunction", "analyses/3/job/analyze.json", True),
        ("SubmitFunction", "analysis-reports/run.json", True),
        ("ApiFunction", "analysis-reports/run.json", False),
        ("ApiFunction", "analyses/3/coco.json", False),
        ("SubmitFunction", "analyses/3/shards/algo-1/coco.json", False),
        ("ApiFunction", "images/plate-1/a.tif", False),
        ("SubmitFunction", "analysis-requests/run.json", False),
    ],
)
def test_submitting_an_analysis_writes_only_its_config_and_report(
    function: str, key: str, allowed: bool
) -> None:
    verdict = decision(_function(function), Access("s3:PutObject", f"{OBJECT}/{key}"))

    assert (verdict == "allowed") is allowed


def test_only_the_s3_function_reads_analysis_requests_at_a_version() -> None:
    key = f"{OBJECT}/analysis-requests/run.json"
    assert decision(_function("SubmitFunction"), Access("s3:GetObjectVersion", key)) == "allowed"
    assert decision(_function("ApiFunction"), Access("s3:GetObjectVersion", key)) != "allowed"


def test_uploads_to_analysis_requests_trigger_the_submit_function() -> None:
    from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel  # noqa: F401

    event = load_template()["Resources"]["SubmitFunction"]["Properties"]["Events"]["RequestUploaded"]
    keys = event["Properties"]["Pattern"]["detail"]["object"]["key"]
    assert {"wildcard": "projects/*/analysis-requests/*.json"} in keys
    assert event["Properties"]["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert "DeadLetterConfig" in event["Properties"]
