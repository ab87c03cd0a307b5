"""The SageMaker adapter's answers to SageMaker's refusals, with botocore's Stubber (no network)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from segpipe.dal.sagemaker import SageMakerTrainingJobs
from segpipe.errors import VersionNotRunning


def _client() -> object:
    return boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def test_stopping_a_job_that_was_never_created_is_not_running_even_when_iam_denies_the_stop() -> None:
    # Given a job that does not exist, whose stop IAM refuses (the grant is conditioned on the
    # stack tag, which a missing job cannot carry)
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error("stop_training_job", service_error_code="AccessDeniedException")
        stub.add_client_error(
            "describe_training_job", service_error_code="ValidationException", service_message="not found"
        )
        # When it is stopped / Then the version is reported as not running, not as a server error
        with pytest.raises(VersionNotRunning):
            SageMakerTrainingJobs(client).stop("segpipe-lab-v1-abc")  # type: ignore[arg-type]
        stub.assert_no_pending_responses()


def test_a_denied_stop_of_a_job_that_exists_is_raised() -> None:
    # Given a job that exists but whose stop is denied (not this stack's job)
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error("stop_training_job", service_error_code="AccessDeniedException")
        stub.add_response(
            "describe_training_job",
            {
                "TrainingJobName": "segpipe-lab-v1-abc",
                "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/segpipe-lab-v1-abc",
                "TrainingJobStatus": "InProgress",
                "SecondaryStatus": "Training",
                "AlgorithmSpecification": {"TrainingInputMode": "File", "TrainingImage": "img"},
                "ResourceConfig": {"InstanceCount": 1, "VolumeSizeInGB": 50, "InstanceType": "ml.g5.xlarge"},
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
                "CreationTime": "2026-01-01T00:00:00Z",
                "ModelArtifacts": {"S3ModelArtifacts": "s3://b/k"},
            },
        )
        # When it is stopped / Then the refusal is not hidden as "not running"
        with pytest.raises(ClientError) as raised:
            SageMakerTrainingJobs(client).stop("segpipe-lab-v1-abc")  # type: ignore[arg-type]
        assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
