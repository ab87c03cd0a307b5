"""Sliding-window inference with blended overlaps, for images of any size, and dense maps to objects.

Shapes: C channels, K classes, O = K+1 class logits (+1 distance logit for instance models), T the
tile size the model was trained on.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from segpipe.models.common import ModelType
from segpipe.models.trainer_io import InstanceHead
from segpipe_trainer import accel
from segpipe_trainer.dihedral import DihedralAverage
from segpipe_trainer.distributed import Runtime
from segpipe_trainer.images import match_channels
from segpipe_trainer.model import FLOW_SCALE, split_outputs
from segpipe_trainer.postprocess import (
    SPLIT_LEVEL_DEFAULTS,
    Instances,
    instances_from_flows,
    instances_from_maps,
    regions_from_semantic,
)


def window_starts(length: int, *, tile: int, stride: int) -> list[int]:
    """Start offsets of windows of `tile` along `length` that overlap by tile - stride, the last flush."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def blend_weights(tile: int, *, sigma_fraction: float = 0.125, floor: float = 1e-3) -> torch.Tensor:
    """T x T Gaussian weights peaking at the centre: window edges count least where windows overlap."""
    axis = torch.arange(tile, dtype=torch.float32) - (tile - 1) / 2
    gauss = torch.exp(-0.5 * (axis / (sigma_fraction * tile)) ** 2)
    weights = gauss[:, None] * gauss[None, :]
    return torch.clamp(weights / weights.max(), min=floor)


def autocast(*, device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA when asked; a no-op otherwise."""
    if bf16 and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class Window:
    top: int
    left: int


def _windows(height: int, width: int, *, tile: int, stride: int) -> Iterator[Window]:
    for top in window_starts(height, tile=tile, stride=stride):
        for left in window_starts(width, tile=tile, stride=stride):
            yield Window(top=top, left=left)


#: Images up to this many bytes (pixels plus outputs, float32) stay on the device while windowed.
DEVICE_RESIDENT_BYTES = 2 * 2**30
#: Output channels assumed when sizing the accumulators before the first batch (K+1 logits + 1).
_ASSUMED_OUTPUTS = 8


@torch.no_grad()
def sliding_window(  # long: keyword-only inference settings, each with a default
    model: nn.Module,
    image: np.ndarray,
    *,
    tile_size: int,
    device: torch.device,
    overlap: float = 0.25,
    batch_size: int = 4,
    bf16: bool = False,
    fixed_batch: bool = False,
) -> torch.Tensor:
    """Raw model outputs for a whole image: float32 C x H x W -> float32 O x H x W (on the CPU).

    Windows of `tile_size` overlap by `overlap` of a tile; their outputs are blended with Gaussian
    weights. An image smaller than a tile is padded with zeros (as training tiles are at image
    edges) and the outputs cropped back. The image is moved to the device once and windows are cut,
    blended and summed there (images too large for that stay on the host, as their windows' sums);
    `fixed_batch` pads the last batch to `batch_size` tiles, so a compiled model sees one shape.
    """
    channels, height, width = image.shape
    padded_h, padded_w = max(height, tile_size), max(width, tile_size)
    resident = device.type == "cpu" or (channels + _ASSUMED_OUTPUTS + 1) * padded_h * padded_w * 4 <= (
        DEVICE_RESIDENT_BYTES
    )
    home = device if resident else torch.device("cpu")
    source = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    pixels = torch.zeros((channels, padded_h, padded_w), dtype=torch.float32, device=home)
    pixels[:, :height, :width] = source.to(home, non_blocking=True)
    stride = max(1, round(tile_size * (1 - overlap)))
    weights = blend_weights(tile_size).to(home)
    windows = list(_windows(padded_h, padded_w, tile=tile_size, stride=stride))
    total: torch.Tensor | None = None
    norm = torch.zeros((padded_h, padded_w), dtype=torch.float32, device=home)
    for first in range(0, len(windows), batch_size):
        batch = windows[first : first + batch_size]
        tiles = torch.stack(
            [pixels[:, w.top : w.top + tile_size, w.left : w.left + tile_size] for w in batch]
        )
        if fixed_batch and len(batch) < batch_size:
            tiles = torch.cat([tiles, tiles.new_zeros((batch_size - len(batch), *tiles.shape[1:]))])
        with autocast(device=device, bf16=bf16):
            outputs = model(tiles.to(device, non_blocking=True))
        outputs = outputs[: len(batch)].float().to(home)
        if total is None:
            total = torch.zeros((outputs.shape[1], padded_h, padded_w), dtype=torch.float32, device=home)
        for window, output in zip(batch, outputs, strict=True):
            rows = slice(window.top, window.top + tile_size)
            cols = slice(window.left, window.left + tile_size)
            total[:, rows, cols] += output * weights
            norm[rows, cols] += weights
    assert total is not None
    return (total / norm)[:, :height, :width].cpu()


def inference_batch_size(  # long: keyword-only; limit and margin have defaults
    model: nn.Module,
    *,
    tile_size: int,
    in_channels: int,
    device: torch.device,
    bf16: bool,
    limit: int = 64,
    margin: float = 0.25,
) -> int:
    """Windows per forward pass: what fits the GPU's memory (probed once, with a margin), at most
    `limit`; 4 on the CPU, where a larger batch buys nothing."""
    if device.type != "cuda":
        return 4
    was_training = model.training
    model.eval()

    def step(batch: int) -> None:
        with torch.no_grad(), autocast(device=device, bf16=bf16):
            model(torch.zeros((batch, in_channels, tile_size, tile_size), device=device))

    try:
        return accel.probe_batch_capacity(step, device=device, limit=limit, margin=margin)
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class DenseMaps:
    """probs: float32 (K+1) x H x W softmax; distance: float32 H x W in [0, 1] (distance head) or
    None; flow: float32 2 x H x W flows in target units (flow head) or None."""

    probs: np.ndarray
    distance: np.ndarray | None
    flow: np.ndarray | None = None


def dense_maps(outputs: torch.Tensor, *, num_classes: int) -> DenseMaps:
    """Softmax of the class logits, and the sigmoid of the distance logits or the unscaled flows."""
    logits, head = split_outputs(outputs[None], num_classes=num_classes)
    probs = torch.softmax(logits[0], dim=0).numpy()
    if head is not None and head.ndim == 4:
        return DenseMaps(probs=probs, distance=None, flow=(head[0] / FLOW_SCALE).numpy())
    return DenseMaps(probs=probs, distance=None if head is None else torch.sigmoid(head[0]).numpy())


@dataclass(frozen=True)
class Predictor:
    """A trained model with what it needs to turn a normalised image into objects."""

    model: nn.Module
    model_type: ModelType
    num_classes: int
    tile_size: int
    in_channels: int
    device: torch.device
    bf16: bool = False
    min_area: int = 16
    batch_size: int = 4
    runner: nn.Module | None = None  # `model` compiled for inference (`accel.compile_module`), if any
    instance_head: InstanceHead = "distance"
    #: Average every window's outputs over its eight flips and quarter turns (`dihedral`).
    test_time_flips: bool = False
    #: Instance models: the head's split level (`postprocess.SPLIT_LEVEL_DEFAULTS`; None: the default).
    split_level: float | None = None

    def outputs(self, image: np.ndarray) -> torch.Tensor:
        """Raw outputs, O x H x W, of a normalised C x H x W image (channels matched to the model)."""
        self.model.eval()
        matched = match_channels(np.asarray(image, dtype=np.float32), channels=self.in_channels)
        network = self.runner if self.runner is not None else self.model
        if self.test_time_flips:
            network = DihedralAverage(network, num_classes=self.num_classes)
        return sliding_window(
            network,
            matched,
            tile_size=self.tile_size,
            device=self.device,
            batch_size=self.batch_size,
            bf16=self.bf16,
            fixed_batch=self.runner is not None,
        )

    def instances(self, maps: DenseMaps) -> Instances:
        """Objects of the maps: flow dynamics or seeded watershed (instance), class regions (semantic)."""
        if self.model_type != "instance":
            return regions_from_semantic(maps.probs, min_area=self.min_area)
        head: InstanceHead = "flow" if maps.flow is not None else "distance"
        level = SPLIT_LEVEL_DEFAULTS[head] if self.split_level is None else self.split_level
        if maps.flow is not None:
            return instances_from_flows(maps.probs, maps.flow, min_area=self.min_area, sink_flow=level)
        distance = maps.distance if maps.distance is not None else 1.0 - maps.probs[0]
        return instances_from_maps(
            maps.probs, distance.astype(np.float32), min_area=self.min_area, seed_level=level
        )


class ModelSettings(Protocol):
    """What a predictor takes from a version's model card or from the training configuration."""

    @property
    def model_type(self) -> ModelType: ...

    @property
    def classes(self) -> Sequence[str]: ...

    @property
    def tile_size(self) -> int: ...

    @property
    def min_object_area(self) -> int: ...


def predictor_on(
    model: nn.Module,
    settings: ModelSettings,
    *,
    in_channels: int,
    instance_head: InstanceHead,
    test_time_flips: bool,
    runtime: Runtime,
) -> Predictor:
    """`model` as `runtime`'s device predicts with it, at the tile size and smallest object of `settings`,
    averaging each window's eight flips and turns when `test_time_flips`."""
    return Predictor(
        model=model,
        model_type=settings.model_type,
        num_classes=len(settings.classes),
        tile_size=settings.tile_size,
        in_channels=in_channels,
        device=runtime.device,
        bf16=runtime.bf16,
        min_area=settings.min_object_area,
        instance_head=instance_head,
        test_time_flips=test_time_flips,
    )


def accelerated(predictor: Predictor, *, compile_model: bool, cache_dir: Path | None = None) -> Predictor:
    """`predictor` with as many windows per batch as the GPU holds and, when `compile_model`, its model
    compiled for inference (caches in `cache_dir`; a failure is logged and eager is used)."""
    batch = inference_batch_size(
        predictor.model,
        tile_size=predictor.tile_size,
        in_channels=predictor.in_channels,
        device=predictor.device,
        bf16=predictor.bf16,
    )
    runner = None
    if compile_model:
        runner = accel.compile_module(predictor.model, what="inference model", cache_dir=cache_dir)
    return dataclasses.replace(predictor, batch_size=batch, runner=runner)
