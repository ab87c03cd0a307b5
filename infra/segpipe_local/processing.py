"""The local processing-job runner: SageMaker Processing's API beside the training runner, running
the real `analyze` entry point as a process under the `/opt/ml/processing` layout.

For each instance (`algo-1`, `algo-2`, ...) the runner makes that host's folder, writes
`config/resourceconfig.json`, downloads the inputs (an input with `ShardedByS3Key` gives host i
every N-th of the sorted keys: SageMaker's "approximately 1/N of the objects"), and runs
`analyze` with `SEGPIPE_PROCESSING_ROOT` pointing at the host's `processing/` folder. Continuous
outputs are uploaded while it runs, EndOfJob outputs once every instance has finished. The hosts
run one after another (the stack's machine has two cores; one process already uses both).

A container that fails leaves one sentence in `/opt/ml/output/message` (`{root}/../output/message`
locally); as on SageMaker its first KB is the job's `ExitMessage`, and the job's `FailureReason`
is `AlgorithmError: ` and that sentence.

Jobs survive a restart of the stack (`processing-jobs/{name}/job.json`). A job interrupted by the
stack stopping resumes on the next start: hosts that had finished keep their outputs on disk and
are not run again; the host that was running starts over from a clean folder (`analyze` has no
checkpoints, and its outputs depend only on its inputs). A job asked to stop before the restart
ends `Stopped`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import Field

from segpipe.models.processing import PROCESSING_ROOT, CreateProcessingJob, ProcessingOutput
from segpipe_local import jobs
from segpipe_local.events import processing_job_state_change_event
from segpipe_local.jobs import TERMINAL, LocalRunner, OutputSync, RunnerJob, invalid

logger = logging.getLogger(__name__)

#: The variables a processing job may set in `analyze`'s environment (see `jobs.check_environment`).
PROCESSING_ENVIRONMENT = frozenset({"SEGPIPE_PROJECT", "SEGPIPE_VERSION", "SEGPIPE_ANALYSIS"})
#: The only entry point the local runner starts: it runs commands on this machine.
ENTRY_POINTS = (["analyze"],)
PROCESSING_ROOT_VARIABLE = "SEGPIPE_PROCESSING_ROOT"
#: SageMaker keeps the first KB of the message file (ExitMessage, FailureReason: 1024 characters).
MESSAGE_MAX = 1024
NAME_PATTERN = re.compile(r"[A-Za-z0-9](-*[A-Za-z0-9]){0,62}")
CONTINUOUS_SECONDS = 1.0


def host_names(count: int) -> list[str]:
    return [f"algo-{index}" for index in range(1, count + 1)]


def shard(keys: list[str], *, host_index: int, hosts: int) -> list[str]:
    """The keys host `host_index` (0-based) of `hosts` gets under ShardedByS3Key: every N-th of
    the sorted keys, so each host gets about 1/N of them and together they get each once."""
    return sorted(keys)[host_index::hosts]


class LocalProcessingJob(RunnerJob):
    arn_kind = "processing-job"
    echoed = (
        "ProcessingInputs", "ProcessingOutputConfig", "ProcessingResources", "StoppingCondition",
        "AppSpecification", "Environment", "RoleArn",
    )  # fmt: skip

    request: CreateProcessingJob
    exit_message: str | None = None
    processing_start_time: datetime | None = None
    processing_end_time: datetime | None = None
    runtime_exceeded: bool = Field(default=False, description="Stopped by MaxRuntimeInSeconds")
    hosts_done: list[str] = Field(default_factory=list, description="Hosts whose container exited 0")
    resumed: int = Field(default=0, description="Times the job restarted after the stack stopped")

    @property
    def name(self) -> str:
        return self.request.ProcessingJobName

    @property
    def hosts(self) -> list[str]:
        return host_names(self.request.ProcessingResources.ClusterConfig.InstanceCount)

    def describe(self, region: str) -> dict[str, Any]:
        """DescribeProcessingJob's answer."""
        return self._answer(
            {
                "ProcessingJobName": self.name,
                "ProcessingJobArn": self.arn(region),
                "ProcessingJobStatus": self.status,
            },
            optional={
                "ExitMessage": self.exit_message,
                "ProcessingStartTime": self.processing_start_time,
                "ProcessingEndTime": self.processing_end_time,
            },
        )

    def summary(self, region: str) -> dict[str, Any]:
        """A ListProcessingJobs summary."""
        keys = (
            "ProcessingJobName", "ProcessingJobArn", "CreationTime", "ProcessingEndTime",
            "LastModifiedTime", "ProcessingJobStatus", "FailureReason", "ExitMessage",
        )  # fmt: skip
        description = self.describe(region)
        return {key: description[key] for key in keys if key in description}


def _local_path(value: str, where: str) -> PurePosixPath:
    """SageMaker's rule: a LocalPath lies under /opt/ml/processing/; here it also becomes a folder,
    so never `..` in it."""
    path = PurePosixPath(value)
    if not value.startswith(PROCESSING_ROOT + "/") or ".." in path.parts or len(value) > 256:
        raise invalid(value, where, f"Member must be a path under {PROCESSING_ROOT}/ without '..'")
    return path.relative_to(PROCESSING_ROOT)


def check_processing_job(request: CreateProcessingJob) -> None:
    """What CreateProcessingJob refuses beyond the pydantic contract, and what the local runner
    must refuse because it runs the job on this machine."""
    jobs.check_environment(request.Environment, PROCESSING_ENVIRONMENT)
    entry = request.AppSpecification.ContainerEntrypoint
    if entry not in ENTRY_POINTS:
        raise invalid(
            " ".join(entry),
            "appSpecification.containerEntrypoint",
            "the local runner runs only the entry point: " + ", ".join(" ".join(e) for e in ENTRY_POINTS),
        )
    names = [item.InputName for item in request.ProcessingInputs]
    outputs = [item.OutputName for item in request.ProcessingOutputConfig.Outputs]
    for what, listed in (("processingInputs", names), ("processingOutputConfig.outputs", outputs)):
        if len(set(listed)) != len(listed):
            raise invalid(", ".join(listed), what, "Names must be unique")
    for index, item in enumerate(request.ProcessingInputs, start=1):
        where = f"processingInputs.{index}.member.s3Input"
        _local_path(item.S3Input.LocalPath, f"{where}.localPath")
        if item.S3Input.S3InputMode == "Pipe" or item.S3Input.S3DataType == "ManifestFile":
            raise invalid(item.InputName, where, "the local runner serves S3Prefix inputs in File mode")
        _s3_uri(item.S3Input.S3Uri, f"{where}.s3Uri")
    for index, output in enumerate(request.ProcessingOutputConfig.Outputs, start=1):
        where = f"processingOutputConfig.outputs.{index}.member.s3Output"
        _local_path(output.S3Output.LocalPath, f"{where}.localPath")
        _s3_uri(output.S3Output.S3Uri, f"{where}.s3Uri")


def _s3_uri(value: str, where: str) -> None:
    if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", value):
        raise invalid(
            value, where, "Member must satisfy regular expression pattern: (https|s3)://([^/]+)/?(.*)"
        )


def analyze_command() -> list[str]:
    """The `analyze` entry point, as SageMaker runs ContainerEntrypoint (on PATH)."""
    return jobs.entry_point_command("analyze", "segpipe_trainer.analyze")


class ProcessingRunner(LocalRunner[LocalProcessingJob]):
    """Processing jobs: CreateProcessingJob's checks, then `analyze` run once per host, one host
    after another."""

    kind = "processing"
    not_found = "Could not find requested job with name {name}"

    def __init__(self, *, s3: Any, events: Any, data_dir: Path, region: str) -> None:
        super().__init__(
            job_model=LocalProcessingJob,
            s3=s3,
            events=events,
            root=data_dir / "processing-jobs",
            region=region,
        )

    def _state_change(self, description: dict[str, Any]) -> dict[str, Any]:
        return processing_job_state_change_event(description, region=self._region)

    # --- the SageMaker API ----------------------------------------------------------------------

    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        request = jobs.parse_request(CreateProcessingJob, params)
        check_processing_job(request)
        job = LocalProcessingJob(request=request)
        self._add(job)
        return {"ProcessingJobArn": job.arn(self._region)}

    def _name_taken(self, existing: LocalProcessingJob) -> str:
        return (
            "Job name must be unique within an AWS account and region, and a job with this name "
            f"already exists ({existing.arn(self._region)})"
        )

    def _stop_refusal(self, job: LocalProcessingJob) -> str | None:
        if job.status in TERMINAL or job.status == "Stopping":
            return f"The job {job.name} is not in progress."
        return None

    def list(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        params = params or {}
        contains = str(params.get("NameContains") or "").lower()
        status = params.get("StatusEquals")
        newest_first = params.get("SortOrder", "Descending") == "Descending"
        with self._lock:
            listed = [
                job
                for job in self._jobs.values()
                if contains in job.name.lower() and (status is None or job.status == status)
            ]
            listed.sort(key=lambda j: j.creation_time, reverse=newest_first)
            return {"ProcessingJobSummaries": [job.summary(self._region) for job in listed]}

    # --- state ----------------------------------------------------------------------------------

    def _resume(self, job: LocalProcessingJob) -> None:
        if job.stop_requested or job.runtime_exceeded:  # was stopping when the stack went down
            self._finish(job, "Stopped")
            return
        job.resumed += 1
        self._update(job, status="InProgress")  # says so again: the job runs on
        self._queue.put(job.name)

    def _finish(
        self, job: LocalProcessingJob, status: str, reason: str | None = None, message: str | None = None
    ) -> None:
        if job.status in TERMINAL:  # already ended (a stop while it was starting): one last event
            return
        self._update(
            job,
            status=status,
            failure_reason=reason[:MESSAGE_MAX] if reason else None,
            exit_message=message[:MESSAGE_MAX] if message else None,
            processing_end_time=datetime.now(UTC),
        )

    # --- running a job --------------------------------------------------------------------------

    def _host_root(self, job: LocalProcessingJob, host: str) -> Path:
        """The host's `/opt/ml`."""
        return self._root / job.name / "hosts" / host / "ml"

    def _run(self, job: LocalProcessingJob) -> None:
        if job.processing_start_time is None:
            self._update(job, processing_start_time=datetime.now(UTC))
        messages: list[str] = []
        for index, host in enumerate(job.hosts):
            if host in job.hosts_done:
                continue
            if job.stop_requested or job.runtime_exceeded:
                self._finish(job, "Stopped")
                return
            code = self._run_host(job, index, host)
            message = self._message(job, host)
            if self._shutting_down.is_set() and not job.stop_requested:
                return  # resumes on the next start
            if job.stop_requested or job.runtime_exceeded:
                self._finish(job, "Stopped", message=message)
                return
            if code != 0:
                reason = message or f"the container exited with code {code}"
                self._finish(job, "Failed", f"AlgorithmError: {reason}", message=message)
                return
            if message:
                messages.append(message)
            with self._lock:
                job.hosts_done.append(host)
                self._save(job)
        for host in job.hosts:
            self._upload_outputs(job, host, mode="EndOfJob")
        self._finish(job, "Completed", message="\n".join(messages) or None)

    def _run_host(self, job: LocalProcessingJob, index: int, host: str) -> int:
        ml = self._host_root(job, host)
        if ml.exists():
            shutil.rmtree(ml)  # a host interrupted by a restart starts over from a clean folder
        config = ml / "config"
        config.mkdir(parents=True)
        (config / "resourceconfig.json").write_text(
            json.dumps({"current_host": host, "hosts": job.hosts, "network_interface_name": "eth0"})
        )
        (ml / "output").mkdir()
        processing = ml / "processing"
        self._materialise(job, processing, index)
        environment = {
            **os.environ,
            **job.request.Environment,
            PROCESSING_ROOT_VARIABLE: str(processing),
            "PYTHONUNBUFFERED": "1",
        }
        environment.pop("SEGPIPE_ML_ROOT", None)
        return self._run_process(
            job,
            [*analyze_command(), *(job.request.AppSpecification.ContainerArguments or [])],
            environment=environment,
            log_path=self._root / job.name / f"{host}.log",
            # the outputs of upload mode Continuous, uploaded while it runs
            sync=OutputSync(
                lambda: self._upload_outputs(job, host, mode="Continuous"), seconds=CONTINUOUS_SECONDS
            ),
            wait=lambda process: self._wait(job, process),
        )

    def _wait(self, job: LocalProcessingJob, process: subprocess.Popen[bytes]) -> int:
        """The container's exit code. Past MaxRuntimeInSeconds (counted from the job's start, over
        every host) it gets SIGTERM, then SIGKILL 30 s later, and the job ends Stopped: "after the
        condition is met, the processing job is stopped" (ProcessingStoppingCondition)."""
        started = job.processing_start_time or datetime.now(UTC)
        limit = started.timestamp() + job.request.StoppingCondition.MaxRuntimeInSeconds
        try:
            return process.wait(timeout=max(0.0, limit - datetime.now(UTC).timestamp()))
        except subprocess.TimeoutExpired:
            logger.warning("%s ran past MaxRuntimeInSeconds; stopping it", job.name)
            with self._lock:
                job.runtime_exceeded = True
                self._save(job)
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def _materialise(self, job: LocalProcessingJob, processing: Path, index: int) -> None:
        hosts = len(job.hosts)
        for item in job.request.ProcessingInputs:
            source = item.S3Input
            keys = jobs.list_keys(self._s3, source.S3Uri)
            if source.S3DataDistributionType == "ShardedByS3Key":
                keys = shard(keys, host_index=index, hosts=hosts)
            target = processing / _local_path(source.LocalPath, item.InputName)
            jobs.download_keys(self._s3, source.S3Uri, keys, target)
        for output in job.request.ProcessingOutputConfig.Outputs:
            (processing / _local_path(output.S3Output.LocalPath, output.OutputName)).mkdir(
                parents=True, exist_ok=True
            )

    def _message(self, job: LocalProcessingJob, host: str) -> str | None:
        path = self._host_root(job, host) / "output" / "message"
        if not path.is_file():
            return None
        text = path.read_bytes()[:MESSAGE_MAX].decode("utf-8", errors="replace").strip()
        return text or None

    def _upload_outputs(self, job: LocalProcessingJob, host: str, *, mode: str) -> None:
        processing = self._host_root(job, host) / "processing"
        every: list[ProcessingOutput] = job.request.ProcessingOutputConfig.Outputs
        outputs = [output for output in every if output.S3Output.S3UploadMode == mode]
        for output in outputs:
            folder = processing / _local_path(output.S3Output.LocalPath, output.OutputName)
            self._upload_changed(folder, output.S3Output.S3Uri, key=(job.name, host, output.OutputName))
