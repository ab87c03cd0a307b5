"""The moving average of the weights: its recurrence, its swap, and what `fit` scores and keeps."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from segpipe.models.trainer_io import TrainingConfig
from segpipe_trainer.averaging import WARMUP_STEPS, WeightAverage, decay_for
from segpipe_trainer.train import CHECKPOINT_FILE, SegmentationLoss, evaluate_held_out
from tests.trainer import tiny_model
from tests.trainer.tiny_model import cpu_predictor, fit_tiny, synthetic_sample, tiny_fingerprint
from tests.trainer.trainer_testkit import hyperparameters


def _small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def _expected(
    start: dict[str, torch.Tensor], seen: list[dict[str, torch.Tensor]], decay: float
) -> dict[str, torch.Tensor]:
    """The average written out step by step: a <- k a + (1 - k) w, k = min(decay, (1 + n) / (10 + n));
    integer entries (BatchNorm's step count) take the latest value."""
    average = {
        key: value.clone().double() if value.is_floating_point() else value.clone()
        for key, value in start.items()
    }
    for number, weights in enumerate(seen):
        keep = min(decay, (1 + number) / (WARMUP_STEPS + number))
        for key, value in weights.items():
            if value.is_floating_point():
                average[key] = keep * average[key] + (1 - keep) * value.double()
            else:
                average[key] = value.clone()
    return average


def _train_steps(
    model: nn.Module, average: WeightAverage | None, steps: int
) -> list[dict[str, torch.Tensor]]:
    """`steps` SGD steps on random data; the model's state after each."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    seen = []
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(8, 3)).square().mean().backward()
        optimizer.step()
        if average is not None:
            average.update()
        seen.append({key: value.detach().clone() for key, value in model.state_dict().items()})
    return seen


def test_the_half_life_is_counted_in_epochs_of_steps() -> None:
    decay = decay_for(half_life_epochs=2.5, steps_per_epoch=40)

    assert decay**100 == pytest.approx(0.5)
    assert decay_for(half_life_epochs=0, steps_per_epoch=40) == 0.0
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(_small(), decay=1.0)


def test_the_average_follows_its_recurrence_over_parameters_and_buffers() -> None:
    model = _small()
    start = {key: value.clone() for key, value in model.state_dict().items()}
    average = WeightAverage(model, decay=0.9)

    seen = _train_steps(model, average, steps=100)

    expected = _expected(start, seen, decay=0.9)
    for key, value in average.shadow.items():
        torch.testing.assert_close(value, expected[key].to(value.dtype), msg=key)
    assert average.step_decay() == 0.9  # the warm-up is over: (1 + 100) / (10 + 100) > 0.9
    assert not torch.equal(average.shadow["0.weight"], model.state_dict()["0.weight"])


def test_the_average_is_applied_only_inside_the_block_and_kept_after_finishing() -> None:
    model = _small()
    average = WeightAverage(model, decay=0.8)
    _train_steps(model, average, steps=5)
    trained = {key: value.clone() for key, value in model.state_dict().items()}
    parameter = model[0].weight

    with average.applied():
        inside = {key: value.clone() for key, value in model.state_dict().items()}
    after = model.state_dict()

    for key in trained:
        assert torch.equal(inside[key], average.shadow[key]), key
        assert torch.equal(after[key], trained[key]), key
    average.copy_to_model()
    assert model[0].weight is parameter  # copied in place: optimisers and compiled modules keep it
    assert torch.equal(model[0].weight, average.shadow["0.weight"])


def test_a_saved_average_restores_and_refuses_another_models() -> None:
    model = _small()
    average = WeightAverage(model, decay=0.8)
    _train_steps(model, average, steps=3)
    restored = WeightAverage(_small(), decay=0.8)

    restored.load_state_dict(average.state_dict())

    assert restored.updates == 3
    for key, value in average.shadow.items():
        assert torch.equal(restored.shadow[key], value)
    with pytest.raises(ValueError, match="another model"):
        WeightAverage(nn.Linear(3, 4), decay=0.8).load_state_dict(average.state_dict())


# --- Through fit ----------------------------------------------------------------------------------


def _config(**overrides: Any) -> TrainingConfig:
    values: dict[str, Any] = {"epochs": 2, "steps_per_epoch": 3, "batch_size": 2, "learning_rate": 0.001}
    return TrainingConfig.from_hyperparameters(hyperparameters(**{**values, **overrides}))


def _samples(count: int, *, seed: int) -> list[Any]:
    return [
        synthetic_sample(seed=seed + number, size=(64, 64), objects=3, file_name=f"s{number}.tif")
        for number in range(count)
    ]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, torch.Tensor]]]:
    """The model's state after every optimiser step of the `fit_tiny` runs in the test (and its
    state at the start, first)."""
    built: list[nn.Module] = []
    seen: list[dict[str, torch.Tensor]] = []

    def build(**kwargs: Any) -> nn.Module:
        model = tiny_model_build(**kwargs)
        built.append(model)
        seen.append({key: value.detach().clone() for key, value in model.state_dict().items()})
        return model

    def after_step(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        seen.append({key: value.detach().clone() for key, value in built[-1].state_dict().items()})

    tiny_model_build = tiny_model.build_model
    monkeypatch.setattr(tiny_model, "build_model", build)
    handle = register_optimizer_step_post_hook(after_step)
    try:
        yield seen
    finally:
        handle.remove()


def test_fit_trains_the_same_weights_scores_the_average_and_keeps_it(
    tmp_path: Path, recorded: list[dict[str, torch.Tensor]]
) -> None:
    validation = _samples(1, seed=50)
    plain, _ = fit_tiny(
        _config(),
        checkpoints=tmp_path / "plain",
        train_samples=_samples(2, seed=0),
        val_samples=validation,
        fingerprint=tiny_fingerprint(seed=3),
    )
    recorded.clear()
    config = _config(weight_average_epochs=1.0)
    averaged, result = fit_tiny(
        config,
        checkpoints=tmp_path / "avg",
        train_samples=_samples(2, seed=0),
        val_samples=validation,
        fingerprint=tiny_fingerprint(seed=3),
    )

    checkpoint = torch.load(tmp_path / "avg" / CHECKPOINT_FILE, weights_only=True)
    start, steps = recorded[0], recorded[1:]
    assert len(steps) == 6
    expected = _expected(start, steps, decay=decay_for(half_life_epochs=1.0, steps_per_epoch=3))
    for key, value in averaged.state_dict().items():
        torch.testing.assert_close(value, expected[key].to(value.dtype), msg=key)
        # The average never steers training: the trained weights are those of a run without one.
        assert torch.equal(checkpoint["model"][key], plain.state_dict()[key]), key
    loss_fn = SegmentationLoss(class_weights=torch.ones(3), num_classes=2)
    scored = evaluate_held_out(
        cpu_predictor(averaged), samples=validation, loss_fn=loss_fn, class_names=["a", "b"]
    )
    raw = evaluate_held_out(cpu_predictor(plain), samples=validation, loss_fn=loss_fn, class_names=["a", "b"])
    assert result.state.history[-1]["val_loss"] == pytest.approx(scored.loss, rel=1e-6)
    assert not math.isclose(scored.loss, raw.loss, rel_tol=1e-6)


def test_a_checkpoint_of_another_averaging_setting_is_not_resumed(tmp_path: Path) -> None:
    fit_tiny(
        _config(epochs=1),
        checkpoints=tmp_path,
        train_samples=_samples(2, seed=0),
        fingerprint=tiny_fingerprint(seed=3),
    )

    _, result = fit_tiny(
        _config(epochs=1, weight_average_epochs=1.0),
        checkpoints=tmp_path,
        train_samples=_samples(2, seed=0),
        fingerprint=tiny_fingerprint(seed=3),
    )

    assert result.state.history and len(result.state.history) == 1  # trained again from the start
