"""What the local training- and processing-job runners share.

- SageMaker's API errors and the checks both Create*Job operations make (`JobError`,
  `parse_request`, `check_environment`);
- S3 inputs copied into a job's folders (`list_keys`, `download_keys`), and a folder's changed
  files copied back (`upload_changed`; `LocalRunner._upload_changed` keeps the times per folder);
- the command of an entry point (`entry_point_command`);
- `RunnerJob`: a job's request, tags and state, and what every Describe*Job answer holds (`_answer`);
- `LocalRunner`: the API's Describe and Stop, and one worker loop. Jobs wait in a queue and run one
  at a time per worker; each job's state is saved as `{root}/{name}/job.json` on every change, so
  jobs survive a restart of the stack, and every change sends the job's state-change event to
  EventBridge. `stop_job` is the API's Stop*Job; `stop` shuts the runner down (running jobs get
  SIGTERM and resume on the next start).
"""

from __future__ import annotations

import logging
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, Field, ValidationError

from segpipe.models.jobs import CreateTrainingJob, JobStatus
from segpipe.models.processing import CreateProcessingJob
from segpipe_local.atomic import TEMPORARY_SUFFIX, write_atomically
from segpipe_local.events import ACCOUNT, event_bus_entry, with_datetimes

logger = logging.getLogger(__name__)

TERMINAL = {"Completed", "Failed", "Stopped"}
RequestModel = TypeVar("RequestModel", bound=BaseModel)

ENVIRONMENT_MAX_ENTRIES = 100
ENVIRONMENT_VALUE_MAX = 512


class JobError(Exception):
    """An error SageMaker's API would return (`code` is its `__type`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(value: str, where: str, constraint: str) -> JobError:
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


def check_environment(environment: dict[str, str], allowed: frozenset[str]) -> None:
    """A job's variables: SageMaker's limits, and only the `allowed` names. The job runs as a local
    process, so a variable such as LD_PRELOAD or PYTHONPATH would run any code the caller names."""
    if len(environment) > ENVIRONMENT_MAX_ENTRIES:
        raise invalid(
            f"{len(environment)} entries",
            "environment",
            f"Map must have at most {ENVIRONMENT_MAX_ENTRIES} entries",
        )
    for name, value in environment.items():
        if name not in allowed:
            raise invalid(
                name,
                "environment",
                "Map keys must be variables the local runner passes to a job: " + ", ".join(sorted(allowed)),
            )
        if len(value) > ENVIRONMENT_VALUE_MAX:
            raise invalid(
                value,
                f"environment.{name}",
                f"Member must have length less than or equal to {ENVIRONMENT_VALUE_MAX}",
            )


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def list_keys(s3: Any, uri: str) -> list[str]:
    """Every key under an S3Prefix URI, sorted (S3 lists in key order)."""
    bucket, prefix = split_uri(uri)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def download_keys(s3: Any, uri: str, keys: list[str], target: Path) -> None:
    """Copy `keys` (under the prefix of `uri`) into `target`, keeping the path below the prefix;
    a single object (a model.tar.gz) lands under its own name. Nothing is written outside
    `target`."""
    bucket, prefix = split_uri(uri)
    target.mkdir(parents=True, exist_ok=True)
    for key in keys:
        relative = key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
        if not relative or ".." in Path(relative).parts or relative.endswith("/"):
            continue  # a folder marker, or a path that would leave the target
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(destination))


def upload_changed(s3: Any, folder: Path, uri: str, uploaded: dict[str, int]) -> None:
    """Upload every file under `folder` (none when it is missing) whose modification time is not
    the one `uploaded` holds for it, to the prefix of `uri` at its path below `folder`, and note
    the time; temporary files of atomic writes (`.tmp`) are skipped."""
    bucket, prefix = split_uri(uri)
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if not path.is_file() or path.name.endswith(TEMPORARY_SUFFIX):
            continue
        relative = path.relative_to(folder).as_posix()
        stamp = path.stat().st_mtime_ns
        if uploaded.get(relative) == stamp:
            continue
        s3.upload_file(str(path), bucket, prefix.rstrip("/") + "/" + relative)
        uploaded[relative] = stamp


def entry_point_command(script: str, module: str) -> list[str]:
    """An entry point as SageMaker runs it (`script` on PATH): the script installed beside this
    interpreter, else this interpreter running `module`'s `main`."""
    installed = Path(sys.executable).with_name(script)
    if installed.exists():
        return [str(installed)]
    return [sys.executable, "-c", f"from {module} import main; main()"]


def _now() -> datetime:
    return datetime.now(UTC)


class RunnerJob(BaseModel):
    """The state every local job keeps, whatever its kind."""

    #: The job's kind in its ARN (`training-job`, `processing-job`).
    arn_kind: ClassVar[str]
    #: The request's fields that the Describe*Job answer repeats as they were sent (where set).
    echoed: ClassVar[tuple[str, ...]]

    #: The Create*Job request the job was made from (each kind of job names its own).
    request: CreateTrainingJob | CreateProcessingJob
    status: JobStatus = "InProgress"
    failure_reason: str | None = None
    creation_time: datetime = Field(default_factory=_now)
    last_modified_time: datetime = Field(default_factory=_now)
    stop_requested: bool = False

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def tags(self) -> dict[str, str]:
        """The job's tags as a {key: value} map, as its state-change event carries them."""
        return {tag.Key: tag.Value for tag in self.request.Tags}

    def arn(self, region: str) -> str:
        return f"arn:aws:sagemaker:{region}:{ACCOUNT}:{self.arn_kind}/{self.name.lower()}"

    def describe(self, region: str) -> dict[str, Any]:
        """The Describe*Job answer (times as epoch seconds, as the JSON API sends them)."""
        raise NotImplementedError

    def _answer(self, fields: dict[str, Any], *, optional: dict[str, Any]) -> dict[str, Any]:
        """A Describe*Job answer: `fields`, the `echoed` fields of the request, the job's creation
        and modification times, then its failure reason and each of `optional` that is set; times
        as epoch seconds."""
        request = self.request.model_dump(exclude_none=True)
        answer = {
            **fields,
            **{key: request[key] for key in self.echoed if key in request},
            "CreationTime": self.creation_time.timestamp(),
            "LastModifiedTime": self.last_modified_time.timestamp(),
        }
        for key, value in {"FailureReason": self.failure_reason, **optional}.items():
            if value:
                answer[key] = value.timestamp() if isinstance(value, datetime) else value
        return answer


Job = TypeVar("Job", bound=RunnerJob)


@dataclass(frozen=True)
class OutputSync:
    """How a job's outputs reach S3 while its process runs: `upload` every `seconds`, and once more
    after the process exits."""

    upload: Callable[[], None]
    seconds: float


class LocalRunner(Generic[Job]):
    """The queue, the workers and the saved state of one kind of local job (see the module)."""

    #: What the runner's jobs are called in logs and thread names ("training", "processing").
    kind: ClassVar[str]
    #: The DescribeXJob error for a name the runner does not know.
    not_found: ClassVar[str]

    def __init__(
        self,
        *,
        job_model: type[Job],
        s3: Any,
        events: Any,
        root: Path,
        region: str,
        parallel: int = 1,
    ) -> None:
        self._job_model = job_model
        self._s3 = s3
        self._events = events
        self._root = root
        self._region = region
        self._jobs: dict[str, Job] = {}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        #: Modification times of the files already uploaded, per folder a job syncs to S3.
        self._uploaded_times: dict[tuple[str, ...], dict[str, int]] = {}
        self._lock = threading.RLock()
        self._shutting_down = threading.Event()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._workers = [
            threading.Thread(target=self._work, name=f"{self.kind}-runner-{index}", daemon=True)
            for index in range(parallel)
        ]
        self._load()

    # --- the SageMaker API ----------------------------------------------------------------------

    def _job(self, name: str) -> Job:
        job = self._jobs.get(name)
        if job is None:
            raise JobError("ValidationException", self.not_found.format(name=name))
        return job

    def describe(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self._job(name).describe(self._region)

    def stop_job(self, name: str) -> dict[str, Any]:
        """Stop*Job: a job still waiting never starts; a running one gets SIGTERM (the trainer
        writes a checkpoint) and ends Stopped when its process exits."""
        with self._lock:
            job = self._job(name)
            refusal = self._stop_refusal(job)
            if refusal:
                raise JobError("ValidationException", refusal)
            job.stop_requested = True
            process = self._processes.get(name)
            if process is None:  # waiting for a worker (or between hosts): it never starts
                self._finish(job, "Stopped")
                return {}
            self._mark_stopping(job)
        process.send_signal(signal.SIGTERM)
        return {}

    def _stop_refusal(self, job: Job) -> str | None:
        """Why the API refuses to stop `job`, or None."""
        raise NotImplementedError

    def _mark_stopping(self, job: Job) -> None:
        self._update(job, status="Stopping")

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        """Shut the runner down: running jobs get SIGTERM and resume on the next start."""
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
        """Jobs saved by an earlier run; each one not ended is handed to `_resume`."""
        if not self._root.exists():
            return
        for path in sorted(self._root.glob("*/job.json")):
            job = self._job_model.model_validate_json(path.read_text())
            self._jobs[job.name] = job
            if job.status not in TERMINAL:
                self._resume(job)

    def _resume(self, job: Job) -> None:
        """A job that had not ended when the stack stopped: queue it again (or end it)."""
        raise NotImplementedError

    # --- state ----------------------------------------------------------------------------------

    def _add(self, job: Job) -> None:
        """A new job from Create*Job: saved, announced and queued; ResourceInUse if the name is taken."""
        with self._lock:
            existing = self._jobs.get(job.name)
            if existing is not None:
                raise JobError("ResourceInUse", self._name_taken(existing))
            self._jobs[job.name] = job
            self._save(job)
        self._emit(job)
        self._queue.put(job.name)

    def _name_taken(self, existing: Job) -> str:
        raise NotImplementedError

    def _save(self, job: Job) -> None:
        write_atomically(self._root / job.name / "job.json", job.model_dump_json(indent=2).encode())

    def _update(self, job: Job, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(job, key, value)
            job.last_modified_time = datetime.now(UTC)
            self._save(job)
        self._emit(job)

    def _finish(self, job: Job, status: str, reason: str | None = None) -> None:
        raise NotImplementedError

    def _state_change(self, description: dict[str, Any]) -> dict[str, Any]:
        """The EventBridge event of a job with this Describe*Job answer (its tags added)."""
        raise NotImplementedError

    def _emit(self, job: Job) -> None:
        """Send the job's state-change event, built from its Describe*Job answer and its tags."""
        description = with_datetimes(job.describe(self._region))
        description["Tags"] = job.tags
        event = self._state_change(description)
        self._events.put_events(Entries=[event_bus_entry(event)])

    # --- running a job --------------------------------------------------------------------------

    def _work(self) -> None:
        while (name := self._queue.get()) is not None:
            job = self._jobs[name]
            if job.status in TERMINAL:
                continue
            try:
                self._run(job)
            except Exception as error:
                logger.exception("local %s job %s broke", self.kind, name)
                self._finish(job, "Failed", f"InternalServerError: the local runner failed: {error}")

    def _run(self, job: Job) -> None:
        raise NotImplementedError

    def _upload_changed(self, folder: Path, uri: str, *, key: tuple[str, ...]) -> None:
        """Upload the files of `folder` that changed since its last upload to `uri`; `key` names
        the folder (the job's name first)."""
        upload_changed(self._s3, folder, uri, self._uploaded_times.setdefault(key, {}))

    def _run_process(
        self,
        job: Job,
        command: list[str],
        *,
        environment: dict[str, str],
        log_path: Path,
        sync: OutputSync,
        wait: Callable[[subprocess.Popen[bytes]], int] | None = None,
    ) -> int:
        """Run the job's container process, its output appended to `log_path`, while `sync` uploads
        what it writes. Returns the exit code; a job asked to stop before its process started gets
        SIGTERM at once."""
        stop_sync = threading.Event()

        def syncing() -> None:
            while not stop_sync.wait(sync.seconds):
                try:
                    sync.upload()
                except Exception:
                    logger.debug("upload of %s's outputs failed; retrying", job.name, exc_info=True)

        syncer = threading.Thread(target=syncing, name=f"{self.kind}-sync", daemon=True)
        with log_path.open("ab") as log:
            process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
            with self._lock:
                self._processes[job.name] = process
            if job.stop_requested:  # asked to stop while the inputs were downloading
                process.send_signal(signal.SIGTERM)
            syncer.start()
            code = wait(process) if wait else process.wait()
        stop_sync.set()
        syncer.join()
        sync.upload()
        with self._lock:
            self._processes.pop(job.name, None)
        return code
