"""SageMaker training-job shapes: the CreateTrainingJob request we send and the state-change
events (and DescribeTrainingJob answers) we read back. Field names are SageMaker's own."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from segpipe.models.contract import Contract

JOB_NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
_JOB_NAME_RE = re.compile(JOB_NAME_PATTERN)


def job_name_rule(kind: str) -> AfterValidator:
    """SageMaker's rule for job names, as a field check whose error names the `kind` of job."""

    def check(value: str) -> str:
        if not _JOB_NAME_RE.fullmatch(value):
            raise ValueError(
                f"a {kind} job name is 1-63 characters of [a-zA-Z0-9-], starting with a letter or digit"
            )
        return value

    return AfterValidator(check)


class _Sm(Contract):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class S3DataSourceSpec(_Sm):
    S3DataType: Literal["S3Prefix"] = "S3Prefix"
    S3Uri: str
    S3DataDistributionType: Literal["FullyReplicated", "ShardedByS3Key"] = "FullyReplicated"


class DataSourceSpec(_Sm):
    S3DataSource: S3DataSourceSpec


class ChannelSpec(_Sm):
    ChannelName: str
    DataSource: DataSourceSpec
    InputMode: Literal["File", "FastFile", "Pipe"] | None = None
    CompressionType: Literal["None", "Gzip"] = "None"


class MetricDefinitionSpec(_Sm):
    Name: str
    Regex: str


class AlgorithmSpec(_Sm):
    TrainingImage: str
    TrainingInputMode: Literal["File", "FastFile", "Pipe"] = "File"
    MetricDefinitions: list[MetricDefinitionSpec] = Field(default_factory=list)
    EnableSageMakerMetricsTimeSeries: bool = True


class OutputDataConfigSpec(_Sm):
    S3OutputPath: str
    KmsKeyId: str | None = None


class ResourceConfigSpec(_Sm):
    InstanceType: str
    InstanceCount: int = Field(ge=1)
    VolumeSizeInGB: int = Field(ge=1)


class StoppingConditionSpec(_Sm):
    MaxRuntimeInSeconds: int = Field(ge=1)
    MaxWaitTimeInSeconds: int | None = None


class CheckpointConfigSpec(_Sm):
    S3Uri: str
    LocalPath: str = "/opt/ml/checkpoints"


class TagSpec(_Sm):
    Key: str
    Value: str


class CreateTrainingJob(_Sm):
    """The CreateTrainingJob request; the SageMaker adapter passes `model_dump(exclude_none=True)`."""

    TrainingJobName: Annotated[str, job_name_rule("training")]
    AlgorithmSpecification: AlgorithmSpec
    RoleArn: str
    HyperParameters: dict[str, str]
    InputDataConfig: list[ChannelSpec]
    OutputDataConfig: OutputDataConfigSpec
    ResourceConfig: ResourceConfigSpec
    StoppingCondition: StoppingConditionSpec
    EnableManagedSpotTraining: bool
    CheckpointConfig: CheckpointConfigSpec | None = None
    Environment: dict[str, str] = Field(default_factory=dict)
    Tags: list[TagSpec] = Field(default_factory=list)

    @field_validator("HyperParameters")
    @classmethod
    def _hyperparameter_limits(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if len(key) > 256 or len(text) > 2500:
                raise ValueError(f"hyperparameter {key!r} is longer than SageMaker allows")
        return value

    @model_validator(mode="after")
    def _spot_rules(self) -> CreateTrainingJob:
        wait = self.StoppingCondition.MaxWaitTimeInSeconds
        if self.EnableManagedSpotTraining:
            if wait is None or wait <= self.StoppingCondition.MaxRuntimeInSeconds:
                raise ValueError("managed spot training needs MaxWaitTimeInSeconds > MaxRuntimeInSeconds")
            if self.CheckpointConfig is None:
                raise ValueError(
                    "managed spot training needs a CheckpointConfig to resume after interruptions"
                )
        return self

    def tag(self, key: str) -> str | None:
        return next((tag.Value for tag in self.Tags if tag.Key == key), None)


JobStatus = Literal["InProgress", "Completed", "Failed", "Stopping", "Stopped"]


def _epoch_millis(value: Any) -> Any:
    """SageMaker events carry times as epoch milliseconds (numbers or strings); Describe gives datetimes."""
    if isinstance(value, int | float) or (isinstance(value, str) and value.replace(".", "", 1).isdigit()):
        return datetime.fromtimestamp(float(value) / 1000, tz=UTC)
    return value


def _tag_map(value: Any) -> Any:
    """Events carry {"key": "value"}; ListTags gives [{"Key": k, "Value": v}]."""
    if isinstance(value, list):
        return {item["Key"]: item["Value"] for item in value}
    return value or {}


#: A job time as events (epoch milliseconds) or Describe answers (datetimes) give it.
JobTime = Annotated[datetime | None, BeforeValidator(_epoch_millis)]
#: A job's tags as a map, from either shape.
TagMap = Annotated[dict[str, str], BeforeValidator(_tag_map)]


class ModelArtifactsSpec(Contract):
    S3ModelArtifacts: str


class JobDescriptionFields(Contract):
    """What segpipe reads of every SageMaker job's Describe answer or state-change detail, training and
    processing alike; each kind adds its own name, status and times."""

    model_config = ConfigDict(extra="ignore")

    FailureReason: str | None = None
    LastModifiedTime: JobTime = None
    Tags: TagMap = Field(default_factory=dict)


class JobDescription(JobDescriptionFields):
    """The fields of a DescribeTrainingJob answer, or of a state-change event's detail, that segpipe reads."""

    TrainingJobName: str
    TrainingJobArn: str | None = None
    TrainingJobStatus: JobStatus
    SecondaryStatus: str | None = None
    ModelArtifacts: ModelArtifactsSpec | None = None
    OutputDataConfig: OutputDataConfigSpec | None = None
    TrainingStartTime: JobTime = None
    TrainingEndTime: JobTime = None


class SageMakerEvent(Contract):
    """What every SageMaker event on EventBridge carries; each kind adds its `detail-type` and
    `detail`."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str
    source: Literal["aws.sagemaker"]
    time: datetime


class JobStateChangeEvent(SageMakerEvent):
    """The EventBridge envelope of `SageMaker Training Job State Change`."""

    detail_type: Literal["SageMaker Training Job State Change"] = Field(alias="detail-type")
    detail: JobDescription
