"""From a checked analysis to its job configuration and CreateProcessingJob request (pure).

The processing job runs the training image with the entry point `analyze`
(`segpipe_trainer.analyze:main`). Inputs, outputs and their S3 places are the contract of
`models/processing.py` and `models/keys.py`; DESIGN.md, "Analysis".
"""

from __future__ import annotations

import math

from segpipe.logic.jobspec import (
    TAG_PROJECT,
    TAG_STACK,
    TAG_VERSION,
    JobEnvironment,
    deterministic_job_name,
    tag_value,
)
from segpipe.models import keys
from segpipe.models.analysis import Analysis, AnalyzeConfig
from segpipe.models.jobs import TagSpec
from segpipe.models.processing import (
    CONFIG_INPUT,
    IMAGES_INPUT,
    IMAGES_OUTPUT,
    MASKS_OUTPUT,
    MODEL_INPUT,
    PROGRESS_OUTPUT,
    SHARDS_OUTPUT,
    AppSpecification,
    ClusterConfig,
    CreateProcessingJob,
    ProcessingInput,
    ProcessingOutput,
    ProcessingOutputConfig,
    ProcessingResources,
    ProcessingS3Input,
    ProcessingS3Output,
    ProcessingStoppingCondition,
)

TAG_ANALYSIS = "segpipe:analysis"
ENTRY_POINT = ["analyze"]
#: SageMaker Processing's longest run (5 days); requests stop far sooner (max_hours <= 48).
_MAX_RUNTIME = 777_600


def analysis_job_name(project: str, analysis: int, request_key: str, *, salt: str) -> str:
    """`segpipe-{slug}-a{n}-{8 hex}`: deterministic per (deployment, project, analysis, request)."""
    return deterministic_job_name(
        project, f"a{analysis}", f"{salt}\nanalysis\n{project}\n{analysis}\n{request_key}"
    )


def analyze_config(analysis: Analysis) -> AnalyzeConfig:
    """The job's `analyze.json`: what was frozen on the item."""
    return AnalyzeConfig(
        **analysis.run_fields(), images_folder=analysis.images_folder, image_count=analysis.details.images
    )


def _s3(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def _input(name: str, uri: str, local: str, *, sharded: bool = False) -> ProcessingInput:
    return ProcessingInput(
        InputName=name,
        S3Input=ProcessingS3Input(
            S3Uri=uri,
            LocalPath=local,
            S3DataDistributionType="ShardedByS3Key" if sharded else "FullyReplicated",
        ),
    )


def _output(name: str, uri: str, local: str, *, continuous: bool = False) -> ProcessingOutput:
    return ProcessingOutput(
        OutputName=name,
        S3Output=ProcessingS3Output(
            S3Uri=uri, LocalPath=local, S3UploadMode="Continuous" if continuous else "EndOfJob"
        ),
    )


def build_processing_job(
    analysis: Analysis, *, model_artifact: str, env: JobEnvironment
) -> CreateProcessingJob:
    """The CreateProcessingJob request of one analysis (inputs, outputs, cluster, limit, tags)."""
    project, number, bucket = analysis.project, analysis.analysis, env.bucket
    compute = analysis.request.compute
    prefix = keys.analysis_prefix(project, number)
    config_prefix = keys.analysis_config_key(project, number).rsplit("/", 1)[0] + "/"
    return CreateProcessingJob(
        ProcessingJobName=analysis.job_name,
        ProcessingInputs=[
            _input("model", model_artifact, MODEL_INPUT),
            _input(
                "images",
                _s3(bucket, keys.images_prefix(project, analysis.images_folder)),
                IMAGES_INPUT,
                sharded=compute.instance_count > 1,
            ),
            _input("config", _s3(bucket, config_prefix), CONFIG_INPUT),
        ],
        ProcessingOutputConfig=ProcessingOutputConfig(
            Outputs=[
                _output("shards", _s3(bucket, keys.analysis_shards_prefix(project, number)), SHARDS_OUTPUT),
                _output("images", _s3(bucket, keys.analysis_images_prefix(project, number)), IMAGES_OUTPUT),
                _output("masks", _s3(bucket, f"{prefix}masks/"), MASKS_OUTPUT),
                _output(
                    "progress",
                    _s3(bucket, keys.analysis_progress_prefix(project, number)),
                    PROGRESS_OUTPUT,
                    continuous=True,
                ),
            ]
        ),
        ProcessingResources=ProcessingResources(
            ClusterConfig=ClusterConfig(
                InstanceCount=compute.instance_count,
                InstanceType=compute.instance_type,
                VolumeSizeInGB=env.volume_gb,
            )
        ),
        StoppingCondition=ProcessingStoppingCondition(
            MaxRuntimeInSeconds=min(_MAX_RUNTIME, max(1, math.ceil(compute.max_hours * 3600)))
        ),
        AppSpecification=AppSpecification(ImageUri=env.image_uri, ContainerEntrypoint=list(ENTRY_POINT)),
        Environment={
            "SEGPIPE_PROJECT": project,
            "SEGPIPE_ANALYSIS": str(number),
            "SEGPIPE_VERSION": str(analysis.version),
        },
        RoleArn=env.role_arn,
        Tags=[
            TagSpec(Key=TAG_PROJECT, Value=tag_value(project)),
            TagSpec(Key=TAG_ANALYSIS, Value=str(number)),
            TagSpec(Key=TAG_VERSION, Value=str(analysis.version)),
            TagSpec(Key=TAG_STACK, Value=tag_value(env.stack)),
        ],
    )
