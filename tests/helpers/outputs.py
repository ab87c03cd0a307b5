"""Build a training job's `output.tar.gz` as the trainer writes it (evaluation, predictions,
previews), from the shared contract models."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zlib
from collections.abc import Mapping
from typing import Any

from segpipe.models.common import SplitName
from segpipe.models.trainer_io import (
    THRESHOLDS,
    AveragePrecision,
    Evaluation,
    ImagePredictions,
    Metrics,
    PredictedObject,
    SplitEvaluation,
    ThresholdPoint,
)


def tiny_png(width: int = 4, height: int = 4) -> bytes:
    """A valid grey 8-bit PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(range(width)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def split_evaluation(classes: list[str], images: int, *, best: float = 0.5) -> SplitEvaluation:
    """A plausible sweep: F1 peaks at `best`, predicted objects fall as the threshold rises."""
    sweep = []
    for threshold in THRESHOLDS:
        f1 = round(max(0.0, 0.9 - abs(threshold - best)), 4)
        shown = int(200 * (1 - threshold))
        per_class = {
            name: Metrics(
                tp=int(shown * f1 / 2),
                fp=5,
                fn=5,
                precision=f1,
                recall=f1,
                f1=f1,
                predicted_objects=shown // 2,
            )
            for name in classes
        }
        sweep.append(
            ThresholdPoint(
                threshold=threshold,
                overall=Metrics(
                    tp=int(shown * f1), fp=10, fn=10, precision=f1, recall=f1, f1=f1, predicted_objects=shown
                ),
                per_class=per_class,
            )
        )
    return SplitEvaluation(
        images=images,
        objects=150,
        sweep=sweep,
        ap_overall=AveragePrecision(ap50=0.8, ap=0.5),
        ap_per_class={name: AveragePrecision(ap50=0.8, ap=0.5) for name in classes},
    )


def evaluation(classes: list[str], *, with_test: bool = True, best: float = 0.45) -> Evaluation:
    return Evaluation(
        model_type="instance",
        classes=classes,
        suggested_threshold=best,
        suggested_thresholds=dict.fromkeys(classes, best),
        suggested_from="test" if with_test else "train",
        train=split_evaluation(classes, 8, best=best),
        test=split_evaluation(classes, 2, best=best) if with_test else None,
        epochs_trained=5,
        best_epoch=4,
    )


def prediction(file_name: str, split: SplitName, classes: list[str], count: int = 3) -> ImagePredictions:
    objects = [
        PredictedObject(
            category=classes[index % len(classes)],
            score=round(0.1 + 0.85 * index / max(count - 1, 1), 3),
            segmentation=[[10.0 + index, 10.0, 20.0 + index, 10.0, 20.0 + index, 20.0, 10.0 + index, 20.0]],
            bbox=[10.0 + index, 10.0, 10.0, 10.0],
            area=100.0,
        )
        for index in range(count)
    ]
    stem = file_name.rsplit(".", 1)[0].replace("/", "__")
    return ImagePredictions(
        file_name=file_name, width=64, height=64, split=split, preview=f"{stem}.png", objects=objects
    )


def output_archive(
    result: Evaluation,
    predictions: list[ImagePredictions],
    *,
    previews: Mapping[str, bytes] | None = None,
    config: Mapping[str, Any] | None = None,
) -> bytes:
    """The bytes of output.tar.gz, laid out as the trainer writes /opt/ml/output/data: the
    evaluation, the resolved config, and each image's predictions and preview. `previews` gives the
    PNG of a preview file name (a tiny PNG for any other)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:  # PNGs are compressed

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

        add("evaluation.json", result.model_dump_json().encode())
        add("config.json", json.dumps(config or {"preset": "tiny"}).encode())
        for item in predictions:
            preview = item.preview or "x.png"
            stem = preview.removesuffix(".png")
            add(f"predictions/{item.split}/{stem}.json", item.model_dump_json().encode())
            add(f"previews/{stem}.png", (previews or {}).get(preview) or tiny_png())
    return buffer.getvalue()
