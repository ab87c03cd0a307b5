"""SageMaker Processing-job shapes: the CreateProcessingJob request an analysis sends and the
state-change events (and DescribeProcessingJob answers) read back. Field names are SageMaker's own."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from segpipe.models.contract import Contract
from segpipe.models.jobs import (
    JobDescriptionFields,
    JobStatus,
    JobTime,
    SageMakerEvent,
    TagSpec,
    job_name_rule,
)

#: Where the container finds its inputs and leaves its outputs (SageMaker Processing's layout).
PROCESSING_ROOT = "/opt/ml/processing"
MODEL_INPUT = f"{PROCESSING_ROOT}/input/model"
IMAGES_INPUT = f"{PROCESSING_ROOT}/input/images"
CONFIG_INPUT = f"{PROCESSING_ROOT}/input/config"
#: Per-instance results (`{host}/coco.json`, ...), merged into one set when the job completes.
SHARDS_OUTPUT = f"{PROCESSING_ROOT}/output/shards"
#: Per-image files (`{stem}.json` objects, `{stem}.png` previews); their names cannot collide across
#: instances, since stems are unique in a request.
IMAGES_OUTPUT = f"{PROCESSING_ROOT}/output/images"
#: `{stem}.tif` label images (DESIGN.md: `analyses/{n}/masks/{stem}.tif`).
MASKS_OUTPUT = f"{PROCESSING_ROOT}/output/masks"
#: `{host}.json` progress files, uploaded continuously while the job runs.
PROGRESS_OUTPUT = f"{PROCESSING_ROOT}/output/progress"


class _Sm(Contract):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ProcessingS3Input(_Sm):
    S3Uri: str
    LocalPath: str
    S3DataType: Literal["S3Prefix", "ManifestFile"] = "S3Prefix"
    S3InputMode: Literal["File", "Pipe"] = "File"
    S3DataDistributionType: Literal["FullyReplicated", "ShardedByS3Key"] = "FullyReplicated"
    S3CompressionType: Literal["None", "Gzip"] = "None"


class ProcessingInput(_Sm):
    InputName: str
    S3Input: ProcessingS3Input
    AppManaged: bool = False


class ProcessingS3Output(_Sm):
    S3Uri: str
    LocalPath: str
    S3UploadMode: Literal["Continuous", "EndOfJob"] = "EndOfJob"


class ProcessingOutput(_Sm):
    OutputName: str
    S3Output: ProcessingS3Output
    AppManaged: bool = False


class ProcessingOutputConfig(_Sm):
    Outputs: list[ProcessingOutput]
    KmsKeyId: str | None = None


class ClusterConfig(_Sm):
    InstanceCount: int = Field(ge=1, le=100)
    InstanceType: str
    VolumeSizeInGB: int = Field(ge=1, le=16384)


class ProcessingResources(_Sm):
    ClusterConfig: ClusterConfig


class ProcessingStoppingCondition(_Sm):
    MaxRuntimeInSeconds: int = Field(ge=1, le=777600)


class AppSpecification(_Sm):
    ImageUri: str
    ContainerEntrypoint: list[str] = Field(min_length=1, max_length=100)
    ContainerArguments: list[str] | None = None


class CreateProcessingJob(_Sm):
    """The CreateProcessingJob request; the SageMaker adapter passes `model_dump(exclude_none=True)`."""

    ProcessingJobName: Annotated[str, job_name_rule("processing")]
    ProcessingInputs: list[ProcessingInput] = Field(max_length=10)
    ProcessingOutputConfig: ProcessingOutputConfig
    ProcessingResources: ProcessingResources
    StoppingCondition: ProcessingStoppingCondition
    AppSpecification: AppSpecification
    Environment: dict[str, str] = Field(default_factory=dict, max_length=100)
    RoleArn: str
    Tags: list[TagSpec] = Field(default_factory=list, max_length=50)

    @field_validator("Environment")
    @classmethod
    def _environment_limits(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]{0,255}", key) or len(text) > 256:
                raise ValueError(f"environment variable {key!r} breaks SageMaker's limits")
        return value

    def tag(self, key: str) -> str | None:
        return next((tag.Value for tag in self.Tags if tag.Key == key), None)


class ProcessingJobDescription(JobDescriptionFields):
    """The fields of a DescribeProcessingJob answer, or of a state-change event's detail, that segpipe
    reads."""

    ProcessingJobName: str
    ProcessingJobArn: str | None = None
    ProcessingJobStatus: JobStatus
    ExitMessage: str | None = None
    ProcessingStartTime: JobTime = None
    ProcessingEndTime: JobTime = None


class ProcessingJobStateChangeEvent(SageMakerEvent):
    """The EventBridge envelope of `SageMaker Processing Job State Change`."""

    detail_type: Literal["SageMaker Processing Job State Change"] = Field(alias="detail-type")
    detail: ProcessingJobDescription
