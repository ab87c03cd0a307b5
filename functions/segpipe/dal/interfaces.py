"""The small interfaces that use cases depend on. Implementations: S3, DynamoDB, SageMaker,
the local filesystem, and in-memory fakes in the tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, Protocol

from segpipe.models.analysis import Analysis, AnalysisStatus, AnalysisSummary
from segpipe.models.common import SplitName, VersionStatus
from segpipe.models.version import ModelVersion

if TYPE_CHECKING:  # the job contracts load with the job clients, not with every handler that names a store
    from segpipe.models.jobs import CreateTrainingJob, JobDescription
    from segpipe.models.processing import CreateProcessingJob, ProcessingJobDescription


class DatasetStore(Protocol):
    """Read access to a dataset folder: `projects/{p}/datasets/{d}/` in S3, or a folder on disk."""

    def read_annotations(
        self, project: str, dataset: str, file_name: str, *, max_bytes: int | None = None
    ) -> bytes:
        """The annotations file's bytes. Raises `DatasetNotFound` when it does not exist and
        `DatasetTooLarge` (before reading any of it) when it is larger than `max_bytes`."""
        ...

    def list_files(self, project: str, dataset: str) -> set[str]:
        """Every file in the dataset folder, as paths relative to it (`sub/img.tif`)."""
        ...

    def read_head(self, project: str, dataset: str, file_name: str, nbytes: int) -> bytes:
        """The first `nbytes` of a file (or all of it when shorter), for header sniffing."""
        ...


class ArtifactStore(Protocol):
    """The data bucket, addressed by key."""

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/json") -> None: ...

    def put_many(self, items: Iterable[tuple[str, bytes, str]]) -> int:
        """Upload (key, data, content type) triples, in parallel where the store can; returns the count."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Raises `ObjectNotFound` when the key does not exist."""
        ...

    def get_bytes_at(self, key: str, *, version_id: str | None = None, etag: str | None = None) -> bytes:
        """The object as one upload wrote it: that version (in a versioned bucket), and only while it
        still has `etag`. Raises `ObjectNotFound` when it (or that version) is gone, `ObjectChanged`
        when a newer upload has replaced it and the version cannot be asked for."""
        ...

    def exists(self, key: str) -> bool: ...

    def open_stream(self, key: str) -> IO[bytes]:
        """A readable stream over the object, for archives too large for memory."""
        ...

    def list_keys(self, prefix: str) -> Iterator[str]: ...

    def presign_get(self, key: str, expires_in: int = 3600) -> str: ...


@dataclass(frozen=True)
class Claim:
    """The version number bound to one request key (an S3 object or an Idempotency-Key)."""

    version: int
    fresh: bool
    fingerprint: str


class ClaimRegistry(Protocol):
    """Request keys bound to numbers: versions in `ModelRegistry`, analyses in `AnalysisRegistry`,
    each kind with a counter of its own (`Claim.version` holds the number of either)."""

    def find_claim(self, project: str, request_key: str) -> Claim | None:
        """The number already bound to `request_key`, if any (a read; nothing is written)."""
        ...

    def claim(self, project: str, request_key: str, fingerprint: str, now: datetime) -> Claim:
        """Bind `request_key` to the project's next number (an atomic counter), or return the one
        already bound."""
        ...


class ModelRegistry(ClaimRegistry, Protocol):
    """Versions, metrics and thresholds (DynamoDB)."""

    def create_version(self, version: ModelVersion) -> bool:
        """Write a new version item; False when it already exists (a repeated submission)."""
        ...

    def get_version(self, project: str, version: int) -> ModelVersion | None: ...

    def list_versions(self, project: str, *, active_only: bool = False) -> list[ModelVersion]: ...

    def running_versions(self, project: str) -> list[int]:
        """Numbers of the project's versions that are queued or training (a query, never a scan)."""
        ...

    def find_by_job(self, job_name: str) -> tuple[str, int] | None:
        """(project, version) of a training job, through the job-name index."""
        ...

    def transition(
        self,
        project: str,
        version: int,
        to: VersionStatus,
        at: datetime,
        *,
        reason: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> bool:
        """Move to `to` when that is forward from the stored status; False otherwise (nothing written)."""
        ...

    def update_fields(
        self,
        project: str,
        version: int,
        fields: dict[str, Any],
        *,
        require_status: VersionStatus | None = None,
    ) -> bool:
        """Set fields (None removes one); with `require_status`, only when the version has that status."""
        ...

    def set_active(self, project: str, version: int, active: bool) -> bool:
        """Activate (only a completed version) or deactivate; False when the condition fails."""
        ...

    def put_metrics(self, project: str, version: int, split: SplitName, metrics: dict[str, Any]) -> None: ...

    def get_metrics(self, project: str, version: int) -> dict[str, dict[str, Any]]:
        """Metrics per split, as stored by `put_metrics`."""
        ...


class TrainingJobs(Protocol):
    """SageMaker training jobs (or the local runner behind the same API)."""

    def create(self, request: CreateTrainingJob) -> bool:
        """Start the job; False when a job of that name already exists (a repeated submission)."""
        ...

    def stop(self, job_name: str) -> None: ...

    def describe(self, job_name: str) -> JobDescription | None: ...


class AnalysisRegistry(ClaimRegistry, Protocol):
    """Analyses (DynamoDB items `sk=ANALYSIS#{n:06d}` beside the versions); their claims count
    analysis numbers."""

    def create_analysis(self, analysis: Analysis) -> bool:
        """Write a new analysis item; False when it already exists."""
        ...

    def get_analysis(self, project: str, analysis: int) -> Analysis | None: ...

    def list_analyses(self, project: str) -> list[Analysis]:
        """Newest first (a query, never a scan)."""
        ...

    def running_analyses(self, project: str) -> list[int]: ...

    def find_analysis_by_job(self, job_name: str) -> tuple[str, int] | None:
        """(project, analysis) of a processing job, through the job-name index."""
        ...

    def transition_analysis(
        self,
        project: str,
        analysis: int,
        to: AnalysisStatus,
        at: datetime,
        *,
        reason: str | None = None,
        summary: AnalysisSummary | None = None,
    ) -> bool:
        """Move to `to` when that is forward from the stored status; False otherwise (nothing written)."""
        ...

    def request_analysis_stop(self, project: str, analysis: int) -> bool:
        """Mark a queued or running analysis as asked to stop; False when it has ended."""
        ...


class ProcessingJobs(Protocol):
    """SageMaker Processing jobs (or the local runner behind the same API)."""

    def create(self, request: CreateProcessingJob) -> bool:
        """Start the job; False when a job of that name already exists (a repeated submission).
        Raises `JobRefused` on a permanent refusal, `ServiceUnavailable` on a transient one."""
        ...

    def stop(self, job_name: str) -> None: ...

    def describe(self, job_name: str) -> ProcessingJobDescription | None: ...
