"""Submitting an analysis: numbering, idempotency, the frozen item, the job, and nothing on errors."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from segpipe.errors import IdempotencyKeyReused, ServiceUnavailable
from segpipe.logic.analysis_checks import AnalysisSources
from segpipe.logic.analysis_submit import (
    AnalysisSubmitDeps,
    RejectedAnalysis,
    analysis_fingerprint,
    preview_analysis,
    submit_analysis,
)
from segpipe.logic.jobspec import JobEnvironment
from segpipe.models.analysis import AnalysisRequest, AnalysisStatus, AnalyzeConfig
from segpipe.models.jobs import JOB_NAME_PATTERN
from segpipe.models.processing import CONFIG_INPUT, IMAGES_INPUT, MODEL_INPUT, PROGRESS_OUTPUT
from tests.unit.fakes import MemoryAnalyses, MemoryProcessingJobs
from tests.unit.test_analysis_checks import ARTIFACT, NOW, World, png, version

ENV = JobEnvironment(
    image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/segpipe:1",
    role_arn="arn:aws:iam::123456789012:role/sm",
    bucket="bucket",
    volume_gb=40,
    stack="segpipe-test",
)


class Setup:
    def __init__(self, world: World | None = None) -> None:
        self.world = world or World(version(analysis_threshold=0.5))
        for index in range(3):
            self.world.put(f"well-{index}.png", png())
        self.analyses = MemoryAnalyses()
        self.jobs = MemoryProcessingJobs()
        self.deps = AnalysisSubmitDeps(
            sources=AnalysisSources(
                images=self.world.images, artifacts=self.world.artifacts, registry=self.world.registry
            ),
            analyses=self.analyses,
            jobs=self.jobs,
            env=ENV,
            clock=lambda: NOW,
        )

    def submit(self, key: str = "http:lab:k1", **body: Any) -> Any:
        request = AnalysisRequest.model_validate({"name": "plate one", "images": "plate-1", **body})
        return submit_analysis(
            request, project="lab", request_key=key, fingerprint=analysis_fingerprint(request), deps=self.deps
        )

    def written(self) -> list[str]:
        return sorted(self.world.artifacts.objects)


def test_a_submission_freezes_an_item_writes_the_config_and_starts_one_job() -> None:
    setup = Setup()

    outcome = setup.submit(thresholds={"mitosis": 0.8}, pixel_size=0.5)

    assert (outcome.analysis, outcome.status, outcome.repeated) == (1, AnalysisStatus.QUEUED, False)
    item = setup.analyses.get_analysis("lab", 1)
    assert item is not None and item.job_name == outcome.job_name == outcome.report.job_name
    assert item.thresholds == {"nucleus": 0.5, "mitosis": 0.8} and item.version == 1
    assert [change.status for change in item.status_history] == ["queued"]
    config = AnalyzeConfig.model_validate_json(
        setup.world.artifacts.objects["projects/lab/analyses/1/job/analyze.json"]
    )
    assert config.thresholds == item.thresholds and config.image_count == 3 and config.pixel_size == 0.5
    assert config.images_folder == "plate-1" and config.classes == ["nucleus", "mitosis"]
    assert [job.ProcessingJobName for job in setup.jobs.created] == [item.job_name]


def test_the_processing_job_request() -> None:
    setup = Setup()
    outcome = setup.submit(compute={"instance_type": "ml.g5.xlarge", "max_hours": 1.5})

    job = setup.jobs.created[0]
    assert re.fullmatch(JOB_NAME_PATTERN, job.ProcessingJobName) and len(job.ProcessingJobName) <= 63
    assert job.ProcessingJobName.startswith("segpipe-lab-a1-")
    assert job.AppSpecification.ImageUri == ENV.image_uri
    assert job.AppSpecification.ContainerEntrypoint == ["analyze"]
    inputs = {item.InputName: item.S3Input for item in job.ProcessingInputs}
    assert inputs["model"].S3Uri == ARTIFACT and inputs["model"].LocalPath == MODEL_INPUT
    assert inputs["images"].S3Uri == "s3://bucket/projects/lab/images/plate-1/"
    assert inputs["images"].LocalPath == IMAGES_INPUT
    assert inputs["images"].S3DataDistributionType == "FullyReplicated"
    assert inputs["config"].S3Uri == "s3://bucket/projects/lab/analyses/1/job/"
    assert inputs["config"].LocalPath == CONFIG_INPUT
    outputs = {item.OutputName: item.S3Output for item in job.ProcessingOutputConfig.Outputs}
    assert {name: output.S3Uri for name, output in outputs.items()} == {
        "shards": "s3://bucket/projects/lab/analyses/1/shards/",
        "images": "s3://bucket/projects/lab/analyses/1/images/",
        "masks": "s3://bucket/projects/lab/analyses/1/masks/",
        "progress": "s3://bucket/projects/lab/analyses/1/progress/",
    }
    assert {name: output.S3UploadMode for name, output in outputs.items()} == {
        "shards": "EndOfJob", "images": "EndOfJob", "masks": "EndOfJob", "progress": "Continuous",
    }  # fmt: skip
    assert outputs["progress"].LocalPath == PROGRESS_OUTPUT
    assert job.StoppingCondition.MaxRuntimeInSeconds == 5400
    cluster = job.ProcessingResources.ClusterConfig
    assert (cluster.InstanceType, cluster.InstanceCount, cluster.VolumeSizeInGB) == ("ml.g5.xlarge", 1, 40)
    assert job.RoleArn == ENV.role_arn
    assert {tag.Key: tag.Value for tag in job.Tags} == {
        "segpipe:project": "lab", "segpipe:analysis": "1", "segpipe:version": "1",
        "segpipe:stack": "segpipe-test",
    }  # fmt: skip
    assert job.Environment == {"SEGPIPE_PROJECT": "lab", "SEGPIPE_ANALYSIS": "1", "SEGPIPE_VERSION": "1"}
    assert outcome.job_name == job.ProcessingJobName


def test_several_instances_shard_the_images_by_key() -> None:
    setup = Setup()
    setup.submit(compute={"instance_count": 3})
    images = next(item for item in setup.jobs.created[0].ProcessingInputs if item.InputName == "images")
    assert images.S3Input.S3DataDistributionType == "ShardedByS3Key"
    assert setup.jobs.created[0].ProcessingResources.ClusterConfig.InstanceCount == 3


def test_a_repeated_delivery_gives_the_same_analysis_and_one_job() -> None:
    setup = Setup()
    first = setup.submit()
    again = setup.submit()

    assert (again.analysis, again.job_name, again.repeated) == (first.analysis, first.job_name, True)
    assert len(setup.jobs.created) == 1 and len(setup.analyses.analyses) == 1
    assert setup.submit(key="http:lab:k2").analysis == 2


def test_the_same_key_with_another_body_is_refused() -> None:
    setup = Setup()
    setup.submit()
    with pytest.raises(IdempotencyKeyReused):
        setup.submit(name="another")
    assert len(setup.jobs.created) == 1


def test_errors_leave_nothing_behind_and_take_no_number() -> None:
    setup = Setup()

    outcome = setup.submit(images="plate-404")

    assert isinstance(outcome, RejectedAnalysis) and not outcome.report.ok
    assert [issue.code for issue in outcome.report.errors] == ["no_images"]
    assert setup.analyses.analyses == {} and setup.analyses.claims == {} and setup.analyses.counters == {}
    assert setup.written() == [] and setup.jobs.created == []
    assert setup.submit().analysis == 1


def test_a_permanent_refusal_marks_the_analysis_failed_with_the_reason() -> None:
    setup = Setup()
    setup.jobs.refuse = "SageMaker refused the processing job: ResourceLimitExceeded"

    outcome = setup.submit()

    assert outcome.status is AnalysisStatus.FAILED
    item = setup.analyses.get_analysis("lab", 1)
    assert item is not None and item.status is AnalysisStatus.FAILED
    assert item.failure_reason == setup.jobs.refuse


def test_a_restart_after_the_item_was_written_starts_the_job_on_retry() -> None:
    setup = Setup()
    create = setup.jobs.create

    def unavailable(request: Any) -> bool:
        raise ServiceUnavailable("SageMaker did not answer")

    setup.jobs.create = unavailable  # type: ignore[method-assign]
    with pytest.raises(ServiceUnavailable):
        setup.submit()
    assert setup.analyses.get_analysis("lab", 1) is not None and setup.jobs.created == []

    setup.jobs.create = create  # type: ignore[method-assign]
    # The version was deactivated meanwhile: what was accepted still runs, unchecked again.
    setup.world.registry.set_active("lab", 1, False)
    outcome = setup.submit()

    assert (outcome.analysis, outcome.status, outcome.repeated) == (1, AnalysisStatus.QUEUED, True)
    assert [job.ProcessingJobName for job in setup.jobs.created] == [outcome.job_name]


def test_a_restart_before_the_item_was_written_finishes_under_the_same_number() -> None:
    setup = Setup()
    put = setup.world.artifacts.put_bytes

    def failing(key: str, data: bytes, content_type: str = "application/json") -> None:
        raise ServiceUnavailable("S3 did not answer")

    setup.world.artifacts.put_bytes = failing  # type: ignore[method-assign]
    with pytest.raises(ServiceUnavailable):
        setup.submit()
    assert setup.analyses.analyses == {} and setup.analyses.counters == {"lab": 1}

    setup.world.artifacts.put_bytes = put  # type: ignore[method-assign]
    outcome = setup.submit()

    assert outcome.analysis == 1 and len(setup.jobs.created) == 1
    assert setup.analyses.counters == {"lab": 1}


def test_a_preview_writes_nothing() -> None:
    setup = Setup()
    request = AnalysisRequest(name="p", images="plate-1")

    report = preview_analysis(request, project="lab", deps=setup.deps)

    assert report.ok and report.analysis is None and report.details.images == 3
    assert setup.written() == [] and setup.analyses.claims == {} and setup.jobs.created == []


def test_the_item_freezes_the_thresholds_a_later_lock_does_not_change() -> None:
    setup = Setup()
    setup.submit()
    setup.world.registry.update_fields("lab", 1, {"analysis_threshold": 0.9})

    item = setup.analyses.get_analysis("lab", 1)
    config = json.loads(setup.world.artifacts.objects["projects/lab/analyses/1/job/analyze.json"])
    assert item is not None and item.thresholds == {"nucleus": 0.5, "mitosis": 0.5}
    assert config["thresholds"] == {"nucleus": 0.5, "mitosis": 0.5}
    assert setup.submit(key="http:lab:k2").report.details.thresholds == {"nucleus": 0.9, "mitosis": 0.9}
