"""The SageMaker adapter's answers to SageMaker's refusals, with botocore's Stubber (no network)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from segpipe.dal.sagemaker import SageMakerProcessingJobs, SageMakerTrainingJobs
from segpipe.errors import AnalysisNotRunning, JobRefused, ServiceUnavailable, VersionNotRunning
from segpipe.models.processing import CreateProcessingJob


def _client() -> object:
    return boto3.client(
        "sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


@pytest.mark.parametrize(
    ("adapter", "kind", "job", "not_running", "message"),
    [
        (SageMakerTrainingJobs, "training", "segpipe-lab-v1-abc", VersionNotRunning, "not found"),
        (SageMakerProcessingJobs, "processing", "segpipe-lab-a1-0123abcd", AnalysisNotRunning, ""),
    ],
    ids=["training", "processing"],
)
def test_stopping_a_job_that_was_never_created_is_not_running_even_when_iam_denies_the_stop(
    adapter: type[SageMakerTrainingJobs | SageMakerProcessingJobs],
    kind: str,
    job: str,
    not_running: type[Exception],
    message: str,
) -> None:
    # Given a job that does not exist, whose stop IAM refuses (the grant is conditioned on the
    # stack tag, which a missing job cannot carry)
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error(f"stop_{kind}_job", service_error_code="AccessDeniedException")
        stub.add_client_error(
            f"describe_{kind}_job", service_error_code="ValidationException", service_message=message
        )
        # When it is stopped / Then the version (the analysis) is reported as not running, not as a
        # server error
        with pytest.raises(not_running):
            adapter(client).stop(job)  # type: ignore[arg-type]
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


_ARN = "arn:aws:sagemaker:us-east-1:123456789012:processing-job/segpipe-lab-a1-0123abcd"
_CLUSTER = {"InstanceCount": 1, "InstanceType": "ml.g5.xlarge", "VolumeSizeInGB": 30}


# --- processing jobs (analyses): the same classification of SageMaker's answers --------------------


def _processing_request() -> CreateProcessingJob:
    return CreateProcessingJob.model_validate(
        {
            "ProcessingJobName": "segpipe-lab-a1-0123abcd",
            "ProcessingInputs": [
                {
                    "InputName": "config",
                    "S3Input": {"S3Uri": "s3://b/k/", "LocalPath": "/opt/ml/x"},
                }
            ],
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": "shards",
                        "S3Output": {"S3Uri": "s3://b/o/", "LocalPath": "/opt/ml/o"},
                    }
                ]
            },
            "ProcessingResources": {"ClusterConfig": _CLUSTER},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            "AppSpecification": {"ImageUri": "img", "ContainerEntrypoint": ["analyze"]},
            "RoleArn": "arn:aws:iam::123456789012:role/r",
        }
    )


@pytest.mark.parametrize(
    ("aws_code", "raised"),
    [
        ("ValidationException", JobRefused),
        ("ResourceLimitExceeded", JobRefused),
        ("AccessDeniedException", JobRefused),
        ("ThrottlingException", ServiceUnavailable),
        ("InternalFailure", ServiceUnavailable),
    ],
)
def test_a_refused_processing_job_is_classified_like_a_training_job(
    aws_code: str, raised: type[Exception]
) -> None:
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error("create_processing_job", service_error_code=aws_code, service_message="no")
        with pytest.raises(raised) as error:
            SageMakerProcessingJobs(client).create(_processing_request())  # type: ignore[arg-type]
    assert error.value.context["aws_code"] == aws_code  # type: ignore[attr-defined]


def test_a_processing_job_that_exists_already_is_a_repeated_submission() -> None:
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error("create_processing_job", service_error_code="ResourceInUse")
        stub.add_response("create_processing_job", {"ProcessingJobArn": _ARN})
        jobs = SageMakerProcessingJobs(client)  # type: ignore[arg-type]
        assert jobs.create(_processing_request()) is False
        assert jobs.create(_processing_request()) is True


def test_a_processing_job_is_described_or_missing() -> None:
    client = _client()
    with Stubber(client) as stub:
        stub.add_response(
            "describe_processing_job",
            {
                "ProcessingJobName": "segpipe-lab-a1-0123abcd",
                "ProcessingJobArn": _ARN,
                "ProcessingJobStatus": "Failed",
                "ExitMessage": "image a.tif is corrupt",
                "ProcessingResources": {"ClusterConfig": _CLUSTER},
                "AppSpecification": {"ImageUri": "img"},
                "CreationTime": "2026-01-01T00:00:00Z",
            },
        )
        stub.add_client_error("describe_processing_job", service_error_code="ValidationException")
        jobs = SageMakerProcessingJobs(client)  # type: ignore[arg-type]
        described = jobs.describe("segpipe-lab-a1-0123abcd")
        assert described is not None and described.ProcessingJobStatus == "Failed"
        assert described.ExitMessage == "image a.tif is corrupt"
        assert jobs.describe("segpipe-lab-a2-0123abcd") is None
