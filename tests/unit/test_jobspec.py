"""The CreateTrainingJob request built for a version."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from segpipe.logic.jobspec import (
    METRIC_DEFINITIONS,
    JobEnvironment,
    ResolvedTraining,
    build_training_job,
    job_name,
    training_config,
)
from segpipe.models.common import PROJECT_PATTERN, Preset
from segpipe.models.jobs import CreateTrainingJob
from segpipe.models.presets import PRESETS
from segpipe.models.request import TrainingRequest
from segpipe.models.trainer_io import TrainingConfig
from tests.helpers.versions import model_version

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ENV = JobEnvironment(image_uri="img:1", role_arn="arn:aws:iam::1:role/r", bucket="data", stack="st")


def _request(**changes: object) -> TrainingRequest:
    body = {"label": "first", "dataset": "cells", "model_type": "instance", "classes": ["nucleus"], **changes}
    return TrainingRequest.model_validate(body)


def _job(request: TrainingRequest, version: int = 3, base: str | None = None) -> CreateTrainingJob:
    config = training_config(request, ResolvedTraining(Preset.TINY, 5, 128), project="lab", version=version)
    record = model_version(
        version,
        project="lab",
        dataset="cells",
        request=request,
        job_name=job_name("lab", version, "k", salt="s"),
    )
    return build_training_job(record, config=config, env=ENV, base_artifact=base)


@given(
    project=st.from_regex(PROJECT_PATTERN, fullmatch=True),
    version=st.integers(min_value=1, max_value=999_999),
    key=st.text(max_size=300),
)
def test_job_names_follow_sagemakers_rule_and_are_deterministic(project: str, version: int, key: str) -> None:
    name = job_name(project, version, key, salt="stack/bucket")

    assert SAGEMAKER_NAME.match(name), name
    assert len(name) <= 63
    assert name.startswith("segpipe-") and f"-v{version}-" in name
    assert name == job_name(project, version, key, salt="stack/bucket")


def test_job_names_differ_between_requests_and_deployments() -> None:
    names = {
        job_name("lab", 1, "a", salt="s1"),
        job_name("lab", 1, "b", salt="s1"),
        job_name("lab", 1, "a", salt="s2"),
    }
    assert len(names) == 3


def test_spot_job_has_checkpoints_and_waits_longer_than_it_runs() -> None:
    job = _job(_request(compute={"max_hours": 2}))

    assert job.EnableManagedSpotTraining is True
    assert job.StoppingCondition.MaxRuntimeInSeconds == 7200
    assert job.StoppingCondition.MaxWaitTimeInSeconds is not None
    assert job.StoppingCondition.MaxWaitTimeInSeconds > job.StoppingCondition.MaxRuntimeInSeconds
    assert job.CheckpointConfig is not None
    assert job.CheckpointConfig.S3Uri == "s3://data/projects/lab/models/3/checkpoints/"


def test_on_demand_job_sets_no_wait_time() -> None:
    job = _job(_request(compute={"spot": False}))

    assert job.EnableManagedSpotTraining is False
    assert job.StoppingCondition.MaxWaitTimeInSeconds is None


def test_channels_modes_and_optional_base() -> None:
    without = _job(_request())
    with_base = _job(_request(base="v2"), base="s3://data/projects/lab/models/2/output/j/output/model.tar.gz")

    channels = {c.ChannelName: c for c in without.InputDataConfig}
    assert set(channels) == {"dataset", "split"}
    assert channels["dataset"].InputMode == "FastFile"
    assert channels["dataset"].DataSource.S3DataSource.S3Uri == "s3://data/projects/lab/datasets/cells/"
    assert channels["split"].DataSource.S3DataSource.S3Uri == "s3://data/projects/lab/models/3/split/"
    assert [c.ChannelName for c in with_base.InputDataConfig] == ["dataset", "split", "base"]


def test_hyperparameters_are_readable_strings_that_the_trainer_parses() -> None:
    job = _job(
        _request(
            training={"learning_rate": 0.001, "batch_size": 4}, test_set={"strategy": "fraction", "seed": 9}
        )
    )

    config = TrainingConfig.from_hyperparameters(job.HyperParameters)
    assert job.HyperParameters["classes"] == '["nucleus"]'
    assert (config.learning_rate, config.batch_size, config.seed, config.preset) == (0.001, 4, 9, Preset.TINY)


@pytest.mark.parametrize("preset", list(Preset))
def test_a_training_without_a_learning_rate_gets_its_presets_written_out(preset: Preset) -> None:
    # Given a request that sets no learning rate, and one that does
    unset = training_config(_request(), ResolvedTraining(preset, 5, 128), project="lab", version=1)
    own = training_config(
        _request(training={"learning_rate": 0.02}), ResolvedTraining(preset, 5, 128), project="lab", version=1
    )

    # Then the first trains at its preset's rate, written into the hyperparameters, the second at its own
    assert unset.to_hyperparameters()["learning_rate"] == str(PRESETS[preset].learning_rate)
    assert own.learning_rate == 0.02


def test_tags_and_metric_definitions() -> None:
    job = _job(_request(label="nuclei, 2nd try!"))

    assert job.tag("segpipe:project") == "lab"
    assert job.tag("segpipe:version") == "3"
    assert job.tag("segpipe:stack") == "st"
    assert job.tag("segpipe:label") == "nuclei_ 2nd try_"
    regexes = {d.Name: re.compile(d.Regex) for d in job.AlgorithmSpecification.MetricDefinitions}
    assert len(regexes) == len(METRIC_DEFINITIONS)
    line = "epoch=3 train_loss=0.123456 val_loss=0.2 val_score=0.875"
    assert regexes["train:loss"].search(line)[1] == "0.123456"  # type: ignore[index]
    assert regexes["validation:score"].search(line)[1] == "0.875"  # type: ignore[index]


def test_the_contract_refuses_spot_without_a_longer_wait() -> None:
    job = _job(_request())
    data = job.model_dump()
    data["StoppingCondition"]["MaxWaitTimeInSeconds"] = data["StoppingCondition"]["MaxRuntimeInSeconds"]

    with pytest.raises(ValidationError, match="MaxWaitTimeInSeconds"):
        CreateTrainingJob.model_validate(data)


def test_the_contract_refuses_a_bad_job_name() -> None:
    data = _job(_request()).model_dump()
    data["TrainingJobName"] = "x" * 64

    with pytest.raises(ValidationError, match="63"):
        CreateTrainingJob.model_validate(data)
