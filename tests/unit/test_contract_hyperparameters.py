"""The hyperparameter contract, pinned by a fixture that the trainer's tests parse too."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from segpipe.models.common import Preset
from segpipe.models.presets import PRESETS
from segpipe.models.trainer_io import TrainingConfig


def test_fixture_parses_to_the_expected_config(hyperparameters_fixture: dict[str, str]) -> None:
    config = TrainingConfig.from_hyperparameters(hyperparameters_fixture)

    assert config.model_type == "instance"
    assert config.classes == ["nucleus", "mitosis"]
    assert config.preset is Preset.TINY
    assert (config.epochs, config.tile_size, config.seed) == (12, 128, 7)
    assert config.min_object_area == 12


def test_round_trip_is_lossless_and_all_strings(hyperparameters_fixture: dict[str, str]) -> None:
    config = TrainingConfig.from_hyperparameters(hyperparameters_fixture)

    written = config.to_hyperparameters()

    assert all(isinstance(value, str) for value in written.values())
    assert TrainingConfig.from_hyperparameters(written) == config


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("classes", "nucleus"),
        ("classes", "[]"),
        ("epochs", "many"),
        ("preset", "vit-huge"),
        ("tile_size", "32"),
    ],
)
def test_bad_values_are_refused(hyperparameters_fixture: dict[str, str], key: str, value: str) -> None:
    with pytest.raises(ValidationError):
        TrainingConfig.from_hyperparameters({**hyperparameters_fixture, key: value})


def test_unknown_hyperparameters_are_refused(hyperparameters_fixture: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        TrainingConfig.from_hyperparameters({**hyperparameters_fixture, "epochz": "3"})


def test_an_unset_learning_rate_is_the_presets(hyperparameters_fixture: dict[str, str]) -> None:
    # Given the fixture without its learning rate (a trainer run by hand, say)
    unset = {key: value for key, value in hyperparameters_fixture.items() if key != "learning_rate"}

    config = TrainingConfig.from_hyperparameters(unset)

    # Then nothing is written for it, and the optimiser's peak is the preset's
    assert config.learning_rate is None and "learning_rate" not in config.to_hyperparameters()
    assert config.peak_learning_rate == PRESETS[Preset.TINY].learning_rate
    assert TrainingConfig.from_hyperparameters(hyperparameters_fixture).peak_learning_rate == 0.0005
