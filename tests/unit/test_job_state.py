"""Job-state events move a version forward only, whatever their order or repetition."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from segpipe.logic.job_state import JobStateDeps, apply_job_state
from segpipe.models import keys
from segpipe.models.common import VersionStatus
from segpipe.models.jobs import JobDescription
from segpipe.models.report import TrainingDetails
from segpipe.models.request import TrainingRequest
from segpipe.models.version import ModelVersion
from tests.helpers.outputs import evaluation, output_archive, prediction
from tests.unit.fakes import MemoryArtifacts, MemoryRegistry

NOW = datetime(2026, 11, 26, tzinfo=UTC)
JOB = "segpipe-lab-v1-abcdef12"

# The events SageMaker may send for each way a job can end (before any repetition or reordering).
LIFECYCLES = {
    VersionStatus.COMPLETED: ["InProgress", "Completed"],
    VersionStatus.FAILED: ["InProgress", "Failed"],
    VersionStatus.STOPPED: ["InProgress", "Stopping", "Stopped"],
}


def _deps(with_outputs: bool = True) -> JobStateDeps:
    registry = MemoryRegistry()
    request = TrainingRequest(label="l", dataset="cells", model_type="instance", classes=["nucleus"])
    registry.create_version(
        ModelVersion(
            project="lab",
            version=1,
            label="l",
            model_type="instance",
            classes=["nucleus"],
            dataset="cells",
            request=request,
            details=TrainingDetails(),
            job_name=JOB,
            created_at=NOW,
            updated_at=NOW,
        )
    )
    artifacts = MemoryArtifacts()
    if with_outputs:
        archive = output_archive(evaluation(["nucleus"]), [prediction("a.png", "test", ["nucleus"])])
        artifacts.put_bytes(keys.job_output_key("lab", 1, JOB, "output.tar.gz"), archive)
    return JobStateDeps(registry=registry, artifacts=artifacts, clock=lambda: NOW)


def _event(status: str) -> JobDescription:
    reason = "AlgorithmError: image 'b.tif' could not be read" if status == "Failed" else None
    return JobDescription(TrainingJobName=JOB, TrainingJobStatus=status, FailureReason=reason)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    ending=st.sampled_from(list(LIFECYCLES)),
    data=st.data(),
)
def test_shuffled_and_repeated_events_end_in_the_right_status(
    ending: VersionStatus, data: st.DataObject
) -> None:
    events = LIFECYCLES[ending]
    deliveries = data.draw(st.lists(st.sampled_from(events), min_size=len(events), max_size=8))
    deliveries = [*events, *deliveries]  # every event at least once ...
    shuffled = data.draw(st.permutations(deliveries))  # ... in any order, with repeats
    deps = _deps()

    for status in shuffled:
        apply_job_state(_event(status), deps=deps)

    final = deps.registry.get_version("lab", 1)
    assert final is not None
    assert final.status is ending
    assert [change.status for change in final.status_history] == sorted(
        {change.status for change in final.status_history}, key=lambda s: s.rank
    )


def test_completed_job_ingests_metrics_predictions_and_threshold() -> None:
    deps = _deps()

    outcome = apply_job_state(_event("Completed"), deps=deps)

    version = deps.registry.get_version("lab", 1)
    assert outcome.applied and version is not None
    assert version.status is VersionStatus.COMPLETED
    assert version.analysis_threshold == version.suggested_threshold == 0.45
    assert version.headline is not None and version.headline.split == "test"
    assert set(deps.registry.get_metrics("lab", 1)) == {"train", "test"}
    assert deps.artifacts.exists(keys.prediction_key("lab", 1, "test", "a"))
    assert deps.artifacts.exists(keys.preview_key("lab", 1, "a.png"))
    assert deps.artifacts.exists(keys.predictions_index_key("lab", 1))


def test_a_completed_job_without_outputs_fails_with_a_reason() -> None:
    deps = _deps(with_outputs=False)

    apply_job_state(_event("Completed"), deps=deps)

    version = deps.registry.get_version("lab", 1)
    assert version is not None and version.status is VersionStatus.FAILED
    assert version.failure_reason is not None and "output.tar.gz" in version.failure_reason


def test_failed_job_keeps_its_reason_and_unknown_jobs_are_ignored() -> None:
    deps = _deps()

    apply_job_state(_event("Failed"), deps=deps)
    stranger = apply_job_state(
        JobDescription(TrainingJobName="someone-elses-job", TrainingJobStatus="Completed"), deps=deps
    )

    version = deps.registry.get_version("lab", 1)
    assert version is not None and version.failure_reason == "AlgorithmError: image 'b.tif' could not be read"
    assert not stranger.applied and stranger.note == "no version has this job"
