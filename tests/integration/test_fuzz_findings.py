"""Findings of the schemathesis run (tests/integration/test_fuzz_api.py), each kept as a regression
test that calls the real handler under moto."""

from __future__ import annotations

from typing import Any

import pytest

from segpipe.models import keys
from tests.helpers.datasets import DatasetBuilder
from tests.helpers.outputs import evaluation, output_archive, prediction
from tests.integration.conftest import Aws, request_body, upload_dataset


@pytest.fixture
def completed(aws: Aws) -> Aws:
    """Version 1 of project lab, completed."""
    builder = DatasetBuilder(classes=["nucleus"], seed=5)
    builder.add_images(16, objects={"nucleus": 4})
    upload_dataset(aws, builder)
    status, body = aws.api("POST", "/projects/lab/trainings", body=request_body())
    assert status == 202
    archive = output_archive(evaluation(["nucleus"]), [prediction("img_00001.png", "test", ["nucleus"])])
    job = body["job_name"]
    aws.s3.put_object(
        Bucket=aws.bucket, Key=keys.job_output_key("lab", 1, job, "output.tar.gz"), Body=archive
    )
    aws.job_event(job, "Completed")
    return aws


def _threshold(aws: Aws, value: Any) -> tuple[int, Any]:
    return aws.api("PUT", "/projects/lab/models/1/threshold", body={"threshold": value})


@pytest.mark.parametrize("value", [1.9938438011992995e-235, 5e-324, 1e-131])
def test_a_tiny_threshold_is_stored_as_zero_not_a_500(completed: Aws, value: float) -> None:
    status, version = _threshold(completed, value)

    assert status == 200, version
    assert version["analysis_threshold"] == 0.0


def test_a_threshold_keeps_six_decimals(completed: Aws) -> None:
    status, version = _threshold(completed, 0.123456789)

    assert status == 200
    assert version["analysis_threshold"] == 0.123457
