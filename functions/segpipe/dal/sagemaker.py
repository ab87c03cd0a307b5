"""SageMaker training and processing jobs through plain boto3 (the sagemaker SDK is operator tooling only).

The same adapter talks to the local stack's job runner: it speaks SageMaker's API on a local
endpoint, chosen by configuration (`AWS_ENDPOINT_URL_SAGEMAKER`), not by code paths here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from botocore.exceptions import ClientError

from segpipe.errors import (
    AnalysisNotRunning,
    JobRefused,
    SegpipeError,
    ServiceUnavailable,
    VersionNotRunning,
)
from segpipe.models.jobs import CreateTrainingJob, JobDescription
from segpipe.models.processing import CreateProcessingJob, ProcessingJobDescription

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

_Request = TypeVar("_Request", CreateTrainingJob, CreateProcessingJob)
_Description = TypeVar("_Description", JobDescription, ProcessingJobDescription)

#: Refusals that no retry will change.
_PERMANENT = {"ValidationException", "ResourceLimitExceeded", "AccessDeniedException", "AccessDenied"}


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", error))


#: Answers that mean "no such job" (or one that has ended, for a stop).
_NOT_FOUND = {"ValidationException", "ResourceNotFound"}
_DENIED = {"AccessDeniedException", "AccessDenied"}


def _created(error: ClientError, *, kind: str, job_name: str) -> bool:
    """What a failed Create*Job call means: False for a job of that name that already exists (the
    same deterministic name: a repeated submission); a typed error for everything else."""
    if _code(error) == "ResourceInUse":
        return False
    if _code(error) in _PERMANENT:
        raise JobRefused(
            f"SageMaker refused the {kind} job: {_message(error)}", job_name=job_name, aws_code=_code(error)
        ) from error
    raise ServiceUnavailable(
        f"SageMaker did not answer: {_message(error)}; retry the same request.", aws_code=_code(error)
    ) from error


def _stop_found_nothing(error: ClientError, exists: Callable[[], bool]) -> bool:
    """Whether a refused Stop*Job call means the job has ended or never existed. Stop is granted
    only on jobs tagged with this stack, so a job that was never created answers AccessDenied;
    Describe tells the two apart."""
    return _code(error) in _NOT_FOUND or (_code(error) in _DENIED and not exists())


class _SageMakerJobs(Generic[_Request, _Description]):
    """One kind of SageMaker job through its Create, Stop and Describe calls. SageMaker names them
    after the kind (`create_training_job`, `TrainingJobName`; `stop_processing_job`,
    `ProcessingJobName`), so the kind's name picks the calls; the answers are read the same way."""

    def __init__(
        self,
        client: SageMakerClient,
        *,
        kind: Literal["training", "processing"],
        description: type[_Description],
        not_running: type[SegpipeError],
    ) -> None:
        self._sm = client
        self._kind = kind
        self._name = f"{kind.capitalize()}JobName"
        self._description: type[_Description] = description
        self._not_running = not_running

    def _call(self, verb: str, **params: Any) -> Any:
        return getattr(self._sm, f"{verb}_{self._kind}_job")(**params)

    def create(self, request: _Request) -> bool:
        params: Any = request.model_dump(exclude_none=True)
        try:
            self._call("create", **params)
        except ClientError as error:
            return _created(error, kind=self._kind, job_name=params[self._name])
        return True

    def stop(self, job_name: str) -> None:
        try:
            self._call("stop", **{self._name: job_name})
        except ClientError as error:
            if _stop_found_nothing(error, lambda: self.describe(job_name) is not None):
                raise self._not_running(
                    f"The {self._kind} job has already ended or does not exist.", job_name=job_name
                ) from error
            raise

    def describe(self, job_name: str) -> _Description | None:
        try:
            answer = self._call("describe", **{self._name: job_name})
        except ClientError as error:
            if _code(error) in _NOT_FOUND:
                return None
            raise
        return self._description.model_validate(answer)


class SageMakerTrainingJobs(_SageMakerJobs[CreateTrainingJob, JobDescription]):
    """`TrainingJobs`: the trainings' SageMaker training jobs."""

    def __init__(self, client: SageMakerClient) -> None:
        super().__init__(client, kind="training", description=JobDescription, not_running=VersionNotRunning)


class SageMakerProcessingJobs(_SageMakerJobs[CreateProcessingJob, ProcessingJobDescription]):
    """`ProcessingJobs`: the analyses' SageMaker Processing jobs."""

    def __init__(self, client: SageMakerClient) -> None:
        super().__init__(
            client, kind="processing", description=ProcessingJobDescription, not_running=AnalysisNotRunning
        )
