"""Test-time averaging over the eight flips and turns: each view's outputs are mapped back exactly,
flow vectors included, and the averaged model is equivariant whatever the model underneath."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from segpipe.models.presets import PRESETS
from segpipe.models.trainer_io import ModelCard, TrainingConfig
from segpipe_trainer.dihedral import VIEWS, DihedralAverage
from segpipe_trainer.infer import Predictor

NUM_CLASSES = 2  # outputs: 3 class logits, then the head's channels


class Gradients(nn.Module):
    """An exactly equivariant 'model': class logits = the image (three times), and the flow head's
    (dy, dx) = the image's gradient (central differences; one-sided at the edges)."""

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        image = tiles[:, :1]
        dy, dx = torch.gradient(image, dim=(-2, -1))
        return torch.cat([image, 2 * image, -image, dy, dx], dim=1)


def _conv(out_channels: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, out_channels, 5, padding=2))


def test_views_are_the_eight_distinct_symmetries() -> None:
    tile = torch.arange(16.0).reshape(1, 1, 4, 4)
    seen = {tuple(view.apply(tile).flatten().tolist()) for view in VIEWS}
    assert len(VIEWS) == len(seen) == 8
    assert not any(VIEWS[0].__dict__.values())  # the identity comes first


@pytest.mark.parametrize("view", VIEWS, ids=str)
def test_undo_inverts_each_view_of_an_equivariant_model(view: object) -> None:
    tiles = torch.rand(2, 1, 16, 16, dtype=torch.float64)
    model = Gradients()
    outputs = model(view.apply(tiles))  # type: ignore[attr-defined]
    back = view.undo(outputs, flow_channels=slice(3, 5))  # type: ignore[attr-defined]
    torch.testing.assert_close(back, model(tiles), rtol=0, atol=1e-12)


def test_an_equivariant_model_is_unchanged_by_the_average() -> None:
    tiles = torch.rand(3, 1, 12, 12, dtype=torch.float64)
    model = Gradients()
    torch.testing.assert_close(
        DihedralAverage(model, num_classes=NUM_CLASSES)(tiles), model(tiles), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize(
    ("extra", "flow"), [(0, None), (1, None), (2, slice(3, 5))], ids=["semantic", "distance", "flow"]
)
def test_the_average_of_any_model_is_equivariant(extra: int, flow: slice | None) -> None:
    """A plain convolution is not: averaged, its outputs of a turned or flipped tile are those of
    the tile, turned or flipped (with the flow vector's components turned as well)."""
    averaged = DihedralAverage(_conv(NUM_CLASSES + 1 + extra), num_classes=NUM_CLASSES)
    tiles = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        reference = averaged(tiles)
        for view in VIEWS[1:]:
            back = view.undo(averaged(view.apply(tiles)), flow_channels=flow)
            torch.testing.assert_close(back, reference, rtol=1e-5, atol=1e-5)
    plain = _conv(NUM_CLASSES + 1 + extra)
    with torch.no_grad():
        turned = VIEWS[-1].undo(plain(VIEWS[-1].apply(tiles)), flow_channels=flow)
    assert not torch.allclose(turned, plain(tiles), atol=1e-3)  # the model itself is not equivariant


def test_the_average_is_the_mean_of_the_mapped_back_views() -> None:
    model = _conv(NUM_CLASSES + 3)
    tiles = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        expected = torch.stack(
            [view.undo(model(view.apply(tiles)), flow_channels=slice(3, 5)) for view in VIEWS]
        ).mean(0)
        torch.testing.assert_close(DihedralAverage(model, num_classes=NUM_CLASSES)(tiles), expected)


def test_refuses_tiles_that_are_not_square() -> None:
    with pytest.raises(ValueError, match="square"):
        DihedralAverage(Gradients(), num_classes=NUM_CLASSES)(torch.zeros(1, 1, 8, 6))


def test_a_predictor_with_flips_predicts_the_average_of_the_views() -> None:
    """`Predictor.test_time_flips` runs every window through the eight views (the sliding window of an
    image one tile large is that tile's outputs)."""
    model = _conv(NUM_CLASSES + 3).eval()
    image = torch.rand(1, 32, 32)
    plain = Predictor(
        model=model,
        model_type="instance",
        num_classes=NUM_CLASSES,
        tile_size=32,
        in_channels=1,
        device=torch.device("cpu"),
        instance_head="flow",
    )
    flipped = dataclasses.replace(plain, test_time_flips=True)
    with torch.no_grad():
        expected = DihedralAverage(model, num_classes=NUM_CLASSES)(image[None])[0]
        torch.testing.assert_close(flipped.outputs(image.numpy()), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(plain.outputs(image.numpy()), model(image[None])[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(flipped.outputs(image.numpy()), plain.outputs(image.numpy()), atol=1e-3)


@pytest.mark.parametrize(
    ("preset", "setting", "expected"),
    [
        ("tiny", None, True),
        ("tiny", False, False),
        ("sam-vit-base", None, False),
        ("sam-vit-base", True, True),
    ],
)
def test_the_setting_else_the_presets_default(preset: str, setting: bool | None, expected: bool) -> None:
    config = TrainingConfig(
        model_type="instance",
        classes=["a"],
        preset=preset,
        epochs=1,
        tile_size=64,
        seed=0,
        test_time_flips=setting,
    )
    assert config.flips_at_test is expected
    assert PRESETS[config.preset].test_time_flips is (preset == "tiny")


def test_a_model_card_of_an_older_trainer_predicts_without_flips() -> None:
    card = {"preset": "tiny", "model_type": "instance", "classes": ["a"], "tile_size": 64, "in_channels": 1}
    assert ModelCard.model_validate({**card, "suggested_threshold": 0.5}).test_time_flips is False
