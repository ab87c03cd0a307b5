"""Sliding-window inference: windows cover the image, blending is exact for pointwise models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from segpipe_trainer.infer import (
    DenseMaps,
    Predictor,
    blend_weights,
    dense_maps,
    sliding_window,
    window_starts,
)


class Pointwise(nn.Module):
    """A 1x1 convolution: its output at a pixel depends on that pixel alone, wherever the window is."""

    def __init__(self, *, channels: int, outputs: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, outputs, kernel_size=1)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(images.shape[-2:]))  # type: ignore[arg-type]
        return self.conv(images)


@settings(max_examples=80, deadline=None)
@given(length=st.integers(1, 400), tile=st.integers(8, 128), overlap=st.floats(0.0, 0.75))
def test_windows_cover_every_pixel_and_stay_inside(length: int, tile: int, overlap: float) -> None:
    stride = max(1, round(tile * (1 - overlap)))

    starts = window_starts(length, tile=tile, stride=stride)

    covered = np.zeros(max(length, tile), dtype=bool)
    for start in starts:
        covered[start : start + tile] = True
    assert covered[:length].all()
    assert starts[0] == 0
    assert starts[-1] == max(length - tile, 0)
    assert starts == sorted(set(starts))


def test_blend_weights_peak_in_the_centre_and_stay_positive() -> None:
    weights = blend_weights(32)

    assert weights.shape == (32, 32)
    assert weights.min() > 0
    assert float(weights[15:17, 15:17].min()) == pytest.approx(float(weights.max()), rel=1e-2)
    assert weights[0, 0] < weights[8, 8] < weights[16, 16]


@pytest.mark.parametrize("size", [(100, 130), (64, 64), (30, 50), (64, 200)])
def test_blended_windows_equal_the_whole_image_for_a_pointwise_model(size: tuple[int, int]) -> None:
    model = Pointwise(channels=2, outputs=3)
    image = np.random.default_rng(1).random((2, *size)).astype(np.float32)

    outputs = sliding_window(model, image, tile_size=64, device=torch.device("cpu"), batch_size=3)

    with torch.no_grad():
        direct = model.conv(torch.from_numpy(image)[None])[0]
    assert outputs.shape == (3, *size)
    torch.testing.assert_close(outputs, direct, rtol=1e-5, atol=1e-5)
    assert set(model.sizes) == {(64, 64)}  # small images are padded to a whole tile


def test_dense_maps_are_softmax_and_sigmoid() -> None:
    outputs = torch.randn(4, 5, 6)  # K = 2: three class logits and a distance logit

    maps = dense_maps(outputs, num_classes=2)

    np.testing.assert_allclose(maps.probs.sum(axis=0), 1.0, rtol=1e-6)
    assert maps.distance is not None
    np.testing.assert_allclose(maps.distance, torch.sigmoid(outputs[3]).numpy(), rtol=1e-6)
    assert dense_maps(outputs[:3], num_classes=2).distance is None


def _two_blobs() -> DenseMaps:
    probs = np.zeros((2, 40, 40), dtype=np.float32)
    probs[0] = 1.0
    for row, col in ((10, 10), (28, 28)):
        probs[1, row - 5 : row + 5, col - 5 : col + 5] = 0.9
        probs[0, row - 5 : row + 5, col - 5 : col + 5] = 0.1
    distance = np.where(probs[1] > 0, 0.8, 0.0).astype(np.float32)
    return DenseMaps(probs=probs, distance=distance)


@pytest.mark.parametrize("model_type", ["instance", "semantic"])
def test_predictor_turns_maps_into_scored_objects(model_type: str) -> None:
    predictor = Predictor(
        model=Pointwise(channels=1, outputs=2),
        model_type=model_type,  # type: ignore[arg-type]
        num_classes=1,
        tile_size=32,
        in_channels=1,
        device=torch.device("cpu"),
    )

    instances = predictor.instances(_two_blobs())

    assert instances.count == 2
    np.testing.assert_allclose(instances.scores[1:], 0.9, rtol=1e-5)
