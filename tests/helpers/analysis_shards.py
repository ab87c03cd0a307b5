"""What the `analyze` container writes back for an analysis, for tests of the merge, the job state
and the API: the job configuration, each instance's shard files, per-image files and progress (the
contract of models/analysis.py), and the registry item submit leaves. (What an analysis starts
from, a version and images under moto, is in `tests.helpers.analysis_inputs`.)"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from segpipe.dal.interfaces import ArtifactStore
from segpipe.models import keys
from segpipe.models.analysis import (
    AnalysedImage,
    AnalysisDetails,
    AnalysisObject,
    AnalysisProgress,
    AnalysisRequest,
    AnalysisSummary,
    AnalyzeConfig,
    ClassTotals,
    image_columns,
    object_columns,
)
from segpipe.models.analysis import Analysis as AnalysisItem
from segpipe.models.trainer_io import prediction_stem

NOW = datetime(2026, 12, 1, tzinfo=UTC)
CLASSES = ["nucleus", "mitotic cell"]


@dataclass(frozen=True)
class Obj:
    category: str
    score: float
    label: int
    x: float = 1.0
    y: float = 1.0
    size: float = 3.0

    @property
    def area(self) -> float:
        return self.size * self.size


@dataclass(frozen=True)
class Img:
    file_name: str
    width: int = 32
    height: int = 24
    objects: tuple[Obj, ...] = field(default_factory=tuple)

    @property
    def stem(self) -> str:
        return prediction_stem(self.file_name)


def config(
    *, project: str = "lab", analysis: int = 1, pixel_size: float | None = 0.5, images: int = 1
) -> AnalyzeConfig:
    return AnalyzeConfig(
        project=project,
        analysis=analysis,
        version=2,
        model_type="instance",
        classes=CLASSES,
        thresholds={"nucleus": 0.5, "mitotic cell": 0.3},
        pixel_size=pixel_size,
        images_folder="plate-7",
        image_count=images,
    )


def sample_images(count: int = 5) -> list[Img]:
    """Images with 0..3 objects of both classes; image 1 has none."""
    images = []
    for index in range(count):
        objects = tuple(
            Obj(CLASSES[(index + k) % 2], round(0.55 + 0.1 * k, 2), label=k + 1, x=2.0 + 5 * k, size=2.0 + k)
            for k in range(index % 4)
        )
        images.append(Img(f"sub {index % 2}/img-{index:02d}.tif", 32 + index, 24, objects))
    return images


def _csv(header: list[str], rows: Iterable[list[object]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)  # the csv module's default dialect ends rows with \r\n
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def shard_files(
    cfg: AnalyzeConfig, images: Sequence[Img], host: str, *, channels: int = 1
) -> dict[str, bytes]:
    """The four files of one instance that analysed `images` (in the order given, ids from 1)."""
    category_id = {name: index + 1 for index, name in enumerate(cfg.classes)}
    coco_images, annotations, object_rows, image_rows = [], [], [], []
    per_class = {name: ClassTotals() for name in cfg.classes}
    for image_id, image in enumerate(images, start=1):
        coco_images.append(
            {
                "id": image_id,
                "file_name": image.file_name,
                "width": image.width,
                "height": image.height,
                "status": "in_progress",
            }
        )
        # The container numbers annotations in its own order: here, descending label, to show the
        # merge re-orders them by label.
        for obj in sorted(image.objects, key=lambda o: -o.label):
            ident = len(annotations) + 1
            x, y, s = obj.x, obj.y, obj.size
            annotations.append(
                {
                    "id": ident,
                    "image_id": image_id,
                    "category_id": category_id[obj.category],
                    "segmentation": [[x, y, x + s, y, x + s, y + s, x, y + s]],
                    "bbox": [x, y, s, s],
                    "area": obj.area,
                    "score": obj.score,
                    "iscrowd": 0,
                }
            )
            row: list[object] = [
                image.file_name, image.stem, ident, obj.label, obj.category, obj.score, obj.area, 4 * s,
                x + s / 2, y + s / 2, x, y, s, s, 0.0, 1.0,
            ]  # fmt: skip
            if cfg.pixel_size is not None:
                p = cfg.pixel_size
                row += [obj.area * p * p, 4 * s * p, (x + s / 2) * p, (y + s / 2) * p]
            for channel in range(channels):
                row += [100.5 + channel, 200 + channel]
            object_rows.append(row)
            per_class[obj.category].objects += 1
            per_class[obj.category].area += obj.area
        cells: list[object] = [image.file_name, image.stem, image.width, image.height, len(image.objects)]
        pixels = image.width * image.height
        cells.append(sum(o.area for o in image.objects) / pixels)
        for name in cfg.classes:
            mine = [o for o in image.objects if o.category == name]
            area = sum(o.area for o in mine)
            cells += [len(mine), area, area / pixels]
        image_rows.append(cells)
    coco = {
        "images": coco_images,
        "categories": [{"id": category_id[name], "name": name} for name in cfg.classes],
        "annotations": annotations,
    }
    summary = AnalysisSummary(
        **cfg.run_fields(),
        images=len(images),
        megapixels=sum(i.width * i.height for i in images) / 1e6,
        objects=len(annotations),
        per_class=per_class,
        hosts=[host],
        seconds=10.0 + len(images),
        inference_seconds=2.0 * len(images),
    )
    return {
        "coco.json": json.dumps(coco, indent=1).encode(),
        "objects.csv": _csv(object_columns(channels=channels, pixel_size=cfg.pixel_size), object_rows),
        "images.csv": _csv(image_columns(cfg.classes), image_rows),
        "summary.json": summary.model_dump_json().encode(),
    }


def put_shards(
    artifacts: ArtifactStore,
    cfg: AnalyzeConfig,
    hosts: dict[str, Sequence[Img]],
    *,
    with_config: bool = True,
    with_images: bool = False,
) -> None:
    """Upload the config and every host's shard files (and, optionally, the per-image files)."""
    if with_config:
        artifacts.put_bytes(
            keys.analysis_config_key(cfg.project, cfg.analysis), cfg.model_dump_json().encode()
        )
    prefix = keys.analysis_shards_prefix(cfg.project, cfg.analysis)
    for host, images in hosts.items():
        for name, data in shard_files(cfg, images, host).items():
            artifacts.put_bytes(f"{prefix}{host}/{name}", data)
        if with_images:
            for image in images:
                put_image_files(artifacts, cfg, image)


def analysed_image(image: Img) -> AnalysedImage:
    return AnalysedImage.from_record(
        image,
        preview=f"{image.stem}.png",
        objects=[
            AnalysisObject.from_record(
                o,
                segmentation=[[o.x, o.y, o.x + o.size, o.y, o.x + o.size, o.y + o.size]],
                bbox=[o.x, o.y, o.size, o.size],
            )
            for o in image.objects
        ],
        counts={name: sum(1 for o in image.objects if o.category == name) for name in CLASSES},
    )


def put_image_files(artifacts: ArtifactStore, cfg: AnalyzeConfig, image: Img) -> None:
    from tests.helpers.outputs import tiny_png

    prefix = keys.analysis_images_prefix(cfg.project, cfg.analysis)
    artifacts.put_bytes(f"{prefix}{image.stem}.json", analysed_image(image).model_dump_json().encode())
    artifacts.put_bytes(f"{prefix}{image.stem}.png", tiny_png(), "image/png")
    artifacts.put_bytes(
        keys.analysis_mask_key(cfg.project, cfg.analysis, image.stem), b"II*\x00", "image/tiff"
    )


def put_progress(artifacts: ArtifactStore, cfg: AnalyzeConfig, host: str, done: int, total: int) -> None:
    key = f"{keys.analysis_progress_prefix(cfg.project, cfg.analysis)}{host}.json"
    artifacts.put_bytes(
        key, AnalysisProgress(host=host, images_done=done, images_total=total).model_dump_json().encode()
    )


def analysis_item(
    cfg: AnalyzeConfig, *, job_name: str = "segpipe-lab-a1-0123abcd", instance_count: int = 1
) -> AnalysisItem:
    """The registry item submit writes for `cfg` (status queued)."""
    request = AnalysisRequest.model_validate(
        {"name": "plate 7", "images": cfg.images_folder, "compute": {"instance_count": instance_count}}
    )
    return AnalysisItem(
        **cfg.run_fields(),
        name="plate 7",
        images_folder=cfg.images_folder,
        request=request,
        details=AnalysisDetails(images_folder=cfg.images_folder, images=cfg.image_count),
        job_name=job_name,
        created_at=NOW,
        updated_at=NOW,
    )
