"""Reading analyses: progress summed over instances, views, pages; stopping only what runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from segpipe.errors import AnalysisNotCompleted, AnalysisNotFound, AnalysisNotRunning
from segpipe.logic import analyses_api
from segpipe.logic.analyses_api import AnalysesDeps
from segpipe.logic.analysis_state import AnalysisStateDeps, apply_processing_state
from segpipe.models import keys
from segpipe.models.analysis import AnalysisStatus
from segpipe.models.processing import ProcessingJobDescription
from tests.helpers.analysis_shards import analysis_item, config, put_progress, put_shards, sample_images
from tests.unit.analysis_fakes import DescribedJobs, MemoryAnalyses
from tests.unit.fakes import MemoryArtifacts

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
IMAGES = sample_images(4)


def _deps() -> AnalysesDeps:
    analyses = MemoryAnalyses()
    cfg = config(images=len(IMAGES))
    analyses.create_analysis(analysis_item(cfg, job_name="job-1"))
    return AnalysesDeps(
        analyses=analyses, artifacts=MemoryArtifacts(), jobs=DescribedJobs(), clock=lambda: NOW
    )


def _event(deps: AnalysesDeps, status: str) -> None:
    state = AnalysisStateDeps(analyses=deps.analyses, artifacts=deps.artifacts, clock=lambda: NOW)
    apply_processing_state(
        ProcessingJobDescription(ProcessingJobName="job-1", ProcessingJobStatus=status),
        deps=state,  # type: ignore[arg-type]
    )


def test_progress_is_summed_over_the_instances_and_skips_what_it_cannot_read() -> None:
    deps = _deps()
    _event(deps, "InProgress")
    cfg = config(images=len(IMAGES))
    put_progress(deps.artifacts, cfg, "algo-1", 2, 2)
    put_progress(deps.artifacts, cfg, "algo-2", 1, 2)
    deps.artifacts.put_bytes(f"{keys.analysis_progress_prefix('lab', 1)}algo-3.json", b"{half written")

    table = analyses_api.list_analyses("lab", deps=deps)

    assert table.analyses[0].images_done == 3 and table.analyses[0].images == 4


def test_progress_never_reports_more_images_than_the_analysis_has() -> None:
    deps = _deps()
    _event(deps, "InProgress")
    put_progress(deps.artifacts, config(), "algo-1", 9, 9)

    assert analyses_api.get_analysis("lab", 1, deps=deps).images_done == 4


def test_before_any_instance_reports_progress_is_unknown_not_zero() -> None:
    deps = _deps()
    _event(deps, "InProgress")

    assert analyses_api.get_analysis("lab", 1, deps=deps).images_done is None


def test_a_completed_analysis_shows_its_summary_counts_and_links() -> None:
    deps = _deps()
    put_shards(deps.artifacts, config(images=len(IMAGES)), {"algo-1": IMAGES})
    _event(deps, "Completed")

    view = analyses_api.get_analysis("lab", 1, deps=deps)

    assert view.status is AnalysisStatus.COMPLETED and view.images_done == 4
    assert view.objects == {
        name: sum(1 for i in IMAGES for o in i.objects if o.category == name) for name in view.classes
    }
    assert view.outputs["coco.json"].startswith("https://example.invalid/projects/lab/analyses/1/coco.json")


def test_results_of_an_analysis_that_has_not_completed_are_refused() -> None:
    deps = _deps()

    with pytest.raises(AnalysisNotCompleted, match="queued"):
        analyses_api.images_page("lab", 1, offset=0, limit=10, deps=deps)
    with pytest.raises(AnalysisNotCompleted):
        analyses_api.analysed_image("lab", 1, "a", deps=deps)
    with pytest.raises(AnalysisNotFound):
        analyses_api.get_analysis("lab", 2, deps=deps)


def test_stop_asks_the_job_and_marks_the_request_but_not_an_ended_analysis() -> None:
    deps = _deps()
    assert isinstance(deps.jobs, DescribedJobs)
    deps.jobs.descriptions["job-1"] = ProcessingJobDescription(
        ProcessingJobName="job-1", ProcessingJobStatus="InProgress"
    )

    view = analyses_api.stop_analysis("lab", 1, deps=deps)

    assert deps.jobs.stopped == ["job-1"] and view.status is AnalysisStatus.QUEUED
    item = deps.analyses.get_analysis("lab", 1)
    assert item is not None and item.stop_requested
    _event(deps, "Stopped")
    with pytest.raises(AnalysisNotRunning, match="stopped"):
        analyses_api.stop_analysis("lab", 1, deps=deps)


def test_a_queued_analysis_whose_job_never_started_is_stopped_at_once() -> None:
    deps = _deps()

    view = analyses_api.stop_analysis("lab", 1, deps=deps)

    assert view.status is AnalysisStatus.STOPPED
    assert view.status_history[-1].reason == analyses_api.NEVER_STARTED
    assert isinstance(deps.jobs, DescribedJobs) and deps.jobs.stopped == []


def test_a_queued_analysis_whose_job_has_already_ended_is_not_stopped() -> None:
    deps = _deps()
    assert isinstance(deps.jobs, DescribedJobs)
    deps.jobs.descriptions["job-1"] = ProcessingJobDescription(
        ProcessingJobName="job-1", ProcessingJobStatus="Completed"
    )

    with pytest.raises(AnalysisNotRunning):
        analyses_api.stop_analysis("lab", 1, deps=deps)
    item = deps.analyses.get_analysis("lab", 1)
    assert item is not None and item.status is AnalysisStatus.QUEUED  # its Completed event will move it
