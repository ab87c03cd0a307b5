"""SAM relative-position attention on fused SDPA kernels gives timm's results, forward and backward."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import timm
import torch
from timm.models.vision_transformer_sam import get_rel_pos
from torch import nn

from bench import gpu_bench
from segpipe_trainer.fast_attention import (
    FastRelPosAttention,
    folded_width,
    install_fast_attention,
    rel_pos_table,
)
from segpipe_trainer.model import build_model, sam_vit_base

#: A SAM-style encoder small enough for CPU: 4 blocks (2 windowed, 2 global), windows of 4 tokens; the
#: GPU benchmark's `sam-tiny` preset.
SMALL_SAM = gpu_bench.SAM_TINY_KWARGS


def _small_sam(seed: int = 0) -> nn.Module:
    """A random SAM ViT with non-zero relative positions (timm starts them at zero)."""
    torch.manual_seed(seed)
    vit = timm.create_model("samvit_base_patch16", pretrained=False, num_classes=0, **SMALL_SAM)
    for name, parameter in vit.named_parameters():
        if "rel_pos" in name:
            nn.init.normal_(parameter, std=0.5)
    return vit


def _features(vit: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return vit.forward_intermediates(images, indices=[1, 3], intermediates_only=True)[-1]


def _block_grads(vit: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    named = [(name, p) for name, p in vit.named_parameters() if name.startswith(("blocks", "patch", "pos"))]
    grads = torch.autograd.grad(loss, [p for _, p in named])
    return {name: grad for (name, _), grad in zip(named, grads, strict=True)}


def _pair(mode: str) -> tuple[nn.Module, nn.Module]:
    reference = _small_sam()
    fast = copy.deepcopy(reference)
    assert install_fast_attention(fast, mode=mode) == 4  # type: ignore[arg-type]
    return reference, fast


# 96 x 112 px -> 6 x 7 tokens: windows padded to 8 x 8, a non-square global grid, a resampled table.
IMAGES = (2, 3, 96, 112)


@pytest.mark.parametrize("mode", ["fold", "mask", "auto"])
def test_fast_attention_matches_timm_in_fp32_forward_and_backward(mode: str) -> None:
    reference, fast = _pair(mode)
    images = torch.randn(*IMAGES, generator=torch.Generator().manual_seed(1))

    expected = _features(reference, images)
    got = _features(fast, images)
    expected_grads = _block_grads(reference, expected.square().mean())
    got_grads = _block_grads(fast, got.square().mean())

    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert expected_grads.keys() == got_grads.keys()
    for name, grad in expected_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert any("rel_pos" in name and grad.abs().sum() > 0 for name, grad in got_grads.items())


@pytest.mark.parametrize("mode", ["fold", "mask"])
def test_fast_attention_matches_timm_under_bf16_autocast(mode: str) -> None:
    reference, fast = _pair(mode)
    images = torch.randn(*IMAGES, generator=torch.Generator().manual_seed(2))
    full = _features(reference, images)

    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        expected = _features(reference, images)
        got = _features(fast, images)
    expected_grads = _block_grads(reference, expected.float().square().mean())
    got_grads = _block_grads(fast, got.float().square().mean())

    # bf16 keeps 8 bits of mantissa: the two orders of the same sums differ no more than bf16 does from fp32.
    reference_error = (expected.float() - full).abs().max()
    assert (got.float() - expected.float()).abs().max() <= 1.5 * reference_error
    torch.testing.assert_close(got.float(), expected.float(), rtol=2e-2, atol=2e-2)
    for name, grad in expected_grads.items():
        scale = grad.abs().max().clamp(min=1e-6)
        assert (got_grads[name] - grad).abs().max() / scale < 5e-2, name


def test_the_relative_position_table_is_timms_with_and_without_resampling() -> None:
    table = torch.randn(2 * 8 - 1, 16)

    for q_size, k_size in [(8, 8), (5, 5), (11, 11), (4, 6)]:
        torch.testing.assert_close(rel_pos_table(q_size, k_size, table), get_rel_pos(q_size, k_size, table))


def test_parameters_and_state_dict_keys_are_unchanged() -> None:
    reference, fast = _pair("auto")

    assert set(reference.state_dict()) == set(fast.state_dict())
    fast.load_state_dict(reference.state_dict())  # weights saved before the swap still load
    assert all(isinstance(block.attn, FastRelPosAttention) for block in fast.blocks)
    assert sum(p.numel() for p in fast.parameters()) == sum(p.numel() for p in reference.parameters())


def test_auto_takes_the_folded_flash_form_until_the_width_passes_flash_limit() -> None:
    _, fast = _pair("auto")
    attention = fast.blocks[0].attn
    assert isinstance(attention, FastRelPosAttention)

    assert folded_width(head_dim=64, height=14, width=14) == 96  # SAM-B's windows
    assert folded_width(head_dim=64, height=32, width=32) == 128  # global attention at 512 px
    assert attention.path(height=14, width=14) == "fold"
    assert attention.path(height=96, width=96) == "fold"  # 32 + 192 = 224
    assert attention.path(height=128, width=128) == "mask"  # 32 + 256 > 256


def test_a_rotary_attention_module_is_refused() -> None:
    source = _small_sam().blocks[0].attn
    source.rope = nn.Identity()

    with pytest.raises(ValueError, match="rotary"):
        FastRelPosAttention(source)


def test_the_sam_preset_builds_with_fast_attention_and_the_same_outputs() -> None:
    spec = dataclasses.replace(
        sam_vit_base(), timm_name="samvit_base_patch16", timm_kwargs=SMALL_SAM, pretrained=False
    )
    torch.manual_seed(0)
    fast = build_model(preset=spec, num_classes=2, model_type="instance", in_channels=1)
    plain = build_model(
        preset=dataclasses.replace(spec, fast_attention=False),
        num_classes=2,
        model_type="instance",
        in_channels=1,
    )
    for name, parameter in fast.named_parameters():
        if "rel_pos" in name:
            nn.init.normal_(parameter, std=0.5)
    plain.load_state_dict(fast.state_dict())
    images = torch.randn(1, 1, 64, 96)

    fast.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(images), plain(images), rtol=1e-4, atol=1e-4)
    assert sam_vit_base().fast_attention
    assert any(isinstance(m, FastRelPosAttention) for m in fast.modules())
    assert not any(isinstance(m, FastRelPosAttention) for m in plain.modules())
