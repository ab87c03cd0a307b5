"""The training loop: schedule, optimiser groups, loss, checkpoints, resume, SIGTERM, early stopping."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional

from segpipe.models.common import Preset
from segpipe.models.presets import PRESETS
from segpipe.models.trainer_io import Progress, TrainingConfig
from segpipe_trainer.data import Sample
from segpipe_trainer.job import with_preset_defaults
from segpipe_trainer.model import Segmenter, build_model
from segpipe_trainer.train import (
    CHECKPOINT_FILE,
    Fingerprint,
    StopSignal,
    TrainState,
    WarmupCosine,
    build_optimizer,
    build_scheduler,
    load_checkpoint,
    save_checkpoint,
    segmentation_loss,
)
from tests.trainer.tiny_model import fit_tiny, synthetic_sample, tiny_fingerprint
from tests.trainer.trainer_testkit import hyperparameters


class StopAfter(StopSignal):
    """A stop request that arrives at the n-th time the loop looks (once per step and once per epoch)."""

    def __init__(self, looks: int) -> None:
        super().__init__()
        self.looks_left = looks

    @property
    def requested(self) -> bool:
        self.looks_left -= 1
        return self.looks_left <= 0

    @requested.setter
    def requested(self, value: bool) -> None:
        pass


def _config(**overrides: object) -> TrainingConfig:
    values: dict[str, object] = {"epochs": 2, "steps_per_epoch": 3, "batch_size": 2, "learning_rate": 0.001}
    params = hyperparameters(**{**values, **overrides})
    return TrainingConfig.from_hyperparameters(params)


def _samples(count: int, *, seed: int = 0) -> list[Sample]:
    return [
        synthetic_sample(seed=seed + number, size=(64, 64), objects=3, file_name=f"s{number}.tif")
        for number in range(count)
    ]


def _run(
    checkpoints: Path, *, stop: StopSignal, config: TrainingConfig, validation: int = 0
) -> tuple[Segmenter, bool, int]:
    """A fresh seeded model trained by `fit`: (model, interrupted, epochs done)."""
    model, result = fit_tiny(
        config,
        checkpoints=checkpoints,
        train_samples=_samples(2),
        val_samples=_samples(validation, seed=50),
        fingerprint=tiny_fingerprint(seed=3),
        stop=stop,
    )
    return model, result.interrupted, result.state.epoch


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (key, left), right in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(left, right), key


# --- Schedule, optimiser, loss -------------------------------------------------------------------


def test_warmup_then_cosine_decay() -> None:
    schedule = WarmupCosine(total_steps=100, warmup_steps=10, floor=0.01)
    factors = [schedule(step) for step in range(100)]

    assert factors[0] == pytest.approx(0.1)
    assert factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[9:]))
    assert factors[-1] == pytest.approx(0.01, abs=1e-3)


def test_scheduler_drives_the_optimiser_learning_rate() -> None:
    model = build_model(preset="tiny", num_classes=1, model_type="semantic", in_channels=1)
    optimizer = build_optimizer(model, config=_config(learning_rate=0.01))
    scheduler = build_scheduler(optimizer, total_steps=20, warmup_fraction=0.1)

    peaks = []
    for _ in range(20):
        peaks.append(max(group["lr"] for group in optimizer.param_groups))
        optimizer.step()
        scheduler.step()

    assert peaks[1] == pytest.approx(0.01)
    assert peaks[0] == pytest.approx(0.005)
    assert peaks[-1] < 0.001


def test_pretrained_encoders_learn_slower_and_biases_do_not_decay() -> None:
    model = build_model(preset="tiny", num_classes=1, model_type="semantic", in_channels=1)
    config = _config(learning_rate=0.01, encoder_lr_scale=0.1, weight_decay=0.05)
    encoder_ids = {id(p) for p in model.encoder.parameters()}

    for pretrained, encoder_lr in ((True, 0.001), (False, 0.01)):
        optimizer = build_optimizer(model, config=config, encoder_pretrained=pretrained)
        for group in optimizer.param_groups:
            in_encoder = {id(p) in encoder_ids for p in group["params"]}
            assert len(in_encoder) == 1
            assert group["lr"] == pytest.approx(encoder_lr if in_encoder.pop() else 0.01)
            if group["weight_decay"]:
                assert all(p.ndim > 1 for p in group["params"])


def test_a_config_without_a_learning_rate_trains_at_the_presets() -> None:
    # Given the tiny preset, a config that sets no learning rate, and the job's resolution of it
    model = build_model(preset="tiny", num_classes=1, model_type="semantic", in_channels=1)
    params = {key: value for key, value in hyperparameters(epochs=2).items() if key != "learning_rate"}
    unset = TrainingConfig.from_hyperparameters(params)

    optimizer = build_optimizer(model, config=unset, encoder_pretrained=False)

    # Then every group peaks at the tiny preset's rate; a base model's preset would set its own
    assert {group["lr"] for group in optimizer.param_groups} == {PRESETS[Preset.TINY].learning_rate}
    assert with_preset_defaults(unset, preset=Preset.TINY).learning_rate == PRESETS[Preset.TINY].learning_rate
    from_sam = with_preset_defaults(unset, preset=Preset.SAM_VIT_BASE)
    assert from_sam.learning_rate == PRESETS[Preset.SAM_VIT_BASE].learning_rate
    assert with_preset_defaults(_config(), preset=Preset.SAM_VIT_BASE).learning_rate == 0.001


def test_loss_is_weighted_cross_entropy_plus_distance_bce() -> None:
    torch.manual_seed(0)
    outputs = torch.randn(2, 4, 8, 8)
    classes = torch.randint(0, 3, (2, 8, 8))
    distance = torch.rand(2, 8, 8)
    weights = torch.tensor([0.5, 1.0, 2.0])

    loss = segmentation_loss(
        outputs, classes, distance, class_weights=weights, num_classes=2, distance_weight=2.0
    )

    expected = functional.cross_entropy(outputs[:, :3], classes, weight=weights)
    expected = expected + 2.0 * functional.binary_cross_entropy_with_logits(outputs[:, 3], distance)
    torch.testing.assert_close(loss, expected)
    semantic = segmentation_loss(outputs[:, :3], classes, distance, class_weights=weights, num_classes=2)
    torch.testing.assert_close(semantic, functional.cross_entropy(outputs[:, :3], classes, weight=weights))


# --- Checkpoints and resume ----------------------------------------------------------------------


def test_checkpoint_round_trip_and_foreign_checkpoints_are_ignored(tmp_path: Path) -> None:
    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1)
    optimizer = build_optimizer(model, config=_config())
    scheduler = build_scheduler(optimizer, total_steps=10, warmup_fraction=0.1)
    model(torch.randn(2, 1, 64, 64)).sum().backward()
    optimizer.step()
    scheduler.step()
    fingerprint = Fingerprint(
        preset="tiny", model_type="instance", classes=("a", "b"), tile_size=64, seed=1, in_channels=1, world=1
    )
    save_checkpoint(
        tmp_path / CHECKPOINT_FILE,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        state=TrainState(epoch=3, best_score=0.5, best_epoch=2),
        fingerprint=fingerprint,
    )
    other = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1)
    other_optimizer = build_optimizer(other, config=_config())
    other_scheduler = build_scheduler(other_optimizer, total_steps=10, warmup_fraction=0.1)

    state = load_checkpoint(
        tmp_path / CHECKPOINT_FILE,
        model=other,
        optimizer=other_optimizer,
        scheduler=other_scheduler,
        fingerprint=fingerprint,
    )
    foreign = load_checkpoint(
        tmp_path / CHECKPOINT_FILE,
        model=other,
        optimizer=other_optimizer,
        scheduler=other_scheduler,
        fingerprint=Fingerprint(**{**fingerprint.as_dict(), "classes": ("c",)}),
    )

    assert state is not None and (state.epoch, state.best_epoch) == (3, 2)
    assert foreign is None
    _assert_same_weights(model, other)
    assert other_scheduler.last_epoch == scheduler.last_epoch
    assert other_optimizer.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]


@pytest.mark.parametrize("average", [0.0, 1.0], ids=["raw-weights", "weight-average"])
@pytest.mark.parametrize("looks", [5, 4], ids=["mid-epoch", "between-epochs"])
def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path: Path, looks: int, average: float) -> None:
    config = _config(weight_average_epochs=average)
    uninterrupted, _, _ = _run(tmp_path / "a", stop=StopSignal(), config=config)

    _, interrupted, epochs_done = _run(tmp_path / "b", stop=StopAfter(looks), config=config)
    progress = (
        Progress.model_validate_json((tmp_path / "b" / "progress.json").read_text()) if looks == 4 else None
    )
    resumed, again_interrupted, epochs = _run(tmp_path / "b", stop=StopSignal(), config=config)

    assert interrupted and not again_interrupted
    assert epochs_done == 1 and epochs == 2
    assert progress is None or progress.epoch == 1
    _assert_same_weights(uninterrupted, resumed)


def test_early_stopping_ends_training_when_the_score_stalls(tmp_path: Path) -> None:
    config = _config(epochs=6, early_stopping_patience=1, learning_rate=1e-12)

    _, interrupted, epochs = _run(tmp_path, stop=StopSignal(), config=config, validation=1)

    history = json.loads((tmp_path / "progress.json").read_text())
    assert not interrupted
    assert epochs == 2  # epoch 2 did not beat epoch 1
    assert history["epoch"] == 2 and history["val_score"] is not None
    assert (tmp_path / "best.safetensors").is_file()
