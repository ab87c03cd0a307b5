"""The local training-job runner: SageMaker's training-job API on a local port, running the real
`train` entry point as a process with the `/opt/ml` layout SageMaker gives a container.

The backend's SageMaker adapter talks to it through `AWS_ENDPOINT_URL_SAGEMAKER`; the runner
materialises channels from (local) S3, syncs checkpoints back while the job runs, uploads
`model.tar.gz` and `output.tar.gz` where SageMaker would, and sends `SageMaker Training Job State
Change` events in AWS's shape to EventBridge, whose rule (from template.yaml) reaches the real
job-state handler.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import tarfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from segpipe.models.jobs import CreateTrainingJob, JobStatus
from segpipe_local.atomic import write_atomically
from segpipe_local.events import ACCOUNT, job_state_change_event, with_datetimes

logger = logging.getLogger(__name__)

TERMINAL = {"Completed", "Failed", "Stopped"}
RequestModel = TypeVar("RequestModel", bound=BaseModel)


class JobError(Exception):
    """An error SageMaker's API would return (`code` is its `__type`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LocalJob(BaseModel):
    request: CreateTrainingJob
    status: JobStatus = "InProgress"
    secondary_status: str = "Starting"
    failure_reason: str | None = None
    creation_time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    training_start_time: datetime | None = None
    training_end_time: datetime | None = None
    last_modified_time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    model_artifact: str | None = None
    stop_requested: bool = False

    @property
    def name(self) -> str:
        return self.request.TrainingJobName

    def arn(self, region: str) -> str:
        return f"arn:aws:sagemaker:{region}:{ACCOUNT}:training-job/{self.name.lower()}"

    def describe(self, region: str) -> dict[str, Any]:
        """DescribeTrainingJob's answer (the fields segpipe and the console use)."""
        request = self.request.model_dump(exclude_none=True)
        answer: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn(region),
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary_status,
            "HyperParameters": request["HyperParameters"],
            "AlgorithmSpecification": request["AlgorithmSpecification"],
            "RoleArn": request["RoleArn"],
            "InputDataConfig": request["InputDataConfig"],
            "OutputDataConfig": request["OutputDataConfig"],
            "ResourceConfig": request["ResourceConfig"],
            "StoppingCondition": request["StoppingCondition"],
            "EnableManagedSpotTraining": request["EnableManagedSpotTraining"],
            "CreationTime": self.creation_time.timestamp(),
            "LastModifiedTime": self.last_modified_time.timestamp(),
        }
        if self.failure_reason:
            answer["FailureReason"] = self.failure_reason
        if self.model_artifact:
            answer["ModelArtifacts"] = {"S3ModelArtifacts": self.model_artifact}
        if self.training_start_time:
            answer["TrainingStartTime"] = self.training_start_time.timestamp()
        if self.training_end_time:
            answer["TrainingEndTime"] = self.training_end_time.timestamp()
        if "CheckpointConfig" in request:
            answer["CheckpointConfig"] = request["CheckpointConfig"]
        return answer


#: The only variables a job may set in the trainer's environment: the ones segpipe's job spec
#: sets. The trainer runs as a local process, so a variable such as LD_PRELOAD or PYTHONPATH would
#: run any code the caller names.
JOB_ENVIRONMENT = frozenset({"SEGPIPE_PROJECT", "SEGPIPE_VERSION"})

# SageMaker's own limits (its API model): Channel.ChannelName, TrainingEnvironmentMap.
CHANNEL_NAME = re.compile(r"[A-Za-z0-9\.\-_]+")
CHANNEL_NAME_MAX = 64
ENVIRONMENT_MAX_ENTRIES = 100
ENVIRONMENT_VALUE_MAX = 512


def _invalid(value: str, where: str, constraint: str) -> JobError:
    """A ValidationException worded as SageMaker words them."""
    shown = value if len(value) <= 100 else value[:100] + "..."
    return JobError(
        "ValidationException",
        f"1 validation error detected: Value {shown!r} at '{where}' "
        f"failed to satisfy constraint: {constraint}",
    )


def parse_request(model: type[RequestModel], params: dict[str, Any]) -> RequestModel:
    """A Create*Job request checked by its pydantic contract, as SageMaker checks its API model:
    the first problem becomes a ValidationException."""
    try:
        return model.model_validate(params)
    except ValidationError as error:
        raise JobError("ValidationException", str(error.errors()[0]["msg"])) from error


def check_environment(environment: dict[str, str], allowed: frozenset[str] = JOB_ENVIRONMENT) -> None:
    if len(environment) > ENVIRONMENT_MAX_ENTRIES:
        raise _invalid(
            f"{len(environment)} entries",
            "environment",
            f"Map must have at most {ENVIRONMENT_MAX_ENTRIES} entries",
        )
    for name, value in environment.items():
        if name not in allowed:
            raise _invalid(
                name,
                "environment",
                "Map keys must be variables the local runner passes to a job: " + ", ".join(sorted(allowed)),
            )
        if len(value) > ENVIRONMENT_VALUE_MAX:
            raise _invalid(
                value,
                f"environment.{name}",
                f"Member must have length less than or equal to {ENVIRONMENT_VALUE_MAX}",
            )


def check_channels(names: list[str]) -> None:
    """Channel names become folders (`input/data/{name}`): SageMaker's pattern and length, and
    never `.`, `..` or anything holding `..`."""
    for index, name in enumerate(names, start=1):
        where = f"inputDataConfig.{index}.member.channelName"
        if not CHANNEL_NAME.fullmatch(name):
            raise _invalid(
                name, where, f"Member must satisfy regular expression pattern: {CHANNEL_NAME.pattern}"
            )
        if len(name) > CHANNEL_NAME_MAX:
            raise _invalid(name, where, f"Member must have length less than or equal to {CHANNEL_NAME_MAX}")
        if name == "." or ".." in name:
            raise _invalid(name, where, "Member must not be '.' and must not contain '..'")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise _invalid(", ".join(duplicates), "inputDataConfig", "Channel names (channelName) must be unique")


def _split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def list_keys(s3: Any, uri: str) -> list[str]:
    """Every key under an S3Prefix URI, sorted (S3 lists in key order)."""
    bucket, prefix = _split_uri(uri)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def download_keys(s3: Any, uri: str, keys: list[str], target: Path) -> None:
    """Copy `keys` (under the prefix of `uri`) into `target`, keeping the path below the prefix;
    a single object (a model.tar.gz) lands under its own name. Nothing is written outside
    `target`."""
    bucket, prefix = _split_uri(uri)
    target.mkdir(parents=True, exist_ok=True)
    for key in keys:
        relative = key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
        if not relative or ".." in Path(relative).parts or relative.endswith("/"):
            continue  # a folder marker, or a path that would leave the target
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(destination))


def train_command() -> list[str]:
    """The trainer's entry point, as SageMaker runs it (`train` on PATH)."""
    script = Path(sys.executable).with_name("train")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from segpipe_trainer.cli import main; main()"]


class JobRunner:
    def __init__(self, *, s3: Any, events: Any, data_dir: Path, region: str, parallel: int = 1) -> None:
        self._s3 = s3
        self._events = events
        self._root = data_dir / "jobs"
        self._region = region
        self._jobs: dict[str, LocalJob] = {}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.RLock()
        self._checkpoint_times: dict[str, dict[str, float]] = {}
        self._shutting_down = threading.Event()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._workers = [
            threading.Thread(target=self._work, name=f"job-runner-{index}", daemon=True)
            for index in range(parallel)
        ]
        self._load()

    # --- the SageMaker API ----------------------------------------------------------------------

    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        request = parse_request(CreateTrainingJob, params)
        check_environment(request.Environment)
        check_channels([channel.ChannelName for channel in request.InputDataConfig])
        with self._lock:
            if request.TrainingJobName in self._jobs:
                raise JobError("ResourceInUse", f"Training job {request.TrainingJobName} already exists")
            job = LocalJob(request=request)
            self._jobs[job.name] = job
            self._save(job)
        self._emit(job)
        self._queue.put(job.name)
        return {"TrainingJobArn": job.arn(self._region)}

    def describe(self, name: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                raise JobError("ValidationException", "Requested resource not found.")
            return job.describe(self._region)

    def stop(self, name: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                raise JobError("ValidationException", "Requested resource not found.")
            if job.status in TERMINAL:
                raise JobError("ValidationException", f"The job {name} is already in a terminal state.")
            job.stop_requested = True
            process = self._processes.get(name)
            if process is None:  # still waiting for a worker: it never starts
                self._finish(job, "Stopped", "Stopped")
                return {}
            self._update(job, status="Stopping", secondary_status="Stopping")
        process.send_signal(signal.SIGTERM)  # the trainer writes a checkpoint and exits
        return {}

    def list(self) -> dict[str, Any]:
        with self._lock:
            summaries = [
                {
                    "TrainingJobName": job.name,
                    "TrainingJobArn": job.arn(self._region),
                    "CreationTime": job.creation_time.timestamp(),
                    "LastModifiedTime": job.last_modified_time.timestamp(),
                    "TrainingJobStatus": job.status,
                }
                for job in sorted(self._jobs.values(), key=lambda j: j.creation_time, reverse=True)
            ]
        return {"TrainingJobSummaries": summaries}

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def stop_all(self) -> None:
        """Stop the runner: running jobs get SIGTERM (they checkpoint) and resume on the next start."""
        self._shutting_down.set()
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for _ in self._workers:
            self._queue.put(None)

    def _load(self) -> None:
        """Jobs survive restarts; one that was running resumes from its checkpoints, as after a
        spot interruption."""
        if not self._root.exists():
            return
        for path in sorted(self._root.glob("*/job.json")):
            job = LocalJob.model_validate_json(path.read_text())
            self._jobs[job.name] = job
            if job.status not in TERMINAL:
                job.status, job.secondary_status = "InProgress", "Starting"
                self._queue.put(job.name)

    def _save(self, job: LocalJob) -> None:
        write_atomically(self._root / job.name / "job.json", job.model_dump_json(indent=2).encode())

    def _update(self, job: LocalJob, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(job, key, value)
            job.last_modified_time = datetime.now(UTC)
            self._save(job)
        self._emit(job)

    def _finish(self, job: LocalJob, status: str, secondary: str, reason: str | None = None) -> None:
        self._update(
            job,
            status=status,
            secondary_status=secondary,
            failure_reason=reason,
            training_end_time=datetime.now(UTC),
        )

    def _emit(self, job: LocalJob) -> None:
        description = with_datetimes(job.describe(self._region))
        description["Tags"] = {tag.Key: tag.Value for tag in job.request.Tags}
        event = job_state_change_event(description, region=self._region)
        self._events.put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps(event["detail"]),
                    "Resources": event["resources"],
                }
            ]
        )

    # --- running a job --------------------------------------------------------------------------

    def _work(self) -> None:
        while (name := self._queue.get()) is not None:
            job = self._jobs[name]
            if job.status in TERMINAL:
                continue
            try:
                self._run(job)
            except Exception as error:
                logger.exception("local job %s broke", name)
                self._finish(
                    job, "Failed", "Failed", f"InternalServerError: the local runner failed: {error}"
                )

    def _run(self, job: LocalJob) -> None:
        root = self._root / job.name / "ml"
        self._materialise(job, root)
        self._update(
            job, secondary_status="Training", training_start_time=job.training_start_time or datetime.now(UTC)
        )
        log_path = self._root / job.name / "train.log"
        check_environment(job.request.Environment)  # also for jobs saved before the allowlist
        environment = {
            **os.environ,
            **job.request.Environment,
            "SEGPIPE_ML_ROOT": str(root),
            "PYTHONUNBUFFERED": "1",
        }
        stop_sync = threading.Event()
        syncer = threading.Thread(target=self._sync_checkpoints, args=(job, root, stop_sync), daemon=True)
        with log_path.open("ab") as log:
            process = subprocess.Popen(train_command(), env=environment, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
            with self._lock:
                self._processes[job.name] = process
            syncer.start()
            code = process.wait()
        stop_sync.set()
        syncer.join()
        self._upload_checkpoints(job, root)
        with self._lock:
            self._processes.pop(job.name, None)
        if self._shutting_down.is_set() and not job.stop_requested:
            return  # interrupted by the stack stopping: resumes from its checkpoint on the next start
        if job.stop_requested:
            self._finish(job, "Stopped", "Stopped")
        elif code == 0:
            self._upload_outputs(job, root)
            self._finish(job, "Completed", "Completed")
        else:
            failure = root / "output" / "failure"
            reason = (
                failure.read_text().strip() if failure.exists() else f"the trainer exited with code {code}"
            )
            self._finish(job, "Failed", "Failed", f"AlgorithmError: {reason}")

    def _materialise(self, job: LocalJob, root: Path) -> None:
        config = root / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        request = job.request
        (config / "hyperparameters.json").write_text(json.dumps(request.HyperParameters))
        # One machine here: a job asking for several hosts runs on this one (as a single host).
        (config / "resourceconfig.json").write_text(
            json.dumps({"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"})
        )
        channels = {
            channel.ChannelName: {
                "TrainingInputMode": channel.InputMode or "File",
                "RecordWrapperType": "None",
            }
            for channel in request.InputDataConfig
        }
        (config / "inputdataconfig.json").write_text(json.dumps(channels))
        check_channels(list(channels))  # also for jobs saved before the check
        data = root / "input" / "data"
        for channel in request.InputDataConfig:
            self._download(channel.DataSource.S3DataSource.S3Uri, data / channel.ChannelName)
        if request.CheckpointConfig:
            self._download(request.CheckpointConfig.S3Uri, root / "checkpoints")
        for folder in ("model", "output/data", "checkpoints"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    def _download(self, uri: str, target: Path) -> None:
        download_keys(self._s3, uri, list_keys(self._s3, uri), target)

    def _sync_checkpoints(self, job: LocalJob, root: Path, stop: threading.Event) -> None:
        """SageMaker uploads /opt/ml/checkpoints continuously while a job runs."""
        while not stop.wait(2.0):
            try:
                self._upload_checkpoints(job, root)
            except Exception:
                logger.debug("checkpoint sync failed; retrying", exc_info=True)

    def _upload_checkpoints(self, job: LocalJob, root: Path) -> None:
        if not job.request.CheckpointConfig:
            return
        bucket, prefix = _split_uri(job.request.CheckpointConfig.S3Uri)
        folder = root / "checkpoints"
        seen = self._checkpoint_times.setdefault(job.name, {})
        for path in folder.rglob("*"):
            if not path.is_file() or path.suffix == ".tmp":
                continue
            relative = path.relative_to(folder).as_posix()
            stamp = path.stat().st_mtime
            if seen.get(relative) == stamp:
                continue
            self._s3.upload_file(str(path), bucket, prefix.rstrip("/") + "/" + relative)
            seen[relative] = stamp

    def _upload_outputs(self, job: LocalJob, root: Path) -> None:
        bucket, prefix = _split_uri(job.request.OutputDataConfig.S3OutputPath)
        base = prefix.rstrip("/") + f"/{job.name}/output/"
        for archive, folder in (
            ("model.tar.gz", root / "model"),
            ("output.tar.gz", root / "output" / "data"),
        ):
            path = root.parent / archive
            with tarfile.open(path, "w:gz") as tar:
                for item in sorted(folder.rglob("*")):
                    if item.is_file():
                        tar.add(item, arcname=item.relative_to(folder).as_posix())
            self._s3.upload_file(str(path), bucket, base + archive)
        job.model_artifact = f"s3://{bucket}/{base}model.tar.gz"
