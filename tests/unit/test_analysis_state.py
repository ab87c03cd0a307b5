"""Processing-job events move an analysis forward only, whatever their order or repetition."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from segpipe.logic.analysis_state import NO_REASON, AnalysisStateDeps, apply_processing_state
from segpipe.models import keys
from segpipe.models.analysis import OUTPUT_NAMES, Analysis, AnalysisStatus
from segpipe.models.processing import ProcessingJobDescription
from tests.helpers.analysis_shards import analysis_item, config, put_shards, sample_images
from tests.unit.analysis_fakes import DescribedJobs, MemoryAnalyses
from tests.unit.fakes import MemoryArtifacts

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
STARTED = NOW - timedelta(minutes=30)
ENDED = NOW - timedelta(minutes=1)
JOB = "segpipe-lab-a1-0123abcd"
IMAGES = sample_images(4)
SENTENCE = "Image 'sub 1/img-03.tif' could not be read: truncated TIFF."


def _deps(*, shards: bool = True, instances: int = 1) -> AnalysisStateDeps:
    analyses = MemoryAnalyses()
    cfg = config(images=len(IMAGES))
    analyses.create_analysis(analysis_item(cfg, job_name=JOB, instance_count=instances))
    artifacts = MemoryArtifacts()
    if shards:
        put_shards(artifacts, cfg, {"algo-1": IMAGES[:2], "algo-2": IMAGES[2:]})
    return AnalysisStateDeps(
        analyses=analyses,
        artifacts=artifacts,
        clock=lambda: NOW,
        jobs=DescribedJobs(),
        stack="stack-a",
    )


def _event(status: str, *, exit_message: str | None = None, **tags: str) -> ProcessingJobDescription:
    return ProcessingJobDescription.model_validate(
        {
            "ProcessingJobName": JOB,
            "ProcessingJobStatus": status,
            "ProcessingStartTime": STARTED,
            "ProcessingEndTime": ENDED if status in ("Completed", "Failed", "Stopped") else None,
            "FailureReason": "AlgorithmError: exit code 1" if status == "Failed" else None,
            "ExitMessage": exit_message,
            "Tags": [{"Key": "segpipe:stack", "Value": tags.get("stack", "stack-a")}],
        }
    )


def _item(deps: AnalysisStateDeps) -> Analysis:
    item = deps.analyses.get_analysis("lab", 1)
    assert item is not None
    return item


def _ended_without_a_start(status: str) -> Analysis:
    """The analysis after one `status` event that has an end time but no start time."""
    deps = _deps()
    apply_processing_state(
        ProcessingJobDescription(ProcessingJobName=JOB, ProcessingJobStatus=status, ProcessingEndTime=ENDED),
        deps=deps,
    )
    return _item(deps)


SEQUENCES = {
    AnalysisStatus.COMPLETED: ["InProgress", "InProgress", "Completed"],
    AnalysisStatus.FAILED: ["InProgress", "Failed", "Failed"],
    AnalysisStatus.STOPPED: ["InProgress", "Stopping", "Stopped"],
}


@pytest.mark.parametrize("ending", list(SEQUENCES), ids=lambda s: s.value)
def test_every_order_of_the_events_ends_in_the_same_item(ending: AnalysisStatus) -> None:
    items = []
    for order in set(itertools.permutations(SEQUENCES[ending])):
        deps = _deps()
        for status in order:
            apply_processing_state(_event(status, exit_message=SENTENCE), deps=deps)
        items.append(_item(deps))

    assert items[0].status is ending
    assert all(item == items[0] for item in items[1:])
    assert [change.status for change in items[0].status_history] == [AnalysisStatus.RUNNING, ending]
    assert items[0].started_at == STARTED and items[0].ended_at == ENDED


def test_in_progress_moves_a_queued_analysis_to_running_once() -> None:
    deps = _deps()

    first = apply_processing_state(_event("InProgress"), deps=deps)
    again = apply_processing_state(_event("InProgress"), deps=deps)

    assert first.applied and first.after is AnalysisStatus.RUNNING
    assert not again.applied and again.note == "stale or repeated event"
    assert _item(deps).status is AnalysisStatus.RUNNING


def test_completed_merges_the_shards_and_stores_the_summary() -> None:
    deps = _deps(instances=2)

    outcome = apply_processing_state(_event("Completed"), deps=deps)

    item = _item(deps)
    assert outcome.applied and item.status is AnalysisStatus.COMPLETED
    assert item.summary is not None and item.summary.images == len(IMAGES)
    assert item.summary.hosts == ["algo-1", "algo-2"]
    assert item.summary.objects == sum(len(i.objects) for i in IMAGES)
    for name in OUTPUT_NAMES:
        assert deps.artifacts.exists(keys.analysis_output_key("lab", 1, name))


def test_a_completed_job_whose_shards_cannot_be_merged_fails_with_the_reason() -> None:
    deps = _deps()
    del deps.artifacts.objects[f"{keys.analysis_shards_prefix('lab', 1)}algo-2/objects.csv"]  # type: ignore[attr-defined]

    outcome = apply_processing_state(_event("Completed"), deps=deps)
    repeated = apply_processing_state(_event("Completed"), deps=deps)

    item = _item(deps)
    assert outcome.applied and outcome.after is AnalysisStatus.FAILED
    assert outcome.note == "analysis_shard_missing"
    assert item.status is AnalysisStatus.FAILED and item.summary is None
    assert item.failure_reason == "Instance algo-2 wrote no objects.csv; its results cannot be merged."
    assert not repeated.applied  # handled once: a redelivery does not merge again
    assert not deps.artifacts.exists(keys.analysis_output_key("lab", 1, "coco.json"))


def test_a_completed_job_with_fewer_shards_than_instances_fails() -> None:
    deps = _deps(instances=3)

    apply_processing_state(_event("Completed"), deps=deps)

    item = _item(deps)
    assert item.status is AnalysisStatus.FAILED
    assert item.failure_reason is not None and "Only 2 of the job's 3 instances" in item.failure_reason


def test_a_late_completed_after_stopped_does_nothing() -> None:
    deps = _deps()
    apply_processing_state(_event("Stopped"), deps=deps)

    late = apply_processing_state(_event("Completed"), deps=deps)

    assert not late.applied and _item(deps).status is AnalysisStatus.STOPPED
    assert _item(deps).summary is None
    assert not deps.artifacts.exists(keys.analysis_output_key("lab", 1, "coco.json"))  # no merge either


def test_a_failure_keeps_the_containers_sentence_before_sagemakers_reason() -> None:
    deps = _deps()

    apply_processing_state(_event("Failed", exit_message=f"{SENTENCE}\n"), deps=deps)

    assert _item(deps).failure_reason == SENTENCE


def test_a_failure_event_without_the_message_asks_describe_for_it() -> None:
    deps = _deps()
    assert isinstance(deps.jobs, DescribedJobs)
    deps.jobs.descriptions[JOB] = ProcessingJobDescription(
        ProcessingJobName=JOB, ProcessingJobStatus="Failed", ExitMessage=SENTENCE
    )

    apply_processing_state(_event("Failed"), deps=deps)

    assert _item(deps).failure_reason == SENTENCE


def test_a_failure_without_any_message_falls_back_to_sagemakers_reason_then_a_sentence() -> None:
    deps = _deps()
    apply_processing_state(_event("Failed"), deps=deps)
    assert _item(deps).failure_reason == "AlgorithmError: exit code 1"

    bare = _deps()
    apply_processing_state(
        ProcessingJobDescription(ProcessingJobName=JOB, ProcessingJobStatus="Failed"), deps=bare
    )
    assert _item(bare).failure_reason == NO_REASON
    assert _item(bare).started_at is None  # failed before it ever ran


def test_a_failure_straight_from_queued_without_a_start_never_ran() -> None:
    item = _ended_without_a_start("Stopped")

    assert item.status is AnalysisStatus.STOPPED and item.started_at is None
    assert [change.status for change in item.status_history] == [AnalysisStatus.STOPPED]


def test_events_of_unknown_jobs_and_other_stacks_are_ignored() -> None:
    deps = _deps()

    stranger = apply_processing_state(
        ProcessingJobDescription(ProcessingJobName="someone-else", ProcessingJobStatus="Completed"), deps=deps
    )
    other_stack = apply_processing_state(_event("Completed", stack="stack-b"), deps=deps)

    assert not stranger.applied and stranger.note == "no analysis has this job"
    assert not other_stack.applied and other_stack.note == "another stack's job"
    assert _item(deps).status is AnalysisStatus.QUEUED


def test_a_completed_event_without_a_start_time_never_starts_after_it_ended() -> None:
    item = _ended_without_a_start("Completed")

    assert item.status is AnalysisStatus.COMPLETED
    assert item.started_at == item.ended_at == ENDED
