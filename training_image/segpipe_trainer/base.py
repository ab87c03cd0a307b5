"""The optional `base` channel: weights to start from.

Either a safetensors file of encoder weights (loaded through timm, which adapts the patch embedding
to the channel count and patch size), or a previous segpipe version's `model.tar.gz` (or its
unpacked `model.json` + weights), which continues training from that version.
"""

from __future__ import annotations

import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from safetensors.torch import load_file

from segpipe.models.common import ModelType
from segpipe.models.trainer_io import InstanceHead, ModelCard
from segpipe_trainer.errors import TrainerError
from segpipe_trainer.model import Segmenter, head_parameter_names, load_state

logger = logging.getLogger(__name__)

CARD_FILE = "model.json"


@dataclass(frozen=True)
class StartingPoint:
    """Where the weights come from: nothing (preset default), an encoder file, or a previous model."""

    encoder_file: Path | None = None
    card: ModelCard | None = None
    weights_file: Path | None = None

    @property
    def previous_model(self) -> bool:
        return self.card is not None and self.weights_file is not None

    def describe(self) -> str:
        if self.previous_model:
            assert self.card is not None
            return f"previous model ({self.card.preset}, classes {self.card.classes})"
        if self.encoder_file is not None:
            return f"encoder weights {self.encoder_file.name}"
        return "preset default"


def find_starting_point(base_dir: Path, *, work_dir: Path) -> StartingPoint:
    """Inspect the base channel; `work_dir` receives an unpacked model.tar.gz."""
    if not base_dir.is_dir() or not any(base_dir.iterdir()):
        return StartingPoint()
    archives = sorted(base_dir.rglob("*.tar.gz"))
    folder = base_dir
    if archives:
        described = f"The base model archive '{archives[0].name}'"
        folder = unpack_archive(archives[0], destination=work_dir / "base-model", described=described)
    cards = sorted(folder.rglob(CARD_FILE))
    if cards:
        return _previous_model(cards[0])
    files = sorted(folder.rglob("*.safetensors"))
    if len(files) == 1:
        return StartingPoint(encoder_file=files[0])
    if not files:
        raise TrainerError(
            "The 'base' channel holds neither a model.tar.gz, a model.json nor a safetensors file"
        )
    raise TrainerError(f"The 'base' channel holds {len(files)} safetensors files; give exactly one")


def unpack_archive(archive: Path, *, destination: Path, described: str) -> Path:
    """`archive` (a tar, compressed or not) unpacked into `destination`, refusing members that would
    land outside it; a `TrainerError` naming it as `described` ("The model archive ...") if not."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(destination, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise TrainerError(f"{described} could not be unpacked: {exc}") from exc
    return destination


def _previous_model(card_path: Path) -> StartingPoint:
    try:
        card = ModelCard.model_validate_json(card_path.read_bytes())
    except (ValidationError, ValueError) as exc:
        raise TrainerError(f"The base model's model.json is not a segpipe model card: {exc}") from exc
    weights = card_path.parent / card.weights
    if not weights.is_file():
        raise TrainerError(f"The base model's weights file '{card.weights}' is missing beside its model.json")
    return StartingPoint(card=card, weights_file=weights)


def continue_from(
    model: Segmenter,
    *,
    start: StartingPoint,
    classes: list[str],
    model_type: ModelType,
    instance_head: InstanceHead = "distance",
) -> list[str]:
    """Load a previous version's weights into `model`; the class head too when classes and type match.

    Returns the keys left at their fresh initialisation.
    """
    assert start.card is not None and start.weights_file is not None
    state = load_file(str(start.weights_file))
    same_head = start.card.classes == classes and start.card.model_type == model_type
    if model_type == "instance":
        same_head = same_head and start.card.instance_head == instance_head
    skipped = load_state(model, state, skip=() if same_head else sorted(head_parameter_names(model)))
    if skipped:
        logger.info("Classes, model type or instance head differ from the base model: the head starts fresh")
    return skipped
