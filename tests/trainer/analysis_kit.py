"""A tiny model archive and `/opt/ml/processing`-like folders for the `analyze` tests and benchmark.

The model is the `tiny` preset with random weights (seeded), packed as SageMaker packs
`/opt/ml/model` into model.tar.gz: on the synthetic images it finds a handful of large objects
with scores spread between about 0.85 and 1, which is what thresholds and outputs are tested on.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segpipe.models.common import ModelType, Preset
from segpipe.models.trainer_io import ModelCard
from segpipe_trainer.model import build_model
from segpipe_trainer.train import save_weights
from tests.trainer.trainer_testkit import CLASSES, save_pixels, synthetic_image


def pack_model(
    folder: Path,
    *,
    model_type: ModelType = "instance",
    classes: tuple[str, ...] = CLASSES,
    in_channels: int = 1,
    tile_size: int = 64,
    seed: int = 0,
    min_object_area: int = 12,
) -> Path:
    """model.tar.gz of a random tiny model (model.json + model.safetensors at the archive's root)."""
    torch.manual_seed(seed)
    model = build_model(
        preset="tiny", num_classes=len(classes), model_type=model_type, in_channels=in_channels
    )
    packed = folder / "packed"
    save_weights(model, packed / "model.safetensors")
    card = ModelCard(
        preset=Preset.TINY,
        model_type=model_type,
        classes=list(classes),
        tile_size=tile_size,
        in_channels=in_channels,
        suggested_threshold=0.5,
        suggested_thresholds=dict.fromkeys(classes, 0.5),
        min_object_area=min_object_area,
    )
    (packed / "model.json").write_text(card.model_dump_json())
    archive = folder / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("model.json", "model.safetensors"):
            tar.add(packed / name, arcname=name)
    return archive


def analyze_config(**overrides: Any) -> dict[str, Any]:
    """An analyze.json for the kit's model (overrides replace fields)."""
    config: dict[str, Any] = {
        "project": "lab-1",
        "analysis": 1,
        "version": 2,
        "model_type": "instance",
        "classes": list(CLASSES),
        "thresholds": dict.fromkeys(CLASSES, 0.5),
        "pixel_size": None,
        "images_folder": "plate-1",
        "image_count": 1,
    }
    config.update(overrides)
    return config


def synthetic_images(
    count: int, *, size: tuple[int, int] = (128, 128), suffix: str = ".tif", seed: int = 0
) -> dict[str, np.ndarray]:
    """File name -> uint16 C x H x W pixels of the trainer kit's synthetic ellipses."""
    return {
        f"{'a' if number % 2 else 'b'}/image_{number:03d}{suffix}": synthetic_image(
            size=size, seed=seed * 1000 + number
        ).pixels
        for number in range(count)
    }


def make_processing_root(
    root: Path,
    *,
    archive: Path,
    images: Mapping[str, np.ndarray],
    config: Mapping[str, Any],
    host: str | None = "algo-1",
    hosts: tuple[str, ...] = ("algo-1",),
) -> Path:
    """`root` laid out as /opt/ml/processing (and `root/../config/resourceconfig.json` for `host`)."""
    model_dir = root / "input" / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.tar.gz").write_bytes(archive.read_bytes())
    config_dir = root / "input" / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "analyze.json").write_text(json.dumps(dict(config)))
    for file_name, pixels in images.items():
        save_pixels(root / "input" / "images" / file_name, pixels)
    (root / "input" / "images").mkdir(parents=True, exist_ok=True)
    if host is not None:
        resource = root.parent / "config" / "resourceconfig.json"
        resource.parent.mkdir(parents=True, exist_ok=True)
        resource.write_text(json.dumps({"current_host": host, "hosts": list(hosts)}))
    return root
