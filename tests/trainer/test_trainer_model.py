"""Presets, the DPT-on-ViT model, and loading encoder weights from a local safetensors file."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from segpipe.models.common import Preset
from segpipe.models.presets import PRESETS as PRESET_FACTS
from segpipe_trainer.errors import TrainerError
from segpipe_trainer.model import (
    PRESETS,
    build_model,
    count_parameters,
    head_parameter_names,
    load_state,
    output_channels,
    preset_spec,
    split_outputs,
)


def test_every_preset_has_a_registered_builder() -> None:
    assert set(PRESETS) == set(Preset)
    assert preset_spec("dinov2-small").timm_name == "vit_small_patch14_dinov2.lvd142m"
    assert preset_spec(Preset.SAM_VIT_BASE).timm_name == "samvit_base_patch16.sa1b"
    assert not preset_spec("tiny").pretrained
    assert all(preset_spec(p).pretrained == PRESET_FACTS[p].hub_weights for p in Preset)


def test_tiny_is_the_small_cpu_vit_of_the_field_notes() -> None:
    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1)

    vit = model.encoder.vit
    assert (vit.embed_dim, len(vit.blocks), vit.blocks[0].attn.num_heads) == (128, 6, 4)
    assert vit.num_prefix_tokens == 0
    assert model.encoder.patch_size == 16 == PRESET_FACTS[Preset.TINY].patch_size
    assert 2.0e6 < count_parameters(model) < 2.8e6


@pytest.mark.parametrize("size", [(64, 64), (50, 97), (20, 33)])
@pytest.mark.parametrize("model_type", ["instance", "semantic"])
def test_outputs_cover_any_input_size(size: tuple[int, int], model_type: str) -> None:
    model = build_model(preset="tiny", num_classes=3, model_type=model_type, in_channels=2).eval()  # type: ignore[arg-type]

    with torch.no_grad():
        outputs = model(torch.randn(2, 2, *size))

    assert outputs.shape == (2, output_channels(num_classes=3, model_type=model_type), *size)  # type: ignore[arg-type]
    logits, distance = split_outputs(outputs, num_classes=3)
    assert logits.shape[1] == 4
    assert (distance is None) == (model_type == "semantic")


@pytest.mark.parametrize("preset", [Preset.DINOV2_SMALL, Preset.SAM_VIT_BASE])
def test_pretrained_presets_build_offline_with_random_weights(preset: Preset) -> None:
    model = build_model(
        preset=preset, num_classes=1, model_type="semantic", in_channels=3, weights="random"
    ).eval()

    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 80))

    assert outputs.shape == (1, 2, 64, 80)
    assert model.encoder.patch_size == 16
    assert model.encoder.patch_size == PRESET_FACTS[preset].patch_size  # the table validation reads


def test_every_parameter_gets_a_gradient() -> None:
    """DDP refuses unused parameters: the pruned encoder keeps only what the decoder reads."""
    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1)

    model(torch.randn(2, 1, 64, 64)).sum().backward()

    assert all(parameter.grad is not None for parameter in model.parameters())


def _tiny_vit_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    spec = preset_spec("tiny")
    torch.manual_seed(11)
    vit = timm.create_model(spec.timm_name, pretrained=False, num_classes=0, in_chans=3, **spec.timm_kwargs)
    state = {key: value.contiguous() for key, value in vit.state_dict().items()}
    path = tmp_path / "encoder.safetensors"
    save_file(state, str(path))
    return path, state


def test_encoder_weights_load_from_a_local_safetensors_file(tmp_path: Path) -> None:
    path, state = _tiny_vit_file(tmp_path)

    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=3, weights=path)

    loaded = model.encoder.vit.state_dict()
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_a_grey_model_sums_the_rgb_patch_embedding(tmp_path: Path) -> None:
    """timm adapts a 3-channel stem to one channel by summing its input filters."""
    path, state = _tiny_vit_file(tmp_path)

    model = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1, weights=path)

    expected = state["patch_embed.proj.weight"].sum(dim=1, keepdim=True)
    torch.testing.assert_close(model.encoder.vit.patch_embed.proj.weight, expected)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wrong.safetensors"
    save_file({"patch_embed.proj.weight": torch.zeros(7, 3, 16, 16)}, str(path))

    with pytest.raises(TrainerError, match="do not fit preset 'tiny'"):
        build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=3, weights=path)


def test_load_state_can_leave_the_class_head_fresh() -> None:
    torch.manual_seed(0)
    old = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1)
    new = build_model(preset="tiny", num_classes=4, model_type="instance", in_channels=1)
    fresh_head = {key: new.state_dict()[key].clone() for key in head_parameter_names(new)}

    skipped = load_state(new, old.state_dict(), skip=sorted(head_parameter_names(new)))

    assert set(skipped) == set(fresh_head)
    for key, value in new.state_dict().items():
        expected = fresh_head[key] if key in fresh_head else old.state_dict()[key]
        torch.testing.assert_close(value, expected, rtol=0, atol=0)


def test_load_state_refuses_mismatched_shapes() -> None:
    old = build_model(preset="tiny", num_classes=2, model_type="instance", in_channels=1)
    new = build_model(preset="tiny", num_classes=4, model_type="instance", in_channels=1)

    with pytest.raises(TrainerError, match="do not fit this model"):
        load_state(new, old.state_dict())


def test_hub_weights_that_cannot_be_fetched_name_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(name: str, *, pretrained: bool, **kwargs: object) -> None:
        assert pretrained and name == "vit_small_patch14_dinov2.lvd142m"
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm, "create_model", offline)

    with pytest.raises(
        TrainerError, match=r"could not be downloaded .* safetensors file in the 'base' channel"
    ):
        build_model(preset="dinov2-small", num_classes=1, model_type="semantic", weights="hub")
