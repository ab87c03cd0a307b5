"""The analysis contracts: the request's folder rule, the pinned job configuration, the keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from segpipe.models import keys
from segpipe.models.analysis import AnalysisRequest, AnalysisStatus, AnalyzeConfig, object_columns
from segpipe.models.processing import CreateProcessingJob

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "analyze_config.json"


def test_the_pinned_job_configuration_parses_and_round_trips() -> None:
    raw = json.loads(FIXTURE.read_text())
    config = AnalyzeConfig.model_validate(raw)
    assert config.thresholds == {"nucleus": 0.5, "mitotic cell": 0.35}
    assert json.loads(config.model_dump_json(exclude_none=True)) == raw


def test_a_job_configuration_thresholds_every_class_and_no_other() -> None:
    raw = json.loads(FIXTURE.read_text())
    with pytest.raises(ValidationError, match="missing"):
        AnalyzeConfig.model_validate({**raw, "thresholds": {"nucleus": 0.5}})
    with pytest.raises(ValidationError, match="unknown"):
        AnalyzeConfig.model_validate({**raw, "thresholds": {**raw["thresholds"], "cell": 0.2}})


@pytest.mark.parametrize("folder", ["plate-7", "plate-7/day2", "a.b/c_d-e"])
def test_an_images_folder_is_segments_of_name_characters(folder: str) -> None:
    assert AnalysisRequest(name="run", images=folder).images == folder


@pytest.mark.parametrize(
    "folder", ["", "../x", "a/../b", "a//b", "a\nb", "plate\n", ".hidden", "a/b c", "é", "a/" * 9 + "a"]
)
def test_an_images_folder_refuses_traversal_and_odd_characters(folder: str) -> None:
    with pytest.raises(ValidationError):
        AnalysisRequest(name="run", images=folder)


def test_threshold_overrides_are_scores() -> None:
    with pytest.raises(ValidationError):
        AnalysisRequest(name="run", images="x", thresholds={"nucleus": 1.5})


def test_statuses_never_rank_backwards_from_an_end() -> None:
    assert AnalysisStatus.QUEUED.rank < AnalysisStatus.RUNNING.rank < AnalysisStatus.COMPLETED.rank
    assert {s for s in AnalysisStatus if s.terminal} == {"completed", "failed", "stopped"}


def test_object_columns_add_micrometres_only_with_a_pixel_size() -> None:
    plain = object_columns(channels=2, pixel_size=None)
    sized = object_columns(channels=2, pixel_size=0.5)
    assert "area_um2" not in plain and "area_um2" in sized
    assert plain[-4:] == ["mean_intensity_0", "max_intensity_0", "mean_intensity_1", "max_intensity_1"]


def test_analysis_request_keys_parse_back() -> None:
    key = keys.analysis_request_key("lab-1", "run.v2")
    assert keys.parse_analysis_request_key(key) == ("lab-1", "run.v2")
    assert keys.parse_analysis_request_key(keys.request_key("lab-1", "run")) is None
    assert keys.analysis_mask_key("p", 3, "a__b") == "projects/p/analyses/3/masks/a__b.tif"


def test_a_processing_job_name_follows_sagemakers_rule() -> None:
    with pytest.raises(ValidationError, match="processing job name"):
        CreateProcessingJob.model_validate(
            {
                "ProcessingJobName": "x" * 64,
                "ProcessingInputs": [],
                "ProcessingOutputConfig": {"Outputs": []},
                "ProcessingResources": {
                    "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 9}
                },
                "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
                "AppSpecification": {"ImageUri": "i", "ContainerEntrypoint": ["analyze"]},
                "RoleArn": "arn:aws:iam::123456789012:role/r",
            }
        )
