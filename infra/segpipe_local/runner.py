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
import re
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from segpipe.models.jobs import CreateTrainingJob
from segpipe_local.events import job_state_change_event
from segpipe_local.jobs import (
    TERMINAL,
    LocalRunner,
    OutputSync,
    RunnerJob,
    check_environment,
    download_keys,
    entry_point_command,
    invalid,
    list_keys,
    parse_request,
    split_uri,
)

logger = logging.getLogger(__name__)


class LocalJob(RunnerJob):
    arn_kind = "training-job"
    echoed = (
        "HyperParameters", "AlgorithmSpecification", "RoleArn", "InputDataConfig", "OutputDataConfig",
        "ResourceConfig", "StoppingCondition", "EnableManagedSpotTraining", "CheckpointConfig",
    )  # fmt: skip

    request: CreateTrainingJob
    secondary_status: str = "Starting"
    training_start_time: datetime | None = None
    training_end_time: datetime | None = None
    model_artifact: str | None = None

    @property
    def name(self) -> str:
        return self.request.TrainingJobName

    def describe(self, region: str) -> dict[str, Any]:
        """DescribeTrainingJob's answer (the fields segpipe and the console use)."""
        return self._answer(
            {
                "TrainingJobName": self.name,
                "TrainingJobArn": self.arn(region),
                "TrainingJobStatus": self.status,
                "SecondaryStatus": self.secondary_status,
            },
            optional={
                "ModelArtifacts": {"S3ModelArtifacts": self.model_artifact} if self.model_artifact else None,
                "TrainingStartTime": self.training_start_time,
                "TrainingEndTime": self.training_end_time,
            },
        )


#: The only variables a job may set in the trainer's environment: the ones segpipe's job spec
#: sets. The trainer runs as a local process, so a variable such as LD_PRELOAD or PYTHONPATH would
#: run any code the caller names.
JOB_ENVIRONMENT = frozenset({"SEGPIPE_PROJECT", "SEGPIPE_VERSION"})
#: SageMaker uploads /opt/ml/checkpoints continuously while a job runs; here, this often.
CHECKPOINT_SYNC_SECONDS = 2.0

# SageMaker's own limits (its API model): Channel.ChannelName.
CHANNEL_NAME = re.compile(r"[A-Za-z0-9\.\-_]+")
CHANNEL_NAME_MAX = 64


def check_channels(names: list[str]) -> None:
    """Channel names become folders (`input/data/{name}`): SageMaker's pattern and length, and
    never `.`, `..` or anything holding `..`."""
    for index, name in enumerate(names, start=1):
        where = f"inputDataConfig.{index}.member.channelName"
        if not CHANNEL_NAME.fullmatch(name):
            raise invalid(
                name, where, f"Member must satisfy regular expression pattern: {CHANNEL_NAME.pattern}"
            )
        if len(name) > CHANNEL_NAME_MAX:
            raise invalid(name, where, f"Member must have length less than or equal to {CHANNEL_NAME_MAX}")
        if name == "." or ".." in name:
            raise invalid(name, where, "Member must not be '.' and must not contain '..'")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise invalid(", ".join(duplicates), "inputDataConfig", "Channel names (channelName) must be unique")


def train_command() -> list[str]:
    """The trainer's entry point, as SageMaker runs it (`train` on PATH)."""
    return entry_point_command("train", "segpipe_trainer.cli")


class JobRunner(LocalRunner[LocalJob]):
    """Training jobs: CreateTrainingJob's checks, then the trainer run under the job's `/opt/ml`."""

    kind = "training"
    not_found = "Requested resource not found."

    def __init__(self, *, s3: Any, events: Any, data_dir: Path, region: str, parallel: int = 1) -> None:
        super().__init__(
            job_model=LocalJob, s3=s3, events=events, root=data_dir / "jobs", region=region, parallel=parallel
        )

    def _state_change(self, description: dict[str, Any]) -> dict[str, Any]:
        return job_state_change_event(description, region=self._region)

    # --- the SageMaker API ----------------------------------------------------------------------

    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        request = parse_request(CreateTrainingJob, params)
        check_environment(request.Environment, JOB_ENVIRONMENT)
        check_channels([channel.ChannelName for channel in request.InputDataConfig])
        job = LocalJob(request=request)
        self._add(job)
        return {"TrainingJobArn": job.arn(self._region)}

    def _name_taken(self, existing: LocalJob) -> str:
        return f"Training job {existing.name} already exists"

    def _stop_refusal(self, job: LocalJob) -> str | None:
        return f"The job {job.name} is already in a terminal state." if job.status in TERMINAL else None

    def _mark_stopping(self, job: LocalJob) -> None:
        self._update(job, status="Stopping", secondary_status="Stopping")

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

    # --- state ----------------------------------------------------------------------------------

    def _resume(self, job: LocalJob) -> None:
        """A job that was running resumes from its checkpoints, as after a spot interruption."""
        job.status, job.secondary_status = "InProgress", "Starting"
        self._queue.put(job.name)

    def _finish(self, job: LocalJob, status: str, reason: str | None = None) -> None:
        self._update(
            job,
            status=status,
            secondary_status=status,
            failure_reason=reason,
            training_end_time=datetime.now(UTC),
        )

    # --- running a job --------------------------------------------------------------------------

    def _run(self, job: LocalJob) -> None:
        root = self._root / job.name / "ml"
        self._materialise(job, root)
        self._update(
            job, secondary_status="Training", training_start_time=job.training_start_time or datetime.now(UTC)
        )
        check_environment(
            job.request.Environment, JOB_ENVIRONMENT
        )  # also for jobs saved before the allowlist
        environment = {
            **os.environ,
            **job.request.Environment,
            "SEGPIPE_ML_ROOT": str(root),
            "PYTHONUNBUFFERED": "1",
        }
        code = self._run_process(
            job,
            train_command(),
            environment=environment,
            log_path=self._root / job.name / "train.log",
            # as SageMaker syncs /opt/ml/checkpoints
            sync=OutputSync(lambda: self._upload_checkpoints(job, root), seconds=CHECKPOINT_SYNC_SECONDS),
        )
        if self._shutting_down.is_set() and not job.stop_requested:
            return  # interrupted by the stack stopping: resumes from its checkpoint on the next start
        if job.stop_requested:
            self._finish(job, "Stopped")
        elif code == 0:
            self._upload_outputs(job, root)
            self._finish(job, "Completed")
        else:
            failure = root / "output" / "failure"
            reason = (
                failure.read_text().strip() if failure.exists() else f"the trainer exited with code {code}"
            )
            self._finish(job, "Failed", f"AlgorithmError: {reason}")

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

    def _upload_checkpoints(self, job: LocalJob, root: Path) -> None:
        if not job.request.CheckpointConfig:
            return
        self._upload_changed(root / "checkpoints", job.request.CheckpointConfig.S3Uri, key=(job.name,))

    def _upload_outputs(self, job: LocalJob, root: Path) -> None:
        bucket, prefix = split_uri(job.request.OutputDataConfig.S3OutputPath)
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
