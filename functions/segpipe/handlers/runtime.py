"""The composition root: Powertools utilities, AWS clients and use-case dependencies, built once
per execution environment (lazily, so importing a handler stays cheap and tests can swap them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics

from segpipe.dal.aws_errors import transient_failure as transient_failure  # for the handlers
from segpipe.handlers.tracing import LazyTracer
from segpipe.settings import ApiSettings, CommonSettings, SubmitSettings

if TYPE_CHECKING:
    from botocore.config import Config

    from segpipe.logic.analyses_api import AnalysesDeps
    from segpipe.logic.analysis_state import AnalysisStateDeps
    from segpipe.logic.analysis_submit import AnalysisSubmitDeps
    from segpipe.logic.job_state import JobStateDeps
    from segpipe.logic.jobspec import JobEnvironment
    from segpipe.logic.models_api import ModelsDeps
    from segpipe.logic.submit import SubmitDeps
    from segpipe.logic.validate import ComputeRules

logger = Logger(service="segpipe")
#: Built on the first event (tracing.py): its X-Ray SDK import was a third of each cold import.
tracer = LazyTracer(service="segpipe")
metrics = Metrics(namespace="segpipe", service="segpipe")


def utcnow() -> datetime:
    return datetime.now(UTC)


def configured_endpoint(service: str, environ: Mapping[str, str]) -> str | None:
    """The endpoint that replaces AWS's for `service`, as the SDKs read it from the environment
    (`AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`): the local stack's moto server."""
    if environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    specific = environ.get(f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}")
    return specific or environ.get("AWS_ENDPOINT_URL") or None


def client_config(service: str, endpoint_url: str | None) -> Config:
    """The botocore configuration of every client the handlers make.

    S3 is told to sign with SigV4 and to address the bucket in the host name of its regional
    endpoint (`{bucket}.s3.{region}.amazonaws.com`): left alone, botocore presigns with SigV2 and
    the global endpoint in us-east-1 and eu-west-1, which S3 refuses for buckets created since
    June 2020. A custom endpoint (the local stack) is addressed path style, its host unchanged.
    """
    from botocore.config import Config

    settings: dict[str, Any] = {
        "retries": {"mode": "standard", "max_attempts": 5},
        "connect_timeout": 5,
        "read_timeout": 60,
        "max_pool_connections": 32,  # S3ArtifactStore.put_many uploads in parallel
    }
    if service == "s3":
        settings["signature_version"] = "s3v4"
        settings["s3"] = {
            "addressing_style": "path" if endpoint_url else "virtual",
            "us_east_1_regional_endpoint": "regional",
        }
    return Config(**settings)


@cache
def _client(service: str) -> Any:
    import boto3  # imported here so that a handler's import does not pay for it twice

    endpoint = configured_endpoint(service, os.environ)
    return boto3.client(  # type: ignore[call-overload]
        service, endpoint_url=endpoint, config=client_config(service, endpoint)
    )


def reset() -> None:
    """Forget cached clients (tests start a fresh moto backend per test)."""
    _client.cache_clear()
    _evaluation_cache.cache_clear()


def _stores(settings: CommonSettings) -> tuple[Any, Any, Any]:
    from segpipe.dal.dynamodb import DynamoModelRegistry
    from segpipe.dal.s3 import S3ArtifactStore, S3DatasetStore

    s3 = _client("s3")
    return (
        S3DatasetStore(s3, settings.DATA_BUCKET),
        S3ArtifactStore(s3, settings.DATA_BUCKET),
        DynamoModelRegistry(_client("dynamodb"), settings.TABLE_NAME),
    )


def _jobs() -> Any:
    from segpipe.dal.sagemaker import SageMakerTrainingJobs

    return SageMakerTrainingJobs(_client("sagemaker"))


def analysis_registry(settings: CommonSettings) -> Any:
    """The analyses' registry (`AnalysisRegistry`): the same table as the versions."""
    from segpipe.dal.analyses import DynamoAnalysisRegistry

    return DynamoAnalysisRegistry(_client("dynamodb"), settings.TABLE_NAME)


def processing_jobs() -> Any:
    """SageMaker Processing jobs (`ProcessingJobs`); the local stack answers the same API."""
    from segpipe.dal.sagemaker import SageMakerProcessingJobs

    return SageMakerProcessingJobs(_client("sagemaker"))


def _job_environment(settings: SubmitSettings) -> JobEnvironment:
    """What every training and processing job is started with: image, role, bucket, disk, stack."""
    from segpipe.logic.jobspec import JobEnvironment

    return JobEnvironment(
        image_uri=settings.TRAINING_IMAGE_URI,
        role_arn=settings.SAGEMAKER_ROLE_ARN,
        bucket=settings.DATA_BUCKET,
        volume_gb=settings.VOLUME_SIZE_GB,
        stack=settings.STACK_NAME,
    )


def _compute_rules(settings: SubmitSettings) -> ComputeRules:
    """The compute guard trainings and analyses share (AllowedInstanceTypes, MaxInstanceHours...)."""
    from segpipe.logic.validate import ComputeRules

    return ComputeRules(
        allowed_instance_types=frozenset(settings.ALLOWED_INSTANCE_TYPES),
        max_instance_hours=settings.MAX_INSTANCE_HOURS,
        max_running_trainings=settings.MAX_RUNNING_TRAININGS,
    )


def submit_deps(settings: SubmitSettings) -> SubmitDeps:
    from segpipe.logic.submit import SubmitDeps
    from segpipe.logic.validate import TrainingDefaults
    from segpipe.models.common import Preset

    store, artifacts, registry = _stores(settings)
    return SubmitDeps(
        store=store,
        artifacts=artifacts,
        registry=registry,
        jobs=_jobs(),
        env=_job_environment(settings),
        defaults=TrainingDefaults(
            preset=Preset(settings.DEFAULT_PRESET),
            epochs=settings.DEFAULT_EPOCHS,
            tile_size=settings.DEFAULT_TILE_SIZE,
        ),
        clock=utcnow,
        compute_rules=_compute_rules(settings),
        max_annotations_bytes=settings.MAX_ANNOTATIONS_BYTES,
    )


def analysis_submit_deps(settings: SubmitSettings) -> AnalysisSubmitDeps:
    """Checks and submission of analyses: image folders, versions, analyses, processing jobs. The
    compute guard is the trainings' (AllowedInstanceTypes, MaxInstanceHoursPerTraining)."""
    from segpipe.dal.s3 import S3DatasetStore
    from segpipe.logic.analysis_checks import AnalysisSources
    from segpipe.logic.analysis_submit import AnalysisSubmitDeps
    from segpipe.models import keys

    _, artifacts, registry = _stores(settings)
    return AnalysisSubmitDeps(
        sources=AnalysisSources(
            images=S3DatasetStore(_client("s3"), settings.DATA_BUCKET, prefix=keys.images_prefix),
            artifacts=artifacts,
            registry=registry,
            compute_rules=_compute_rules(settings),
        ),
        analyses=analysis_registry(settings),
        jobs=processing_jobs(),
        env=_job_environment(settings),
        clock=utcnow,
    )


@cache
def _evaluation_cache() -> Any:
    from segpipe.logic.models_api import BoundedCache

    return BoundedCache(64)


def models_deps(settings: ApiSettings) -> ModelsDeps:
    from segpipe.logic.models_api import ModelsDeps

    _, artifacts, registry = _stores(settings)
    return ModelsDeps(
        registry=registry,
        artifacts=artifacts,
        jobs=_jobs(),
        clock=utcnow,
        presign_seconds=settings.PRESIGN_EXPIRES_SECONDS,
        evaluations=_evaluation_cache(),
    )


def job_state_deps(settings: CommonSettings) -> JobStateDeps:
    from segpipe.logic.job_state import JobStateDeps

    _, artifacts, registry = _stores(settings)
    return JobStateDeps(registry=registry, artifacts=artifacts, clock=utcnow)


def analysis_state_deps(settings: CommonSettings) -> AnalysisStateDeps:
    from segpipe.logic.analysis_state import AnalysisStateDeps

    _, artifacts, _ = _stores(settings)
    return AnalysisStateDeps(
        analyses=analysis_registry(settings),
        artifacts=artifacts,
        clock=utcnow,
        jobs=processing_jobs(),
        stack=settings.STACK_NAME,
    )


def analyses_deps(settings: ApiSettings) -> AnalysesDeps:
    from segpipe.logic.analyses_api import AnalysesDeps

    _, artifacts, _ = _stores(settings)
    return AnalysesDeps(
        analyses=analysis_registry(settings),
        artifacts=artifacts,
        jobs=processing_jobs(),
        clock=utcnow,
        presign_seconds=settings.PRESIGN_EXPIRES_SECONDS,
    )
