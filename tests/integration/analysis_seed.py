"""Seed an analysis under moto the way submit leaves one (item queued, job configuration written)
and deliver `SageMaker Processing Job State Change` events to the real job-state handler."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from segpipe.dal.analyses import DynamoAnalysisRegistry
from segpipe.dal.s3 import S3ArtifactStore
from segpipe.models.analysis import AnalyzeConfig
from segpipe_local.events import processing_job_state_change_event
from segpipe_local.lambda_context import LocalLambdaContext
from tests.helpers.analysis_shards import Img, analysis_item, config, put_shards
from tests.integration.conftest import REGION, STACK, Aws

JOB = "segpipe-lab-a1-0123abcd"


def artifacts(aws: Aws) -> S3ArtifactStore:
    return S3ArtifactStore(aws.s3, aws.bucket)


def seed_analysis(
    aws: Aws,
    hosts: dict[str, Sequence[Img]],
    *,
    analysis: int = 1,
    job_name: str = JOB,
    shards: bool = True,
) -> AnalyzeConfig:
    """A queued analysis of the hosts' images; with `shards`, their results already written."""
    cfg = config(analysis=analysis, images=sum(len(images) for images in hosts.values()))
    item = analysis_item(cfg, job_name=job_name, instance_count=max(1, len(hosts)))
    DynamoAnalysisRegistry(aws.dynamodb, aws.table).create_analysis(item)
    if shards:
        put_shards(artifacts(aws), cfg, hosts, with_images=True)
    else:
        put_shards(artifacts(aws), cfg, {})
    return cfg


def processing_event(aws: Aws, job_name: str, status: str, **detail: Any) -> dict[str, Any]:
    """Deliver one processing-job event to the job-state handler; returns its answer."""
    description = {
        "ProcessingJobName": job_name,
        "ProcessingJobStatus": status,
        "Tags": {"segpipe:stack": STACK},
        **detail,
    }
    event = processing_job_state_change_event(description, region=REGION)
    handler = importlib.import_module("segpipe.handlers.handle_job_state")
    with aws.recorder.invoking("JobStateFunction"):
        result: dict[str, Any] = handler.lambda_handler(event, LocalLambdaContext("JobStateFunction"))
    return result
