"""The local SageMaker emulation: loopback only, an allowlist of job environment variables, and
channel names checked (SageMaker's pattern and length, no `..`) before they become paths.

boto3 talks to a real server on a loopback port, as the backend's SageMaker adapter does."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from segpipe_local.runner import JobRunner
from segpipe_local.sagemaker_api import SageMakerServer
from tests.helpers.stack_process import free_port, loopback_client


class NoEvents:
    def put_events(self, **_: Any) -> dict[str, Any]:
        return {"FailedEntryCount": 0, "Entries": []}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, JobRunner, Path]]:
    """One server for the module (a werkzeug server takes half a second to stop)."""
    data = tmp_path_factory.mktemp("runner")
    runner = JobRunner(s3=None, events=NoEvents(), data_dir=data, region="us-east-1")  # workers not started
    port = free_port()
    server = SageMakerServer(runner, host="127.0.0.1", port=port)
    server.start()
    client = loopback_client("sagemaker", port)
    try:
        yield client, runner, data
    finally:
        server.stop()


@pytest.fixture
def sagemaker(served: tuple[Any, JobRunner, Path]) -> Any:
    return served[0]


@pytest.fixture
def runner(served: tuple[Any, JobRunner, Path]) -> JobRunner:
    return served[1]


_names = itertools.count(1)


def _jobs_saved(runner: JobRunner) -> int:
    return len(runner.list()["TrainingJobSummaries"])


def _job(
    name: str | None = None,
    *,
    environment: dict[str, str] | None = None,
    channels: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "TrainingJobName": name or f"segpipe-lab-v{next(_names)}-abc",
        "AlgorithmSpecification": {
            "TrainingImage": "local/segpipe-trainer:latest",
            "TrainingInputMode": "File",
        },
        "RoleArn": "arn:aws:iam::000000000000:role/segpipe-local-sagemaker",
        "HyperParameters": {"epochs": "1"},
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/p/"}},
            }
            for channel in (channels if channels is not None else ["dataset", "split"])
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://b/out/"},
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "EnableManagedSpotTraining": False,
        "Environment": environment
        if environment is not None
        else {"SEGPIPE_PROJECT": "lab", "SEGPIPE_VERSION": "1"},
    }


def _refused(sagemaker: Any, job: dict[str, Any]) -> str:
    with pytest.raises(ClientError) as caught:
        sagemaker.create_training_job(**job)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    message: str = error["Message"]
    assert message.startswith("1 validation error detected: ")
    return message


def test_the_variables_segpipe_sets_are_accepted(sagemaker: Any, runner: JobRunner) -> None:
    answer = sagemaker.create_training_job(**_job("segpipe-lab-v0-ok", channels=["dataset", "split", "base"]))

    assert answer["TrainingJobArn"].endswith("training-job/segpipe-lab-v0-ok")
    described = sagemaker.describe_training_job(TrainingJobName="segpipe-lab-v0-ok")
    assert described["TrainingJobStatus"] == "InProgress"


@pytest.mark.parametrize(
    "name",
    [
        "LD_PRELOAD",
        "PYTHONPATH",
        "PATH",
        "LD_LIBRARY_PATH",
        "PYTHONSTARTUP",
        "SEGPIPE_ML_ROOT",
        "segpipe_project",
        "HOME",
    ],
)
def test_any_other_environment_variable_is_refused(
    served: tuple[Any, JobRunner, Path], sagemaker: Any, runner: JobRunner, name: str
) -> None:
    jobs, folders = _jobs_saved(runner), sorted(served[2].glob("jobs/*"))

    message = _refused(sagemaker, _job(environment={"SEGPIPE_PROJECT": "lab", name: "/tmp/evil"}))

    assert name in message and "environment" in message
    assert _jobs_saved(runner) == jobs and sorted(served[2].glob("jobs/*")) == folders


def test_environment_keys_follow_sagemakers_rules_too(sagemaker: Any) -> None:
    _refused(sagemaker, _job(environment={"SEGPIPE_PROJECT": "x" * 513}))


@pytest.mark.parametrize(
    "channel",
    ["../escape", "..", ".", "a/b", "/abs", "x" * 65, "a b", "dataset\n", "data..set", "ümlaut", "a\\b"],
)
def test_channel_names_that_are_not_safe_folder_names_are_refused(
    sagemaker: Any, runner: JobRunner, channel: str
) -> None:
    jobs = _jobs_saved(runner)

    message = _refused(sagemaker, _job(channels=["dataset", channel]))

    assert "channelName" in message and _jobs_saved(runner) == jobs


def test_channel_names_are_unique(sagemaker: Any) -> None:
    assert "unique" in _refused(sagemaker, _job(channels=["dataset", "dataset"]))


@pytest.mark.parametrize("channel", ["my.channel-1_x", "x" * 64, "A", "train"])
def test_names_within_sagemakers_pattern_are_accepted(sagemaker: Any, channel: str) -> None:
    sagemaker.create_training_job(**_job(channels=["dataset", channel]))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.org"])
def test_the_emulation_listens_on_loopback_only(tmp_path: Path, host: str) -> None:
    runner = JobRunner(s3=None, events=NoEvents(), data_dir=tmp_path, region="us-east-1")

    with pytest.raises(ValueError, match="loopback"):
        SageMakerServer(runner, host=host, port=free_port())


def test_it_refuses_a_foreign_host(sagemaker: Any, runner: JobRunner) -> None:
    # DNS rebinding: a page whose name resolves to 127.0.0.1 must not create jobs here
    import http.client
    import json

    jobs = _jobs_saved(runner)
    port = int(sagemaker.meta.endpoint_url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(
        "POST",
        "/",
        body=json.dumps(_job()),
        headers={
            "Host": f"attacker.example:{port}",
            "X-Amz-Target": "SageMaker.CreateTrainingJob",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    answer = connection.getresponse()

    assert answer.status == 403 and json.loads(answer.read())["error"]["code"] == "host_not_allowed"
    assert _jobs_saved(runner) == jobs


class RecordedEvents:
    def __init__(self) -> None:
        self.details: list[dict[str, Any]] = []

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        import json

        self.details += [json.loads(entry["Detail"]) for entry in Entries]
        return {"FailedEntryCount": 0, "Entries": []}


def test_training_job_events_carry_times_as_epoch_milliseconds(tmp_path: Path) -> None:
    # SageMaker's events give times in epoch milliseconds; Describe* answers (JSON) in seconds
    import time

    from segpipe.models.jobs import JobDescription

    events = RecordedEvents()
    runner = JobRunner(s3=None, events=events, data_dir=tmp_path, region="us-east-1")
    before = time.time()

    runner.create(_job("segpipe-lab-v9-times"))

    detail = events.details[-1]
    assert isinstance(detail["CreationTime"], int)
    assert before * 1000 - 1000 <= detail["CreationTime"] <= time.time() * 1000
    parsed = JobDescription.model_validate(detail)
    assert parsed.LastModifiedTime is not None and abs(parsed.LastModifiedTime.timestamp() - before) < 60
