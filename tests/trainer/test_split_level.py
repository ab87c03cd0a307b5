"""The split level (the distance head's seed level, the flow head's sink flow) is chosen on the
held-out images, written down, and used by every later prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from segpipe.models.trainer_io import Evaluation, ModelCard
from segpipe_trainer.analyze import load_model
from segpipe_trainer.cli import run
from segpipe_trainer.data import Sample
from segpipe_trainer.distributed import Runtime
from segpipe_trainer.infer import dense_maps
from segpipe_trainer.levels import choose_split_level
from segpipe_trainer.paths import MlPaths
from segpipe_trainer.postprocess import SPLIT_LEVEL_CHOICES, SPLIT_LEVEL_DEFAULTS, distance_target
from tests.trainer.tiny_model import cpu_predictor
from tests.trainer.trainer_testkit import OLDER_CARD, DatasetSpec, hyperparameters, make_ml_root

SIZE = 64


class _DistanceFromImage(nn.Module):
    """A "model" whose image is its distance map: foreground wherever the image exceeds 0.05, and the
    image itself as the predicted distance (B x 3 x H x W logits: background, object, distance)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        distance = images[:, :1].clamp(1e-4, 1 - 1e-4)
        foreground = (images[:, :1] - 0.05) * 200
        return torch.cat([-foreground, foreground, torch.logit(distance)], dim=1)


def _blurred_pair(*, saddle: float) -> Sample:
    """Two touching discs whose predicted distance map (two cones) only falls to `saddle` where they
    touch, as a blurry model's does; the annotations split them along the line between the cones."""
    rows, cols = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    radius = 14.0
    half_gap = (1.0 - saddle) * radius  # a cone 1 - d / radius falls to `saddle` at d = half_gap
    centres = [(32.0, 32.0 - half_gap), (32.0, 32.0 + half_gap)]
    distances = [np.hypot(rows - cy, cols - cx) for cy, cx in centres]
    cones = np.maximum(*(1.0 - d / radius for d in distances))
    labels = np.where(cones > 0, np.where(distances[0] <= distances[1], 1, 2), 0).astype(np.int32)
    return Sample(
        file_name="pair.tif",
        image=np.clip(cones, 0.0, 1.0)[None].astype(np.float32),
        labels=labels,
        classes=np.array([0, 1, 1], dtype=np.int64),
        distance=distance_target(labels),
    )


def test_a_blurry_distance_map_gets_a_seed_level_above_its_saddle() -> None:
    sample = _blurred_pair(saddle=0.57)
    predictor = cpu_predictor(_DistanceFromImage(), num_classes=1)

    choice = choose_split_level(predictor, samples=[sample], class_names=["nucleus"])

    assert set(choice.scores) == set(SPLIT_LEVEL_CHOICES["distance"])
    merged = [level for level in choice.scores if level < 0.57]
    assert all(choice.scores[level] < 1.0 for level in merged), "one core: the pair stays merged"
    assert choice.level > 0.57 and choice.scores[choice.level] == 1.0
    # Of the levels that separate the pair, the one nearest the head's default.
    separating = [level for level, score in choice.scores.items() if score == 1.0]
    assert choice.level == min(separating, key=lambda level: abs(level - SPLIT_LEVEL_DEFAULTS["distance"]))
    assert choice.evaluation.sweep[0].overall.tp == 2
    # The predictor at the default level merges them: the chosen level is what changes the objects.
    maps = dense_maps(predictor.outputs(sample.image), num_classes=1)
    assert predictor.instances(maps).count == 1
    chosen = cpu_predictor(_DistanceFromImage(), num_classes=1, split_level=choice.level)
    assert chosen.instances(maps).count == 2


def test_a_tie_goes_to_the_default_level() -> None:
    sample = _blurred_pair(saddle=0.1)  # every candidate separates the pair
    predictor = cpu_predictor(_DistanceFromImage(), num_classes=1)

    choice = choose_split_level(predictor, samples=[sample], class_names=["nucleus"])

    assert all(score == 1.0 for score in choice.scores.values())
    assert choice.level == SPLIT_LEVEL_DEFAULTS["distance"]


def test_an_older_card_predicts_at_the_heads_default_level() -> None:
    card = ModelCard.model_validate(OLDER_CARD)
    assert card.split_level is None


@pytest.mark.slow
def test_a_training_chooses_its_split_level_on_the_held_out_images_and_the_analysis_uses_it(
    tmp_path: Path,
) -> None:
    root = make_ml_root(
        tmp_path / "ml",
        params=hyperparameters(
            epochs=2, steps_per_epoch=4, validation_fraction=0.3, early_stopping_patience=3
        ),
        train=DatasetSpec(images=3, size=(64, 64), objects=4),
        test=[DatasetSpec(images=1, size=(64, 64), objects=4, seed=5)],
    )
    torch.set_num_threads(1)
    assert run(MlPaths(root=root)) == 0

    evaluation = Evaluation.model_validate_json((root / "output" / "data" / "evaluation.json").read_text())
    selection = evaluation.selection
    assert selection is not None and selection.method == "refit"
    assert selection.split_level in SPLIT_LEVEL_CHOICES["distance"]
    assert [entry.level for entry in selection.split_levels] == list(SPLIT_LEVEL_CHOICES["distance"])
    best = max(entry.score for entry in selection.split_levels)
    assert {entry.level: entry.score for entry in selection.split_levels}[selection.split_level] == best
    assert f"split at level {selection.split_level:g}" in selection.summary
    card = ModelCard.model_validate(json.loads((root / "model" / "model.json").read_text()))
    assert card.split_level == selection.split_level
    loaded = load_model(root / "model", work_dir=tmp_path / "work", runtime=Runtime())
    assert loaded.predictor.split_level == selection.split_level
