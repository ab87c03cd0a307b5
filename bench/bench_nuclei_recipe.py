"""Choosing the tiny preset's CPU recipe on the real nuclei's training tiles only (never the test tile).

Cross-validation over the three training tiles of `bench.bench_nuclei` (the top-left, top-right and
bottom-left 256 x 256 tiles of StarDist's `test_image_nuclei_2d`): each fold trains on two tiles
through the trainer's own loop (`train.fit`, the job's model, loss, schedule and tiles) and scores
the third after every epoch, as the trainer scores its held-out images (best F1 at IoU 0.5 over the
score thresholds). A recipe is the training settings plus the tile augmentation. Reported per
recipe: each fold's score at the last epoch and at its best epoch, their means, the mean over every
fold's last five epochs (steadier than one epoch's score on ~35 objects), and the wall time.
Run: `python -m bench.bench_nuclei_recipe --recipes current longer [--folds 0 1 2]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import tifffile
import torch

from bench.bench_nuclei import TEST_TILE, coco_of, tiles
from segpipe.models.coco import CocoDataset
from segpipe.models.trainer_io import TrainingConfig
from segpipe_trainer import accel
from segpipe_trainer.base import StartingPoint
from segpipe_trainer.data import (
    Augmentation,
    ClassMap,
    SampleOptions,
    class_pixel_weights,
    default_steps_per_epoch,
    image_entries,
    load_sample,
)
from segpipe_trainer.distributed import Runtime
from segpipe_trainer.infer import predictor_on
from segpipe_trainer.job import build_job_model
from segpipe_trainer.model import preset_spec, resolved_head
from segpipe_trainer.train import Fingerprint, LoopSetup, StopSignal, fit


@dataclass(frozen=True)
class Recipe:
    """Training settings (TrainingConfig fields) and the tile augmentation, by name."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    augmentation: Augmentation | None = None  # None: the preset's


BASE = {"epochs": 20, "tile_size": 128}
STRONG_INTENSITY = Augmentation(gain_range=(0.6, 1.6), offset_range=(-0.2, 0.2), gamma_range=(0.6, 1.6))
#: The data.Augmentation defaults (the tiny preset's), named so a recipe does not follow the preset.
BEFORE = Augmentation()
RECIPES: dict[str, Recipe] = {
    "current": Recipe({**BASE, "learning_rate": 3e-4}, BEFORE),
    "preset": Recipe(BASE),  # whatever the preset now defaults to
    "longer": Recipe({**BASE, "epochs": 40, "learning_rate": 3e-4}, BEFORE),
    "more-steps": Recipe({**BASE, "steps_per_epoch": 40, "learning_rate": 3e-4}, BEFORE),
    "lr-1e-3": Recipe({**BASE, "learning_rate": 1e-3}, BEFORE),
    "tile-256": Recipe({**BASE, "tile_size": 256, "learning_rate": 3e-4}, BEFORE),
    "tile-256-b2": Recipe({**BASE, "tile_size": 256, "batch_size": 2, "learning_rate": 3e-4}, BEFORE),
    "tile-192-b4": Recipe({**BASE, "tile_size": 192, "batch_size": 4, "learning_rate": 3e-4}, BEFORE),
    "flow": Recipe({**BASE, "instance_head": "flow", "learning_rate": 3e-4}, BEFORE),
    "lr-2e-3": Recipe({**BASE, "learning_rate": 2e-3}, BEFORE),
    "lr-1e-3-tile-256-b2": Recipe({**BASE, "learning_rate": 1e-3, "tile_size": 256, "batch_size": 2}, BEFORE),
    "lr-1e-3-intensity": Recipe({**BASE, "learning_rate": 1e-3}, STRONG_INTENSITY),
    "lr-1e-3-scale-wide": Recipe(
        {**BASE, "learning_rate": 1e-3},
        Augmentation(
            gain_range=(0.6, 1.6), offset_range=(-0.2, 0.2), gamma_range=(0.6, 1.6), scale_range=(0.6, 1.6)
        ),
    ),
    "lr-1e-3-longer": Recipe({**BASE, "learning_rate": 1e-3, "epochs": 40}, BEFORE),
    "intensity": Recipe({**BASE, "learning_rate": 3e-4}, STRONG_INTENSITY),
    "no-intensity": Recipe(
        {**BASE, "learning_rate": 3e-4},
        Augmentation(gain_range=(1.0, 1.0), offset_range=(0.0, 0.0), noise_std=0.0),
    ),
    "scale-wide": Recipe({**BASE, "learning_rate": 3e-4}, Augmentation(scale_range=(0.6, 1.6))),
    "no-scale": Recipe({**BASE, "learning_rate": 3e-4}, Augmentation(scale_range=(1.0, 1.0))),
    "average-1": Recipe({**BASE, "learning_rate": 3e-4, "weight_average_epochs": 1.0}, BEFORE),
    "average-2": Recipe({**BASE, "learning_rate": 3e-4, "weight_average_epochs": 2.0}, BEFORE),
    "epochs-10": Recipe({**BASE, "epochs": 10, "learning_rate": 3e-4}, BEFORE),
    "epochs-14": Recipe({**BASE, "epochs": 14, "learning_rate": 3e-4}, BEFORE),
    # Before test-time flips were the tiny preset's default: each window predicted once.
    "no-flips": Recipe({**BASE, "learning_rate": 3e-4, "test_time_flips": False}, BEFORE),
}


@dataclass(frozen=True)
class FoldResult:
    held_out: str
    scores: list[float]  # after each epoch
    seconds: float


def training_tiles() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The three training tiles; the test tile is dropped here, before anything reads it."""
    test_index = TEST_TILE[0] * 2 + TEST_TILE[1]
    return [part for number, part in enumerate(tiles()) if number != test_index]


def run_fold(recipe: Recipe, *, held_out: int, seed: int, scratch: Path) -> FoldResult:
    """Train on the two other training tiles, score tile `held_out` after every epoch."""
    others = [number for number in range(3) if number != held_out]
    started = time.monotonic()
    scores = _train(recipe, seed=seed, scratch=scratch, fit_on=others, score_on=held_out)
    return FoldResult(
        held_out=training_tiles()[held_out][0], scores=scores, seconds=time.monotonic() - started
    )


def run_select_refit(recipe: Recipe, *, held_out: int, seed: int, scratch: Path) -> FoldResult:
    """The trainer's select-then-refit run, scored on tile `held_out` (nested cross-validation).

    Of the two other tiles, the first trains and the second is held out for choosing the epoch (the
    first epoch of the best score, as `train.fit` keeps it); a fresh model then trains on both for
    that many epochs, as `job.train_job`'s refit does, and tile `held_out` is scored after each.
    """
    first, second = (number for number in range(3) if number != held_out)
    started = time.monotonic()
    choosing = _train(recipe, seed=seed, scratch=scratch / "select", fit_on=[first], score_on=second)
    chosen = int(np.argmax(choosing)) + 1
    refit = _train(
        recipe, seed=seed, scratch=scratch / "refit", fit_on=[first, second], score_on=held_out, epochs=chosen
    )
    return FoldResult(
        held_out=training_tiles()[held_out][0], scores=refit, seconds=time.monotonic() - started
    )


def _train(  # long: keyword-only; epochs defaults to the recipe's
    recipe: Recipe,
    *,
    seed: int,
    scratch: Path,
    fit_on: Sequence[int],
    score_on: int,
    epochs: int | None = None,
) -> list[float]:
    """Train on training tiles `fit_on` through `train.fit`; tile `score_on`'s score after every epoch."""
    parts = training_tiles()
    scratch.mkdir(parents=True, exist_ok=True)
    for name, image, _ in parts:
        tifffile.imwrite(scratch / name, image)
    manifest = CocoDataset.model_validate(coco_of(parts, first_id=1))
    config = TrainingConfig(
        model_type="instance", classes=["nucleus"], preset="tiny", seed=seed, **{**BASE, **recipe.settings}
    )
    config = config.model_copy(
        update={"early_stopping_patience": 0, **({} if epochs is None else {"epochs": epochs})}
    )
    options = SampleOptions(
        dataset_dir=scratch,
        class_map=ClassMap.build(classes=config.classes, manifests=[manifest]),
        model_type="instance",
        instance_head=resolved_head(config),
    )
    samples = [load_sample(entry, options=options) for entry in image_entries(manifest)]
    fit_samples = [samples[number] for number in fit_on]
    runtime = Runtime()
    model, preset = build_job_model(config=config, start=StartingPoint(), in_channels=1, runtime=runtime)
    steps = config.steps_per_epoch or default_steps_per_epoch(
        fit_samples, tile_size=config.tile_size, batch_size=config.batch_size
    )
    (scratch / "checkpoints").mkdir(exist_ok=True)
    setup = LoopSetup(
        config=config,
        runtime=runtime,
        train_samples=fit_samples,
        val_samples=[samples[score_on]],
        class_weights=torch.from_numpy(class_pixel_weights(fit_samples, num_classes=1)),
        in_channels=1,
        steps_per_epoch=steps,
        checkpoints=scratch / "checkpoints",
        fingerprint=Fingerprint("tiny", "instance", ("nucleus",), config.tile_size, seed, 1, 1),
        stop=StopSignal(),
        encoder_pretrained=False,
        accel=accel.AccelOptions.from_environment(),
        augmentation=recipe.augmentation or preset_spec(preset).augmentation,
    )
    predictor = predictor_on(
        model,
        config,
        in_channels=1,
        instance_head=resolved_head(config),
        test_time_flips=config.flips_at_test,
        runtime=runtime,
    )
    result = fit(model, setup=setup, predictor=predictor)
    return [float(entry["val_score"] or 0.0) for entry in result.state.history]


def report(name: str, folds: Sequence[FoldResult]) -> dict[str, Any]:
    last = [fold.scores[-1] for fold in folds]
    best = [max(fold.scores) for fold in folds]
    line = {
        "recipe": name,
        "last": [round(v, 3) for v in last],
        "best": [round(v, 3) for v in best],
        "best_epoch": [int(np.argmax(fold.scores)) + 1 for fold in folds],
        "mean_last": round(float(np.mean(last)), 4),
        "mean_best": round(float(np.mean(best)), 4),
        "mean_last5": round(float(np.mean([fold.scores[-5:] for fold in folds])), 4),
        "seconds": [round(fold.seconds) for fold in folds],
        "curves": [[round(v, 3) for v in fold.scores] for fold in folds],
    }
    print(json.dumps(line), flush=True)
    return line


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=["current"])
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--select-refit", action="store_true", help="score the select-then-refit run (nested) instead"
    )
    args = parser.parse_args(list(argv or []))
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    for name in args.recipes:
        folds = []
        for held_out in args.folds:
            with TemporaryDirectory(prefix="segpipe-recipe-") as scratch:
                run = run_select_refit if args.select_refit else run_fold
                folds.append(run(RECIPES[name], held_out=held_out, seed=args.seed, scratch=Path(scratch)))
        report(name, folds)


if __name__ == "__main__":
    main(sys.argv[1:])
