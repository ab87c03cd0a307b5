"""The `/opt/ml/processing` layout SageMaker Processing gives the `analyze` container.

SageMaker mounts the inputs and collects the outputs at the paths of `segpipe.models.processing`;
the embedded local stack runs the same command with `SEGPIPE_PROCESSING_ROOT` pointing at a folder
laid out the same way. Beside the processing root (`/opt/ml`) lie `config/resourceconfig.json`
(which host this is) and `output/message` (the first KB becomes DescribeProcessingJob's
ExitMessage: "Save and Access Metadata Information About Your Processing Job", SageMaker docs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from segpipe.models import processing
from segpipe_trainer.paths import root_from_environment

PROCESSING_ROOT_VARIABLE = "SEGPIPE_PROCESSING_ROOT"
DEFAULT_PROCESSING_ROOT = Path(processing.PROCESSING_ROOT)
#: The host name when resourceconfig.json is absent or names none (SageMaker's first host).
DEFAULT_HOST = "algo-1"
CONFIG_FILE = "analyze.json"
ARCHIVE_FILE = "model.tar.gz"


def _under(root: Path, constant: str) -> Path:
    """A layout constant of segpipe.models.processing moved under `root`."""
    return root / Path(constant).relative_to(processing.PROCESSING_ROOT)


@dataclass(frozen=True)
class ProcessingPaths:
    """Every path `analyze` reads or writes, under one root."""

    root: Path = DEFAULT_PROCESSING_ROOT

    @classmethod
    def from_environment(cls, *, environ: Mapping[str, str] | None = None) -> ProcessingPaths:
        """`$SEGPIPE_PROCESSING_ROOT` when set, `/opt/ml/processing` otherwise."""
        return cls(
            root=root_from_environment(PROCESSING_ROOT_VARIABLE, DEFAULT_PROCESSING_ROOT, environ=environ)
        )

    @property
    def model_input(self) -> Path:
        return _under(self.root, processing.MODEL_INPUT)

    @property
    def images_input(self) -> Path:
        return _under(self.root, processing.IMAGES_INPUT)

    @property
    def config_input(self) -> Path:
        return _under(self.root, processing.CONFIG_INPUT)

    @property
    def config_file(self) -> Path:
        return self.config_input / CONFIG_FILE

    @property
    def shards_output(self) -> Path:
        return _under(self.root, processing.SHARDS_OUTPUT)

    @property
    def images_output(self) -> Path:
        return _under(self.root, processing.IMAGES_OUTPUT)

    @property
    def masks_output(self) -> Path:
        return _under(self.root, processing.MASKS_OUTPUT)

    @property
    def progress_output(self) -> Path:
        return _under(self.root, processing.PROGRESS_OUTPUT)

    @property
    def resource_config(self) -> Path:
        """`/opt/ml/config/resourceconfig.json` (beside the processing root)."""
        return self.root.parent / "config" / "resourceconfig.json"

    @property
    def message(self) -> Path:
        """`/opt/ml/output/message`: SageMaker shows its first KB as the job's ExitMessage."""
        return self.root.parent / "output" / "message"

    def shard_dir(self, host: str) -> Path:
        return self.shards_output / host


def current_host(path: Path) -> str:
    """`current_host` of a Processing resourceconfig.json; `algo-1` when the file or field is absent."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return DEFAULT_HOST
    host = data.get("current_host") if isinstance(data, dict) else None
    return str(host) if host else DEFAULT_HOST
