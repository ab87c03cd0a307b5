"""What every check of one request may read: the request, its resolved training settings, where the
dataset lives and the thresholds. Built once by the entry module and passed whole."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segpipe.dal.interfaces import DatasetStore
from segpipe.logic.validate.thresholds import RULES, Rules
from segpipe.models.common import Preset
from segpipe.models.presets import PRESETS
from segpipe.models.request import TrainingRequest


@dataclass(frozen=True)
class Training:
    """The training settings the request resolves to (its own, else the deployment's defaults)."""

    preset: Preset
    epochs: int
    tile_size: int

    @property
    def patch(self) -> int:
        return PRESETS[self.preset].patch_size  # tiles are fed at native resolution

    def details(self) -> dict[str, Any]:
        return {"preset": self.preset.value, "epochs": self.epochs, "tile_size": self.tile_size}


@dataclass(frozen=True)
class Source:
    """Where the dataset's files are read."""

    store: DatasetStore
    project: str
    dataset: str

    def read_head(self, file_name: str, nbytes: int) -> bytes:
        return self.store.read_head(self.project, self.dataset, file_name, nbytes)


@dataclass(frozen=True)
class Context:
    """One request's validation: what the checks read besides the dataset itself."""

    request: TrainingRequest
    training: Training
    source: Source
    rules: Rules = RULES
