"""A ProcessingJobs fake whose DescribeProcessingJob answers are set by the test (fakes.py's answers
InProgress for every job it created)."""

from __future__ import annotations

from segpipe.errors import AnalysisNotRunning
from segpipe.models.processing import ProcessingJobDescription
from tests.unit.fakes import MemoryAnalyses, MemoryProcessingJobs

__all__ = ["DescribedJobs", "MemoryAnalyses"]


class DescribedJobs(MemoryProcessingJobs):
    def __init__(self) -> None:
        super().__init__()
        self.descriptions: dict[str, ProcessingJobDescription] = {}

    def describe(self, job_name: str) -> ProcessingJobDescription | None:
        return self.descriptions.get(job_name)

    def stop(self, job_name: str) -> None:
        described = self.describe(job_name)
        if described is None or described.ProcessingJobStatus in ("Completed", "Failed", "Stopped"):
            raise AnalysisNotRunning("The processing job has already ended or does not exist.")
        self.stopped.append(job_name)
