"""The local processing-job runner: SageMaker Processing's API validated as AWS validates it, the
`/opt/ml/processing` layout per host, ShardedByS3Key, Continuous and EndOfJob outputs, the
message file as ExitMessage/FailureReason, stop, and a restart that resumes a running job.

The container is a small stand-in script (the runner's contract is the layout, not the model);
S3 is an in-memory fake and boto3 reaches the runner through the real local SageMaker API."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from segpipe.models.processing import (
    CONFIG_INPUT,
    IMAGES_INPUT,
    MODEL_INPUT,
    PROGRESS_OUTPUT,
    SHARDS_OUTPUT,
    ProcessingJobStateChangeEvent,
)
from segpipe_local import processing as processing_module
from segpipe_local.processing import ProcessingRunner, shard
from segpipe_local.runner import JobRunner
from segpipe_local.sagemaker_api import SageMakerServer
from tests.helpers.stack_process import free_port, loopback_client

BUCKET = "data"
IMAGES = [f"projects/lab/images/plate/{name}" for name in ("a.png", "b.png", "c.png", "sub/d.tif", "e.png")]

CONTAINER = textwrap.dedent(
    """
    import json, os, pathlib, signal, sys, time
    root = pathlib.Path(os.environ["SEGPIPE_PROCESSING_ROOT"])
    host = json.loads((root.parent / "config" / "resourceconfig.json").read_text())["current_host"]
    config = json.loads((root / "input" / "config" / "analyze.json").read_text())
    folder = root / "input" / "images"
    images = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    model = sorted(p.name for p in (root / "input" / "model").iterdir())
    shards = root / "output" / "shards" / host
    shards.mkdir(parents=True)
    (shards / "images.json").write_text(json.dumps({"images": images, "model": model}))
    progress = root / "output" / "progress" / (host + ".json")
    progress.write_text(json.dumps({"host": host, "images_done": 0, "images_total": len(images)}))
    mode = config.get("mode")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if mode == "fail" and host == config.get("host", host):
        (root.parent / "output" / "message").write_text("image b.png is not a readable PNG")
        sys.exit(1)
    if mode == "crash":
        sys.exit(3)
    marker = pathlib.Path(config.get("marker", "/nonexistent/marker"))
    if mode == "sleep" or (mode == "sleep-once" and not marker.exists()):
        if mode == "sleep-once":
            marker.write_text(host)
        time.sleep(60)
    progress.write_text(json.dumps({"host": host, "images_done": len(images), "images_total": len(images)}))
    """
)


class FakeS3:
    """The S3 calls the runner makes, over a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.uploads: list[str] = []
        self._lock = threading.Lock()

    def get_paginator(self, _: str) -> Any:
        s3 = self

        class Paginator:
            def paginate(self, *, Bucket: str, Prefix: str) -> list[dict[str, Any]]:  # noqa: N803
                keys = sorted(key for key in s3.objects if key.startswith(Prefix))
                return [{"Contents": [{"Key": key} for key in keys]}]

        return Paginator()

    def download_file(self, bucket: str, key: str, path: str) -> None:
        Path(path).write_bytes(self.objects[key])

    def upload_file(self, path: str, bucket: str, key: str) -> None:
        with self._lock:
            self.objects[key] = Path(path).read_bytes()
            self.uploads.append(key)


class Events:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        for entry in Entries:
            self.sent.append(
                {
                    "id": "1",
                    "time": "2026-01-01T00:00:00Z",
                    "source": entry["Source"],
                    "detail-type": entry["DetailType"],
                    "resources": entry["Resources"],
                    "detail": json.loads(entry["Detail"]),
                }
            )
        return {"FailedEntryCount": 0}

    def statuses(self, name: str) -> list[str]:
        return [
            event["detail"]["ProcessingJobStatus"]
            for event in self.sent
            if event["detail"]["ProcessingJobName"] == name
        ]


@pytest.fixture
def container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "container.py"
    script.write_text(CONTAINER)
    monkeypatch.setattr(processing_module, "analyze_command", lambda: [sys.executable, str(script)])
    return script


@pytest.fixture
def s3() -> FakeS3:
    fake = FakeS3()
    for key in IMAGES:
        fake.objects[key] = b"pixels of " + key.encode()
    fake.objects["projects/lab/models/2/output/job/output/model.tar.gz"] = b"weights"
    return fake


class Stack:
    """A runner behind the local SageMaker API, and boto3 talking to it."""

    def __init__(self, s3: FakeS3, data: Path) -> None:
        self.events = Events()
        self.runner = ProcessingRunner(s3=s3, events=self.events, data_dir=data, region="us-east-1")
        port = free_port()
        training = JobRunner(s3=s3, events=self.events, data_dir=data, region="us-east-1")
        self._server = SageMakerServer(training, host="127.0.0.1", port=port, processing=self.runner)
        self._server.start()
        self.sagemaker = loopback_client("sagemaker", port)
        self.runner.start()

    def close(self) -> None:
        self.runner.stop()
        self._server.stop()

    def wait(self, name: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer: dict[str, Any] = self.sagemaker.describe_processing_job(ProcessingJobName=name)
            if answer["ProcessingJobStatus"] in statuses:
                return answer
            time.sleep(0.1)
        raise AssertionError(f"{name} never reached {statuses}: {answer['ProcessingJobStatus']}")


@pytest.fixture
def stack(s3: FakeS3, tmp_path: Path, container: Path) -> Iterator[Stack]:
    handle = Stack(s3, tmp_path / "home")
    yield handle
    handle.close()


def _job(
    s3: FakeS3, name: str = "segpipe-lab-a1-0123abcd", *, count: int = 1, **config: Any
) -> dict[str, Any]:
    config_key = f"projects/lab/analyses/{name}/job/analyze.json"
    s3.objects[config_key] = json.dumps(config).encode()
    prefix = f"s3://{BUCKET}/projects/lab/analyses/1"
    return {
        "ProcessingJobName": name,
        "ProcessingInputs": [
            {
                "InputName": "model",
                "S3Input": {
                    "S3Uri": f"s3://{BUCKET}/projects/lab/models/2/output/job/output/model.tar.gz",
                    "LocalPath": MODEL_INPUT,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            },
            {
                "InputName": "images",
                "S3Input": {
                    "S3Uri": f"s3://{BUCKET}/projects/lab/images/plate/",
                    "LocalPath": IMAGES_INPUT,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "ShardedByS3Key" if count > 1 else "FullyReplicated",
                },
            },
            {
                "InputName": "config",
                "S3Input": {
                    "S3Uri": f"s3://{BUCKET}/{config_key}",
                    "LocalPath": CONFIG_INPUT,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            },
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "shards",
                    "S3Output": {
                        "S3Uri": f"{prefix}/shards",
                        "LocalPath": SHARDS_OUTPUT,
                        "S3UploadMode": "EndOfJob",
                    },
                },
                {
                    "OutputName": "progress",
                    "S3Output": {
                        "S3Uri": f"{prefix}/progress",
                        "LocalPath": PROGRESS_OUTPUT,
                        "S3UploadMode": "Continuous",
                    },
                },
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": count, "InstanceType": "ml.g5.xlarge", "VolumeSizeInGB": 30}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "AppSpecification": {"ImageUri": "local/segpipe-trainer:latest", "ContainerEntrypoint": ["analyze"]},
        "Environment": {"SEGPIPE_PROJECT": "lab", "SEGPIPE_ANALYSIS": "1"},
        "RoleArn": "arn:aws:iam::000000000000:role/segpipe-local-sagemaker",
        "Tags": [
            {"Key": "segpipe:stack", "Value": "segpipe-local"},
            {"Key": "segpipe:analysis", "Value": "1"},
        ],
    }


def _shard(s3: FakeS3, host: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(s3.objects[f"projects/lab/analyses/1/shards/{host}/images.json"])
    return data


def test_a_job_runs_analyze_under_the_processing_layout_and_uploads_its_outputs(
    stack: Stack, s3: FakeS3
) -> None:
    answer = stack.sagemaker.create_processing_job(**_job(s3))

    final = stack.wait("segpipe-lab-a1-0123abcd", {"Completed", "Failed"})

    assert answer["ProcessingJobArn"].endswith(":processing-job/segpipe-lab-a1-0123abcd")
    assert final["ProcessingJobStatus"] == "Completed", final.get("FailureReason")
    assert _shard(s3, "algo-1") == {
        "images": ["a.png", "b.png", "c.png", "e.png", "sub/d.tif"],
        "model": ["model.tar.gz"],
    }
    progress = json.loads(s3.objects["projects/lab/analyses/1/progress/algo-1.json"])
    assert progress == {"host": "algo-1", "images_done": 5, "images_total": 5}
    assert final["ProcessingStartTime"] <= final["ProcessingEndTime"]
    assert stack.events.statuses("segpipe-lab-a1-0123abcd") == ["InProgress", "InProgress", "Completed"]


def test_its_events_have_the_documented_shape(stack: Stack, s3: FakeS3) -> None:
    stack.sagemaker.create_processing_job(**_job(s3))
    stack.wait("segpipe-lab-a1-0123abcd", {"Completed"})

    last = stack.events.sent[-1]
    event = ProcessingJobStateChangeEvent.model_validate(last)  # the backend's contract parses it

    assert last["source"] == "aws.sagemaker"
    assert last["detail-type"] == "SageMaker Processing Job State Change"
    assert last["resources"] == [last["detail"]["ProcessingJobArn"]]
    assert event.detail.Tags == {"segpipe:stack": "segpipe-local", "segpipe:analysis": "1"}
    assert isinstance(last["detail"]["ProcessingEndTime"], int)  # epoch milliseconds, as SageMaker sends
    assert event.detail.ProcessingJobStatus == "Completed" and event.detail.ProcessingEndTime is not None
    assert last["detail"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1


def test_two_instances_each_get_a_share_of_the_sorted_images(stack: Stack, s3: FakeS3) -> None:
    stack.sagemaker.create_processing_job(**_job(s3, count=2))

    final = stack.wait("segpipe-lab-a1-0123abcd", {"Completed", "Failed"})

    assert final["ProcessingJobStatus"] == "Completed", final.get("FailureReason")
    first, second = _shard(s3, "algo-1"), _shard(s3, "algo-2")
    assert first["images"] == ["a.png", "c.png", "sub/d.tif"]
    assert second["images"] == ["b.png", "e.png"]
    assert first["model"] == second["model"] == ["model.tar.gz"]  # FullyReplicated inputs: every host
    for host, count in (("algo-1", 3), ("algo-2", 2)):
        progress = json.loads(s3.objects[f"projects/lab/analyses/1/progress/{host}.json"])
        assert progress["images_total"] == count


def test_sharding_splits_the_sorted_keys_about_evenly() -> None:
    keys = [f"k{index:03d}" for index in range(10)]

    shares = [shard(list(reversed(keys)), host_index=index, hosts=3) for index in range(3)]

    assert sorted(key for share in shares for key in share) == keys
    assert [len(share) for share in shares] == [4, 3, 3]


def test_a_failing_container_gives_its_message_as_exit_message_and_failure_reason(
    stack: Stack, s3: FakeS3
) -> None:
    stack.sagemaker.create_processing_job(**_job(s3, mode="fail"))

    final = stack.wait("segpipe-lab-a1-0123abcd", {"Completed", "Failed"})

    assert final["ProcessingJobStatus"] == "Failed"
    assert final["ExitMessage"] == "image b.png is not a readable PNG"
    assert final["FailureReason"] == "AlgorithmError: image b.png is not a readable PNG"
    assert stack.events.sent[-1]["detail"]["FailureReason"] == final["FailureReason"]
    assert "projects/lab/analyses/1/shards/algo-1/images.json" not in s3.objects  # EndOfJob: not on failure


def test_a_container_that_dies_without_a_message_still_says_why(stack: Stack, s3: FakeS3) -> None:
    stack.sagemaker.create_processing_job(**_job(s3, mode="crash"))

    final = stack.wait("segpipe-lab-a1-0123abcd", {"Completed", "Failed"})

    assert final["FailureReason"] == "AlgorithmError: the container exited with code 3"
    assert "ExitMessage" not in final


def test_the_second_instance_failing_fails_the_job(stack: Stack, s3: FakeS3) -> None:
    stack.sagemaker.create_processing_job(**_job(s3, count=2, mode="fail", host="algo-2"))

    final = stack.wait("segpipe-lab-a1-0123abcd", {"Completed", "Failed"})

    assert final["ProcessingJobStatus"] == "Failed"
    assert final["FailureReason"] == "AlgorithmError: image b.png is not a readable PNG"


def test_stop_ends_stopped(stack: Stack, s3: FakeS3) -> None:
    stack.sagemaker.create_processing_job(**_job(s3, mode="sleep"))
    stack.wait("segpipe-lab-a1-0123abcd", {"InProgress"})
    deadline = time.monotonic() + 20
    while "projects/lab/analyses/1/progress/algo-1.json" not in s3.objects:  # running, progress uploaded
        assert time.monotonic() < deadline
        time.sleep(0.1)

    stack.sagemaker.stop_processing_job(ProcessingJobName="segpipe-lab-a1-0123abcd")
    final = stack.wait("segpipe-lab-a1-0123abcd", {"Stopped", "Completed", "Failed"})

    assert final["ProcessingJobStatus"] == "Stopped"
    assert stack.events.statuses("segpipe-lab-a1-0123abcd")[-2:] == ["Stopping", "Stopped"]
    with pytest.raises(ClientError) as again:
        stack.sagemaker.stop_processing_job(ProcessingJobName="segpipe-lab-a1-0123abcd")
    assert again.value.response["Error"]["Code"] == "ValidationException"


def test_a_job_past_its_max_runtime_is_stopped(stack: Stack, s3: FakeS3) -> None:
    job = _job(s3, mode="sleep")
    job["StoppingCondition"]["MaxRuntimeInSeconds"] = 2

    stack.sagemaker.create_processing_job(**job)
    final = stack.wait("segpipe-lab-a1-0123abcd", {"Stopped", "Completed", "Failed"}, timeout=40)

    assert final["ProcessingJobStatus"] == "Stopped"
    elapsed = final["ProcessingEndTime"] - final["ProcessingStartTime"]
    assert elapsed.total_seconds() < 30  # SIGTERM, not the 60 s sleep


def test_a_restart_resumes_a_running_job_and_keeps_the_finished_ones(
    s3: FakeS3, tmp_path: Path, container: Path
) -> None:
    home = tmp_path / "home"
    marker = tmp_path / "marker"
    first = Stack(s3, home)
    try:
        first.sagemaker.create_processing_job(**_job(s3, "segpipe-lab-a1-done"))
        first.wait("segpipe-lab-a1-done", {"Completed"})
        first.sagemaker.create_processing_job(**_job(s3, count=2, mode="sleep-once", marker=str(marker)))
        deadline = time.monotonic() + 20
        while not marker.exists():  # algo-1 is running
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        first.close()  # the stack stops while algo-1 runs
    assert first.events.statuses("segpipe-lab-a1-0123abcd")[-1] == "InProgress"

    second = Stack(s3, home)
    try:
        final = second.wait("segpipe-lab-a1-0123abcd", {"Completed", "Failed", "Stopped"})
        listed = second.sagemaker.list_processing_jobs()["ProcessingJobSummaries"]
    finally:
        second.close()

    assert final["ProcessingJobStatus"] == "Completed", final.get("FailureReason")
    assert _shard(s3, "algo-1")["images"] == ["a.png", "c.png", "sub/d.tif"]
    assert _shard(s3, "algo-2")["images"] == ["b.png", "e.png"]
    assert {(job["ProcessingJobName"], job["ProcessingJobStatus"]) for job in listed} == {
        ("segpipe-lab-a1-done", "Completed"),
        ("segpipe-lab-a1-0123abcd", "Completed"),
    }
    saved = json.loads((home / "processing-jobs" / "segpipe-lab-a1-0123abcd" / "job.json").read_text())
    assert saved["resumed"] == 1 and saved["hosts_done"] == ["algo-1", "algo-2"]
    assert second.events.statuses("segpipe-lab-a1-0123abcd") == ["InProgress", "Completed"]
    assert second.events.statuses("segpipe-lab-a1-done") == []  # a finished job is only kept


def test_list_filters_and_sorts_as_sagemaker_does(stack: Stack, s3: FakeS3) -> None:
    stack.sagemaker.create_processing_job(**_job(s3, "segpipe-lab-a1-aaa"))
    stack.wait("segpipe-lab-a1-aaa", {"Completed"})
    stack.sagemaker.create_processing_job(**_job(s3, "segpipe-lab-a2-bbb", mode="fail"))
    stack.wait("segpipe-lab-a2-bbb", {"Failed"})

    everything = stack.sagemaker.list_processing_jobs()["ProcessingJobSummaries"]
    failed = stack.sagemaker.list_processing_jobs(StatusEquals="Failed")["ProcessingJobSummaries"]
    named = stack.sagemaker.list_processing_jobs(NameContains="A1", SortOrder="Ascending")

    assert [job["ProcessingJobName"] for job in everything] == ["segpipe-lab-a2-bbb", "segpipe-lab-a1-aaa"]
    assert [job["ProcessingJobName"] for job in failed] == ["segpipe-lab-a2-bbb"]
    assert failed[0]["FailureReason"].startswith("AlgorithmError: ")
    assert [job["ProcessingJobName"] for job in named["ProcessingJobSummaries"]] == ["segpipe-lab-a1-aaa"]


# --- refused as SageMaker refuses, before anything is saved ------------------------------------


def _refused(stack: Stack, job: dict[str, Any], code: str = "ValidationException") -> str:
    def names() -> list[str]:
        # Names only: a job created before may finish in between, which changes its summary.
        return [
            item["ProcessingJobName"]
            for item in stack.sagemaker.list_processing_jobs()["ProcessingJobSummaries"]
        ]

    before = names()
    with pytest.raises(ClientError) as caught:
        stack.sagemaker.create_processing_job(**job)
    assert caught.value.response["Error"]["Code"] == code
    assert names() == before
    message: str = caught.value.response["Error"]["Message"]
    return message


def test_a_repeated_name_is_resource_in_use(stack: Stack, s3: FakeS3) -> None:
    stack.sagemaker.create_processing_job(**_job(s3))

    message = _refused(stack, _job(s3), code="ResourceInUse")

    assert "already exists" in message
    assert stack.events.statuses("segpipe-lab-a1-0123abcd")[0] == "InProgress"


@pytest.mark.parametrize("name", ["-starts-with-dash", "x" * 64, "under_score", "a--", "spaced name"])
def test_names_outside_sagemakers_pattern_are_refused(stack: Stack, s3: FakeS3, name: str) -> None:
    job = _job(s3)
    job["ProcessingJobName"] = name

    assert "processing job name" in _refused(stack, job)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda job: job["Environment"].update(LD_PRELOAD="/tmp/evil.so"), "environment"),
        (lambda job: job["AppSpecification"].update(ContainerEntrypoint=["sh", "-c", "id"]), "analyze"),
        (lambda job: job["ProcessingInputs"][0]["S3Input"].update(LocalPath="/etc/cron.d"), "localPath"),
        (
            lambda job: job["ProcessingInputs"][1]["S3Input"].update(LocalPath="/opt/ml/processing/../../x"),
            "localPath",
        ),
        (
            lambda job: job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"].update(LocalPath="/tmp/out"),
            "localPath",
        ),
        (lambda job: job["ProcessingInputs"][1].update(InputName="model"), "unique"),
        (lambda job: job["ProcessingInputs"][0]["S3Input"].update(S3InputMode="Pipe"), "File mode"),
        (lambda job: job["ProcessingInputs"][0]["S3Input"].update(S3Uri="file:///etc/passwd"), "s3Uri"),
        (lambda job: job["ProcessingResources"]["ClusterConfig"].update(InstanceCount=101), "less than"),
        (lambda job: job["StoppingCondition"].update(MaxRuntimeInSeconds=777601), "less than"),
    ],
)
def test_requests_sagemaker_or_this_machine_would_refuse_are_refused(
    stack: Stack, s3: FakeS3, change: Any, words: str
) -> None:
    job = _job(s3)
    change(job)

    assert words in _refused(stack, job)


def test_describing_or_stopping_an_unknown_job_is_a_validation_error(stack: Stack) -> None:
    for call in (stack.sagemaker.describe_processing_job, stack.sagemaker.stop_processing_job):
        with pytest.raises(ClientError) as caught:
            call(ProcessingJobName="segpipe-nope")
        assert caught.value.response["Error"]["Code"] == "ValidationException"
        assert (
            "Could not find requested job with name segpipe-nope" in caught.value.response["Error"]["Message"]
        )
