"""In-memory fakes of the analysis interfaces (AnalysisRegistry, ProcessingJobs), with the DynamoDB
registry's conditional semantics: forward-only transitions, start time set once, history appended."""

from __future__ import annotations

from datetime import datetime

from segpipe.dal.interfaces import Claim
from segpipe.errors import AnalysisNotRunning
from segpipe.models.analysis import Analysis, AnalysisStatus, AnalysisStatusChange, AnalysisSummary
from segpipe.models.processing import CreateProcessingJob, ProcessingJobDescription


class MemoryAnalyses:
    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.claims: dict[tuple[str, str], Claim] = {}
        self.items: dict[tuple[str, int], Analysis] = {}

    def find_analysis_claim(self, project: str, request_key: str) -> Claim | None:
        found = self.claims.get((project, request_key))
        return Claim(found.version, False, found.fingerprint) if found else None

    def claim_analysis(self, project: str, request_key: str, fingerprint: str, now: datetime) -> Claim:
        if existing := self.find_analysis_claim(project, request_key):
            return existing
        self.counters[project] = self.counters.get(project, 0) + 1
        claim = Claim(self.counters[project], True, fingerprint)
        self.claims[(project, request_key)] = claim
        return claim

    def create_analysis(self, analysis: Analysis) -> bool:
        key = (analysis.project, analysis.analysis)
        if key in self.items:
            return False
        self.items[key] = analysis
        return True

    def get_analysis(self, project: str, analysis: int) -> Analysis | None:
        return self.items.get((project, analysis))

    def list_analyses(self, project: str) -> list[Analysis]:
        return sorted((a for (p, _), a in self.items.items() if p == project), key=lambda a: -a.analysis)

    def running_analyses(self, project: str) -> list[int]:
        return sorted(n for (p, n), a in self.items.items() if p == project and not a.status.terminal)

    def find_analysis_by_job(self, job_name: str) -> tuple[str, int] | None:
        return next(((a.project, a.analysis) for a in self.items.values() if a.job_name == job_name), None)

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
        current = self.items.get((project, analysis))
        if current is None or to.rank <= current.status.rank:
            return False
        change = AnalysisStatusChange(status=to, at=at, reason=reason)
        update: dict[str, object] = {
            "status": to,
            "updated_at": at,
            "status_history": [*current.status_history, change],
        }
        if to.terminal:
            update["ended_at"] = at
        if to in (AnalysisStatus.RUNNING, AnalysisStatus.COMPLETED) and current.started_at is None:
            update["started_at"] = at
        if to is AnalysisStatus.FAILED and reason is not None:
            update["failure_reason"] = reason
        if summary is not None:
            update["summary"] = summary
        self.items[(project, analysis)] = current.model_copy(update=update)
        return True

    def request_analysis_stop(self, project: str, analysis: int) -> bool:
        current = self.items.get((project, analysis))
        if current is None or current.status.terminal:
            return False
        self.items[(project, analysis)] = current.model_copy(update={"stop_requested": True})
        return True


class MemoryProcessingJobs:
    def __init__(self) -> None:
        self.created: list[CreateProcessingJob] = []
        self.stopped: list[str] = []
        self.descriptions: dict[str, ProcessingJobDescription] = {}

    def create(self, request: CreateProcessingJob) -> bool:
        if any(job.ProcessingJobName == request.ProcessingJobName for job in self.created):
            return False
        self.created.append(request)
        return True

    def stop(self, job_name: str) -> None:
        described = self.describe(job_name)
        if described is None or described.ProcessingJobStatus in ("Completed", "Failed", "Stopped"):
            raise AnalysisNotRunning("The processing job has already ended or does not exist.")
        self.stopped.append(job_name)

    def describe(self, job_name: str) -> ProcessingJobDescription | None:
        return self.descriptions.get(job_name)
