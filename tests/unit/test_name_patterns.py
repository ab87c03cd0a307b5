"""Name patterns match whole strings: Python's `$` also matches before a trailing newline."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from segpipe.logic.jobspec import JobEnvironment, ResolvedTraining, build_training_job, training_config
from segpipe.models.common import Preset, is_item_name
from segpipe.models.jobs import CreateTrainingJob
from segpipe.models.request import TrainingRequest
from tests.helpers.versions import model_version


@pytest.mark.parametrize("name", ["cells\n", "cells\r\n", "\ncells", "ce\nlls"])
def test_an_item_name_with_a_newline_is_refused(name: str) -> None:
    assert is_item_name("cells")
    assert not is_item_name(name)


def test_a_dataset_key_with_a_trailing_newline_is_refused() -> None:
    body = {"label": "l", "model_type": "instance", "classes": ["nucleus"]}

    accepted = TrainingRequest.model_validate(
        {**body, "dataset": "projects/lab/datasets/cells/annotations.json"}
    )

    assert accepted.dataset_location("lab") == ("cells", "annotations.json")
    with pytest.raises(ValueError, match="dataset must be a name"):
        TrainingRequest.model_validate({**body, "dataset": "projects/lab/datasets/cells/annotations.json\n"})


def test_a_version_reference_with_a_trailing_newline_names_no_version() -> None:
    body = {"label": "l", "dataset": "cells", "model_type": "instance", "classes": ["nucleus"]}

    assert TrainingRequest.model_validate({**body, "base": "v3"}).base_version() == 3
    assert TrainingRequest.model_validate({**body, "base": "v3\n"}).base_version() is None


def test_a_job_name_with_a_trailing_newline_is_refused() -> None:
    request = TrainingRequest(label="l", dataset="cells", model_type="instance", classes=["nucleus"])
    config = training_config(request, ResolvedTraining(Preset.TINY, 5, 128), project="lab", version=1)
    env = JobEnvironment(image_uri="img:1", role_arn="arn:aws:iam::1:role/r", bucket="data")
    record = model_version(
        1, project="lab", dataset="cells", request=request, job_name="segpipe-lab-v1-abcdef12"
    )
    job = build_training_job(record, config=config, env=env)
    fields = job.model_dump()

    with pytest.raises(ValidationError, match="training job name"):
        CreateTrainingJob.model_validate({**fields, "TrainingJobName": "segpipe-lab-v1-abcdef12\n"})
