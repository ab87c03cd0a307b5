"""Ingestion of `output.tar.gz` is bounded: members it does not need are skipped unread, members
and their count are capped, and a read that fails on the way is retried rather than failing a
good model for good."""

from __future__ import annotations

import io
import tarfile
import tracemalloc
from datetime import UTC, datetime
from typing import IO, Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError, ResponseStreamingError

from segpipe.dal.s3 import S3ArtifactStore
from segpipe.errors import ServiceUnavailable
from segpipe.logic.ingest import IngestLimits, ingest_outputs
from segpipe.logic.job_state import JobStateDeps, apply_job_state
from segpipe.models import keys
from segpipe.models.common import VersionStatus
from segpipe.models.jobs import JobDescription
from segpipe.models.report import TrainingDetails
from segpipe.models.request import TrainingRequest
from segpipe.models.version import ModelVersion
from tests.helpers.outputs import evaluation, prediction, tiny_png
from tests.unit.fakes import MemoryArtifacts, MemoryRegistry

NOW = datetime(2026, 11, 26, tzinfo=UTC)
JOB = "segpipe-lab-v1-abcdef12"
SOURCE = keys.job_output_key("lab", 1, JOB, "output.tar.gz")
MB = 1 << 20


class _Zeros(io.RawIOBase):
    """`size` zero bytes, produced as they are read (never all in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = b"\0" * count
        self.left -= count
        return count


def _archive(*, extra: tuple[tuple[str, int], ...] = (), predictions: int = 1) -> bytes:
    """An output.tar.gz as the trainer writes it, plus `extra` (name, size) members of zeros."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:

        def add(name: str, data: bytes | None = None, size: int = 0) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data) if data is not None else size
            archive.addfile(info, io.BytesIO(data) if data is not None else _Zeros(size))

        add("evaluation.json", evaluation(["nucleus"]).model_dump_json().encode())
        for index in range(predictions):
            item = prediction(f"img{index}.png", "test", ["nucleus"])
            add(f"predictions/test/img{index}.json", item.model_dump_json().encode())
            add(f"previews/img{index}.png", tiny_png())
        for name, size in extra:
            add(name, size=size)
    return buffer.getvalue()


def _deps(
    archive: bytes | None, *, artifacts: Any = None, limits: IngestLimits | None = None
) -> JobStateDeps:
    registry = MemoryRegistry()
    request = TrainingRequest(label="l", dataset="cells", model_type="instance", classes=["nucleus"])
    registry.create_version(
        ModelVersion(
            project="lab", version=1, label="l", model_type="instance", classes=["nucleus"],
            dataset="cells", request=request, details=TrainingDetails(), job_name=JOB,
            status=VersionStatus.TRAINING, created_at=NOW, updated_at=NOW,
        )
    )  # fmt: skip
    store = artifacts or MemoryArtifacts()
    if archive is not None:
        store.put_bytes(SOURCE, archive)
    return JobStateDeps(
        registry=registry, artifacts=store, clock=lambda: NOW, limits=limits or IngestLimits()
    )


def _completed() -> JobDescription:
    return JobDescription(TrainingJobName=JOB, TrainingJobStatus="Completed")


def _version(deps: JobStateDeps) -> ModelVersion:
    version = deps.registry.get_version("lab", 1)
    assert version is not None
    return version


def test_a_huge_member_that_is_not_ingested_is_skipped_unread() -> None:
    # Given a small archive that holds a 128 MB member segpipe does not ingest
    archive = _archive(extra=(("debug/activations.bin", 128 * MB),))
    assert len(archive) < 1 * MB
    artifacts = MemoryArtifacts()
    artifacts.put_bytes(SOURCE, archive)

    # When it is ingested
    tracemalloc.start()
    try:
        ingested = ingest_outputs(project="lab", version=1, job_name=JOB, artifacts=artifacts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Then the outputs arrive and the ignored member never reached memory
    assert [entry.stem for entry in ingested.images] == ["img0"]
    assert artifacts.exists(keys.prediction_key("lab", 1, "test", "img0"))
    assert not any("activations" in key for key in artifacts.objects)
    assert peak < 16 * MB, f"peak {peak / MB:.0f} MB"


def test_an_ingested_member_over_the_size_cap_fails_the_version_with_the_reason() -> None:
    deps = _deps(_archive(), limits=IngestLimits(max_member_bytes=1000))

    outcome = apply_job_state(_completed(), deps=deps)

    version = _version(deps)
    assert outcome.applied and version.status is VersionStatus.FAILED
    assert version.failure_reason is not None
    assert "evaluation.json" in version.failure_reason and "1000 bytes" in version.failure_reason


def test_an_ignored_member_over_the_size_cap_does_not_matter() -> None:
    deps = _deps(_archive(extra=(("debug.bin", 50_000),)), limits=IngestLimits(max_member_bytes=20_000))

    apply_job_state(_completed(), deps=deps)

    assert _version(deps).status is VersionStatus.COMPLETED


def test_an_archive_with_too_many_members_fails_the_version_with_the_reason() -> None:
    deps = _deps(_archive(predictions=6), limits=IngestLimits(max_members=10))

    apply_job_state(_completed(), deps=deps)

    version = _version(deps)
    assert version.status is VersionStatus.FAILED
    assert version.failure_reason is not None and "more than 10 members" in version.failure_reason


def test_member_names_must_match_whole_patterns() -> None:
    buffer = io.BytesIO(_archive())
    with (
        tarfile.open(fileobj=io.BytesIO(_archive()), mode="r:gz") as source,
        tarfile.open(fileobj=buffer, mode="w:gz") as target,
    ):
        for member in source.getmembers():
            target.addfile(member, source.extractfile(member))
        odd = tarfile.TarInfo("predictions/test/odd.json\n")
        data = prediction("odd.png", "test", ["nucleus"]).model_dump_json().encode()
        odd.size = len(data)
        target.addfile(odd, io.BytesIO(data))
    artifacts = MemoryArtifacts()
    artifacts.put_bytes(SOURCE, buffer.getvalue())

    ingested = ingest_outputs(project="lab", version=1, job_name=JOB, artifacts=artifacts)

    assert [entry.stem for entry in ingested.images] == ["img0"]


class _BreaksMidStream(io.RawIOBase):
    """Serves `data` but fails with `error` after `after` bytes, as a dropped connection does."""

    def __init__(self, data: bytes, *, after: int, error: BaseException) -> None:
        self.data, self.after, self.error, self.position = data, after, error, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.position >= self.after:
            raise self.error
        chunk = self.data[self.position : min(self.position + len(buffer), self.after)]
        buffer[: len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)


class _FlakyArtifacts(MemoryArtifacts):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error: BaseException | None = error

    def open_stream(self, key: str) -> IO[bytes]:
        if self.error is None:
            return super().open_stream(key)
        data = self.get_bytes(key)
        return io.BufferedReader(_BreaksMidStream(data, after=len(data) // 2, error=self.error))


def test_an_os_error_mid_stream_leaves_the_version_unfailed_and_raises_for_a_retry() -> None:
    artifacts = _FlakyArtifacts(TimeoutError("The read operation timed out"))
    deps = _deps(_archive(predictions=40), artifacts=artifacts)

    with pytest.raises(ServiceUnavailable):
        apply_job_state(_completed(), deps=deps)

    version = _version(deps)
    assert version.status is VersionStatus.TRAINING and version.failure_reason is None

    # And the retry, once the read works, completes the version
    artifacts.error = None
    assert apply_job_state(_completed(), deps=deps).applied
    assert _version(deps).status is VersionStatus.COMPLETED


class _Body:
    """A botocore StreamingBody stand-in whose reads fail with a transport error."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def read(self, amt: int | None = None) -> bytes:
        raise self.error


class _Client:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_object(self, **_: Any) -> dict[str, Any]:
        if isinstance(self.error, ClientError):
            raise self.error
        return {"Body": _Body(self.error), "ContentLength": 10}


@pytest.mark.parametrize(
    "error",
    [
        ReadTimeoutError(endpoint_url="https://s3.amazonaws.com/b/k"),
        ResponseStreamingError(error="Connection broken: IncompleteRead"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=["read-timeout", "streaming-error", "connection-reset"],
)
def test_s3_transport_errors_mid_stream_become_service_unavailable(error: Exception) -> None:
    store = S3ArtifactStore(_Client(error), "bucket")  # type: ignore[arg-type]

    stream = store.open_stream(SOURCE)

    with pytest.raises(ServiceUnavailable):
        stream.read(1024)


@pytest.mark.parametrize(
    "error",
    [
        ReadTimeoutError(endpoint_url="https://s3.amazonaws.com/b/k"),
        ClientError(
            {"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject"
        ),
        ClientError(
            {"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "GetObject"
        ),
    ],
    ids=["read-timeout", "slow-down", "internal-error"],
)
def test_a_transient_s3_failure_raises_and_never_fails_the_version(error: Exception) -> None:
    deps = _deps(None, artifacts=S3ArtifactStore(_Client(error), "bucket"))  # type: ignore[arg-type]

    with pytest.raises(Exception) as raised:
        apply_job_state(_completed(), deps=deps)

    assert isinstance(raised.value, ServiceUnavailable | ClientError)
    assert _version(deps).status is VersionStatus.TRAINING


def test_a_damaged_archive_still_fails_the_version_for_good() -> None:
    archive = _archive(predictions=20)
    deps = _deps(archive[: len(archive) // 2])

    apply_job_state(_completed(), deps=deps)

    version = _version(deps)
    assert version.status is VersionStatus.FAILED
    assert version.failure_reason is not None and "damaged" in version.failure_reason
