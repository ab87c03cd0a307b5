"""The base channel: encoder weights from a safetensors file, or continuing from a previous model.tar.gz."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from segpipe.models.common import Preset
from segpipe.models.trainer_io import ModelCard, TrainingConfig
from segpipe_trainer.base import StartingPoint, find_starting_point
from segpipe_trainer.distributed import Runtime
from segpipe_trainer.errors import TrainerError
from segpipe_trainer.job import build_job_model
from segpipe_trainer.model import build_model, head_parameter_names, preset_spec
from segpipe_trainer.train import save_weights
from tests.trainer.trainer_testkit import hyperparameters


def _previous_model(folder: Path, *, classes: list[str], model_type: str = "instance") -> torch.nn.Module:
    """A previous version's model.tar.gz (model.json + weights), packed as SageMaker packs /opt/ml/model."""
    torch.manual_seed(99)
    model = build_model(preset="tiny", num_classes=len(classes), model_type=model_type, in_channels=1)  # type: ignore[arg-type]
    packed = folder / "packed"
    save_weights(model, packed / "model.safetensors")
    card = ModelCard(
        preset=Preset.TINY,
        model_type=model_type,
        classes=classes,
        tile_size=64,
        in_channels=1,
        suggested_threshold=0.5,
    )
    (packed / "model.json").write_text(card.model_dump_json())
    base = folder / "base"
    base.mkdir()
    with tarfile.open(base / "model.tar.gz", "w:gz") as tar:
        for name in ("model.json", "model.safetensors"):
            tar.add(packed / name, arcname=name)
    return model


def _config(**overrides: object) -> TrainingConfig:
    # The previous models here are distance-head models (as cards without an instance_head are).
    return TrainingConfig.from_hyperparameters(hyperparameters(**{"instance_head": "distance", **overrides}))


def test_an_empty_or_absent_base_channel_means_the_preset_default(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    assert find_starting_point(tmp_path / "absent", work_dir=tmp_path / "w") == StartingPoint()
    assert find_starting_point(tmp_path / "empty", work_dir=tmp_path / "w") == StartingPoint()


def test_a_previous_model_archive_continues_with_every_weight(tmp_path: Path) -> None:
    previous = _previous_model(tmp_path, classes=["round", "long"])

    start = find_starting_point(tmp_path / "base", work_dir=tmp_path / "work")
    model, preset = build_job_model(config=_config(), start=start, in_channels=1, runtime=Runtime())

    assert start.previous_model and preset is Preset.TINY
    for key, value in previous.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_new_classes_keep_everything_but_the_class_head(tmp_path: Path) -> None:
    previous = _previous_model(tmp_path, classes=["nucleus"])

    start = find_starting_point(tmp_path / "base", work_dir=tmp_path / "work")
    model, _ = build_job_model(config=_config(), start=start, in_channels=1, runtime=Runtime())

    head = head_parameter_names(model)
    assert head
    for key, value in previous.state_dict().items():
        if key not in head:
            assert torch.equal(model.state_dict()[key], value), key
    assert model.state_dict()[sorted(head)[-1]].shape[0] == 4  # 2 classes + background + distance


def test_the_previous_models_preset_wins(tmp_path: Path) -> None:
    _previous_model(tmp_path, classes=["round", "long"])
    start = find_starting_point(tmp_path / "base", work_dir=tmp_path / "work")

    _, preset = build_job_model(
        config=_config(preset="dinov2-small"), start=start, in_channels=1, runtime=Runtime()
    )

    assert preset is Preset.TINY


def test_an_encoder_safetensors_file_seeds_the_encoder(tmp_path: Path) -> None:
    spec = preset_spec("tiny")
    torch.manual_seed(5)
    vit = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, in_chans=1, **spec.timm_kwargs)
    (tmp_path / "base").mkdir()
    save_file(
        {k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "base" / "vit.safetensors")
    )

    start = find_starting_point(tmp_path / "base", work_dir=tmp_path / "work")
    model, _ = build_job_model(config=_config(), start=start, in_channels=1, runtime=Runtime())

    assert start.encoder_file is not None
    for key, value in model.encoder.vit.state_dict().items():
        assert torch.equal(value, vit.state_dict()[key]), key


def test_two_safetensors_files_are_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    for name in ("a", "b"):
        save_file({"x": torch.zeros(1)}, str(tmp_path / "base" / f"{name}.safetensors"))

    with pytest.raises(TrainerError, match="holds 2 safetensors files"):
        find_starting_point(tmp_path / "base", work_dir=tmp_path / "work")


def test_a_card_without_its_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    card = ModelCard(
        preset=Preset.TINY,
        model_type="semantic",
        classes=["a"],
        tile_size=64,
        in_channels=1,
        suggested_threshold=0.5,
    )
    (tmp_path / "base" / "model.json").write_text(card.model_dump_json())

    with pytest.raises(TrainerError, match=r"weights file 'model\.safetensors' is missing"):
        find_starting_point(tmp_path / "base", work_dir=tmp_path / "work")
