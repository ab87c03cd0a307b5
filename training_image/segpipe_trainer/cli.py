"""`train`: the container's entry point under SageMaker, and the local runner's process.

SageMaker runs `train` in the image (it may pass the word `train` as an argument); the embedded
local stack runs the same command with `SEGPIPE_ML_ROOT` pointing at a folder laid out like `/opt/ml`.
Exit status: 0 done, 1 failed (with `output/failure`), 143 interrupted by SIGTERM (checkpoint saved).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from segpipe.models.trainer_io import TrainingConfig
from segpipe_trainer.distributed import Runtime, gpus_per_host, needs_launch, torchrun_command
from segpipe_trainer.errors import TrainerError, failure_sentence
from segpipe_trainer.job import run_job
from segpipe_trainer.paths import MlPaths, ResourceConfig
from segpipe_trainer.train import StopSignal

logger = logging.getLogger("segpipe_trainer")

EXIT_FAILED = 1
EXIT_INTERRUPTED = 143  # 128 + SIGTERM, as a shell reports a process ended by it


def configure_logging(*, rank: int = 0) -> None:
    """Timestamped lines on stdout; metric lines bare, so SageMaker's regexes see them as written."""
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stdout)
    prefix = f"[rank {rank}] " if rank else ""
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    metrics = logging.getLogger("segpipe_trainer.metrics")
    metrics.handlers.clear()
    bare = logging.StreamHandler(sys.stdout)
    bare.setFormatter(logging.Formatter("%(message)s"))
    metrics.addHandler(bare)
    metrics.propagate = False


def read_config(path: Path) -> TrainingConfig:
    """Parse hyperparameters.json with the shared contract; a bad file is a TrainerError."""
    try:
        hyperparameters = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise TrainerError(f"The hyperparameters file {path} is missing") from exc
    except json.JSONDecodeError as exc:
        raise TrainerError(f"The hyperparameters file is not valid JSON: {exc}") from exc
    try:
        return TrainingConfig.from_hyperparameters(hyperparameters)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "hyperparameters"
        raise TrainerError(f"The hyperparameter '{where}' is invalid: {first['msg']}") from exc


def write_failure(paths: MlPaths, error: BaseException) -> None:
    """`output/failure`: one sentence for the person who started the training."""
    try:
        paths.failure.parent.mkdir(parents=True, exist_ok=True)
        paths.failure.write_text(failure_sentence(error) + "\n")
    except OSError:
        logger.exception("Could not write %s", paths.failure)


def run(paths: MlPaths) -> int:
    """Parse, launch torchrun when needed, train; the exit status."""
    config = read_config(paths.hyperparameters)
    resources = ResourceConfig.read(paths.resource_config)
    gpus = gpus_per_host()
    if needs_launch(resources=resources, gpus=gpus):
        command = torchrun_command(resources=resources, processes_per_host=max(gpus, 1))
        logger.info("Launching %s", " ".join(command))
        os.execv(command[0], command)  # noqa: S606 - replaces this process; SIGTERM reaches torchrun directly
    runtime = Runtime.from_environment()
    configure_logging(rank=runtime.rank)
    stop = StopSignal()
    stop.install()
    runtime.start()
    try:
        outcome = run_job(paths=paths, config=config, runtime=runtime, stop=stop)
    finally:
        runtime.stop()
    return EXIT_INTERRUPTED if outcome.interrupted else 0


def main() -> None:
    """Console script `train`."""
    configure_logging()
    paths = MlPaths.from_environment()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        status = run(paths)
    except Exception as exc:
        logger.exception("Training failed")
        if local_rank == 0:
            write_failure(paths, exc)
        status = EXIT_FAILED
    sys.exit(status)


if __name__ == "__main__":
    main()
