"""Least privilege, measured: every AWS call the real handlers make in a full life cycle (submit over
HTTP and by upload, ingest a completed and a broken job, review, threshold, activate, analyse over
HTTP and by upload, continue from a base, stop) must be granted by template.yaml's policy for that
function, and each function uses exactly the actions listed here.

The `aws` fixture applies the same check to every integration test (tests/integration/conftest.py)
and writes what the whole suite used to tests/artifacts/iam-actions-*.json.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from segpipe.models import keys
from tests.helpers.analysis_inputs import analysis_body, put_images
from tests.helpers.datasets import DatasetBuilder
from tests.helpers.iam import Access, Call, UnmappedCall, accesses, actions_in_use, check_calls, decision
from tests.helpers.outputs import evaluation, output_archive, prediction
from tests.integration.conftest import (
    ARNS,
    BUCKET,
    STACK,
    Aws,
    function_policies,
    request_body,
    upload_dataset,
)

#: What each function that reads and writes the registry and the data bucket needs.
_REGISTRY_AND_BUCKET = [
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",  # listings, and the compute guard counting the project's running trainings
    "dynamodb:UpdateItem",
    "s3:GetObject",
    "s3:ListBucket",
    "s3:PutObject",
]
#: What starting a training or an analysis needs: the API and the submit function both start them.
_STARTS_JOBS = [
    "iam:PassRole",
    "sagemaker:AddTags",
    "sagemaker:CreateProcessingJob",
    "sagemaker:CreateTrainingJob",
    "sagemaker:DescribeProcessingJob",  # an analysis retried with its Idempotency-Key, or delivered again
]

#: The actions each function was seen to need in the life cycle below.
ACTIONS_IN_USE = {
    "ApiFunction": sorted([*_REGISTRY_AND_BUCKET, *_STARTS_JOBS, "sagemaker:StopTrainingJob"]),
    "JobStateFunction": _REGISTRY_AND_BUCKET,
    "SubmitFunction": sorted([*_REGISTRY_AND_BUCKET, *_STARTS_JOBS, "sagemaker:DescribeTrainingJob"]),
}


def _stop_accepted(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
    """moto does not implement StopTrainingJob: answer as SageMaker does (200, empty body)."""
    return AWSResponse("https://api.sagemaker.test", 200, {}, None), {}


def _put_outputs(aws: Aws, version: int, job: str) -> None:
    predictions = [prediction(f"img_{n:05d}.png", "test", ["nucleus"], count=3) for n in (1, 2)]
    predictions += [prediction(f"img_{n:05d}.png", "train", ["nucleus"], count=3) for n in (3, 4)]
    archive = output_archive(evaluation(["nucleus"]), predictions)
    key = keys.job_output_key("lab", version, job, "output.tar.gz")
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=archive)


def _life_cycle(aws: Aws) -> None:
    from segpipe.handlers import runtime

    runtime._client("sagemaker").meta.events.register("before-call.sagemaker.StopTrainingJob", _stop_accepted)
    builder = DatasetBuilder(classes=["nucleus"], seed=11)
    builder.add_images(16, objects={"nucleus": 4})
    upload_dataset(aws, builder)

    # Given a dataset, a preview and a submission over HTTP, and one by upload (delivered twice)
    assert aws.api("POST", "/projects/lab/trainings/preview", body=request_body())[0] == 200
    status, first = aws.api("POST", "/projects/lab/trainings", body=request_body())
    assert status == 202
    uploaded = aws.upload_request("lab", "nuclei", body=_json(request_body(label="by upload")))
    again = aws.deliver_object_created("projects/lab/requests/nuclei.json")
    assert again["outcome"]["job_name"] == uploaded["outcome"]["job_name"]

    # When the first job completes with outputs and the second completes without any
    _put_outputs(aws, 1, first["job_name"])
    aws.job_event(first["job_name"], "InProgress")
    aws.job_event(first["job_name"], "Completed")
    aws.job_event(uploaded["outcome"]["job_name"], "Completed")

    # Then the results are reviewed, thresholded and activated over HTTP
    assert aws.api("GET", "/projects/lab/models")[0] == 200
    assert aws.api("GET", "/projects/lab/models", query="active=true")[0] == 200
    assert aws.api("GET", "/projects/lab/models/1")[1]["status"] == "completed"
    assert aws.api("GET", "/projects/lab/models/2")[1]["status"] == "failed"
    assert aws.api("GET", "/projects/lab/models/1/metrics", query="sweep=true")[0] == 200
    code, page = aws.api("GET", "/projects/lab/models/1/predictions", query="split=test")
    assert code == 200 and page["images"]
    assert aws.api("GET", page["images"][0]["predictions_url"])[0] == 200
    assert aws.api("PUT", "/projects/lab/models/1/threshold", body={"threshold": 0.6})[0] == 200
    assert aws.api("PUT", "/projects/lab/models/1/threshold", body={"threshold": {"nucleus": 0.5}})[0] == 200
    assert aws.api("POST", "/projects/lab/models/1/activate")[0] == 200

    # And the active version analyses a folder of images over HTTP (retried) and by upload (twice)
    put_images(aws, "plate-1")
    assert aws.api("POST", "/projects/lab/analyses/preview", body=analysis_body())[0] == 200
    retry = {"idempotency-key": "analysis-1"}
    assert aws.api("POST", "/projects/lab/analyses", body=analysis_body(), headers=retry)[0] == 202
    assert aws.api("POST", "/projects/lab/analyses", body=analysis_body(), headers=retry)[0] == 202
    analysis_key = keys.analysis_request_key("lab", "plate-one")
    aws.s3.put_object(Bucket=aws.bucket, Key=analysis_key, Body=_json(analysis_body()))
    assert aws.deliver_object_created(analysis_key)["analysis"]["analysis"] == 2
    assert aws.deliver_object_created(analysis_key)["analysis"]["repeated"] is True
    assert aws.api("POST", "/projects/lab/models/1/deactivate")[0] == 200

    # And a training continued from version 1 is watched while it runs, then stopped
    status, third = aws.api("POST", "/projects/lab/trainings", body=request_body(label="more", base=1))
    assert status == 202
    aws.job_event(third["job_name"], "InProgress")
    assert aws.api("GET", "/projects/lab/models/3")[1]["status"] == "training"
    assert aws.api("POST", "/projects/lab/models/3/stop")[0] in {200, 202}


def _json(body: dict[str, Any]) -> str:
    import json

    return json.dumps(body)


def test_every_call_of_a_life_cycle_is_granted_and_the_actions_in_use_are_these(aws: Aws) -> None:
    _life_cycle(aws)

    found = actions_in_use(aws.recorder.calls, ARNS, aws.recorder.job_tags)
    findings = check_calls(aws.recorder.calls, function_policies(), ARNS, aws.recorder.job_tags)

    print("IAM actions in use, per function:")
    for function, actions in found.items():
        print(f"  {function}: {', '.join(actions)}")
    assert [str(finding) for finding in findings] == []
    assert found == ACTIONS_IN_USE


def test_the_life_cycle_touches_every_prefix_it_should(aws: Aws) -> None:
    """The recording is only as good as the calls it sees: make sure the scenario reaches the
    not-found paths (404 needs s3:ListBucket) and the job's base channel."""
    _life_cycle(aws)

    seen = {
        (call.function, str(access))
        for call in aws.recorder.calls
        for access in accesses(call, ARNS, aws.recorder.job_tags)
    }
    bucket = ARNS.bucket(BUCKET)
    assert ("JobStateFunction", f"s3:ListBucket on {bucket}") in seen  # output.tar.gz missing
    assert ("ApiFunction", f"s3:ListBucket on {bucket}") in seen  # progress.json not written yet
    assert any(function == "ApiFunction" and "/previews/" in text for function, text in seen)  # presigns
    created = [call for call in aws.recorder.calls if call.operation == "CreateTrainingJob"]
    channels = {channel["ChannelName"] for call in created for channel in call.params["InputDataConfig"]}
    assert channels == {"dataset", "split", "base"}
    assert any(function == "ApiFunction" and "/images/plate-1/" in text for function, text in seen)  # headers
    assert any(function == "SubmitFunction" and "/analysis-reports/" in text for function, text in seen)
    assert any(
        function == "ApiFunction" and "/analyses/1/job/analyze.json" in text for function, text in seen
    )


def test_a_call_the_template_does_not_grant_is_reported() -> None:
    policies = function_policies()
    delete = Call("JobStateFunction", "s3", "DeleteObject", {"Bucket": BUCKET, "Key": "projects/lab/x"})
    foreign = Call(
        "ApiFunction", "sagemaker", "StopTrainingJob", {"TrainingJobName": "segpipe-lab-v1-0000abcd"}
    )
    other_stack = {"segpipe-lab-v1-0000abcd": {"segpipe:stack": "someone-else"}}

    findings = check_calls([delete, foreign], policies, ARNS, other_stack)

    assert [(f.function, f.access.action, f.verdict) for f in findings] == [
        ("JobStateFunction", "s3:DeleteObject", "implicit"),
        ("ApiFunction", "sagemaker:StopTrainingJob", "implicit"),
    ]
    own = {"segpipe-lab-v1-0000abcd": {"segpipe:stack": STACK}}
    assert check_calls([foreign], policies, ARNS, own) == []


def test_an_unknown_call_fails_loudly_instead_of_passing() -> None:
    with pytest.raises(UnmappedCall):
        accesses(Call("ApiFunction", "s3", "PutBucketLifecycleConfiguration", {"Bucket": BUCKET}), ARNS)
    with pytest.raises(UnmappedCall):
        accesses(Call("ApiFunction", "sns", "Publish", {}), ARNS)


def test_a_read_at_a_version_needs_get_object_version() -> None:
    """The backend reads uploaded requests at the event's version: the Submit function may."""
    key = "projects/lab/requests/nuclei.json"
    call = Call("SubmitFunction", "s3", "GetObject", {"Bucket": BUCKET, "Key": key, "VersionId": "v1"})

    (access,) = accesses(call, ARNS)

    assert access == Access("s3:GetObjectVersion", f"{ARNS.bucket(BUCKET)}/{key}")
    assert decision(function_policies()["SubmitFunction"], access) == "allowed"
    assert decision(function_policies()["ApiFunction"], access) == "implicit"
