"""In-memory fakes of the dal interfaces, with the same conditional semantics as the real ones."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any, Generic, TypeVar

from segpipe.dal.interfaces import Claim
from segpipe.errors import (
    AnalysisNotRunning,
    JobRefused,
    ObjectChanged,
    ObjectNotFound,
    SegpipeError,
    VersionNotRunning,
)
from segpipe.models.analysis import Analysis, AnalysisStatus, AnalysisStatusChange, AnalysisSummary
from segpipe.models.common import VersionStatus
from segpipe.models.jobs import CreateTrainingJob, JobDescription
from segpipe.models.processing import CreateProcessingJob, ProcessingJobDescription
from segpipe.models.version import ModelVersion, StatusChange

_Request = TypeVar("_Request", CreateTrainingJob, CreateProcessingJob)
_Description = TypeVar("_Description", JobDescription, ProcessingJobDescription)


class MemoryArtifacts:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/json") -> None:
        self.objects[key] = data

    def put_many(self, items: Iterable[tuple[str, bytes, str]]) -> int:
        count = 0
        for key, data, kind in items:
            self.put_bytes(key, data, kind)
            count += 1
        return count

    def get_bytes(self, key: str) -> bytes:
        if key not in self.objects:
            raise ObjectNotFound(f"No object at {key}.")
        return self.objects[key]

    def get_bytes_at(self, key: str, *, version_id: str | None = None, etag: str | None = None) -> bytes:
        """An unversioned bucket: the ETag (MD5 of a single-part upload) must still match."""
        data = self.get_bytes(key)
        if etag and hashlib.md5(data).hexdigest() != etag.strip('"'):
            raise ObjectChanged(f"{key} no longer has ETag {etag}.")
        return data

    def exists(self, key: str) -> bool:
        return key in self.objects

    def open_stream(self, key: str) -> IO[bytes]:
        return io.BytesIO(self.get_bytes(key))

    def list_keys(self, prefix: str) -> Iterator[str]:
        return iter(sorted(key for key in self.objects if key.startswith(prefix)))

    def presign_get(self, key: str, expires_in: int = 3600) -> str:
        return f"https://example.invalid/{key}?expires={expires_in}"


class MemoryClaims:
    """Request keys bound to numbers, one counter a project: the claims of one kind of item, which
    `MemoryRegistry` (versions) and `MemoryAnalyses` keep apart as the DynamoDB adapters do."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.claims: dict[tuple[str, str], Claim] = {}

    def find_claim(self, project: str, request_key: str) -> Claim | None:
        found = self.claims.get((project, request_key))
        return Claim(found.version, False, found.fingerprint) if found else None

    def claim(self, project: str, request_key: str, fingerprint: str, now: datetime) -> Claim:
        found = self.find_claim(project, request_key)
        if found:
            return found
        self.counters[project] = self.counters.get(project, 0) + 1
        claim = Claim(self.counters[project], True, fingerprint)
        self.claims[(project, request_key)] = claim
        return claim


def put_absent(records: dict[tuple[str, int], Any], key: tuple[str, int], record: Any) -> bool:
    """Store `record` under `key` unless one is there (a conditional put)."""
    if key in records:
        return False
    records[key] = record
    return True


def running(records: dict[tuple[str, int], Any], project: str) -> list[int]:
    """The numbers of the project's versions (analyses) that have not ended."""
    return sorted(n for (p, n), record in records.items() if p == project and not record.status.terminal)


def of_job(records: dict[tuple[str, int], Any], job_name: str) -> tuple[str, int] | None:
    """(project, number) of the version (analysis) whose job is `job_name`."""
    return next((key for key, record in records.items() if record.job_name == job_name), None)


class MemoryRegistry(MemoryClaims):
    def __init__(self) -> None:
        super().__init__()
        self.versions: dict[tuple[str, int], ModelVersion] = {}
        self.metrics: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}

    def create_version(self, version: ModelVersion) -> bool:
        return put_absent(self.versions, (version.project, version.version), version)

    def get_version(self, project: str, version: int) -> ModelVersion | None:
        return self.versions.get((project, version))

    def list_versions(self, project: str, *, active_only: bool = False) -> list[ModelVersion]:
        found = [v for (p, _), v in sorted(self.versions.items()) if p == project]
        return [v for v in found if v.active] if active_only else found

    def running_versions(self, project: str) -> list[int]:
        return running(self.versions, project)

    def find_by_job(self, job_name: str) -> tuple[str, int] | None:
        return of_job(self.versions, job_name)

    def transition(
        self, project: str, version: int, to: VersionStatus, at: datetime, *,
        reason: str | None = None, fields: dict[str, Any] | None = None,
    ) -> bool:  # fmt: skip
        current = self.versions.get((project, version))
        if current is None or to.rank <= current.status.rank:
            return False
        update: dict[str, Any] = {**(fields or {}), "status": to, "updated_at": at}
        update["status_history"] = [*current.status_history, StatusChange(status=to, at=at, reason=reason)]
        if to is VersionStatus.FAILED:
            update["failure_reason"] = reason
        self.versions[(project, version)] = ModelVersion.model_validate({**current.model_dump(), **update})
        return True

    def update_fields(
        self,
        project: str,
        version: int,
        fields: dict[str, Any],
        *,
        require_status: VersionStatus | None = None,
    ) -> bool:
        current = self.versions.get((project, version))
        if current is None or (require_status is not None and current.status is not require_status):
            return False
        self.versions[(project, version)] = ModelVersion.model_validate({**current.model_dump(), **fields})
        return True

    def set_active(self, project: str, version: int, active: bool) -> bool:
        if active:
            return self.update_fields(
                project, version, {"active": True}, require_status=VersionStatus.COMPLETED
            )
        return self.update_fields(project, version, {"active": False})

    def put_metrics(self, project: str, version: int, split: str, metrics: dict[str, Any]) -> None:
        self.metrics.setdefault((project, version), {})[split] = metrics

    def get_metrics(self, project: str, version: int) -> dict[str, dict[str, Any]]:
        return dict(self.metrics.get((project, version), {}))


class MemoryJobList(Generic[_Request, _Description]):
    """SageMaker jobs of one kind in memory, one a name: what `create` started, what `stop` stopped.
    SageMaker names a kind's fields after it (`TrainingJobName`, `ProcessingJobStatus`)."""

    def __init__(
        self, *, kind: str, description: type[_Description], not_running: type[SegpipeError]
    ) -> None:
        self.created: list[_Request] = []
        self.stopped: list[str] = []
        self._kind = kind.capitalize()
        self._description = description
        self._not_running = not_running

    def _names(self) -> set[str]:
        return {getattr(job, f"{self._kind}JobName") for job in self.created}

    def create(self, request: _Request) -> bool:
        if getattr(request, f"{self._kind}JobName") in self._names():
            return False
        self.created.append(request)
        return True

    def stop(self, job_name: str) -> None:
        if job_name not in self._names():
            raise self._not_running("no such job")
        self.stopped.append(job_name)

    def describe(self, job_name: str) -> _Description | None:
        if job_name not in self._names():
            return None
        fields = {f"{self._kind}JobName": job_name, f"{self._kind}JobStatus": "InProgress"}
        return self._description.model_validate(fields)


class MemoryJobs(MemoryJobList[CreateTrainingJob, JobDescription]):
    def __init__(self) -> None:
        super().__init__(kind="training", description=JobDescription, not_running=VersionNotRunning)


class MemoryAnalyses(MemoryClaims):
    """`AnalysisRegistry` in memory, with the DynamoDB adapter's conditional semantics."""

    def __init__(self) -> None:
        super().__init__()
        self.analyses: dict[tuple[str, int], Analysis] = {}

    def create_analysis(self, analysis: Analysis) -> bool:
        return put_absent(self.analyses, (analysis.project, analysis.analysis), analysis)

    def get_analysis(self, project: str, analysis: int) -> Analysis | None:
        return self.analyses.get((project, analysis))

    def list_analyses(self, project: str) -> list[Analysis]:
        return [a for (p, _), a in sorted(self.analyses.items(), reverse=True) if p == project]

    def running_analyses(self, project: str) -> list[int]:
        return running(self.analyses, project)

    def find_analysis_by_job(self, job_name: str) -> tuple[str, int] | None:
        return of_job(self.analyses, job_name)

    def transition_analysis(
        self, project: str, analysis: int, to: AnalysisStatus, at: datetime, *,
        reason: str | None = None, summary: AnalysisSummary | None = None,
    ) -> bool:  # fmt: skip
        current = self.analyses.get((project, analysis))
        if current is None or to.rank <= current.status.rank:
            return False
        update: dict[str, Any] = {"status": to, "updated_at": at}
        update["status_history"] = [
            *current.status_history,
            AnalysisStatusChange(status=to, at=at, reason=reason),
        ]
        if to is AnalysisStatus.FAILED:
            update["failure_reason"] = reason
        if to.terminal:
            update["ended_at"] = at
        if to in (AnalysisStatus.RUNNING, AnalysisStatus.COMPLETED) and current.started_at is None:
            update["started_at"] = at
        if summary is not None:
            update["summary"] = summary
        self.analyses[(project, analysis)] = current.model_copy(update=update)
        return True

    def request_analysis_stop(self, project: str, analysis: int) -> bool:
        current = self.analyses.get((project, analysis))
        if current is None or current.status.terminal:
            return False
        self.analyses[(project, analysis)] = current.model_copy(update={"stop_requested": True})
        return True


class MemoryProcessingJobs(MemoryJobList[CreateProcessingJob, ProcessingJobDescription]):
    """`ProcessingJobs` in memory; `refuse` makes the next create raise `JobRefused`."""

    def __init__(self) -> None:
        super().__init__(
            kind="processing", description=ProcessingJobDescription, not_running=AnalysisNotRunning
        )
        self.refuse: str | None = None

    def create(self, request: CreateProcessingJob) -> bool:
        if self.refuse is not None:
            raise JobRefused(self.refuse, job_name=request.ProcessingJobName)
        return super().create(request)
