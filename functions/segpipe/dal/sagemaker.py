"""SageMaker training jobs through plain boto3 (the sagemaker SDK is operator tooling only).

The same adapter talks to the local stack's job runner: it speaks SageMaker's API on a local
endpoint, chosen by configuration (`AWS_ENDPOINT_URL_SAGEMAKER`), not by code paths here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from segpipe.errors import JobRefused, ServiceUnavailable, VersionNotRunning
from segpipe.models.jobs import CreateTrainingJob, JobDescription

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient


#: Refusals that no retry will change.
_PERMANENT = {"ValidationException", "ResourceLimitExceeded", "AccessDeniedException", "AccessDenied"}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", error))


class SageMakerTrainingJobs:
    def __init__(self, client: SageMakerClient) -> None:
        self._sm = client

    def create(self, request: CreateTrainingJob) -> bool:
        params: Any = request.model_dump(exclude_none=True)
        try:
            self._sm.create_training_job(**params)
        except ClientError as error:
            if _code(error) == "ResourceInUse":
                return False  # the same deterministic name: this job was already started
            if _code(error) in _PERMANENT:
                raise JobRefused(
                    f"SageMaker refused the training job: {_message(error)}",
                    job_name=request.TrainingJobName,
                    aws_code=_code(error),
                ) from error
            raise ServiceUnavailable(
                f"SageMaker did not answer: {_message(error)}; retry the same request.", aws_code=_code(error)
            ) from error
        return True

    def stop(self, job_name: str) -> None:
        try:
            self._sm.stop_training_job(TrainingJobName=job_name)
        except ClientError as error:
            # StopTrainingJob is granted only on jobs tagged with this stack, so a job that was
            # never created answers AccessDenied; DescribeTrainingJob tells the two apart.
            gone = _code(error) in {"ValidationException", "ResourceNotFound"} or (
                _code(error) in {"AccessDeniedException", "AccessDenied"} and self.describe(job_name) is None
            )
            if gone:
                raise VersionNotRunning(
                    "The training job has already ended or does not exist.", job_name=job_name
                ) from error
            raise

    def describe(self, job_name: str) -> JobDescription | None:
        try:
            answer: Any = self._sm.describe_training_job(TrainingJobName=job_name)
        except ClientError as error:
            if _code(error) in {"ValidationException", "ResourceNotFound"}:
                return None
            raise
        return JobDescription.model_validate(answer)
