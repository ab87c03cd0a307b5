"""The terminal output of `make demo` and `segpipe train`."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from segpipe.models.common import VersionStatus
from segpipe.models.report import TrainingDetails
from segpipe.models.request import TrainingRequest
from segpipe.models.trainer_io import Progress
from segpipe.models.version import ModelVersion
from segpipe_local.progress import ProgressLine

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def _version(status: VersionStatus, progress: Progress | None) -> ModelVersion:
    request = TrainingRequest(label="l", dataset="d", model_type="instance", classes=["a"])
    return ModelVersion(
        project="p", version=1, label="l", model_type="instance", classes=["a"], dataset="d",
        request=request, details=TrainingDetails(), status=status, job_name="j", progress=progress,
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def test_a_log_gets_one_line_per_epoch_not_one_per_poll() -> None:
    stream = io.StringIO()  # not a terminal
    line = ProgressLine(stream)
    polls = [
        _version(VersionStatus.QUEUED, None),
        _version(VersionStatus.QUEUED, None),
        _version(VersionStatus.TRAINING, Progress(epoch=1, epochs=4, train_loss=0.9)),
        _version(VersionStatus.TRAINING, Progress(epoch=1, epochs=4, train_loss=0.9)),
        _version(VersionStatus.TRAINING, Progress(epoch=2, epochs=4, train_loss=0.5, val_score=0.7)),
        _version(VersionStatus.COMPLETED, Progress(epoch=4, epochs=4, phase="done")),
    ]

    for version in polls:
        line.update(version)
    line.close()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].strip() == "queued"
    assert "epoch   1/4" in lines[1] and "loss 0.900" in lines[1]
    assert "val 0.700" in lines[2] and "[##############--------------]" in lines[2]
    assert "(done)" in lines[3]
