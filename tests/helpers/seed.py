"""Seed a running local stack with model versions through the real ingestion path.

A completed version is made the way a finished SageMaker job makes one: the version item is
written with the DynamoDB registry (status `queued`, with a job name), the job's `output.tar.gz`
(evaluation, predictions, previews, built from the trainer contract) is uploaded where SageMaker
puts it, and a `SageMaker Training Job State Change` event goes to EventBridge, whose rule brings
it to the real job-state handler, which ingests the outputs. The seeder waits until the API says
the version is completed. The images and predictions are synthetic (`tests.helpers.synthetic`),
and so is their evaluation (`tests.helpers.synthetic_evaluation`).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np

from segpipe.dal.dynamodb import DynamoModelRegistry
from segpipe.logic.jobspec import deterministic_job_name
from segpipe.models import keys
from segpipe.models.common import VersionStatus
from segpipe.models.report import (
    ClassCounts,
    Estimate,
    IgnoredCounts,
    ImageStats,
    Issue,
    TrainingDetails,
)
from segpipe.models.request import FractionTestSet, NoTestSet, TrainingRequest
from segpipe.models.trainer_io import Progress
from segpipe_local.aws import client
from segpipe_local.config import LocalConfig
from segpipe_local.events import event_bus_entry, job_state_change_event
from tests.helpers.outputs import output_archive
from tests.helpers.stack_process import api_get
from tests.helpers.synthetic import SeedSpec, SyntheticImage, by_split, synthetic_images
from tests.helpers.synthetic_evaluation import evaluation_of
from tests.helpers.versions import model_version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeededVersion:
    project: str
    version: int
    job_name: str
    classes: tuple[str, ...]
    images: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)


# --- the version item ----------------------------------------------------------------------------


def _class_counts(images: list[SyntheticImage], classes: tuple[str, ...]) -> list[ClassCounts]:
    rows = []
    for k, name in enumerate(classes):
        per_split = {"train": 0, "test": 0}
        holding = 0
        for image in images:
            labels = [o.category == name for o in image.predictions.objects]
            count = int(np.sum(image.truth[np.asarray(labels, dtype=bool)])) + int(image.missed[k])
            per_split[image.predictions.split or "train"] += count
            holding += count > 0
        rows.append(
            ClassCounts(
                name=name,
                annotations=per_split["train"] + per_split["test"],
                train=per_split["train"],
                test=per_split["test"],
                images=holding,
                median_area=None,
            )
        )
    return rows


def training_details(*, images: list[SyntheticImage], spec: SeedSpec) -> TrainingDetails:
    counts = _class_counts(images, spec.classes)
    test_images = sum(image.predictions.split == "test" for image in images)
    unfinished = max(1, spec.images // 10)
    total = sum(row.annotations for row in counts)
    return TrainingDetails(
        dataset="synthetic",
        model_type="instance",
        total_images=spec.images + unfinished,
        completed_images=spec.images,
        included_images=spec.images,
        train_images=spec.images - test_images,
        test_images=test_images,
        total_annotations=total + 3 * unfinished,
        included_annotations=total,
        train_annotations=sum(row.train for row in counts),
        test_annotations=sum(row.test for row in counts),
        average_annotations_per_image=round(total / max(spec.images, 1), 2),
        classes=counts,
        ignored=IgnoredCounts(unfinished_images=unfinished, annotations_on_unfinished_images=3 * unfinished),
        images=ImageStats(
            min_width=spec.width,
            max_width=spec.width,
            min_height=spec.height,
            max_height=spec.height,
            distinct_sizes=1,
            megapixels=round(spec.images * spec.width * spec.height / 1e6, 2),
            formats={"png": spec.images},
            channels=[1],
            bit_depths=[8],
            sampled=min(spec.images, 32),
        ),
        tile_size=128,
        epochs=20,
        preset="tiny",
        estimate=Estimate(
            instance_type="ml.g5.xlarge",
            spot=True,
            hours=0.4,
            cost_usd=0.19,
            basis="synthetic seed",
            hourly_usd=0.47,
        ),
    )


def _warnings(details: TrainingDetails) -> list[Issue]:
    if 0 < details.test_images < 10:
        return [
            Issue(
                code="small_test_set",
                message=(
                    f"Only {details.test_images} test image{'s' if details.test_images > 1 else ''}: "
                    "the statistics will be noisy. "
                    "Annotate more images or raise the test fraction."
                ),
                context={"test_images": details.test_images},
            )
        ]
    return []


def _create_version(
    *,
    config: LocalConfig,
    project: str,
    label: str,
    classes: tuple[str, ...],
    details: TrainingDetails,
    warnings: list[Issue],
    test_fraction: float,
) -> tuple[int, str]:
    """Claim a version number and write the queued version item, as submission does."""
    registry = DynamoModelRegistry(client("dynamodb", config), config.table)
    now = datetime.now(UTC)
    number = registry.claim(project, f"seed:{uuid.uuid4()}", "seed", now).version
    # named the way submission names a version's job
    job_name = deterministic_job_name(project, f"v{number}", f"seed\n{uuid.uuid4()}")
    test_set = (
        FractionTestSet(strategy="fraction", fraction=test_fraction, seed=0)
        if test_fraction > 0
        else NoTestSet(strategy="none")
    )
    request = TrainingRequest(
        label=label, dataset="synthetic", model_type="instance", classes=list(classes), test_set=test_set
    )
    registry.create_version(
        model_version(
            number,
            project=project,
            status=VersionStatus.QUEUED,
            classes=classes,
            label=label,
            dataset="synthetic",
            request=request,
            details=details,
            at=now,
            warnings=warnings,
            job_name=job_name,
        )
    )
    return number, job_name


# --- events and waiting --------------------------------------------------------------------------


def _send_job_event(
    *, config: LocalConfig, project: str, version: int, job_name: str, status: str, **extra: Any
) -> None:
    """Put a `SageMaker Training Job State Change` on EventBridge, as the job runner does."""
    now = datetime.now(UTC)
    description = {
        "TrainingJobName": job_name,
        "TrainingJobStatus": status,
        "SecondaryStatus": status,
        "LastModifiedTime": now,
        "OutputDataConfig": {"S3OutputPath": f"s3://{config.bucket}/{keys.output_prefix(project, version)}"},
        "Tags": {"segpipe:stack": config.stack, "segpipe:project": project, "segpipe:version": str(version)},
        **extra,
    }
    event = job_state_change_event(description, region=config.region)
    answer = client("events", config).put_events(Entries=[event_bus_entry(event)])
    if answer.get("FailedEntryCount"):
        raise RuntimeError(f"EventBridge refused the job event: {answer}")


def wait_for_status(
    *, config: LocalConfig, project: str, version: int, statuses: set[str], timeout_s: float = 120.0
) -> dict[str, Any]:
    """Poll the API until the version reaches one of `statuses`; returns the ModelVersion body."""
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = api_get(config, f"/projects/{project}/models/{version}")
        if body["status"] in statuses:
            return body
        time.sleep(0.2)
    raise TimeoutError(f"version {version} stayed {body.get('status')!r}, waiting for {sorted(statuses)}")


# --- public seeders ------------------------------------------------------------------------------


def seed_completed_version(
    *, config: LocalConfig, spec: SeedSpec | None = None, timeout_s: float = 180.0
) -> SeededVersion:
    """A completed version with `spec.images` images and `spec.objects` predicted objects."""
    spec = spec or SeedSpec()
    started = time.monotonic()
    images = synthetic_images(spec=spec)
    details = training_details(images=images, spec=spec)
    result = evaluation_of(images=images, classes=spec.classes, bootstrap_draws=spec.bootstrap_draws)
    archive = output_archive(
        result,
        [image.predictions for image in images],
        previews={image.predictions.preview or "": image.preview for image in images},
        config={"preset": "tiny", "epochs": 20, "tile_size": 128},
    )
    built = time.monotonic()
    version, job_name = _create_version(
        config=config,
        project=spec.project,
        label=spec.label,
        classes=spec.classes,
        details=details,
        warnings=_warnings(details),
        test_fraction=spec.test_fraction,
    )
    key = keys.job_output_key(spec.project, version, job_name, "output.tar.gz")
    client("s3", config).put_object(Bucket=config.bucket, Key=key, Body=archive)
    model_key = keys.job_output_key(spec.project, version, job_name, "model.tar.gz")
    ended = datetime.now(UTC)
    _send_job_event(
        config=config,
        project=spec.project,
        version=version,
        job_name=job_name,
        status="Completed",
        TrainingStartTime=ended - timedelta(minutes=23),
        TrainingEndTime=ended,
        ModelArtifacts={"S3ModelArtifacts": f"s3://{config.bucket}/{model_key}"},
    )
    body = wait_for_status(
        config=config,
        project=spec.project,
        version=version,
        statuses={"completed", "failed"},
        timeout_s=timeout_s,
    )
    if body["status"] != "completed":
        raise RuntimeError(f"seeding failed: {body.get('failure_reason')}")
    logger.info(
        "seeded %s v%d: built in %.1f s, ingested in %.1f s",
        spec.project,
        version,
        built - started,
        time.monotonic() - built,
    )
    splits = by_split(images)
    return SeededVersion(
        project=spec.project,
        version=version,
        job_name=job_name,
        classes=spec.classes,
        images={name: len(members) for name, members in splits.items()},
        objects={name: sum(len(i.predictions.objects) for i in members) for name, members in splits.items()},
    )


def seed_unfinished_version(
    *,
    config: LocalConfig,
    project: str = "review",
    label: str = "Still training",
    status: Literal["queued", "training", "failed"] = "training",
    progress: Progress | None = None,
    failure_reason: str = "AlgorithmError: CUDA out of memory at tile size 1024; lower the tile size.",
    timeout_s: float = 60.0,
) -> int:
    """A version that is queued, training (with `progress` synced to S3) or failed; returns its number."""
    spec = SeedSpec(project=project, images=4, objects=8)
    details = training_details(images=synthetic_images(spec=spec), spec=spec)
    version, job_name = _create_version(
        config=config,
        project=project,
        label=label,
        classes=spec.classes,
        details=details,
        warnings=_warnings(details),
        test_fraction=spec.test_fraction,
    )
    if status == "queued":
        return version
    if status == "training":
        progress = progress or Progress(epoch=7, epochs=20, train_loss=0.412, val_score=0.71)
        key = keys.progress_key(project, version)
        client("s3", config).put_object(
            Bucket=config.bucket, Key=key, Body=progress.model_dump_json().encode()
        )
        _send_job_event(
            config=config, project=project, version=version, job_name=job_name, status="InProgress",
            TrainingStartTime=datetime.now(UTC),
        )  # fmt: skip
    else:
        _send_job_event(
            config=config, project=project, version=version, job_name=job_name, status="Failed",
            FailureReason=failure_reason, TrainingEndTime=datetime.now(UTC),
        )  # fmt: skip
    wait_for_status(config=config, project=project, version=version, statuses={status}, timeout_s=timeout_s)
    return version
