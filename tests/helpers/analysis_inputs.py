"""What an analysis starts from, for tests under moto: a completed (active) version and a folder of
images, written through the real DynamoDB adapter and S3 without training anything, and a request
body. (What the `analyze` container writes back is built by `tests.helpers.analysis_shards`.)"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from segpipe.dal.dynamodb import DynamoModelRegistry
from segpipe.models import keys
from segpipe.models.common import VersionStatus
from segpipe.models.version import ModelVersion
from tests.helpers.versions import model_version, small_model_details

SEEDED_AT = datetime(2026, 11, 30, tzinfo=UTC)
CLASSES = ("nucleus", "mitosis")


def seed_version(
    aws: Any,
    number: int = 1,
    *,
    status: VersionStatus = VersionStatus.COMPLETED,
    active: bool = True,
    threshold: float | None = 0.5,
    project: str = "lab",
) -> ModelVersion:
    """Version `number` of `project`, trained (on paper) on ten grey 64 x 64 images; completed ones
    carry a model archive and `threshold` as the locked analysis threshold."""
    registry = DynamoModelRegistry(aws.dynamodb, aws.table)
    job = f"segpipe-{project}-v{number}-seeded0"
    version = model_version(
        number,
        project=project,
        status=VersionStatus.QUEUED,
        classes=CLASSES,
        details=small_model_details(),
        job_name=job,
        at=SEEDED_AT,
    )
    assert registry.create_version(version)
    if status is not VersionStatus.QUEUED:
        artifact = f"s3://{aws.bucket}/{keys.job_output_key(project, number, job, 'model.tar.gz')}"
        fields: dict[str, Any] = {"suggested_threshold": 0.45, "suggested_thresholds": {"nucleus": 0.45}}
        if status is VersionStatus.COMPLETED:
            fields.update(model_artifact=artifact, analysis_threshold=threshold)
        assert registry.transition(project, number, status, SEEDED_AT, fields=fields)
    if active:
        assert registry.set_active(project, number, True)
    stored = registry.get_version(project, number)
    assert stored is not None
    return stored


def png(width: int = 64, height: int = 64, mode: str = "L") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (width, height), 0).save(buffer, format="PNG")
    return buffer.getvalue()


def put_images(aws: Any, folder: str = "plate-1", count: int = 3, *, project: str = "lab") -> list[str]:
    """`count` grey PNGs under `projects/{project}/images/{folder}/` (one in a sub-folder)."""
    names = [f"well-{index}.png" for index in range(count - 1)] + ["day-2/well-x.png"]
    for name in names[:count]:
        aws.s3.put_object(Bucket=aws.bucket, Key=keys.images_prefix(project, folder) + name, Body=png())
    return names[:count]


def analysis_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "plate one", "images": "plate-1"}
    body.update(changes)
    return body
