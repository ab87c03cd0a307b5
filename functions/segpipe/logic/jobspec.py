"""From an accepted request to a SageMaker CreateTrainingJob request (pure)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from segpipe.models import keys
from segpipe.models.common import Preset
from segpipe.models.jobs import (
    AlgorithmSpec,
    ChannelSpec,
    CheckpointConfigSpec,
    CreateTrainingJob,
    DataSourceSpec,
    MetricDefinitionSpec,
    OutputDataConfigSpec,
    ResourceConfigSpec,
    S3DataSourceSpec,
    StoppingConditionSpec,
    TagSpec,
)
from segpipe.models.presets import PRESETS
from segpipe.models.request import FractionTestSet, TrainingRequest
from segpipe.models.trainer_io import TrainingConfig
from segpipe.models.version import ModelVersion

#: Regexes over the trainer's log lines (`epoch=3 train_loss=0.12`, `epoch=3 val_loss=0.1 val_score=0.8`).
METRIC_DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("train:loss", r"train_loss=([0-9.eE+-]+)"),
    ("validation:loss", r"val_loss=([0-9.eE+-]+)"),
    ("validation:score", r"val_score=([0-9.eE+-]+)"),
    ("epoch", r"epoch=([0-9]+)"),
)

TAG_PROJECT = "segpipe:project"
TAG_VERSION = "segpipe:version"
TAG_LABEL = "segpipe:label"
TAG_STACK = "segpipe:stack"

#: SageMaker's limit on MaxWaitTimeInSeconds for managed spot training (28 days).
_MAX_WAIT_LIMIT = 28 * 24 * 3600
_TAG_VALUE = re.compile(r"[^\w.:/=+\-@ ]")


@dataclass(frozen=True)
class JobEnvironment:
    """Deployment facts the job needs (from the function's settings)."""

    image_uri: str
    role_arn: str
    bucket: str
    volume_gb: int = 50
    stack: str = "segpipe"


@dataclass(frozen=True)
class ResolvedTraining:
    preset: Preset
    epochs: int
    tile_size: int


def job_name(project: str, version: int, request_key: str, *, salt: str) -> str:
    """Deterministic and unique per (deployment, project, version, request): at most 63 characters
    of [a-zA-Z0-9-], so a repeated delivery of the same request names the same job."""
    return deterministic_job_name(project, f"v{version}", f"{salt}\n{project}\n{version}\n{request_key}")


def deterministic_job_name(project: str, marker: str, identity: str) -> str:
    """`segpipe-{project slug}-{marker}-{8 hex of identity}` (at most 63 characters for markers of
    up to 9): `v3` names version 3's training job, `a3` analysis 3's processing job."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", project).strip("-")[:28].strip("-") or "p"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
    return f"segpipe-{slug}-{marker}-{digest}"


def training_config(
    request: TrainingRequest, resolved: ResolvedTraining, *, project: str, version: int
) -> TrainingConfig:
    overrides = request.training
    seed = request.test_set.seed if isinstance(request.test_set, FractionTestSet) else 0
    optional = {
        # The preset's default is written out, so the console shows the rate the job trains at.
        "learning_rate": overrides.learning_rate or PRESETS[resolved.preset].learning_rate,
        "batch_size": overrides.batch_size,
        "early_stopping_patience": overrides.early_stopping_patience,
        "min_object_area": overrides.min_object_area,
    }
    return TrainingConfig(
        model_type=request.model_type,
        classes=list(request.classes),
        preset=resolved.preset,
        epochs=resolved.epochs,
        tile_size=resolved.tile_size,
        seed=seed,
        project=project,
        version=version,
        **{key: value for key, value in optional.items() if value is not None},
    )


def _s3(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def _channel(name: str, uri: str, mode: str) -> ChannelSpec:
    return ChannelSpec(
        ChannelName=name,
        DataSource=DataSourceSpec(S3DataSource=S3DataSourceSpec(S3Uri=uri)),
        InputMode=mode,
    )


def tag_value(value: str) -> str:
    return _TAG_VALUE.sub("_", value)[:256]


def build_training_job(
    record: ModelVersion, *, config: TrainingConfig, env: JobEnvironment, base_artifact: str | None = None
) -> CreateTrainingJob:
    """The CreateTrainingJob request of one version, named by its `job_name` (channels, spot,
    checkpoints, metrics, tags); `base_artifact` is the model it starts from, if any."""
    project, version, request = record.project, record.version, record.request
    compute = request.compute
    runtime = max(1, int(compute.max_hours * 3600))
    channels = [
        _channel("dataset", _s3(env.bucket, keys.dataset_prefix(project, record.dataset)), "FastFile"),
        _channel("split", _s3(env.bucket, keys.split_prefix(project, version)), "File"),
    ]
    if base_artifact:
        channels.append(_channel("base", base_artifact, "File"))
    return CreateTrainingJob(
        TrainingJobName=record.job_name,
        AlgorithmSpecification=AlgorithmSpec(
            TrainingImage=env.image_uri,
            TrainingInputMode="File",
            MetricDefinitions=[MetricDefinitionSpec(Name=n, Regex=r) for n, r in METRIC_DEFINITIONS],
        ),
        RoleArn=env.role_arn,
        HyperParameters=config.to_hyperparameters(),
        InputDataConfig=channels,
        OutputDataConfig=OutputDataConfigSpec(
            S3OutputPath=_s3(env.bucket, keys.output_prefix(project, version))
        ),
        ResourceConfig=ResourceConfigSpec(
            InstanceType=compute.instance_type,
            InstanceCount=compute.instance_count,
            VolumeSizeInGB=env.volume_gb,
        ),
        StoppingCondition=StoppingConditionSpec(
            MaxRuntimeInSeconds=runtime,
            MaxWaitTimeInSeconds=min(runtime * 2, _MAX_WAIT_LIMIT) if compute.spot else None,
        ),
        EnableManagedSpotTraining=compute.spot,
        CheckpointConfig=CheckpointConfigSpec(
            S3Uri=_s3(env.bucket, keys.checkpoints_prefix(project, version))
        ),
        Environment={"SEGPIPE_PROJECT": project, "SEGPIPE_VERSION": str(version)},
        Tags=[
            TagSpec(Key=TAG_PROJECT, Value=tag_value(project)),
            TagSpec(Key=TAG_VERSION, Value=str(version)),
            TagSpec(Key=TAG_LABEL, Value=tag_value(request.label)),
            TagSpec(Key=TAG_STACK, Value=tag_value(env.stack)),
        ],
    )
