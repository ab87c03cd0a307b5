"""The `/opt/ml` layout SageMaker gives a bring-your-own-container training job.

The embedded local stack runs the same code as a plain process and points `SEGPIPE_ML_ROOT` at a
folder with the same layout.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from segpipe.models.common import SplitName

ML_ROOT_VARIABLE = "SEGPIPE_ML_ROOT"
DEFAULT_ML_ROOT = Path("/opt/ml")


def root_from_environment(variable: str, default: Path, *, environ: Mapping[str, str] | None = None) -> Path:
    """The folder `$variable` names (the local stack's stand-in for a SageMaker mount), or
    `default` when it is unset or empty. `environ` defaults to the process's environment."""
    value = (os.environ if environ is None else environ).get(variable)
    return Path(value) if value else default


@dataclass(frozen=True)
class MlPaths:
    """Every path the trainer reads or writes, under one root."""

    root: Path = DEFAULT_ML_ROOT

    @classmethod
    def from_environment(cls, *, environ: Mapping[str, str] | None = None) -> MlPaths:
        """`$SEGPIPE_ML_ROOT` when set, `/opt/ml` otherwise."""
        return cls(root=root_from_environment(ML_ROOT_VARIABLE, DEFAULT_ML_ROOT, environ=environ))

    # Inputs ------------------------------------------------------------------------------------

    @property
    def config_dir(self) -> Path:
        return self.root / "input" / "config"

    @property
    def hyperparameters(self) -> Path:
        return self.config_dir / "hyperparameters.json"

    @property
    def resource_config(self) -> Path:
        return self.config_dir / "resourceconfig.json"

    def channel(self, name: str) -> Path:
        """`input/data/{name}`: a channel SageMaker mounted (dataset, split, base)."""
        return self.root / "input" / "data" / name

    @property
    def dataset(self) -> Path:
        return self.channel("dataset")

    @property
    def split(self) -> Path:
        return self.channel("split")

    @property
    def base(self) -> Path:
        return self.channel("base")

    # Outputs -----------------------------------------------------------------------------------

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def failure(self) -> Path:
        return self.output_dir / "failure"

    @property
    def output_data(self) -> Path:
        return self.output_dir / "data"

    @property
    def evaluation(self) -> Path:
        return self.output_data / "evaluation.json"

    @property
    def resolved_config(self) -> Path:
        return self.output_data / "config.json"

    def predictions_dir(self, split: SplitName) -> Path:
        return self.output_data / "predictions" / split

    @property
    def previews_dir(self) -> Path:
        return self.output_data / "previews"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def progress(self) -> Path:
        return self.checkpoints / "progress.json"

    @property
    def work_dir(self) -> Path:
        """Scratch space on the job's volume (prepared arrays); never uploaded."""
        return self.root / "work"


@dataclass(frozen=True)
class ResourceConfig:
    """`input/config/resourceconfig.json`: the hosts of the job and which one this is."""

    hosts: tuple[str, ...]
    current_host: str

    @property
    def host_rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def master(self) -> str:
        return self.hosts[0]

    @classmethod
    def read(cls, path: Path) -> ResourceConfig:
        """The file's hosts, or this machine alone when the file is absent (a local run)."""
        if not path.is_file():
            return cls(hosts=("localhost",), current_host="localhost")
        data = json.loads(path.read_text())
        hosts = tuple(sorted(str(host) for host in data.get("hosts") or []))
        current = str(data.get("current_host") or socket.gethostname())
        if current not in hosts:
            hosts = (*hosts, current)
        return cls(hosts=hosts, current_host=current)
